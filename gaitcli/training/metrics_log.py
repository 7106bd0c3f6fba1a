"""The run's record: the logging window, metrics.jsonl, train.log, TensorBoard, console lines.

Rank 0 writes; other ranks keep the window (so a resumed run of any rank continues it) but write
nothing. docs/train.md ("metrics.jsonl") describes a line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypedDict

from gaitcli.errors import render
from gaitcli.fileio import JSONValue, append_line, write_error
from gaitcli.runtime.distributed import DistInfo
from gaitcli.training.run_folder import RunFolder
from gaitcli.training.state import entry

Echo = Callable[[str], None]
TIMING_KEYS = ("seconds", "sequences_per_s", "data_wait")
_NOT_TERMS = ("iteration", "lr", *TIMING_KEYS, "partial")

MetricsLine = dict[str, float | None]
"""One metrics.jsonl training line: iteration, lr, each term's window mean, timings (None when
the window took no time) and ``partial`` (True) for a window still open."""


class WindowState(TypedDict):
    """:class:`Window` as the training state stores it."""

    sums: dict[str, float]
    count: int


class ScalarWriter(Protocol):
    """What the log needs of TensorBoard's ``SummaryWriter``."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> object: ...

    def close(self) -> object: ...


@dataclass
class Window:
    """The partly filled logging window (saved in the training state)."""

    sums: dict[str, float] = field(default_factory=dict)
    """Sum of each logged term over the window's iterations."""
    count: int = 0
    """Iterations in the window so far."""

    def to_state(self) -> WindowState:
        return {"sums": dict(self.sums), "count": self.count}

    def copy(self) -> Window:
        return Window(dict(self.sums), self.count)

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> Window:
        """The inverse of :meth:`to_state` (one line for a malformed state)."""
        sums = entry(state, "sums", dict)
        return cls({str(k): float(v) for k, v in sums.items()}, entry(state, "count", int))


class MetricsLogger:
    """Window means to metrics.jsonl / TensorBoard, messages to train.log and the console."""

    def __init__(self, folder: RunFolder, info: DistInfo, echo: Echo | None, *, echo_routine: bool) -> None:
        self.folder = folder
        self.info = info
        self.echo = echo
        self.echo_routine = echo_routine  # window and "saved" lines on the console too
        self.window = Window()
        self.data_seconds = 0.0
        self.window_started = time.perf_counter()
        self.window_iters = 0  # iterations of this process in the window (its timing)
        self.tensorboard: ScalarWriter | None = None

    def start_window(self) -> None:
        self.window_started, self.window_iters = time.perf_counter(), 0

    def open_tensorboard(self) -> None:
        if self.info.is_main:
            self.tensorboard = _tensorboard_writer(self.folder)

    def log(self, message: str, *, routine: bool = False) -> None:
        """A train.log line (rank 0); on the console unless it is routine and a bar shows progress."""
        if not self.info.is_main:
            return
        message = render(message)  # options named as the caller spells them (errors.option)
        if self.echo is not None and (self.echo_routine or not routine):
            self.echo(message)
        try:
            self.folder.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(self.folder.log, exc) from None
        append_line(self.folder.log, time.strftime("%Y-%m-%d %H:%M:%S ") + message)

    def add(self, terms: Mapping[str, float]) -> None:
        for key, value in terms.items():
            self.window.sums[key] = self.window.sums.get(key, 0.0) + value
        self.window.count += 1
        self.window_iters += 1

    def write_window(
        self, iteration: int, lr: float, global_batch: int, *, partial: bool = False
    ) -> MetricsLine:
        """Close the window (a partial one stays open in the saved state) and record its line."""
        seconds, iters = time.perf_counter() - self.window_started, self.window_iters
        self.start_window()
        count = max(self.window.count, 1)
        line: MetricsLine = {"iteration": iteration, "lr": lr}
        line.update({key: value / count for key, value in self.window.sums.items()})
        line["seconds"] = round(seconds, 4)
        line["sequences_per_s"] = round(global_batch * iters / seconds, 3) if seconds > 0 else None
        line["data_wait"] = round(self.data_seconds / seconds, 4) if seconds > 0 else None
        self.data_seconds = 0.0
        if partial:
            line["partial"] = True
        else:
            self.window = Window()
        if self.info.is_main:
            append_line(self.folder.metrics, json.dumps(line))
            self._scalars(line, iteration)
            terms = "  ".join(f"{k}={v:.4g}" for k, v in line.items() if k not in _NOT_TERMS)
            self.log(
                f"iteration {iteration}  lr={lr:.4g}  {terms}  {line['sequences_per_s']} seq/s", routine=True
            )
        return line

    def write_test(self, iteration: int, results: Mapping[str, JSONValue]) -> None:
        if self.info.is_main:
            append_line(self.folder.metrics, json.dumps({"iteration": iteration, "test": results}))

    def _scalars(self, line: MetricsLine, iteration: int) -> None:
        if self.tensorboard is None:
            return
        for key, value in line.items():
            if key != "iteration" and isinstance(value, (int, float)):
                self.tensorboard.add_scalar(key, value, iteration)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None


def _tensorboard_writer(folder: RunFolder) -> ScalarWriter | None:
    """TensorBoard scalars in ``OUT/tensorboard`` when the optional package is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    writer: ScalarWriter = SummaryWriter(log_dir=str(folder.tensorboard))
    return writer


def last_metrics(folder: RunFolder) -> dict[str, JSONValue]:
    """The last training line of metrics.jsonl (test lines skipped)."""
    if not folder.metrics.exists():
        return {}
    lines: list[JSONValue] = [json.loads(x) for x in folder.metrics.read_text().splitlines() if x.strip()]
    training = [x for x in lines if isinstance(x, dict) and "test" not in x]
    return dict(training[-1]) if training else {}
