"""Drawing an :class:`~gaitcli.data.inspect_model.InspectReport` with rich (docs/inspect.md).

Every table and panel fits an 80-column terminal; long lists are cut to a few rows with a
pointer to ``--json``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from gaitcli.data.inspect import natural_key, nsorted
from gaitcli.data.inspect_model import FileProblem, InspectReport, PartitionCheck
from gaitcli.data.validity import format_shape
from gaitcli.errors import option, render

__all__ = ["render_report", "compact_ids"]

_MAX_ROWS = 12


def compact_ids(ids: Sequence[str], limit: int = 30) -> str:
    """``["001", "002", "003", "007"]`` → ``"001–003, 007"`` (runs of consecutive numbers)."""
    runs: list[list[str]] = []
    for ident in nsorted(ids):
        last = runs[-1][-1] if runs else None
        if last is not None and ident.isdigit() and last.isdigit() and int(ident) == int(last) + 1:
            runs[-1].append(ident)
        else:
            runs.append([ident])
    parts = [run[0] if len(run) == 1 else f"{run[0]}–{run[-1]}" if len(run) > 2 else f"{run[0]}, {run[1]}"
             for run in runs]
    if len(parts) > limit:
        return ", ".join(parts[:limit]) + f", … ({len(parts) - limit} more)"
    return ", ".join(parts)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:max(1, limit - 1)] + "…"


def _table(console: Console, style: str, title: str) -> Table:
    """A borderless table; its title goes on its own line (so it is not squeezed to the table)."""
    console.print(Text(title, style=style))
    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)


def _print_table(console: Console, table: Table, total: int, what: str = "",
                 width: int | None = None) -> None:
    if width is not None:
        table.width = width
    console.print(table)
    if total > _MAX_ROWS:
        more = render(f"… and {total - _MAX_ROWS:,} more{what} (see {option('json_out')})")
        console.print(Text(more, style="dim"))
    console.print()


# ----------------------------------------------------------------------------- head panel
def _head(report: InspectReport, width: int) -> Panel:
    head = Text()
    for value, label in ((report.sequences, " sequences · "), (report.ids, " ids · "),
                         (len(report.types), " types · "), (len(report.views), " views · "),
                         (report.frames.total, " frames")):
        head.append(f"{value:,}", style="bold")
        head.append(label)
    if report.frame_size:
        dtypes = report.dtypes
        head.append(f"\nframe size {format_shape(report.frame_size)}")
        if dtypes:
            head.append(", " + ", ".join(f"{d} ({n:,})" if len(dtypes) > 1 else d for d, n in dtypes.items()))
    head.append(f"\ntypes: {_shorten(', '.join(report.types), width - 12)}")
    head.append(f"\nviews: {_shorten(', '.join(report.views), width - 12)}")
    directory = report.directory
    if len(directory) > width - 20:
        directory = "…" + directory[-(width - 21):]
    return Panel(head, title=Text.assemble(("gait inspect ", "bold"), directory),
                 title_align="left", width=width, box=box.ROUNDED)


# ----------------------------------------------------------------------------- type × view grid
class _Grid:
    """The sequence counts per type × view, transposed or cut when that fits the width better."""

    def __init__(self, report: InspectReport, console: Console, width: int) -> None:
        self.grid = report.per_type_view
        self.types, self.views = report.types, report.views
        self.console, self.width = console, width
        counts = [self.grid[t][v] for t in self.types for v in self.views]
        self.typical = Counter(counts).most_common(1)[0][0] if counts else 0

    def build(self, by_row: bool, shown: int, pad: int) -> Table:
        rows, cols = (self.types, self.views) if by_row else (self.views, self.types)
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, pad))
        table.add_column("type" if by_row else "view", style="bold", no_wrap=True)
        for col in cols[:shown]:
            table.add_column(col, justify="right", no_wrap=True)
        table.add_column("total", justify="right", style="bold", no_wrap=True)
        for row in rows[:40]:
            values = [self.grid[row][c] if by_row else self.grid[c][row] for c in cols]
            cells = [Text(str(v), style="red" if v == 0 else ("yellow" if v < self.typical else ""))
                     for v in values[:shown]]
            table.add_row(row, *cells, f"{sum(values):,}")
        if len(rows) > 40:
            table.add_row(f"… {len(rows) - 40} more", *([""] * min(shown, len(cols))), "")
        return table

    def fits(self, table: Table) -> bool:
        options = self.console.options.update(width=10_000)
        return Measurement.get(self.console, options, table).maximum <= self.width

    def layout(self) -> tuple[str, Table]:
        for by_row in (True, False):  # transpose only when needed
            title = "sequences per type × view" if by_row else "sequences per view × type"
            for pad in (1, 0):
                table = self.build(by_row, len(self.views if by_row else self.types), pad)
                if self.fits(table):
                    return title, table
        shown = len(self.views)
        while shown > 1 and not self.fits(self.build(True, shown, 0)):
            shown -= 1
        title = render(f"sequences per type × view (first {shown} of {len(self.views)} columns; "
                       f"see {option('json_out')})")
        return title, self.build(True, shown, 0)


# ----------------------------------------------------------------------------- lengths
def _histogram_text(report: InspectReport, width: int) -> Text:
    edges, counts = report.histogram.edges, report.histogram.counts
    text = Text()
    if not counts:
        return text
    labels = [f"{edges[i]}–{edges[i + 1] - 1}" if edges[i + 1] - edges[i] > 1 else str(edges[i])
              for i in range(len(counts))]
    label_w = max(len(s) for s in labels)
    count_w = max(len(f"{c:,}") for c in counts)
    bar_w = max(10, min(50, width - label_w - count_w - 8))
    top = max(counts) or 1
    for label, count in zip(labels, counts, strict=True):
        eighths = round(count / top * bar_w * 8)
        bar = "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]
        if count and not bar:
            bar = "▏"
        text.append(f"  {label:>{label_w}} ", style="dim")
        text.append(f"{bar:<{bar_w}}", style="cyan")
        text.append(f" {count:>{count_w},}\n")
    text.rstrip()
    return text


def _lengths(report: InspectReport, console: Console, width: int) -> None:
    frames = report.frames
    if frames.min is None:
        return
    stats = Text("frames per sequence: ", style="bold")
    for key in ("min", "p5", "median", "mean", "p95", "max"):
        value = getattr(frames, key)
        shown = f"{value:g}" if isinstance(value, float) else f"{value:,}"
        stats.append(f"{key} ", style="dim")
        stats.append(f"{shown}  ")
    console.print(stats)
    console.print(_histogram_text(report, width))
    console.print()


# ----------------------------------------------------------------------------- problems
def _missing_summary(report: InspectReport) -> list[tuple[str, int, str]]:
    """Per id: how many cells are missing and a compact description of which."""
    types, views = report.types, report.views
    by_id: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for ident, typ, view in report.missing:
        by_id[ident].add((typ, view))
    rows = []
    for ident in nsorted(by_id):
        cells = by_id[ident]
        if len(cells) == len(types) * len(views):
            rows.append((ident, len(cells), "everything (id has no sequence at all)"))
            continue
        full_views = [v for v in views if all((t, v) in cells for t in types)]
        full_types = [t for t in types if all((t, v) in cells for v in views)]
        rest = sorted(((t, v) for t, v in cells if v not in full_views and t not in full_types),
                      key=lambda c: (natural_key(c[0]), natural_key(c[1])))
        parts = []
        if full_views:
            label = "view " if len(full_views) == 1 else "views "
            parts.append(label + ", ".join(full_views) + " (all types)")
        if full_types:
            parts.append(", ".join(full_types) + " (all views)")
        parts.extend(f"{t}/{v}" for t, v in rest)
        rows.append((ident, len(cells), ", ".join(parts)))
    return rows


def _missing(report: InspectReport, console: Console, width: int) -> None:
    if not report.missing:
        return
    grid = report.ids * len(report.types) * len(report.views)
    table = _table(console, "bold yellow",
                   f"{len(report.missing):,} missing sequence(s) (grid: {report.ids:,} ids × "
                   f"{len(report.types)} types × {len(report.views)} views = {grid:,})")
    table.add_column("id", style="bold", no_wrap=True)
    table.add_column("n", justify="right")
    table.add_column("missing (type/view)", overflow="fold")
    summary = _missing_summary(report)
    for ident, n, what in summary[:_MAX_ROWS]:
        table.add_row(ident, str(n), _shorten(what, 2 * (width - 14)))
    _print_table(console, table, len(summary), " ids")


def _short(report: InspectReport, console: Console) -> None:
    if not report.short:
        return
    table = _table(console, "bold yellow",
                   f"{len(report.short):,} sequence(s) shorter than {report.short_threshold} frames")
    for name in ("id", "type", "view"):
        table.add_column(name, no_wrap=True)
    table.add_column("frames", justify="right")
    for row in report.short[:_MAX_ROWS]:
        table.add_row(row.id, row.type, row.view, str(row.frames))
    _print_table(console, table, len(report.short))


def _files(rows: list[FileProblem], what: str, console: Console, width: int) -> None:
    if not rows:
        return
    table = _table(console, "bold red", f"{len(rows):,} {what}")
    table.add_column("file", overflow="fold", ratio=2)
    table.add_column("reason", overflow="fold", ratio=3)
    for row in rows[:_MAX_ROWS]:
        table.add_row(row.path, row.reason)
    _print_table(console, table, len(rows), width=width)


def _mismatch(report: InspectReport, console: Console) -> None:
    if not report.frame_mismatch:
        return
    table = _table(console, "bold red", f"{len(report.frame_mismatch):,} sequence(s) whose pkls disagree on "
                                        "the number of frames")
    table.add_column("sequence", no_wrap=True)
    table.add_column("frames per file", overflow="fold")
    for row in report.frame_mismatch[:_MAX_ROWS]:
        table.add_row("/".join(row.sequence), ", ".join(f"{f}: {n}" for f, n in row.frames.items()))
    _print_table(console, table, len(report.frame_mismatch))


def _partition(part: PartitionCheck | None, console: Console, width: int) -> None:
    if part is None:
        return
    lines = Text()
    lines.append(f"{part.file}\n", style="dim")
    lines.append(f"train {part.train_ids:,} ids · test {part.test_ids:,} ids\n")
    checks = (
        ("TRAIN_SET id(s) not on disk", "every TRAIN_SET id is on disk", part.missing_train),
        ("TEST_SET id(s) not on disk", "every TEST_SET id is on disk", part.missing_test),
        ("id(s) on disk in neither set", "every id on disk is in a set", part.not_in_partition),
        ("id(s) in both sets", "no id is in both sets", part.in_both),
    )
    for bad, good, ids in checks:
        if ids:
            lines.append(f"✗ {len(ids):,} {bad}: ", style="yellow")
            lines.append(compact_ids(ids) + "\n")
        else:
            lines.append(f"✓ {good}\n", style="green")
    lines.rstrip()
    console.print(Panel(lines, title="[bold]partition[/]", title_align="left", width=width, box=box.ROUNDED))


def _verdict(report: InspectReport, console: Console) -> None:
    if not report.problems:
        console.print(Text("✓ no problems found", style="bold green"))
        return
    counts = (("missing", len(report.missing)), ("short", len(report.short)),
              ("unreadable", len(report.unreadable)), ("invalid", len(report.shape_problems)),
              ("frame-count mismatch", len(report.frame_mismatch)),
              ("partition", report.partition.problems if report.partition else 0))
    parts = [f"{n:,} {label}" for label, n in counts if n]
    console.print(Text(f"{report.problems:,} problem(s): " + ", ".join(parts), style="bold yellow"))


def render_report(report: InspectReport, console: Console) -> None:
    """Print ``report`` readably (tables and panels that fit an 80-column terminal)."""
    width = min(console.width, 100)
    console.print(_head(report, width))
    title, table = _Grid(report, console, width).layout()
    console.print(Text(title, style="bold"))
    console.print(table)
    console.print()
    _lengths(report, console, width)
    _missing(report, console, width)
    _short(report, console)
    _files(report.unreadable, "unreadable file(s)", console, width)
    _files(report.shape_problems,
           "invalid file(s) (not uint8 [frames, height, width] of the data set's size)", console, width)
    _mismatch(report, console)
    _partition(report.partition, console, width)
    _verdict(report, console)
