"""The iteration-based trainer (SPEC §9).

One :class:`Trainer` runs in every process. Rank 0 owns the output folder::

    output/{dataset_name}/{model}/{save_name}/
        config.yaml                                   the resolved config
        checkpoints/{save_name}-{iter:05d}.safetensors        weights + metadata
        checkpoints/{save_name}-{iter:05d}.state.safetensors  optimiser, scheduler, scaler, RNG, sampler
        metrics.jsonl                                 one line per log_iter window
        train.log                                     human-readable log

Resuming restores every piece of state, including the partly filled logging window, so a run
stopped at iteration k and resumed writes the same metrics lines after k as a run that never
stopped (CPU, same seed).
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from gaitcli.config import dump_config
from gaitcli.data.collate import Collator, IndexedDataset, to_model_input
from gaitcli.data.dataset import GaitDataset
from gaitcli.data.samplers import TripletSampler
from gaitcli.errors import ConfigError, GaitError
from gaitcli.fileio import atomic_write_bytes
from gaitcli.schedule import build_optimizer, build_scheduler, check_optimisation
from gaitcli.training.distributed import DistInfo, barrier, gather_with_grad
from gaitcli.training.losses import LossAggregator
from gaitcli.training.state import load_state, rng_state, save_state, set_rng_state, state_path

Log = Callable[[str], None]

MAX_SKIPPED_STEPS = 50  # consecutive fp16 overflow skips before the run is declared diverged


class TrainingStopped(GaitError):
    """The run stopped early (interrupt or non-finite loss) after saving what it could."""


def output_dir_for(cfg: Mapping[str, Any], output: str | os.PathLike | None = None) -> Path:
    if output is not None:
        return Path(output)
    return Path("output") / cfg["data_cfg"]["dataset_name"] / cfg["model_cfg"]["model"] / cfg["trainer_cfg"]["save_name"]


def checkpoint_name(cfg: Mapping[str, Any], iteration: int) -> str:
    return f"{cfg['trainer_cfg']['save_name']}-{iteration:05d}.safetensors"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(iteration, weights path) of every complete checkpoint (weights and state present)."""
    out = []
    if not folder.is_dir():
        return out
    for path in folder.glob("*.safetensors"):
        if path.name.endswith(".state.safetensors") or path.name.startswith("."):
            continue
        stem = path.name[: -len(".safetensors")]
        tail = stem.rsplit("-", 1)[-1]
        if tail.isdigit() and state_path(path).exists():
            out.append((int(tail), path))
    return sorted(out)


def find_resume_checkpoint(hint: Any, cfg: Mapping[str, Any], ckpt_dir: Path) -> Path | None:
    """Resolve ``restore_hint`` / ``--resume``: 0 (fresh), an iteration, a path, or 'latest'."""
    if hint in (None, 0, "0", ""):
        return None
    if isinstance(hint, str) and hint.lower() == "latest":
        found = list_checkpoints(ckpt_dir)
        if not found:
            raise GaitError(f"--resume latest: no checkpoint in {ckpt_dir}; start without --resume")
        return found[-1][1]
    if isinstance(hint, int) or (isinstance(hint, str) and hint.isdigit()):
        path = ckpt_dir / checkpoint_name(cfg, int(hint))
        if not path.exists():
            have = ", ".join(str(i) for i, _ in list_checkpoints(ckpt_dir)) or "none"
            raise GaitError(f"no checkpoint for iteration {int(hint)} in {ckpt_dir} (available: {have})")
        return path
    path = Path(str(hint))
    if not path.exists():
        raise GaitError(f"--resume {hint}: no such checkpoint file")
    return path


