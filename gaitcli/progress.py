"""Rich progress bars shared by the long-running commands (synth, prepare)."""

from __future__ import annotations

from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second with a unit (rich's own speed columns speak bytes)."""

    def __init__(self, unit: str = "seq/s") -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"-- {self.unit}" if speed is None else f"{speed:.1f} {self.unit}", style="progress.data.speed")


def sequence_progress(label: str, console: Any, *extra: ProgressColumn, disable: bool = False) -> Progress:
    """``label  ━━━━  12/40  3.1 seq/s  [extra]  0:00:04 ETA 0:00:09`` on ``console``."""
    return Progress(
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        *extra,
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
    )
