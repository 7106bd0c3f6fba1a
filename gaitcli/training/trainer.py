"""The iteration-based trainer: one :class:`Trainer` per rank, and :func:`train`, which launches
the ranks (docs/train.md).

Construction is delegated to the builders (data, network, optimisation), the run folder's rules
to :mod:`gaitcli.training.run_folder`, checkpoints to :class:`CheckpointConnector`, the record to
:class:`MetricsLogger`, the console to :mod:`gaitcli.training.display`, Ctrl-C to
:class:`InterruptGuard`. Resuming restores every piece of state, including the partly filled
logging window, so a run stopped at iteration k and resumed writes the same metrics lines and
the same final tensors as a run that never stopped (CPU, same seed).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import yaml
from rich.console import Console

from gaitcli.config import dump_config, migrate_config
from gaitcli.config_types import GaitConfig
from gaitcli.data.collate import Batch, to_model_input
from gaitcli.data.transforms import build_transform
from gaitcli.errors import ConfigError, GaitError, option
from gaitcli.fileio import JSONValue, WriteError, check_writable
from gaitcli.models.base import GaitModel
from gaitcli.runtime.distributed import (
    DistInfo,
    all_ranks,
    any_rank,
    barrier,
    broadcast_object,
    resolve_devices,
)
from gaitcli.runtime.launch import launch
from gaitcli.schedule import check_config_optimisation
from gaitcli.training import time_budget
from gaitcli.training.builders import (
    Optimisation,
    TrainData,
    TrainNetwork,
    build_data,
    build_loader,
    build_optimisation,
    cpu_bf16_warning,
    device_of,
    seed_everything,
    wrap_network,
)
from gaitcli.training.checkpointing import (
    CheckpointConnector,
    Progress,
    TrainingStopped,
    read_training_state,
    stored_budget,
)
from gaitcli.training.display import TrainDisplay, config_summary, print_full_config
from gaitcli.training.kernel_choice import KernelChoice, choose_kernels, config_choice
from gaitcli.training.metrics_log import MetricsLogger, Window, last_metrics
from gaitcli.training.run_folder import (
    RunFolder,
    acquire_output_lock,
    check_resumed_config,
    checkpoint_name,
    find_resume_checkpoint,
    list_checkpoints,
    output_dir_for,
    resume_requested,
    truncate_metrics,
)
from gaitcli.training.signals import InterruptGuard
from gaitcli.training.time_budget import (
    RECHECK_TOLERANCE,
    BudgetSetting,
    DerivedSchedule,
    TimeBudget,
    check_minutes,
    follow_schedule,
)

__all__ = [
    "Trainer",
    "TrainJob",
    "TrainSummary",
    "TrainingStopped",
    "checkpoint_name",
    "list_checkpoints",
    "output_dir_for",
    "train",
]

UNBOUNDED = 2**62  # the run length of a time-budget run before its pace is measured
MAX_SKIPPED_STEPS = 50  # consecutive fp16 overflow skips before the run is declared diverged


@dataclass
class TrainSummary:
    """How a run ended (rank 0's view)."""

    iteration: int
    """The last completed iteration."""
    output: str
    """The run folder."""
    checkpoint: str | None
    """The newest checkpoint of the run (exists), or None when none was written (``--iters 0``)."""
    metrics: dict[str, JSONValue] = field(default_factory=dict)
    """The last metrics.jsonl line."""

    def to_json(self) -> dict[str, JSONValue]:
        return asdict(self)


class Trainer:
    """Training in one process (one rank)."""

    def __init__(
        self,
        cfg: GaitConfig,
        info: DistInfo,
        out_dir: Path,
        *,
        resume: int | str | None = None,
        overwrite: bool = False,
        console: Console | None = None,
        progress: bool = True,
        verbose: bool = False,
    ) -> None:
        self.cfg, self.info, self.tcfg = cfg, info, cfg.trainer
        self.folder = RunFolder(Path(out_dir))
        self.resume_hint = resume if resume is not None else self.tcfg.restore_hint
        self.resume_option = "resume" if resume is not None else ""
        self.overwrite, self.verbose = overwrite, verbose
        self.console = console if info.is_main else None
        self.progress_bar = progress and self.console is not None
        self.device = device_of(info)
        echo = _echo(self.console) if self.console is not None else None
        # window lines under a live bar would scroll it away: train.log has them
        shows_bar = self.progress_bar and self.console is not None and self.console.is_terminal
        self.metrics = MetricsLogger(self.folder, info, echo, echo_routine=verbose or not shows_bar)
        self.state = Progress(0, 0, Window())
        self._release_lock: Callable[[], None] | None = None
        self.total_iter = self.tcfg.total_iter
        self.started = time_budget.clock()  # a time budget counts from here, start-up included
        minutes = self.tcfg.time_budget if self.total_iter > 0 else None  # 0 iterations win
        probe = self.tcfg.time_budget_probe
        self.budget = None if minutes is None else TimeBudget(minutes, probe, self.started)

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        if self.overwrite and resume_requested(self.resume_hint):
            resuming = (option("resume", self.resume_hint) if self.resume_option
                        else f"trainer_cfg.restore_hint {self.resume_hint}")
            raise ConfigError(
                f"{option('overwrite')} starts over and {resuming} continues "
                "a run: give one of them"
            )
        if self.info.is_main:  # before anything is written into the folder
            check_writable(self.folder.root, "output folder", folder=True)
            self.folder.check_config()
        cfg = self.cfg
        if self.tcfg.total_iter == 0 and self.tcfg.time_budget is not None:
            self.metrics.log("note: total_iter is 0: nothing is trained, the time budget has no effect")
        for note in check_config_optimisation(cfg).notes:  # e.g. a warm-up longer than a short smoke run
            self.metrics.log(f"note: {note}")
        seed_everything(self.tcfg.seed, self.info)
        if self.info.is_main:  # first: a folder in use is the answer, whatever else is asked
            self._release_lock = acquire_output_lock(self.folder.root)
        resume_path = find_resume_checkpoint(self.resume_hint, cfg, self.folder.checkpoints)
        resumed = read_training_state(resume_path) if resume_path is not None else None
        if resumed is not None:
            cfg = self._keep_budget(stored_budget(resumed))
        if self.info.is_main:
            self._prepare_folder(resume_path)
        barrier()
        self.data: TrainData = build_data(cfg, self.metrics.log)
        check_input_height(cfg, self.data.frame_size)
        from gaitcli.build import build_model

        model = build_model(cfg).to(self.device)
        self.kernels = self._choose_kernels(cfg, model)
        if model.channels_last != self.kernels.channels_last:
            model.set_channels_last(self.kernels.channels_last)
        self.network: TrainNetwork = wrap_network(model, cfg, self.info, self.device)
        self.opt: Optimisation = build_optimisation(cfg, self.info, self.network.net, self.device)
        self.opt.bf16 = self.kernels.bf16
        warning = cpu_bf16_warning(self.opt.bf16, self.device)
        if warning is not None:
            self.metrics.log(warning)
        self.ckpt = CheckpointConnector(
            self.folder, cfg, self.info, self.data.dataset.label_set, self.data.frame_size
        )
        if resume_path is not None and resumed is not None:
            self._restore(resume_path, resumed)
        if self.budget is not None and self.state.schedule is None:
            self.total_iter = UNBOUNDED  # until the pace gives the run length
        self.ckpt.start(self.state.iteration if resume_path is not None else None)
        self.loader = build_loader(cfg, self.data, self.info, self.state.next_batch, self.device)
        self.metrics.open_tensorboard()
        self._announce()

    def _choose_kernels(self, cfg: GaitConfig, model: GaitModel) -> KernelChoice:
        """``kernel_choice: auto`` on a CPU: rank 0 measures (or recalls) and every rank takes its
        answer; otherwise the config's settings (docs/train.md, "Kernel choice")."""
        if cfg.trainer.kernel_choice != "auto" or self.device.type != "cpu":
            choice = config_choice(cfg, self.device)
            if cfg.trainer.kernel_choice == "auto":
                self.metrics.log(choice.log_line())
            return choice
        measured = choose_kernels(cfg, model, self.data.frame_size) if self.info.is_main else None
        shared = broadcast_object(measured)
        assert isinstance(shared, KernelChoice)
        choice = shared
        self.metrics.log(choice.log_line())
        if choice.note:
            self.metrics.log(choice.note)
        return choice

    def _prepare_folder(self, resume_path: Path | None) -> None:
        """Rank 0, before anything is written: overwrite, refuse, or check the resumed config."""
        folder = self.folder
        if self.overwrite:
            removed = folder.remove_previous_run()
            if removed:
                self.metrics.log(
                    f"{option('overwrite')}: removed the previous run's {', '.join(_names(removed))} "
                    f"from {folder.root}"
                )
        elif resume_path is None:
            existing = list_checkpoints(folder.checkpoints)
            if existing:
                raise GaitError(
                    f"{folder.root} already holds checkpoints up to iteration {existing[-1][0]}; "
                    f"continue with {option('resume', 'latest')}, train elsewhere with {option('output')}, "
                    f"or start over with {option('overwrite')}"
                )
            folder.metrics.unlink(missing_ok=True)  # a run that never saved: its windows are not kept
        else:
            stored = yaml.safe_load(folder.config.read_text()) if folder.config.is_file() else None
            if isinstance(stored, dict):
                stored = migrate_config(stored, str(folder.config))
            harmless = check_resumed_config(stored, self.cfg.to_dict(), folder.config)
            if harmless:
                self.metrics.log(f"note: resuming with {'; '.join(harmless)}")
        folder.write_config(dump_config(self.cfg))

    def _keep_budget(self, stored: BudgetSetting | None) -> GaitConfig:
        """A run resumed without a time budget keeps the one its state stores (the run's own,
        counted again from this start): before the pace was measured it measures again, after
        that it follows the stored schedule and still stops at the budget."""
        if self.budget is not None or self.tcfg.time_budget is not None or not stored or self.total_iter == 0:
            return self.cfg
        minutes, probe = stored.minutes, stored.probe
        trainer = dataclasses.replace(self.tcfg, time_budget=minutes, time_budget_probe=probe)
        self.cfg, self.tcfg = self.cfg.replace(trainer=trainer), trainer
        self.budget = TimeBudget(minutes, probe, self.started)
        self.metrics.log(f"note: the resumed run keeps its time budget of {minutes:g} minutes (from now)")
        return self.cfg

    def _restore(self, path: Path, state: Mapping[str, object]) -> None:
        self.state = self.ckpt.restore(path, state, self.network, self.opt)
        if self.state.schedule is not None:  # a time budget derived it: follow it exactly
            self._follow(self.state.schedule)
        total = self.total_iter
        if self.state.iteration > total:
            raise GaitError(
                f"{path} is at iteration {self.state.iteration}, past total_iter {total}: nothing to "
                f"train; give {option('iters')} larger than {self.state.iteration} to continue it"
            )
        if self.info.is_main:
            truncate_metrics(self.folder.metrics, self.state.iteration)
        self.metrics.window = self.state.window.copy()
        self.metrics.log(f"resumed from {path} at iteration {self.state.iteration}")

    def _announce(self) -> None:
        data, cfg = self.data, self.cfg
        batch = self.tcfg.sampler.batch_size
        world = f"{self.info.world_size} x {self.device.type}"
        self.metrics.log(
            f"model {cfg.model.name} ({self.network.param_count / 1e6:.2f} M parameters) "
            f"on {world}; {len(data.dataset)} training sequences of {len(data.dataset.label_set)} ids; "
            f"batch {batch[0]}x{batch[1]}; "
            f"output {self.folder.root}",
            routine=True,
        )
        if self.console is None or not self.progress_bar:
            return
        if self.verbose:
            print_full_config(self.console, dump_config(cfg))
        else:
            for line in config_summary(
                cfg,
                sequences=len(data.dataset),
                ids=len(data.dataset.label_set),
                frame_size=data.frame_size,
                params=self.network.param_count,
                world=world,
                precision=self.kernels.label if self.kernels.seconds else None,
                out=str(self.folder.root),
            ):
                self.console.print(line, highlight=False, markup=False)

    # ------------------------------------------------------------------ one step
    def autocast(self) -> AbstractContextManager[None]:
        if self.opt.fp16:
            return torch.autocast("cuda", dtype=torch.float16)
        if self.opt.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def step(self, batch: Batch) -> tuple[bool, dict[str, float]]:
        """One optimiser step; returns (stepped, logged terms). A skipped fp16 step returns False."""
        sils, labels, seq_lens = to_model_input(batch, self.device)
        net, opt = self.network.net, self.opt
        net.train()
        if self.tcfg.fix_BN:
            for module in net.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        with self.autocast():
            outputs = net(sils, seq_lens)
        total, logged = opt.losses(outputs, labels)
        if not all_ranks(bool(torch.isfinite(total.detach()).item())) and not opt.scaler.is_enabled():
            opt.optimizer.zero_grad(set_to_none=True)
            raise TrainingStopped(
                f"loss became {total.item()} at iteration {self.state.iteration + 1}; last good checkpoint: "
                f"{self.ckpt.last_saved or 'none yet'}; lower optimizer_cfg.lr or check the data",
                exit_code=1,
            )
        opt.optimizer.zero_grad(set_to_none=True)
        opt.scaler.scale(total).backward()
        scale_before = opt.scaler.get_scale() if opt.scaler.is_enabled() else None
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
        if scale_before is not None and opt.scaler.get_scale() < scale_before:
            return False, {}
        return True, {k: float(v) for k, v in logged.items()}

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainSummary:
        total = self.total_iter if self.total_iter != UNBOUNDED else self.tcfg.total_iter
        display = TrainDisplay(self.console, total, self.state.iteration) if self.progress_bar else None
        announce = (
            (
                lambda: self.metrics.log(
                    "Ctrl-C: finishing this iteration, then saving (Ctrl-C again: stop without saving)"
                )
            )
            if self.info.is_main
            else None
        )
        try:
            with InterruptGuard(announce) as guard:
                self._loop(total, guard, display)
        except KeyboardInterrupt:  # a second Ctrl-C: stop now, keep the last saved checkpoint
            raise TrainingStopped(
                f"interrupted at iteration {self.state.iteration} without saving it; last "
                f"checkpoint: {self.ckpt.last_saved or 'none yet'}; "
                f"continue with {option('resume', 'latest')}",
                exit_code=130,
            ) from None
        except WriteError as exc:  # train.log / metrics.jsonl on a full disk: stop, say where to go on
            raise TrainingStopped(
                f"{exc}; training stopped at iteration {self.state.iteration}; the last good checkpoint "
                f"is {self.ckpt.last_saved or 'none yet'}; make room, then continue with "
                f"{option('resume', 'latest')}",
                exit_code=1,
            ) from None
        finally:
            if display is not None:
                display.stop()
        return self.summary()

    def _loop(self, total: int, guard: InterruptGuard, display: TrainDisplay | None) -> None:
        skipped = 0
        loader = iter(self.loader)
        self.metrics.start_window()
        while self.state.iteration < self.total_iter:
            waited = time.perf_counter()
            batch = next(loader)
            self.metrics.data_seconds += time.perf_counter() - waited
            lr = float(self.opt.optimizer.param_groups[0]["lr"])
            stepped, terms = self.step(batch)
            self.state.next_batch += 1
            skipped = self._count_skip(skipped, stepped)
            if stepped:
                self._complete_iteration(self.total_iter, lr, terms, display)
                if self._budget_spent(lr, display):
                    return
            if any_rank(guard.requested):  # every rank stops after the same completed iteration
                self._stop_interrupted()

    def _complete_iteration(
        self, total: int, lr: float, terms: dict[str, float], display: TrainDisplay | None
    ) -> None:
        """Schedule, count, log and save the iteration whose optimiser step just ran."""
        self.opt.scheduler.step()
        self.state.iteration += 1
        it = self.state.iteration
        self.metrics.add(terms)
        log_iter = self.tcfg.log_iter
        if it % log_iter == 0 or it == total:
            # a run ending mid-window logs it as partial and keeps the window in its saved
            # state, so a resumed run completes the same window an unbroken run would
            self.metrics.write_window(it, lr, self.data.global_batch, partial=it % log_iter != 0)
        if display is not None:
            display.update(it, lr, terms)
        if it % self.tcfg.save_iter == 0 or it == total:
            self.save()

    def _follow(self, derived: DerivedSchedule) -> None:
        """Switch to a derived schedule at the current iteration (fresh or resumed: same lrs)."""
        self.total_iter, self.state.schedule = derived.total_iter, derived
        self.opt.scheduler = follow_schedule(
            self.opt.optimizer, self.cfg.optimizer.as_mapping(), derived.scheduler_cfg, derived.total_iter,
            self.state.iteration,
        )

    def _derive(self, budget: TimeBudget, pace: float, display: TrainDisplay | None, first: bool) -> None:
        """Derive the run length from ``pace`` and switch to it (a re-estimate only when it moves
        the run length by more than the tolerance)."""
        it = self.state.iteration
        derived: DerivedSchedule = broadcast_object(budget.derive(it, pace, self.cfg))
        if not first and abs(derived.total_iter - self.total_iter) <= RECHECK_TOLERANCE * self.total_iter:
            return
        self._follow(derived)
        what = "time budget" if first else f"time budget re-estimated at iteration {it}"
        self.metrics.log(
            f"{what}: {derived.seconds_per_iter:.3f} s per iteration, so "
            f"{derived.total_iter} iterations fit; schedule scaled to them"
        )
        if display is not None:
            display.progress.update(display.task, total=derived.total_iter)

    def _budget_spent(self, lr: float, display: TrainDisplay | None) -> bool:
        """Time budget (docs/train.md): derive the schedule once the pace is known; at the budget,
        log the window so far (partial), save and stop. Returns True to stop."""
        budget, it = self.budget, self.state.iteration
        if budget is None:
            return False
        if self.state.schedule is None:
            pace = budget.pace(it)
            if pace is not None:
                self._derive(budget, pace, display, first=True)
        else:  # every rank asks at the same iterations; rank 0's measurement is used
            pace = budget.pace_since_origin(it, self.total_iter)
            if pace is not None:
                self._derive(budget, pace, display, first=False)
        expired = any_rank(budget.expired())
        if not expired and it < self.total_iter:
            return False
        if self.metrics.window_iters > 0:  # stopped mid-window (not yet logged as partial)
            self.metrics.write_window(it, lr, self.data.global_batch, partial=True)
        last = self.ckpt.last_saved
        if last is None or last.name != checkpoint_name(self.cfg, it):
            self.save()
        if expired:
            self.metrics.log(f"time budget reached at iteration {it}; saved {self.ckpt.last_saved}")
        return True

    def _count_skip(self, skipped: int, stepped: bool) -> int:
        if stepped:
            return 0
        if skipped + 1 >= MAX_SKIPPED_STEPS:
            raise TrainingStopped(
                f"{skipped + 1} fp16 steps in a row overflowed at iteration {self.state.iteration}; "
                "last good "
                f"checkpoint: {self.ckpt.last_saved or 'none yet'}; lower the lr or disable enable_float16",
                exit_code=1,
            )
        return skipped + 1

    def _stop_interrupted(self) -> None:
        """Ctrl-C arrived: the iteration in progress has completed; save it (unless just saved)."""
        it = self.state.iteration
        just_saved = self.ckpt.last_saved is not None and self.ckpt.last_saved.name == checkpoint_name(
            self.cfg, it
        )
        saved = self.ckpt.last_saved if just_saved else (self.save(test=False) if it > 0 else None)
        where = f"saved {saved}" if saved else "nothing to save yet"
        raise TrainingStopped(
            f"interrupted at iteration {it}; {where}; continue with {option('resume', 'latest')}",
            exit_code=130,
        )

    def save(self, test: bool = True) -> Path:
        self.state.window = self.metrics.window.copy()
        self.state.budget = self.budget.to_state() if self.budget is not None else None
        path = self.ckpt.save(self.state, self.network, self.opt)
        self.metrics.log(f"saved {path}", routine=True)
        if test and self.tcfg.with_test:
            self.run_test()
        return path

    def run_test(self) -> None:
        if self.info.is_main:
            from gaitcli.evaluation.api import evaluate_model

            results = evaluate_model(self.network.model, self.cfg, device=self.device)
            summary = "  ".join(f"{name}={value:.2f}" for name, value in results.rank1.items())
            self.metrics.log(f"test at iteration {self.state.iteration}: rank-1 {summary}")
            self.metrics.write_test(self.state.iteration, results.to_json())
        barrier()

    def summary(self) -> TrainSummary:
        last = self.ckpt.last_saved
        return TrainSummary(
            self.state.iteration,
            str(self.folder.root),
            str(last) if last else None,
            last_metrics(self.folder) if self.info.is_main else {},
        )

    def close(self) -> None:
        self.metrics.close()
        if self._release_lock is not None:
            self._release_lock()
            self._release_lock = None


def check_input_height(cfg: GaitConfig, frame_size: str) -> None:
    """``model_cfg.bin_num: null`` means one part per row of a 64-high input: a transform that
    gives another height (``Resize``, docs/recipes.md) needs ``bin_num`` set, said in one line."""
    if "bin_num" not in cfg.model.values or cfg.model.values["bin_num"] is not None:
        return
    height, width = (int(v) for v in frame_size.split("x"))
    out_h, out_w = build_transform(list(cfg.trainer.transform), training=True).out_size(height, width)
    if out_h != 64:
        raise ConfigError(
            f"trainer_cfg.transform gives {out_h}x{out_w} frames but model_cfg.bin_num null means 64 "
            f"parts (a 64-high input); set model_cfg.bin_num: [{out_h}]"
        )


def _echo(console: Console) -> Callable[[str], None]:
    def echo(message: str) -> None:
        console.print(message, highlight=False, markup=False)

    return echo


def _names(paths: list[Path]) -> list[str]:
    return [p.name + ("/" if p.is_dir() else "") for p in paths]


# ---------------------------------------------------------------------- entry point
@dataclass
class TrainJob:
    """What every rank needs to run: plain, picklable values (the console stays in this process)."""

    cfg: GaitConfig
    """The resolved config."""
    out_dir: str
    """The run folder."""
    resume: int | str | None = None
    """``--resume``: an iteration, a path, 'latest', or None."""
    overwrite: bool = False
    """``--overwrite``."""
    progress: bool = True
    """Show the bar (rank 0)."""
    verbose: bool = False
    """``--verbose``: the full config and every log window."""
    show: bool = False
    """Rank 0 prints to the console (a spawned rank 0 builds its own on stderr)."""
    console: Console | None = None
    """The caller's console, used when rank 0 runs in this process; never pickled."""

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "console": None}


