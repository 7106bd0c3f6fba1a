"""``gait demo``: the whole pipeline on synthetic data, sized for a laptop CPU.

synth → prepare → inspect → train (``configs/demo.yaml``) → eval, each stage with a heading and
its own progress. Every stage records what it was run with in ``WORKDIR/.demo-stages.json``; a
re-run reuses a stage whose inputs did not change (and says so), resumes an interrupted training
run, and redoes only what changed. Everything lives under the work folder; nothing outside it is
touched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from gaitcli.errors import GaitError
from gaitcli.fileio import atomic_write_bytes

DEMO_VIEWS = ["000", "054", "090", "126", "180"]
DEMO_FRAMES = 40
DEMO_IMG_SIZE = 32  # 32x32 frames cut to 32x22: a quarter of the pixels of 64x44
TRAIN_SHARE = 0.6
STATE_FILE = ".demo-stages.json"


class DemoStages:
    """The record of finished stages: name -> {"params": ..., "seconds": ...}."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / STATE_FILE
        try:
            self.done: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}
        except ValueError:
            self.done = {}

    def finished(self, name: str, params: dict[str, Any]) -> bool:
        entry = self.done.get(name)
        return bool(entry) and entry.get("params") == params

    def record(self, name: str, params: dict[str, Any], seconds: float) -> None:
        self.done[name] = {"params": params, "seconds": round(seconds, 2)}
        atomic_write_bytes(self.path, json.dumps(self.done, indent=2).encode())

    def forget_from(self, names: list[str]) -> None:
        for name in names:
            self.done.pop(name, None)


def split_ids(subjects: int) -> tuple[list[str], list[str]]:
    ids = [f"{i:03d}" for i in range(1, subjects + 1)]
    cut = max(2, round(subjects * TRAIN_SHARE))
    return ids[:cut], ids[cut:]