class OutputLock:
    """A lock file so that two runs never write into the same output folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / ".train.lock"
        self.held = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if self._stale():
                    self.path.unlink(missing_ok=True)
                    continue
                owner = self.path.read_text().strip() or "another process"
                raise GaitError(
                    f"{self.path.parent} is in use by another gait train ({owner}); wait for it, "
                    f"or use --output to train elsewhere (delete {self.path.name} if that run is gone)"
                ) from None
            with os.fdopen(fd, "w") as handle:
                handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
            self.held = True
            return

    def _stale(self) -> bool:
        try:
            text = self.path.read_text().split()
            pid, host = int(text[1]), text[3]
        except (OSError, ValueError, IndexError):
            return False
        if host != socket.gethostname():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


class Trainer:
    """Training in one process (one rank)."""

    def __init__(self, cfg: Mapping[str, Any], info: DistInfo, out_dir: Path, *,
                 resume: Any = None, overwrite: bool = False, log: Log | None = None,
                 progress: bool = True, console: Any = None) -> None:
        self.cfg = cfg
        self.info = info
        self.out_dir = out_dir
        self.ckpt_dir = out_dir / "checkpoints"
        self.tcfg = cfg["trainer_cfg"]
        self.resume_hint = resume if resume is not None else self.tcfg["restore_hint"]
        self.overwrite = overwrite
        self._log = log or (lambda _m: None)
        self.progress = progress and info.is_main
        self.console = console
        self.device = torch.device("cuda", info.local_rank) if info.device == "cuda" else torch.device("cpu")
        self.iteration = 0
        self.next_batch = 0
        self.window: dict[str, Any] = {"sums": {}, "count": 0}
        self.last_saved: Path | None = None
        self.lock = OutputLock(out_dir)
        self.data_seconds = 0.0
        self.tensorboard: Any = None

    # ------------------------------------------------------------------ setup
    def log(self, message: str) -> None:
        if not self.info.is_main:
            return
        self._log(message)
        with open(self.out_dir / "train.log", "a", encoding="utf-8") as handle:
            handle.write(time.strftime("%Y-%m-%d %H:%M:%S ") + message + "\n")

    def setup(self) -> None:
        cfg, tcfg = self.cfg, self.tcfg
        for note in check_optimisation(cfg).notes:  # e.g. a warm-up longer than a short smoke run
            self.log(f"note: {note}")
        seed = int(tcfg["seed"])
        torch.manual_seed(seed + self.info.rank)
        np.random.seed((seed + self.info.rank) % 2**32)
        import random

        random.seed(seed + self.info.rank)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        if self.info.is_main:
            self.lock.acquire()  # first: a folder in use is the answer, whatever else is asked
        resume_path = find_resume_checkpoint(self.resume_hint, cfg, self.ckpt_dir)
        if self.info.is_main:
            existing = list_checkpoints(self.ckpt_dir)
            if resume_path is None and existing and not self.overwrite:
                self.lock.release()
                raise GaitError(
                    f"{self.out_dir} already holds checkpoints up to iteration {existing[-1][0]}; "
                    "continue with --resume latest, train elsewhere with --output, or start over with --overwrite"
                )
            atomic_write_bytes(self.out_dir / "config.yaml", dump_config(cfg).encode())
            if resume_path is None:
                (self.out_dir / "metrics.jsonl").unlink(missing_ok=True)

        data = cfg["data_cfg"]
        self.dataset = GaitDataset(
            data["dataset_root"], data["dataset_partition"], "train",
            cache=data["cache"], data_in_use=data["data_in_use"], min_frames=data["min_frames"],
        )
        if self.dataset.missing_ids:
            self.log(f"warning: {len(self.dataset.missing_ids)} training ids of the partition are not on disk: "
                     f"{', '.join(self.dataset.missing_ids[:10])}")
        if self.dataset.skipped_short:
            self.log(f"min_frames: left out {len(self.dataset.skipped_short)} short sequences")
        classes = len(self.dataset.label_set)
        class_num = cfg["model_cfg"]["class_num"]
        if class_num < classes:
            raise ConfigError(f"model_cfg.class_num is {class_num} but the training split has {classes} ids; "
                              f"set --set model_cfg.class_num={classes}")

        from gaitcli.models import build_model

        self.model = build_model(cfg).to(self.device)
        self.param_count = sum(p.numel() for p in self.model.parameters())
        self.net: torch.nn.Module = self.model
        if self.info.distributed:
            if self.device.type == "cuda" and tcfg["sync_BN"]:
                self.net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
            # without a cross-entropy term the classifier head gets no gradient; DDP must know
            unused = not any(item["type"] == "CrossEntropyLoss" for item in cfg["loss_cfg"])
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.info.local_rank] if self.device.type == "cuda" else None,
                find_unused_parameters=unused,
            )
        self.losses = LossAggregator(
            cfg["loss_cfg"], gather=gather_with_grad if self.info.distributed else None,
            world_size=self.info.world_size,
        )
        self.optimizer = build_optimizer(self.net.parameters(), cfg["optimizer_cfg"])
        self.scheduler = build_scheduler(self.optimizer, cfg["scheduler_cfg"])
        self.fp16 = bool(tcfg["enable_float16"]) and self.device.type == "cuda"
        self.bf16 = bool(tcfg["enable_bfloat16"])
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.fp16)
        if resume_path is not None:
            self._restore(resume_path)

        sampler_cfg = tcfg["sampler"]
        self.sampler = TripletSampler(
            self.dataset.labels, sampler_cfg["batch_size"], shuffle=sampler_cfg["batch_shuffle"], seed=seed,
            rank=self.info.rank, world_size=self.info.world_size, start_batch=self.next_batch,
        )
        collate = Collator(sampler_cfg, self.dataset.label_index, seed=seed, transform=tcfg["transform"])
        workers = int(data["num_workers"])
        self.loader = torch.utils.data.DataLoader(
            IndexedDataset(self.dataset), batch_sampler=self.sampler, collate_fn=collate,
            num_workers=workers, pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0, prefetch_factor=2 if workers > 0 else None,
        )
        batch = sampler_cfg["batch_size"]
        self.global_batch = int(batch[0]) * int(batch[1])
        if self.info.is_main:
            self.tensorboard = _tensorboard_writer(self.out_dir)
            if self.console is not None and self.progress:
                from rich.panel import Panel
                from rich.syntax import Syntax

                self.console.print(Panel(Syntax(dump_config(cfg), "yaml", theme="ansi_dark"), title="resolved config",
                                         expand=False))
        self.log(f"model {cfg['model_cfg']['model']} ({self.param_count / 1e6:.2f} M parameters) on "
                 f"{self.info.world_size} x {self.device.type}; {len(self.dataset)} training sequences of "
                 f"{classes} ids; batch {batch[0]}x{batch[1]}; output {self.out_dir}")

    def _restore(self, path: Path) -> None:
        from gaitcli.models import load_state_dict_checked, read_checkpoint

        weights, _meta = read_checkpoint(path)
        if self.tcfg["restore_ckpt_strict"]:
            load_state_dict_checked(self.model, weights, source=str(path))
        else:
            self.model.load_state_dict(weights, strict=False)
        spath = state_path(path)
        if not spath.exists():
            raise GaitError(f"{path}: its training state {spath.name} is missing; it can be evaluated but not resumed")
        state = load_state(spath)
        if not self.tcfg["optimizer_reset"]:
            self.optimizer.load_state_dict(state["optimizer"])
        if not self.tcfg["scheduler_reset"]:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.iteration = int(state["iteration"])
        self.next_batch = int(state["next_batch"])
        self.window = state["window"]
        self.window["sums"] = {k: float(v) for k, v in self.window["sums"].items()}
        self.last_saved = path
        if self.info.is_main:
            _truncate_metrics(self.out_dir / "metrics.jsonl", self.iteration)
        self.log(f"resumed from {path} at iteration {self.iteration}")

    # ------------------------------------------------------------------ loop
    def autocast(self):
        if self.fp16:
            return torch.autocast("cuda", dtype=torch.float16)
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def step(self, batch: Any) -> tuple[bool, dict[str, float]]:
        """One optimiser step; returns (stepped, logged terms). A skipped fp16 step returns False."""
        sils, labels, seq_lens = to_model_input(batch, self.device)
        self.net.train()
        if self.tcfg["fix_BN"]:
            for module in self.net.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        with self.autocast():
            outputs = self.net(sils, seq_lens)
        total, logged = self.losses(outputs, labels)
        finite = torch.isfinite(total.detach()).float()
        if self.info.distributed:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() == 0 and not self.scaler.is_enabled():
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingStopped(
                f"loss became {total.item()} at iteration {self.iteration + 1}; last good checkpoint: "
                f"{self.last_saved or 'none yet'}; lower optimizer_cfg.lr or check the data", exit_code=1,
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        scale_before = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if scale_before is not None and self.scaler.get_scale() < scale_before:
            return False, {}
        return True, {k: float(v) for k, v in logged.items()}

    def fit(self) -> dict[str, Any]:
        total_iter = int(self.tcfg["total_iter"])
        log_iter, save_iter = int(self.tcfg["log_iter"]), int(self.tcfg["save_iter"])
        skipped = 0
        window_start = time.perf_counter()
        window_iters = 0
        display = _Display(self.console, total_iter, self.iteration) if self.progress else None
        last_line: dict[str, Any] = {}
        try:
            loader = iter(self.loader)
            while self.iteration < total_iter:
                waited = time.perf_counter()
                batch = next(loader)
                self.data_seconds += time.perf_counter() - waited
                lr = float(self.optimizer.param_groups[0]["lr"])
                stepped, terms = self.step(batch)
                self.next_batch += 1
                if not stepped:
                    skipped += 1
                    if skipped >= MAX_SKIPPED_STEPS:
                        raise TrainingStopped(
                            f"{skipped} fp16 steps in a row overflowed at iteration {self.iteration}; last good "
                            f"checkpoint: {self.last_saved or 'none yet'}; lower the lr or disable enable_float16",
                            exit_code=1,
                        )
                    continue
                skipped = 0
                self.scheduler.step()
                self.iteration += 1
                window_iters += 1
                sums = self.window["sums"]
                for key, value in terms.items():
                    sums[key] = sums.get(key, 0.0) + value
                self.window["count"] += 1
                if self.iteration % log_iter == 0 or self.iteration == total_iter:
                    # a run ending mid-window logs it as partial and keeps the window in its saved
                    # state, so a resumed run completes the same window an unbroken run would
                    partial = self.iteration % log_iter != 0
                    seconds = time.perf_counter() - window_start
                    last_line = self._write_metrics(lr, seconds, window_iters, partial=partial)
                    window_start, window_iters = time.perf_counter(), 0
                if display is not None:
                    display.update(self.iteration, lr, terms, last_line)
                if self.iteration % save_iter == 0 or self.iteration == total_iter:
                    self.save()
        except KeyboardInterrupt:
            if display is not None:
                display.stop()
            saved = self.save() if self.iteration > 0 else None
            where = f"saved {saved}" if saved else "nothing to save yet"
            raise TrainingStopped(f"interrupted at iteration {self.iteration}; {where}; continue with --resume latest",
                                  exit_code=130) from None
        finally:
            if display is not None:
                display.stop()
        return {"iteration": self.iteration, "output": str(self.out_dir),
                "checkpoint": str(self.last_saved) if self.last_saved else None, "metrics": last_line}

    def _write_metrics(self, lr: float, seconds: float, iters: int, partial: bool = False) -> dict[str, Any]:
        count = max(self.window["count"], 1)
        line: dict[str, Any] = {"iteration": self.iteration, "lr": lr}
        for key, value in self.window["sums"].items():
            line[key] = value / count
        line["seconds"] = round(seconds, 4)
        line["sequences_per_s"] = round(self.global_batch * iters / seconds, 3) if seconds > 0 else None
        line["data_wait"] = round(self.data_seconds / seconds, 4) if seconds > 0 else None  # share spent waiting for data
        self.data_seconds = 0.0
        if partial:
            line["partial"] = True
        else:
            self.window = {"sums": {}, "count": 0}
        if self.info.is_main:
            with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps(line) + "\n")
            if self.tensorboard is not None:
                for key, value in line.items():
                    if key != "iteration" and isinstance(value, (int, float)):
                        self.tensorboard.add_scalar(key, value, self.iteration)
            terms = "  ".join(f"{k}={v:.4g}" for k, v in line.items()
                              if k not in ("iteration", "lr", "seconds", "sequences_per_s", "data_wait", "partial"))
            self.log(f"iteration {self.iteration}  lr={lr:.4g}  {terms}  {line['sequences_per_s']} seq/s")
        return line

    def save(self) -> Path | None:
        """Write the weights and the training state of the current iteration (rank 0), atomically."""
        path = self.ckpt_dir / checkpoint_name(self.cfg, self.iteration)
        if self.info.is_main:
            from gaitcli.models import save_checkpoint

            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            state = {
                "iteration": self.iteration,
                "next_batch": self.next_batch,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),  # LambdaLR stores its functions as None
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                "rng": rng_state(),
                "window": self.window,
            }
            # state first: a weights file is only "complete" once its state exists next to it
            try:
                save_state(state_path(path), state)
                save_checkpoint(path, self.model, self.cfg, iteration=self.iteration, labels=self.dataset.label_set)
            except OSError as exc:
                state_path(path).unlink(missing_ok=True)  # never leave a state without its weights
                raise TrainingStopped(
                    f"could not write the checkpoint of iteration {self.iteration} to {self.ckpt_dir} "
                    f"({exc.strerror or exc}); the last good checkpoint {self.last_saved or '(none yet)'} is intact; "
                    "free disk space and continue with --resume latest", exit_code=1,
                ) from None
            self._prune()
            self.log(f"saved {path}")
        barrier()
        self.last_saved = path
        if self.tcfg["with_test"]:
            self.run_test()
        return path

    def _prune(self) -> None:
        keep = self.tcfg["keep_last"]
        if not keep:
            return
        for _, old in list_checkpoints(self.ckpt_dir)[:-keep]:
            state_path(old).unlink(missing_ok=True)
            old.unlink(missing_ok=True)

    def run_test(self) -> None:
        if not self.info.is_main:
            barrier()
            return
        from gaitcli.evaluation.api import evaluate_model

        results = evaluate_model(self.model, self.cfg, device=self.device)
        summary = "  ".join(f"{name}={value:.2f}" for name, value in results.rank1.items())
        self.log(f"test at iteration {self.iteration}: rank-1 {summary}")
        with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"iteration": self.iteration, "test": results.to_json()}) + "\n")
        barrier()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.info.is_main:
            self.lock.release()


def _tensorboard_writer(out_dir: Path) -> Any:
    """TensorBoard scalars in ``out_dir/tensorboard`` when the optional package is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(out_dir / "tensorboard"))


