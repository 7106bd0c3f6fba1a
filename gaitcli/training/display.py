"""What ``gait train`` shows on the console: a short config summary and the progress bar
(docs/train.md, "What you see"); ``--verbose`` adds the full resolved config."""

from __future__ import annotations

import math
from collections.abc import Mapping

from rich.console import Console

from gaitcli.config_types import GaitConfig
from gaitcli.progress import make_progress
from gaitcli.schedule import to_numbers


class TrainDisplay:
    """The rich bar: iteration, it/s, lr, loss_num (the convergence signal), loss, ETA (seq/s is in
    train.log and metrics.jsonl: one column less keeps the bar readable at 80 columns)."""

    def __init__(self, console: Console | None, total: int, start: int) -> None:
        self.progress = make_progress(
            "train",
            console,
            "lr {task.fields[lr]}",
            "[bold magenta]loss_num {task.fields[loss_num]}[/]",
            "loss {task.fields[loss]}",
            unit="it/s",
        )
        self.task = self.progress.add_task(
            "train", total=total, completed=start, lr="-", loss_num="-", loss="-"
        )
        self.progress.start()

    def update(self, iteration: int, lr: float, terms: Mapping[str, float]) -> None:
        loss_num = terms.get("triplet/loss_num", math.nan)
        self.progress.update(
            self.task,
            completed=iteration,
            lr=f"{lr:.2e}",
            loss_num=f"{loss_num:.1f}",
            loss=f"{terms.get('total_loss', math.nan):.4f}",
        )

    def stop(self) -> None:
        self.progress.stop()


def config_summary(
    cfg: GaitConfig, *, sequences: int, ids: int, frame_size: str, params: int, world: str, out: str,
    precision: str | None = None,
) -> list[str]:
    """A few lines (each well under 80 columns apart from paths) that say what is trained;
    ``precision`` is what the kernel choice measured, when it did (the config's otherwise)."""
    model, tcfg = cfg.model.values, cfg.trainer
    sampler = tcfg.sampler
    variant = f" ({model['variant']})" if model.get("variant") not in (None, "", "reference") else ""
    batch = sampler.batch_size
    channels = model.get("channels")
    widths = list(channels) if isinstance(channels, (list, tuple)) else []
    precision = precision or ("bf16" if tcfg.enable_bfloat16 else "fp16" if tcfg.enable_float16 else "fp32")
    return [
        f"model   {cfg.model.name}{variant} {widths}, {params / 1e6:.2f} M parameters",
        f"data    {sequences} sequences of {ids} ids, frames {frame_size or '?'}",
        f"batch   {batch[0]}x{batch[1]}, {sampler.frames_num_fixed} frames, {precision}, on {world}",
        f"optim   {cfg.optimizer.solver} lr {cfg.optimizer.arguments.get('lr')}, "
        f"{_schedule_words(cfg.scheduler.as_mapping())}",
        f"run     {tcfg.total_iter} iterations, save every {tcfg.save_iter}, output {out}",
    ]


def _schedule_words(sched: Mapping[str, object]) -> str:
    """``warmup 200 + cosine 4000`` or ``warmup 10000 + milestones [80000, 100000]``: what decays."""
    name = str(sched.get("scheduler"))
    if name != "warmup":
        return name
    head = f"warmup {sched.get('warmup_iters', 0)}"
    if sched.get("decay") == "cosine":
        return f"{head} + cosine {sched.get('cosine_iters')}"
    return f"{head} + milestones {to_numbers(sched.get('milestones') or [])}"


def print_full_config(console: Console, text: str) -> None:
    """The resolved config as YAML, wrapped rather than cropped."""
    from rich.syntax import Syntax

    console.print("[bold]resolved config[/]")
    console.print(Syntax(text, "yaml", theme="ansi_dark", word_wrap=True))
