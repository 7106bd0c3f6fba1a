"""``gait lr-plot``: the learning-rate schedule as a terminal chart, a table, JSON and an image.

Every value comes from :func:`gaitcli.schedule.lr_values`, the function the trainer
uses, so the picture cannot disagree with training. The terminal chart is drawn here with braille
characters (2 × 4 dots per character cell): axes with labelled ticks, an optional log scale, and
the end of the warm-up and every milestone marked by a dashed vertical line. The image uses
matplotlib (the ``plot`` extra): it writes PNG, SVG and PDF from one code path without a
browser or a GUI, which is what a headless training box has.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gaitcli.config import Override
from gaitcli.errors import ConfigError, GaitError, option
from gaitcli.fileio import JSONValue
from gaitcli.imaging import figure_class, save_figure
from gaitcli.schedule import lr_values, schedule_boundaries, to_float, to_int, to_numbers

Warn = Callable[[str], None]
MAX_POINTS = 1000
_CURVE_STYLE = "bold cyan"
_MARK_STYLE = "yellow"


@dataclass
class Schedule:
    """An optimiser and scheduler section plus the run length."""

    optimizer_cfg: dict[str, object]
    scheduler_cfg: dict[str, object]
    total_iter: int
    source: str = "<defaults>"
    _cache: dict[int, float] | None = None

    @property
    def name(self) -> str:
        return str(self.scheduler_cfg.get("scheduler", "warmup"))

    @property
    def base_lr(self) -> float:
        return to_float(self.optimizer_cfg.get("lr", 1e-3))

    @property
    def last(self) -> int:
        return max(self.total_iter - 1, 0)

    @property
    def warmup_iters(self) -> int | None:
        if self.name != "warmup":
            return None
        return to_int(self.scheduler_cfg.get("warmup_iters", 0))

    @property
    def milestones(self) -> list[int]:
        return [int(m) for m in to_numbers(self.scheduler_cfg.get("milestones") or [])]

    def lr(self, iterations: Iterable[int]) -> np.ndarray:
        """lr at each iteration (cached, so the chart, table and JSON share one evaluation)."""
        its = [int(t) for t in iterations]
        if self._cache is None:
            self._cache = {}
        todo = sorted({t for t in its if t not in self._cache})
        if todo:
            values = lr_values(self.optimizer_cfg, self.scheduler_cfg, todo)
            self._cache.update(zip(todo, values.tolist(), strict=True))
        return np.array([self._cache[t] for t in its], dtype=np.float64)


def _yaml_number(value: float) -> str:
    """A float as YAML reads it back as a float (PyYAML wants a dot in ``1.0e-05``)."""
    text = repr(float(value))
    mantissa, _, exponent = text.partition("e")
    if exponent and "." not in mantissa:
        text = f"{mantissa}.0e{exponent if exponent[0] in '+-' else '+' + exponent}"
    return text


def parse_milestones(text: str | None) -> list[int] | None:
    """``"80000,100000"`` → ``[80000, 100000]`` (``""`` → no milestones)."""
    if text is None:
        return None
    items = [t.strip().replace("_", "") for t in text.split(",") if t.strip()]
    try:
        values = [int(t) for t in items]
    except ValueError:
        raise GaitError(
            f"{option('milestones', repr(text))}: expected comma-separated iterations, e.g. 80000,100000"
        ) from None
    return values


_OPTION_KEYS = {  # lr-plot option -> the config key it sets
    "scheduler": ("scheduler_cfg", "scheduler"),
    "lr": ("optimizer_cfg", "lr"),
    "milestones": ("scheduler_cfg", "milestones"),
    "gamma": ("scheduler_cfg", "gamma"),
    "warmup_iters": ("scheduler_cfg", "warmup_iters"),
    "warmup_factor": ("scheduler_cfg", "warmup_factor"),
    "warmup_method": ("scheduler_cfg", "warmup_method"),
    "total_iters": ("trainer_cfg", "total_iter"),
}
_INT_OPTIONS = ("warmup_iters", "total_iters")
_FLOAT_OPTIONS = ("lr", "gamma", "warmup_factor")


def _option_override(name: str, value: object) -> Override:
    """One lr-plot option as a typed override whose messages name the option."""
    key = _OPTION_KEYS[name]
    if name == "milestones":
        assert isinstance(value, Sequence)
        items = [int(m) for m in value]
        return Override(key, list(items), source=option(name, ",".join(str(m) for m in items)))
    if name in _INT_OPTIONS:
        assert isinstance(value, int)
        return Override(key, int(value), source=option(name, int(value)))
    if name in _FLOAT_OPTIONS:
        assert isinstance(value, (int, float))
        return Override(key, float(value), source=option(name, f"{value:g}"))
    return Override(key, str(value), source=option(name, value))


def schedule_from_options(
    config: str | os.PathLike[str] | None = None,
    *,
    scheduler: str | None = None,
    lr: float | None = None,
    milestones: Sequence[int] | None = None,
    gamma: float | None = None,
    warmup_iters: int | None = None,
    warmup_factor: float | None = None,
    warmup_method: str | None = None,
    total_iters: int | None = None,
    overrides: Iterable[str | Override] = (),
    warn: Warn | None = None,
) -> Schedule:
    """The schedule of ``config`` (default: the MetaGait recipe) with the given options applied
    on top, validated like a training run would validate it."""
    from gaitcli.config import load_config, parse_override

    given = {
        "scheduler": scheduler,
        "lr": lr,
        "milestones": milestones,
        "gamma": gamma,
        "warmup_iters": warmup_iters,
        "warmup_factor": warmup_factor,
        "warmup_method": warmup_method,
        "total_iters": total_iters,
    }
    options = [_option_override(name, value) for name, value in given.items() if value is not None]
    options.extend(parse_override(o) if isinstance(o, str) else o for o in overrides)

    def relay(message: str) -> None:
        # data paths mean nothing to a schedule: keep only what concerns it
        if warn is not None and "partition" not in message and "dataset_root" not in message:
            warn(message)

    cfg = load_config(None if config is None else Path(config), options, warn=relay)
    total = cfg.trainer.total_iter
    if total < 1:
        raise ConfigError(f"trainer_cfg.total_iter must be at least 1 to draw a schedule, got {total}")
    scfg = cfg.scheduler.as_mapping()  # validated by load_config (gaitcli.schedule.check_optimisation)
    schedule = Schedule(
        cfg.optimizer.as_mapping(), scfg, total, str(config) if config else "<defaults: MetaGait recipe>"
    )
    try:
        schedule.lr([0])
    except GaitError:
        raise
    except (TypeError, ValueError) as exc:  # a torch scheduler missing or refusing an argument
        raise ConfigError(f"scheduler_cfg: {schedule.name} cannot be built: {exc}") from None
    return schedule


def sample_iterations(schedule: Schedule, max_points: int = MAX_POINTS) -> list[int]:
    """At most ``max_points`` evenly spaced iterations plus every boundary (0, warm-up end, each
    milestone and the iteration before it, the last)."""
    count = max(2, min(max_points, schedule.total_iter))
    even = np.unique(np.round(np.linspace(0, schedule.last, count)).astype(np.int64)).tolist()
    return sorted(set(even) | set(schedule_boundaries(schedule.scheduler_cfg, schedule.total_iter)))


def key_points(schedule: Schedule) -> list[tuple[str, int, float]]:
    """(name, iteration, lr) at 0, the end of the warm-up, each milestone and the last iteration."""
    points: list[tuple[str, int]] = [("start", 0)]
    warm = schedule.warmup_iters
    if warm is not None and 0 < warm <= schedule.last:
        points.append(("warm-up end", warm))
    for i, m in enumerate(schedule.milestones, start=1):
        if 0 <= m <= schedule.last:
            points.append((f"milestone {i}", m))
    if schedule.last > 0:
        points.append(("last", schedule.last))
    values = schedule.lr([it for _, it in points])
    return [(name, it, float(v)) for (name, it), v in zip(points, values, strict=True)]


def lr_json(schedule: Schedule, max_points: int = MAX_POINTS) -> dict[str, JSONValue]:
    """``{"scheduler", "base_lr", "total_iter", "points": [[iteration, lr], ...], ...}``."""
    its = sample_iterations(schedule, max_points)
    values = schedule.lr(its)
    return {
        "scheduler": schedule.name,
        "base_lr": schedule.base_lr,
        "total_iter": schedule.total_iter,
        "points": [[int(t), float(v)] for t, v in zip(its, values, strict=True)],
        "warmup_iters": schedule.warmup_iters,
        "milestones": list(schedule.milestones),
        "key_points": [{"point": n, "iteration": t, "lr": v} for n, t, v in key_points(schedule)],
        "source": schedule.source,
    }


def marks(schedule: Schedule) -> list[tuple[str, int]]:
    """Vertical marks of the chart: the warm-up end and every milestone inside the run."""
    out = []
    warm = schedule.warmup_iters
    if warm is not None and 0 < warm <= schedule.last:
        out.append(("W", warm))
    for i, m in enumerate(schedule.milestones, start=1):
        if 0 < m <= schedule.last:
            out.append((f"M{i}", m))
    return out


# ----------------------------------------------------------------------------------------------
# the terminal chart
# ----------------------------------------------------------------------------------------------

# bit of each dot in a braille cell, indexed [row 0..3][column 0..1]
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


class BrailleCanvas:
    """A character grid of ``cols × rows`` cells, each 2 × 4 dots; dots belong to a layer
    (curve over marks) that decides the cell's colour."""

    def __init__(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        self.width, self.height = cols * 2, rows * 4
        self.bits = [[0] * cols for _ in range(rows)]
        self.layer = [[0] * cols for _ in range(rows)]

    def dot(self, x: int, y: int, layer: int = 1) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            r, c = y // 4, x // 2
            self.bits[r][c] |= _DOTS[y % 4][x % 2]
            self.layer[r][c] = max(self.layer[r][c], layer)

    def vline(self, x: int, y0: int, y1: int, layer: int = 1, every: int = 1) -> None:
        """Dots from ``y0`` to ``y1`` (clipped to the canvas, so any input draws in bounded time)."""
        lo, hi = sorted((y0, y1))
        first = lo if lo >= 0 else lo + ((-lo + every - 1) // every) * every
        for y in range(first, min(hi, self.height - 1) + 1):
            if (y - lo) % every == 0:
                self.dot(x, y, layer)

    def lines(self, styles: Mapping[int, str]) -> list[Text]:
        out = []
        for r in range(self.rows):
            text = Text()
            for c in range(self.cols):
                bits = self.bits[r][c]
                text.append(
                    chr(0x2800 + bits) if bits else " ",
                    style=styles.get(self.layer[r][c], "") if bits else "",
                )
            out.append(text)
        return out


def _nice_step(span: float, target: int) -> float:
    raw = span / max(target, 1)
    if raw <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * power:
            return float(mult * power)
    return float(10 * power)


def format_iteration(value: int) -> str:
    if value >= 1000 and value % 1000 == 0:
        return f"{value // 1000}k"
    if value >= 1000 and value % 100 == 0:
        return f"{value / 1000:.1f}k"
    return str(value)


@dataclass
class _Frame:
    """The chart's geometry: canvas size, x span (0..total_iter) and y range (linear or log10)."""

    canvas: BrailleCanvas
    """The braille plot area."""
    span: int
    """The x axis runs from 0 to this iteration."""
    log: bool
    """Log10 y axis."""
    top: float = 1.0
    """y value (log10 when ``log``) of the top dot row."""
    bottom: float = 0.0
    """y value of the bottom dot row."""

    def f(self, v: float) -> float:
        return math.log10(v) if self.log else v

    def xpix(self, it: float) -> int:
        return int(round(it * (self.canvas.width - 1) / self.span))

    def ypix(self, v: float) -> int:
        frac = min(1.0, max(0.0, (self.f(v) - self.bottom) / (self.top - self.bottom)))
        return int(round((1 - frac) * (self.canvas.height - 1)))

    def yvalue(self, row: int) -> float:
        rows, height = self.canvas.rows, self.canvas.height
        y = 0 if row == 0 else height - 1 if row == rows - 1 else row * 4 + 1.5
        raw = self.bottom + (1 - y / (height - 1)) * (self.top - self.bottom)
        return float(10**raw) if self.log else raw


def _scaled_frame(schedule: Schedule, cols: int, rows: int, log: bool) -> tuple[_Frame, np.ndarray]:
    """The frame and the lr at each dot column (refusing what cannot be drawn)."""
    frame = _Frame(BrailleCanvas(cols, rows), max(schedule.total_iter, 1), log)
    width = frame.canvas.width
    px_its = [min(schedule.last, round(px * frame.span / (width - 1))) for px in range(width)]
    values = schedule.lr(px_its)
    if not np.isfinite(values).all():
        raise GaitError("the schedule reaches a non-finite lr; check the learning rate and the factors")
    if log and (values <= 0).any():
        raise GaitError(f"{option('log')}: the schedule reaches lr 0, which has no logarithm; drop it")
    top = frame.f(float(values.max()))
    bottom = frame.f(float(values.min())) if log else min(0.0, float(values.min()))
    if top <= bottom:
        top, bottom = (bottom + 0.5, bottom - 0.5) if log else (max(top, 1e-12) * 1.1, 0.0)
    frame.top, frame.bottom = top, bottom
    return frame, values


def _plot_lines(frame: _Frame, schedule: Schedule, values: np.ndarray) -> tuple[list[Text], int]:
    """The y-labelled braille rows (curve over dashed marks) and the gutter width."""
    canvas, rows = frame.canvas, frame.canvas.rows
    for _, it in marks(schedule):
        canvas.vline(frame.xpix(it), 0, canvas.height - 1, layer=1, every=2)
    prev = None
    for px, v in enumerate(values):
        y = frame.ypix(float(v))
        canvas.vline(px, prev if prev is not None else y, y, layer=2)
        prev = y
    label_rows = sorted({0, rows // 2, rows - 1} | ({rows // 4, (3 * rows) // 4} if rows >= 10 else set()))
    labels = {r: f"{frame.yvalue(r):.2e}" for r in label_rows}
    if not frame.log:
        labels[rows - 1] = "0"
    gutter = max(len(s) for s in labels.values()) + 1
    out: list[Text] = [Text(f"lr ({'log' if frame.log else 'linear'} scale)", style="dim")]
    for r, line in enumerate(canvas.lines({1: _MARK_STYLE, 2: _CURVE_STYLE})):
        axis_char = " ┤" if r in labels else " │"
        out.append(Text(labels.get(r, "").rjust(gutter - 1) + axis_char) + line)
    return out, gutter


def _x_axis(frame: _Frame, gutter: int) -> list[Text]:
    """The x axis with nice ticks over [0, total_iter] and their labels."""
    cols, span = frame.canvas.cols, frame.span
    step = _nice_step(span, max(2, cols // 12))
    ticks = [int(round(k * step)) for k in range(int(span // step) + 1)]
    if ticks[-1] != span:
        ticks.append(span)  # always label the end of the run, when there is room
    axis = ["─"] * cols
    tick_line = [" "] * (cols + 12)
    for t in ticks:
        c = frame.xpix(t) // 2
        if 0 <= c < cols:
            axis[c] = "┬"
            label = format_iteration(t)
            start = max(0, min(c - len(label) // 2, cols + 12 - len(label)))
            if all(ch == " " for ch in tick_line[max(0, start - 1) : start + len(label) + 1]):
                tick_line[start : start + len(label)] = list(label)
    return [
        Text(" " * (gutter - 1) + " └" + "".join(axis)),
        Text(" " * (gutter + 1) + "".join(tick_line).rstrip() + "   iteration", style="dim"),
    ]


def _mark_lines(frame: _Frame, schedule: Schedule, gutter: int) -> list[Text]:
    """The W / M1 / M2 ... names under their columns, and their legend."""
    marked = marks(schedule)
    if not marked:
        return []
    cols = frame.canvas.cols
    mark_line = Text(" " * (gutter + 1))
    cells = [" "] * (cols + 6)
    for name, it in marked:
        c = frame.xpix(it) // 2
        start = max(0, min(c, cols + 6 - len(name)))
        if all(ch == " " for ch in cells[start : start + len(name)]):
            cells[start : start + len(name)] = list(name)
    mark_line.append("".join(cells).rstrip(), style=_MARK_STYLE)
    legend = "  ".join(f"{name} = {_mark_meaning(name)} {it:,}" for name, it in marked)
    return [mark_line, Text(" " * (gutter + 1) + legend, style="dim")]


def render_chart(schedule: Schedule, *, width: int = 72, height: int = 14, log: bool = False) -> list[Text]:
    """The chart as lines of rich Text: y-axis labels, the braille plot, the x axis with ticks,
    and one line placing the warm-up / milestone marks. Every line is clipped to the canvas, so
    any finite schedule draws in bounded time."""
    frame, values = _scaled_frame(schedule, max(16, width), max(4, height), log)
    plot, gutter = _plot_lines(frame, schedule, values)
    return plot + _x_axis(frame, gutter) + _mark_lines(frame, schedule, gutter)


def _mark_meaning(name: str) -> str:
    return "warm-up end" if name == "W" else f"milestone {name[1:]}"


def schedule_title(schedule: Schedule) -> str:
    if schedule.name == "warmup":
        cfg = schedule.scheduler_cfg
        return (
            f"WarmupMultiStepLR · base lr {schedule.base_lr:g} · "
            f"{cfg.get('warmup_method', 'linear')} warm-up "
            f"{schedule.warmup_iters:,} iters from x{cfg.get('warmup_factor', 0.01):g} · milestones "
            f"{', '.join(f'{m:,}' for m in schedule.milestones) or 'none'} · "
            f"gamma {cfg.get('gamma', 0.1):g} · {schedule.total_iter:,} iterations"
        )
    args = ", ".join(f"{k}={v}" for k, v in schedule.scheduler_cfg.items() if k != "scheduler")
    return f"{schedule.name}({args}) · base lr {schedule.base_lr:g} · {schedule.total_iter:,} iterations"


def key_point_table(schedule: Schedule) -> Table:
    table = Table(header_style="bold")
    table.add_column("point")
    table.add_column("iteration", justify="right")
    table.add_column("lr", justify="right")
    table.add_column("x base lr", justify="right")
    for name, it, value in key_points(schedule):
        table.add_row(
            name, f"{it:,}", f"{value:.4e}", f"{value / schedule.base_lr:.4g}" if schedule.base_lr else ""
        )
    return table


def render_lr_plot(
    schedule: Schedule, console: Console, *, log: bool = False, width: int | None = None, height: int = 14
) -> None:
    """Title, chart and key-point table on ``console``."""
    if width is None:  # room for the y labels on the left and "iteration" on the right
        width = max(24, min(96, console.width - 24))
    chart = render_chart(schedule, width=width, height=height, log=log)  # errors before any output
    console.print(f"[bold]{schedule_title(schedule)}[/]", highlight=False)
    console.print(f"[dim]from {schedule.source}[/]", highlight=False)
    for line in chart:
        console.print(line, no_wrap=True, overflow="crop", soft_wrap=False)
    console.print(key_point_table(schedule))


# ----------------------------------------------------------------------------------------------
# the image
# ----------------------------------------------------------------------------------------------


def save_lr_image(schedule: Schedule, path: str | os.PathLike[str], *, log: bool = False) -> Path:
    """Draw the schedule with matplotlib into ``path`` (png, svg or pdf by its extension)."""
    Figure = figure_class("out")
    its = sample_iterations(schedule, 2000)
    values = schedule.lr(its)
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(its, values, color="#1f77b4", linewidth=1.6)
    if log:
        if (values <= 0).any():
            raise GaitError(f"{option('log')}: the schedule reaches lr 0, which has no logarithm; drop it")
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0, top=float(values.max()) * 1.08 or 1.0)
    for name, it in marks(schedule):
        ax.axvline(it, color="#d98c00", linestyle="--", linewidth=1)
        ax.annotate(
            f"{_mark_meaning(name)}\n{it:,}",
            xy=(it, 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -3),
            textcoords="offset points",
            va="top",
            fontsize=8,
            color="#8a5a00",
        )
    ax.set_xlim(0, max(schedule.total_iter, 1))
    ax.set_xlabel("iteration")
    ax.set_ylabel("learning rate")
    ax.grid(True, alpha=0.3)
    ax.set_title(schedule_title(schedule), fontsize=8)
    return save_figure(fig, path, "out")