def _truncate_metrics(path: Path, iteration: int) -> None:
    """Drop metrics lines written after ``iteration`` by the run being resumed, and its closing
    partial-window line (the resumed run completes that window)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
            if entry.get("iteration", 0) < iteration or (entry.get("iteration") == iteration and not entry.get("partial")):
                kept.append(line)
        except ValueError:
            continue  # a half-written last line of a killed run
    atomic_write_bytes(path, ("\n".join(kept) + "\n" if kept else "").encode())


class _Display:
    """Rich live progress: iteration, lr, loss_num (the convergence signal), loss, seq/s, ETA."""

    def __init__(self, console: Any, total: int, start: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("lr {task.fields[lr]}"),
            TextColumn("[bold magenta]loss_num {task.fields[loss_num]}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} seq/s"),
            TimeRemainingColumn(),
            console=console, transient=False,
        )
        self.task = self.progress.add_task("train", total=total, completed=start, lr="-", loss_num="-", loss="-", speed="-")
        self.progress.start()

    def update(self, iteration: int, lr: float, terms: Mapping[str, float], line: Mapping[str, Any]) -> None:
        loss_num = terms.get("triplet/loss_num", math.nan)
        self.progress.update(
            self.task, completed=iteration, lr=f"{lr:.2e}", loss_num=f"{loss_num:.1f}",
            loss=f"{terms.get('total_loss', math.nan):.4f}", speed=str(line.get("sequences_per_s", "-")),
        )

    def stop(self) -> None:
        self.progress.stop()


# ---------------------------------------------------------------------- entry point
def _error_file(out_dir: Path, rank: int) -> Path:
    return out_dir / f".train-error-rank{rank}"


def _worker(info: DistInfo, cfg: Mapping[str, Any], out_dir: Path, resume: Any, overwrite: bool,
            progress: bool, console: Any) -> dict[str, Any]:
    """One rank's whole run. Errors of spawned ranks are left in a file for the launcher."""
    log = (lambda m: console.print(m, highlight=False)) if console is not None else None
    trainer = Trainer(cfg, info, out_dir, resume=resume, overwrite=overwrite, log=log, progress=progress, console=console)
    try:
        trainer.setup()
        return trainer.fit()
    except GaitError as exc:
        if info.distributed:
            out_dir.mkdir(parents=True, exist_ok=True)
            _error_file(out_dir, info.rank).write_text(json.dumps([str(exc), exc.exit_code]))
        raise
    finally:
        trainer.close()


