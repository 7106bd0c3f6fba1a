"""``gait inspect DIR``: what a prepared data set holds, and what is missing or broken.

A prepared tree is ``DIR/{id}/{type-seq}/{view}/*.pkl``: one folder per sequence (the last three
folder levels above each pkl are id / type / view, so OU-MVLP's ``{id}/{seq}/{view}`` works the
same). Each pkl's shape is read from its pickle header (:mod:`gaitcli.data.pkl_header`), never
by unpickling it, so the whole of CASIA-B is checked in seconds and a hostile pkl is reported,
not run.

:func:`inspect_dataset` returns a JSON-able report; :func:`render_report` prints it.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from gaitcli.data.partition import Partition, load_partition
from gaitcli.data.pkl_header import HeaderProblem, PickledArray, read_array_header
from gaitcli.errors import DataError

__all__ = ["inspect_dataset", "render_report", "load_partition", "scan_tree"]

_LAYOUT = "DIR/{id}/{type-seq}/{view}/*.pkl"
_CHUNK = 64  # files per task handed to a worker thread


# ----------------------------------------------------------------------------- small helpers
def _natural_key(text: str) -> tuple:
    """Sort ``"2" < "10"`` and ``"nm-2" < "nm-10"``; zero-padded names sort as usual."""
    return tuple((0, int(part), part) if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", text) if part)


def _nsorted(items: Iterable[str]) -> list[str]:
    return sorted(items, key=_natural_key)


def _compact_ids(ids: Sequence[str], limit: int = 30) -> str:
    """``["001", "002", "003", "007"]`` → ``"001–003, 007"`` (runs of consecutive numbers)."""
    parts: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            parts.append(run[0] if len(run) == 1 else f"{run[0]}–{run[-1]}" if len(run) > 2
                         else f"{run[0]}, {run[1]}")
            run.clear()

    for ident in _nsorted(ids):
        if run and ident.isdigit() and run[-1].isdigit() and int(ident) == int(run[-1]) + 1:
            run.append(ident)
        else:
            flush()
            run.append(ident)
    flush()
    if len(parts) > limit:
        return ", ".join(parts[:limit]) + f", … ({len(parts) - limit} more)"
    return ", ".join(parts)


# ----------------------------------------------------------------------------- partition
def _check_partition(part: Partition, disk_ids: Sequence[str]) -> dict[str, Any]:
    train, test = set(part.train), set(part.test)
    disk = set(disk_ids)
    return {
        "file": part.path,
        "train_ids": len(train),
        "test_ids": len(test),
        "missing_on_disk": {
            "TRAIN_SET": _nsorted(train - disk),
            "TEST_SET": _nsorted(test - disk),
        },
        "not_in_partition": _nsorted(disk - train - test),
        "in_both": _nsorted(train & test),
    }


def _partition_problems(part: dict[str, Any] | None) -> int:
    if not part:
        return 0
    return (len(part["missing_on_disk"]["TRAIN_SET"]) + len(part["missing_on_disk"]["TEST_SET"])
            + len(part["not_in_partition"]) + len(part["in_both"]))


# ----------------------------------------------------------------------------- scanning
def scan_tree(root: Path) -> tuple[dict[tuple[str, str, str], list[str]], list[str]]:
    """Find every ``*.pkl`` under ``root``.

    Returns ``{(id, type, view): [pkl paths relative to root, sorted]}`` and the pkls that sit
    less than three folders deep (no id/type/view). Hidden files and folders are skipped;
    symlinked folders are followed once.
    """
    sequences: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    shallow: list[str] = []
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[str, tuple[str, ...]]] = [(str(root), ())]
    while stack:
        folder, parts = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # an unreadable folder below root: nothing we can list
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    if entry.is_symlink():
                        st = entry.stat()
                        if (st.st_dev, st.st_ino) in seen:
                            continue
                        seen.add((st.st_dev, st.st_ino))
                    stack.append((entry.path, parts + (name,)))
                elif name.endswith(".pkl"):
                    rel = "/".join(parts + (name,))
                    if len(parts) >= 3:
                        sequences[(parts[-3], parts[-2], parts[-1])].append(rel)
                    else:
                        shallow.append(rel)
            except OSError:
                continue
    for files in sequences.values():
        files.sort()
    return dict(sequences), sorted(shallow)


def _read_chunk(root: str, rels: list[str]) -> list[PickledArray | str]:
    out: list[PickledArray | str] = []
    for rel in rels:
        try:
            out.append(read_array_header(os.path.join(root, rel)))
        except HeaderProblem as exc:
            out.append(str(exc))
    return out


def _read_headers(root: Path, rels: list[str], workers: int, console: Console | None
                  ) -> list[PickledArray | str]:
    chunks = [rels[i:i + _CHUNK] for i in range(0, len(rels), _CHUNK)]
    results: list[PickledArray | str] = []
    progress = None
    if console is not None and console.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(TextColumn("reading headers"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), console=console, transient=True)
    task = progress.add_task("headers", total=len(rels)) if progress else None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        if progress:
            progress.start()
        try:
            for chunk_result in pool.map(_read_chunk, [str(root)] * len(chunks), chunks):
                results.extend(chunk_result)
                if progress:
                    progress.advance(task, len(chunk_result))
        finally:
            if progress:
                progress.stop()
    return results


# ----------------------------------------------------------------------------- statistics
def _histogram(frames: np.ndarray, max_bins: int = 12) -> dict[str, list[int]]:
    """Bins of a 'nice' width (1, 2, 5 × 10^k) covering ``[min, max]`` in at most ``max_bins``."""
    if frames.size == 0:
        return {"edges": [], "counts": []}
    lo, hi = int(frames.min()), int(frames.max())
    width = 1
    for exponent in range(0, 12):
        for step in (1, 2, 5):
            width = step * 10 ** exponent
            if hi // width - lo // width + 1 <= max_bins:
                break
        else:
            continue
        break
    start = (lo // width) * width
    n_bins = hi // width - lo // width + 1
    edges = [start + i * width for i in range(n_bins + 1)]
    counts = np.bincount((frames - start) // width, minlength=n_bins)[:n_bins]
    return {"edges": edges, "counts": [int(c) for c in counts]}


def _frame_stats(frames: np.ndarray) -> dict[str, Any]:
    if frames.size == 0:
        return {k: None for k in ("min", "p5", "median", "mean", "p95", "max")} | {"total": 0}
    p5, median, p95 = np.percentile(frames, [5, 50, 95])
    return {
        "total": int(frames.sum()),
        "min": int(frames.min()),
        "p5": round(float(p5), 2),
        "median": round(float(median), 2),
        "mean": round(float(frames.mean()), 2),
        "p95": round(float(p95), 2),
        "max": int(frames.max()),
    }


def _fmt_shape(shape: Sequence[int]) -> str:
    return "×".join(str(d) for d in shape) if shape else "scalar"


# ----------------------------------------------------------------------------- the report
def inspect_dataset(directory: str | os.PathLike, *, short: int = 10,
                    partition: str | os.PathLike | None = None, workers: int | None = None,
                    console: Console | None = None) -> dict[str, Any]:
    """Inspect a prepared tree and return the report (a JSON-able dict, see docs/inspect.md).

    ``short``: sequences with fewer frames are listed. ``partition``: a partition JSON to
    cross-check. ``workers``: threads reading headers (default: the CPU count). ``console``:
    where to draw a progress bar (only on a terminal).
    """
    root = Path(directory).expanduser()
    if not root.exists():
        raise DataError(f"{root}: no such directory; pass the folder 'gait prepare' wrote ({_LAYOUT})")
    if not root.is_dir():
        raise DataError(f"{root}: not a directory; pass the dataset root folder ({_LAYOUT})")
    part_spec = load_partition(partition) if partition is not None else None
    workers = max(1, int(workers or os.cpu_count() or 1))

    sequences, shallow = scan_tree(root)
    if not sequences:
        hint = (f" ({len(shallow)} .pkl file(s) sit less than three folders deep: did you pass a "
                "sequence folder instead of the dataset root?)") if shallow else ""
        raise DataError(f"{root}: no .pkl files found in the {_LAYOUT} layout{hint}; "
                        "run 'gait prepare' first or point at its output folder")

    keys = sorted(sequences, key=lambda k: (_natural_key(k[0]), _natural_key(k[1]), _natural_key(k[2])))
    rels = [rel for key in keys for rel in sequences[key]]
    headers = _read_headers(root, rels, workers, console)
    by_rel = dict(zip(rels, headers, strict=True))

    unreadable: list[dict[str, str]] = [
        {"path": rel, "reason": "not in an id/type/view folder (less than three folders deep)"}
        for rel in shallow]
    # The expected per-frame shape of the k-th pkl of a sequence (several modalities allowed).
    trailing: dict[int, Counter] = defaultdict(Counter)
    dtypes: Counter = Counter()
    protocols: Counter = Counter()
    methods: Counter = Counter()
    for key in keys:
        for index, rel in enumerate(sequences[key]):
            header = by_rel[rel]
            if isinstance(header, str):
                unreadable.append({"path": rel, "reason": header})
                continue
            trailing[index][header.shape[1:]] += 1
            dtypes[header.dtype] += 1
            protocols[str(header.protocol)] += 1
            methods[header.method] += 1
    majority = {index: counts.most_common(1)[0][0] for index, counts in trailing.items()}

    shape_problems: list[dict[str, Any]] = []
    frame_mismatch: list[dict[str, Any]] = []
    frames_of: dict[tuple[str, str, str], int] = {}
    for key in keys:
        lengths: dict[str, int] = {}
        for index, rel in enumerate(sequences[key]):
            header = by_rel[rel]
            if isinstance(header, str):
                continue
            if len(header.shape) != 3:
                shape_problems.append({"path": rel, "shape": list(header.shape), "reason":
                                       f"expected a 3-D array [frames, height, width], found shape "
                                       f"{_fmt_shape(header.shape)}"})
            elif header.shape[1:] != majority[index]:
                shape_problems.append({"path": rel, "shape": list(header.shape), "reason":
                                       f"frame size {_fmt_shape(header.shape[1:])} differs from the "
                                       f"majority {_fmt_shape(majority[index])}"})
            if header.shape:
                name = rel.rsplit("/", 1)[-1]
                lengths[rel if name in lengths else name] = header.shape[0]
        if lengths:
            frames_of[key] = next(iter(lengths.values()))
            if len(set(lengths.values())) > 1:
                frame_mismatch.append({"sequence": list(key), "frames": lengths})

    ids = _nsorted({k[0] for k in keys})
    types = _nsorted({k[1] for k in keys})
    views = _nsorted({k[2] for k in keys})

    per_type_view: dict[str, dict[str, int]] = {t: {v: 0 for v in views} for t in types}
    for _id, typ, view in keys:
        per_type_view[typ][view] += 1

    present = set(keys)
    missing = [[i, t, v] for i in ids for t in types for v in views if (i, t, v) not in present]

    frames = np.fromiter(frames_of.values(), dtype=np.int64, count=len(frames_of))
    short_list = sorted(([*key, n] for key, n in frames_of.items() if n < short),
                        key=lambda row: (row[3], _natural_key(row[0]), _natural_key(row[1]),
                                         _natural_key(row[2])))

    main_shape = majority.get(0)
    report: dict[str, Any] = {
        "directory": str(root),
        "sequences": len(keys),
        "files": len(rels) + len(shallow),
        "ids": len(ids),
        "id_list": ids,
        "types": types,
        "views": views,
        "frame_size": list(main_shape) if main_shape is not None and len(main_shape) == 2 else None,
        "dtypes": dict(dtypes.most_common()),
        "protocols": dict(sorted(protocols.items())),
        "frames": _frame_stats(frames),
        "histogram": _histogram(frames),
        "per_type_view": per_type_view,
        "missing": missing,
        "short_threshold": short,
        "short": short_list,
        "unreadable": unreadable,
        "shape_problems": shape_problems,
        "frame_mismatch": frame_mismatch,
        "workers": workers,
    }
    if methods.get("full"):
        report["full_loads"] = methods["full"]
    part_report = _check_partition(part_spec, ids) if part_spec is not None else None
    if part_report is not None:
        report["partition"] = part_report
    report["problems"] = (len(missing) + len(short_list) + len(unreadable) + len(shape_problems)
                          + len(frame_mismatch) + _partition_problems(part_report))
    return report


# ----------------------------------------------------------------------------- rendering
_MAX_ROWS = 12


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
        console.print(Text(f"… and {total - _MAX_ROWS:,} more{what} (see --json)", style="dim"))
    console.print()


def _type_view_table(report: dict[str, Any], console: Console, width: int) -> tuple[str, Table]:
    """The sequence counts per type × view (transposed, or cut, when that fits the width better)."""
    types, views = report["types"], report["views"]
    grid = report["per_type_view"]
    counts = [grid[t][v] for t in types for v in views]
    typical = Counter(counts).most_common(1)[0][0] if counts else 0

    def build(rows: list[str], cols: list[str], by_row: bool, shown: int, pad: int) -> Table:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, pad))
        table.add_column("type" if by_row else "view", style="bold", no_wrap=True)
        for col in cols[:shown]:
            table.add_column(col, justify="right", no_wrap=True)
        table.add_column("total", justify="right", style="bold", no_wrap=True)
        for row in rows[:40]:
            values = [grid[row][c] if by_row else grid[c][row] for c in cols]
            cells = [Text(str(v), style="red" if v == 0 else ("yellow" if v < typical else ""))
                     for v in values[:shown]]
            table.add_row(row, *cells, f"{sum(values):,}")
        if len(rows) > 40:
            table.add_row(f"… {len(rows) - 40} more", *([""] * min(shown, len(cols))), "")
        return table

    def fits(table: Table) -> bool:
        return Measurement.get(console, console.options.update(width=10_000), table).maximum <= width

    layouts = [(types, views, True), (views, types, False)]  # transpose only when needed
    for rows, cols, by_row in layouts:
        for pad in (1, 0):
            table = build(rows, cols, by_row, len(cols), pad)
            if fits(table):
                return ("sequences per type × view" if by_row else "sequences per view × type"), table
    # Too many columns either way: show as many as fit.
    rows, cols, by_row = layouts[0]
    shown = len(cols)
    while shown > 1 and not fits(build(rows, cols, by_row, shown, 0)):
        shown -= 1
    title = "sequences per type × view" if by_row else "sequences per view × type"
    return f"{title} (first {shown} of {len(cols)} columns; see --json)", build(rows, cols, by_row, shown, 0)


def _histogram_text(report: dict[str, Any], width: int) -> Text:
    hist = report["histogram"]
    edges, counts = hist["edges"], hist["counts"]
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


def _missing_summary(report: dict[str, Any]) -> list[tuple[str, int, str]]:
    """Per id: how many cells are missing and a compact description of which."""
    types, views = report["types"], report["views"]
    by_id: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for ident, typ, view in report["missing"]:
        by_id[ident].add((typ, view))
    rows = []
    for ident in _nsorted(by_id):
        cells = by_id[ident]
        if len(cells) == len(types) * len(views):
            rows.append((ident, len(cells), "everything (id has no sequence at all)"))
            continue
        full_views = [v for v in views if all((t, v) in cells for t in types)]
        full_types = [t for t in types if all((t, v) in cells for v in views)]
        rest = sorted(((t, v) for t, v in cells if v not in full_views and t not in full_types),
                      key=lambda c: (_natural_key(c[0]), _natural_key(c[1])))
        parts = []
        if full_views:
            parts.append(("view " if len(full_views) == 1 else "views ") + ", ".join(full_views)
                         + " (all types)")
        if full_types:
            parts.append(", ".join(full_types) + " (all views)")
        parts.extend(f"{t}/{v}" for t, v in rest)
        rows.append((ident, len(cells), ", ".join(parts)))
    return rows


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:max(1, limit - 1)] + "…"


def render_report(report: dict[str, Any], console: Console) -> None:
    """Print ``report`` readably (tables and panels that fit an 80-column terminal)."""
    width = min(console.width, 100)
    frames = report["frames"]
    size = report.get("frame_size")
    dtypes = report.get("dtypes") or {}
    head = Text()
    head.append(f"{report['sequences']:,}", style="bold")
    head.append(" sequences · ")
    head.append(f"{report['ids']:,}", style="bold")
    head.append(" ids · ")
    head.append(f"{len(report['types']):,}", style="bold")
    head.append(" types · ")
    head.append(f"{len(report['views']):,}", style="bold")
    head.append(" views · ")
    head.append(f"{frames['total']:,}", style="bold")
    head.append(" frames")
    if size:
        head.append(f"\nframe size {_fmt_shape(size)}")
        if dtypes:
            head.append(", " + ", ".join(f"{d} ({n:,})" if len(dtypes) > 1 else d for d, n in dtypes.items()))
    head.append(f"\ntypes: {_shorten(', '.join(report['types']), width - 12)}")
    head.append(f"\nviews: {_shorten(', '.join(report['views']), width - 12)}")
    directory = str(report.get("directory", ""))
    if len(directory) > width - 20:
        directory = "…" + directory[-(width - 21):]
    console.print(Panel(head, title=Text.assemble(("gait inspect ", "bold"), directory),
                        title_align="left", width=width, box=box.ROUNDED))

    title, table = _type_view_table(report, console, width)
    console.print(Text(title, style="bold"))
    console.print(table)
    console.print()

    if frames["min"] is not None:
        stats = Text("frames per sequence: ", style="bold")
        for key in ("min", "p5", "median", "mean", "p95", "max"):
            value = frames[key]
            shown = f"{value:g}" if isinstance(value, float) else f"{value:,}"
            stats.append(f"{key} ", style="dim")
            stats.append(f"{shown}  ")
        console.print(stats)
        console.print(_histogram_text(report, width))
        console.print()

    missing = report["missing"]
    if missing:
        grid = report["ids"] * len(report["types"]) * len(report["views"])
        table = _table(console, "bold yellow",
                       f"{len(missing):,} missing sequence(s) (grid: {report['ids']:,} ids × "
                       f"{len(report['types'])} types × {len(report['views'])} views = {grid:,})")
        table.add_column("id", style="bold", no_wrap=True)
        table.add_column("n", justify="right")
        table.add_column("missing (type/view)", overflow="fold")
        summary = _missing_summary(report)
        for ident, n, what in summary[:_MAX_ROWS]:
            table.add_row(ident, str(n), _shorten(what, 2 * (width - 14)))
        _print_table(console, table, len(summary), " ids")

    short_rows = report["short"]
    if short_rows:
        table = _table(console, "bold yellow", f"{len(short_rows):,} sequence(s) shorter than "
                                               f"{report['short_threshold']} frames")
        for name in ("id", "type", "view"):
            table.add_column(name, no_wrap=True)
        table.add_column("frames", justify="right")
        for ident, typ, view, n in short_rows[:_MAX_ROWS]:
            table.add_row(ident, typ, view, str(n))
        _print_table(console, table, len(short_rows))

    for key, what in (("unreadable", "unreadable file(s)"), ("shape_problems", "file(s) with a wrong shape")):
        rows = report.get(key) or []
        if not rows:
            continue
        table = _table(console, "bold red", f"{len(rows):,} {what}")
        table.add_column("file", overflow="fold", ratio=2)
        table.add_column("reason", overflow="fold", ratio=3)
        for row in rows[:_MAX_ROWS]:
            table.add_row(row["path"], row["reason"])
        _print_table(console, table, len(rows), width=width)

    mismatch = report.get("frame_mismatch") or []
    if mismatch:
        table = _table(console, "bold red", f"{len(mismatch):,} sequence(s) whose pkls disagree on "
                                            "the number of frames")
        table.add_column("sequence", no_wrap=True)
        table.add_column("frames per file", overflow="fold")
        for row in mismatch[:_MAX_ROWS]:
            table.add_row("/".join(row["sequence"]), ", ".join(f"{f}: {n}" for f, n in row["frames"].items()))
        _print_table(console, table, len(mismatch))

    part = report.get("partition")
    if part:
        lines = Text()
        lines.append(f"{part['file']}\n", style="dim")
        lines.append(f"train {part['train_ids']:,} ids · test {part['test_ids']:,} ids\n")
        checks = (
            ("TRAIN_SET id(s) not on disk", "every TRAIN_SET id is on disk",
             part["missing_on_disk"]["TRAIN_SET"]),
            ("TEST_SET id(s) not on disk", "every TEST_SET id is on disk",
             part["missing_on_disk"]["TEST_SET"]),
            ("id(s) on disk in neither set", "every id on disk is in a set", part["not_in_partition"]),
            ("id(s) in both sets", "no id is in both sets", part["in_both"]),
        )
        for bad, good, ids in checks:
            if ids:
                lines.append(f"✗ {len(ids):,} {bad}: ", style="yellow")
                lines.append(_compact_ids(ids) + "\n")
            else:
                lines.append(f"✓ {good}\n", style="green")
        lines.rstrip()
        console.print(Panel(lines, title="[bold]partition[/]", title_align="left", width=width,
                            box=box.ROUNDED))

    problems = report["problems"]
    if problems:
        parts = []
        for label, n in (("missing", len(missing)), ("short", len(short_rows)),
                         ("unreadable", len(report["unreadable"])),
                         ("wrong shape", len(report.get("shape_problems") or [])),
                         ("frame-count mismatch", len(mismatch)),
                         ("partition", _partition_problems(part))):
            if n:
                parts.append(f"{n:,} {label}")
        console.print(Text(f"{problems:,} problem(s): " + ", ".join(parts), style="bold yellow"))
    else:
        console.print(Text("✓ no problems found", style="bold green"))