def run_rank(info: DistInfo, job: TrainJob) -> TrainSummary:
    """One rank's whole run (the function :func:`gaitcli.runtime.launch.launch` runs)."""
    console = job.console
    if console is None and job.show and info.is_main:
        console = Console(stderr=True)
    trainer = Trainer(
        job.cfg,
        info,
        Path(job.out_dir),
        resume=job.resume,
        overwrite=job.overwrite,
        console=console,
        progress=job.progress,
        verbose=job.verbose,
    )
    try:
        trainer.setup()
        return trainer.fit()
    finally:
        trainer.close()


def train(
    cfg: GaitConfig,
    *,
    output: str | os.PathLike[str] | None = None,
    device: str | None = None,
    gpus: int | None = None,
    nproc: int | None = None,
    resume: int | str | None = None,
    overwrite: bool = False,
    console: Console | None = None,
    progress: bool = True,
    verbose: bool = False,
) -> TrainSummary:
    """Train ``cfg`` in this process or in ``nproc`` / ``gpus`` processes; returns rank 0's summary."""
    device_type, procs = resolve_devices(device, gpus, nproc)
    batch = cfg.trainer.sampler.batch_size
    if (batch[0] * batch[1]) % procs:
        raise ConfigError(
            f"trainer_cfg.sampler.batch_size {batch[0]}x{batch[1]} cannot be split over {procs} "
            "processes; make P*K a multiple of the process count"
        )
    check_config_optimisation(cfg)  # the check gait config and gait lr-plot run too
    check_minutes(cfg.trainer.time_budget)
    out_dir = output_dir_for(cfg, output)
    job = TrainJob(
        cfg, str(out_dir), resume, overwrite, progress, verbose, console is not None, console
    )
    return launch(run_rank, job, procs, device_type)
