"""The one progress-bar factory of gaitcli: every long job (synth, prepare, inspect, train, eval
extraction and matching) builds its rich bar here, so they all look and behave the same."""

from __future__ import annotations

from rich.console import Console
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
        text = f"-- {self.unit}" if speed is None else f"{speed:.1f} {self.unit}"
        return Text(text, style="progress.data.speed")


def make_progress(
    label: str,
    console: Console | None,
    *extra: ProgressColumn | str,
    unit: str | None = "seq/s",
    count: bool = True,
    transient: bool = False,
    disable: bool = False,
) -> Progress:
    """``label  ━━━━  12/40  3.1 seq/s  [extra]  0:00:04 ETA 0:00:09`` on ``console``.

    ``extra`` columns may be rich columns or format strings such as ``"lr {task.fields[lr]}"``;
    ``count=False`` shows a percentage instead of ``done/total`` (for work measured in pairs);
    ``unit=None`` drops the rate column.
    """
    columns: list[ProgressColumn] = [TextColumn(f"[bold]{label}[/]"), BarColumn()]
    columns.append(MofNCompleteColumn() if count else TextColumn("{task.percentage:>3.0f}%"))
    if unit is not None:
        columns.append(RateColumn(unit))
    columns.extend(TextColumn(c) if isinstance(c, str) else c for c in extra)
    columns.extend([TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()])
    return Progress(*columns, console=console, transient=transient, disable=disable)