def train(cfg: Mapping[str, Any], *, output: str | os.PathLike | None = None, device: str | None = None,
          gpus: int | None = None, nproc: int | None = None, resume: Any = None, overwrite: bool = False,
          console: Any = None, progress: bool = True) -> dict[str, Any]:
    """Train ``cfg`` in this process or in ``nproc`` / ``gpus`` processes; returns rank 0's summary."""
    from gaitcli.training.distributed import launch, resolve_devices

    device_type, procs = resolve_devices(device, gpus, nproc)
    batch = cfg["trainer_cfg"]["sampler"]["batch_size"]
    if (batch[0] * batch[1]) % procs:
        raise ConfigError(f"trainer_cfg.sampler.batch_size {batch[0]}x{batch[1]} cannot be split over {procs} "
                          "processes; make P*K a multiple of the process count")
    check_optimisation(cfg)  # the check gait config and gait lr-plot run too
    out_dir = output_dir_for(cfg, output)
    out_dir.mkdir(parents=True, exist_ok=True)
    for rank in range(procs):
        _error_file(out_dir, rank).unlink(missing_ok=True)
    try:
        result = launch(_worker, device_type, procs, cfg, out_dir, resume, overwrite, progress, console)
    except Exception as exc:  # a spawned rank failed: surface its one-line message
        for rank in range(procs):
            path = _error_file(out_dir, rank)
            if path.exists():
                message, code = json.loads(path.read_text())
                path.unlink(missing_ok=True)
                raise GaitError(message, exit_code=code) from None
        raise exc
    if result is None:  # spawned: read rank 0's results from disk
        found = list_checkpoints(out_dir / "checkpoints")
        result = {"iteration": found[-1][0] if found else 0, "output": str(out_dir),
                  "checkpoint": str(found[-1][1]) if found else None, "metrics": _last_metrics(out_dir)}
    return result


def _last_metrics(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "metrics.jsonl"
    if not path.exists():
        return {}
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    lines = [x for x in lines if "test" not in x]
    return lines[-1] if lines else {}