def run_demo(workdir: Path, *, subjects: int = 16, iters: int | None = None, console: Console | None = None,
             out: Console | None = None, warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every stage; return the eval results plus ``stages`` timings and artefact paths."""
    console = console or Console(stderr=True)
    out = out or Console()
    if subjects < 4:
        raise GaitError(f"--subjects {subjects}: the demo needs at least 4 (ids are split 60/40 into train and test)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stages = DemoStages(workdir)
    timings: dict[str, float] = {}
    order = ["synth", "prepare", "inspect", "train", "eval"]
    paths = {"raw": workdir / "raw", "pkl": workdir / "pkl", "partition": workdir / "partition.json",
             "run": workdir / "run", "eval_json": workdir / "eval.json"}

    def heading(index: int, name: str, what: str) -> None:
        console.rule(f"[bold cyan]{index}/5  {name}[/]  {what}")

    def reuse(name: str, params: dict[str, Any]) -> bool:
        if stages.finished(name, params):
            console.print(f"[green]reusing[/] the finished {name} stage (delete {stages.path.name} to redo it)")
            timings[name] = 0.0
            return True
        stages.forget_from(order[order.index(name):])  # everything after a redone stage is stale
        return False

    # 1. synth -------------------------------------------------------------------------------
    from gaitcli.synth.generate import CASIA_B_TYPES, synthesize

    synth_params = {"subjects": subjects, "views": DEMO_VIEWS, "types": CASIA_B_TYPES, "frames": DEMO_FRAMES, "seed": 0}
    heading(1, "synth", f"{subjects} synthetic walkers x {len(CASIA_B_TYPES)} walks x {len(DEMO_VIEWS)} views")
    if not reuse("synth", synth_params):
        started = time.perf_counter()
        synthesize(paths["raw"], subjects=subjects, views=DEMO_VIEWS, types=CASIA_B_TYPES, frames=DEMO_FRAMES,
                   seed=0, overwrite=True, console=console)
        stages.record("synth", synth_params, timings.setdefault("synth", time.perf_counter() - started))

    # 2. prepare -----------------------------------------------------------------------------
    from gaitcli.data.prepare import prepare_dataset

    prepare_params = {"img_size": DEMO_IMG_SIZE}
    heading(2, "prepare", f"PNG frames -> one pkl per sequence, {DEMO_IMG_SIZE}x{DEMO_IMG_SIZE}")
    if not reuse("prepare", prepare_params):
        started = time.perf_counter()
        prepare_dataset(paths["raw"], paths["pkl"], img_size=DEMO_IMG_SIZE, overwrite=True, console=console)
        stages.record("prepare", prepare_params, timings.setdefault("prepare", time.perf_counter() - started))

    # 3. inspect -----------------------------------------------------------------------------
    from gaitcli.data.inspect import inspect_dataset

    heading(3, "inspect", "what the prepared set holds")
    started = time.perf_counter()
    report = inspect_dataset(paths["pkl"])
    frames = report.frames
    console.print(
        f"{report.sequences} sequences · {report.ids} ids · {len(report.types)} types · "
        f"{len(report.views)} views · frames per sequence min {frames.min} / median {frames.median} / "
        f"max {frames.max} · {len(report.missing)} missing cells · {len(report.unreadable)} unreadable",
        highlight=False,
    )
    timings["inspect"] = time.perf_counter() - started

    # 4. train -------------------------------------------------------------------------------
    from gaitcli.config import load_config
    from gaitcli.training.trainer import checkpoint_name, list_checkpoints, train

    train_ids, test_ids = split_ids(subjects)
    atomic_write_bytes(paths["partition"], json.dumps({"TRAIN_SET": train_ids, "TEST_SET": test_ids}).encode())
    overrides = [f"data_cfg.dataset_root={paths['pkl'].resolve()}",
                 f"data_cfg.dataset_partition={paths['partition'].resolve()}",
                 f"model_cfg.class_num={len(train_ids)}"]
    if iters is not None:
        overrides.append(f"trainer_cfg.total_iter={iters}")
    cfg = load_config("demo", overrides, warn=warn)
    batch = cfg["trainer_cfg"]["sampler"]["batch_size"]
    batch[0] = min(batch[0], len(train_ids))  # tiny demos: fewer ids per batch than the recipe's P
    total = cfg["trainer_cfg"]["total_iter"]
    train_params = {"config": cfg["model_cfg"], "trainer": {k: v for k, v in cfg["trainer_cfg"].items()},
                    "train_ids": train_ids}
    heading(4, "train", f"{cfg['model_cfg']['model']} on {len(train_ids)} ids, {total} iterations")
    ckpt_dir = paths["run"] / "checkpoints"
    if not reuse("train", train_params):
        started = time.perf_counter()
        existing = list_checkpoints(ckpt_dir)
        stored = _stored_config(paths["run"])
        # same settings apart from the length, and not past it: continue that run
        same = (existing and existing[-1][0] <= total and stored.get("model_cfg") == cfg["model_cfg"]
                and {**(stored.get("trainer_cfg") or {}), "total_iter": None} == {**cfg["trainer_cfg"], "total_iter": None})
        if same:
            console.print(f"[green]resuming[/] the training run at iteration {existing[-1][0]}")
            train(cfg, output=paths["run"], device="cpu", resume="latest", console=console)
        else:
            train(cfg, output=paths["run"], device="cpu", overwrite=True, console=console)
        stages.record("train", train_params, timings.setdefault("train", time.perf_counter() - started))
    checkpoint = ckpt_dir / checkpoint_name(cfg, total)
    if not checkpoint.exists():
        raise GaitError(f"the training stage left no checkpoint at {checkpoint}; delete {paths['run']} and run gait demo again")

    # 5. eval --------------------------------------------------------------------------------
    from gaitcli.evaluation.api import evaluate_checkpoint
    from gaitcli.evaluation.report import json_payload, render_results

    heading(5, "eval", f"cross-view rank-1 on the {len(test_ids)} unseen test ids")
    started = time.perf_counter()
    results = evaluate_checkpoint(checkpoint, device="cpu", console=console, warn=warn)
    timings["eval"] = time.perf_counter() - started
    render_results(results, out)
    payload = json_payload(results)
    payload["stages"] = {name: round(timings.get(name, 0.0), 2) for name in order}
    payload["stages"]["total"] = round(sum(timings.values()), 2)
    atomic_write_bytes(paths["eval_json"], json.dumps(payload, indent=2).encode())

    out.print()
    out.print("[bold]artefacts[/]")
    for label, path in (("silhouette PNGs", paths["raw"]), ("prepared pkls", paths["pkl"]),
                        ("partition", paths["partition"]), ("training run", paths["run"]),
                        ("checkpoint", checkpoint), ("metrics", paths["run"] / "metrics.jsonl"),
                        ("eval results", paths["eval_json"])):
        out.print(f"  {label:<16} {path}", highlight=False)
    out.print(f"  stage seconds    {payload['stages']}", highlight=False)
    return payload


def _stored_config(run: Path) -> dict[str, Any]:
    """The config a previous training stage wrote (empty when there is none or it is unreadable)."""
    import yaml

    try:
        stored = yaml.safe_load((run / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return stored if isinstance(stored, dict) else {}
