"""``gait inspect DIR``: what a prepared data set holds, and what is missing or broken.

Sequences are found by the one walker (:mod:`gaitcli.data.walker`, the same rules as the
training dataset) and every pkl is judged by :mod:`gaitcli.data.validity` from its pickle header
(:mod:`gaitcli.data.pkl_header`), never by unpickling it: the whole of CASIA-B is checked in
seconds, a hostile pkl is reported, not run, and every file the dataset would refuse is a
problem here with the same reason text (docs/inspect.md).

:func:`inspect_dataset` counts and returns an :class:`InspectReport`;
:mod:`gaitcli.data.inspect_render` prints it.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from rich.console import Console

from gaitcli.data.inspect_model import (
    FileProblem,
    FrameMismatch,
    FrameStats,
    Histogram,
    InspectReport,
    PartitionCheck,
    ShortSequence,
)
from gaitcli.data.partition import Partition, load_partition
from gaitcli.data.pkl_header import HeaderProblem, PickledArray, read_array_header
from gaitcli.data.validity import (
    SHORT_SEQUENCE_FRAMES,
    file_reason,
    frame_count_reason,
    header_reason,
    majority_sizes,
    size_reasons,
)
from gaitcli.data.walker import SequenceFolder, TreeScan, walk_sequences
from gaitcli.errors import DataError
from gaitcli.progress import make_progress

__all__ = ["InspectReport", "inspect_dataset", "load_partition", "natural_key", "nsorted"]

_LAYOUT = "DIR/{id}/{type-seq}/{view}/*.pkl"
_CHUNK = 64  # files per task handed to a worker thread
_SHALLOW = "not in an id/type/view folder (less than three folders deep)"

Key = tuple[str, str, str]


def natural_key(text: str) -> tuple[tuple[int, int, str], ...]:
    """Sort ``"2" < "10"`` and ``"nm-2" < "nm-10"``; zero-padded names sort as usual."""
    return tuple((0, int(part), part) if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", text) if part)


def nsorted(items: Iterable[str]) -> list[str]:
    return sorted(items, key=natural_key)


def _key_order(key: Key) -> tuple[tuple[tuple[int, int, str], ...], ...]:
    return natural_key(key[0]), natural_key(key[1]), natural_key(key[2])


# ----------------------------------------------------------------------------- partition
def check_partition(part: Partition, disk_ids: Sequence[str]) -> PartitionCheck:
    """How a partition file and the ids on disk agree."""
    train, test, disk = set(part.train), set(part.test), set(disk_ids)
    return PartitionCheck(
        file=part.path, train_ids=len(train), test_ids=len(test),
        missing_train=nsorted(train - disk), missing_test=nsorted(test - disk),
        not_in_partition=nsorted(disk - train - test), in_both=nsorted(train & test),
    )


# ----------------------------------------------------------------------------- reading headers
def _read_chunk(paths: list[str]) -> list[PickledArray | str]:
    out: list[PickledArray | str] = []
    for path in paths:
        try:
            out.append(read_array_header(path))
        except HeaderProblem as exc:
            out.append(str(exc))
    return out


def read_headers(paths: list[str], workers: int, console: Console | None) -> list[PickledArray | str]:
    """The header of every file (or its problem as ``kind: detail``), in order, on threads."""
    chunks = [paths[i:i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    results: list[PickledArray | str] = []
    show = console is not None and console.is_terminal
    progress = make_progress("reading headers", console, unit="files/s", transient=True, disable=not show)
    with progress, ThreadPoolExecutor(max_workers=workers) as pool:
        task = progress.add_task("headers", total=len(paths))
        for chunk_result in pool.map(_read_chunk, chunks):
            results.extend(chunk_result)
            progress.advance(task, len(chunk_result))
    return results


# ----------------------------------------------------------------------------- statistics
def histogram(frames: np.ndarray, max_bins: int = 12) -> Histogram:
    """Bins of a 'nice' width (1, 2, 5 × 10^k) covering ``[min, max]`` in at most ``max_bins``."""
    if frames.size == 0:
        return Histogram([], [])
    lo, hi = int(frames.min()), int(frames.max())
    widths = [step * 10 ** exponent for exponent in range(12) for step in (1, 2, 5)]
    width = next((w for w in widths if hi // w - lo // w + 1 <= max_bins), widths[-1])
    start = (lo // width) * width
    n_bins = hi // width - lo // width + 1
    edges = [start + i * width for i in range(n_bins + 1)]
    counts = np.bincount((frames - start) // width, minlength=n_bins)[:n_bins]
    return Histogram(edges, [int(c) for c in counts])


def frame_stats(frames: np.ndarray) -> FrameStats:
    if frames.size == 0:
        return FrameStats(total=0)
    p5, median, p95 = np.percentile(frames, [5, 50, 95])
    return FrameStats(
        total=int(frames.sum()), min=int(frames.min()), p5=round(float(p5), 2),
        median=round(float(median), 2), mean=round(float(frames.mean()), 2),
        p95=round(float(p95), 2), max=int(frames.max()),
    )


# ----------------------------------------------------------------------------- judging files
class _Judge:
    """Applies :mod:`gaitcli.data.validity` to every file of the tree, collecting problems."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.unreadable: list[FileProblem] = []
        self.shape_problems: list[FileProblem] = []
        self.mismatch: list[FrameMismatch] = []
        self.valid: list[tuple[str, int, PickledArray]] = []
        self.frames_of: dict[Key, int] = {}
        self.dtypes: Counter[str] = Counter()
        self.protocols: Counter[str] = Counter()
        self.full_loads = 0

    def rel(self, path: str) -> str:
        return Path(os.path.relpath(path, self.root)).as_posix()

    def header(self, rel: str, header: PickledArray | str) -> PickledArray | None:
        if isinstance(header, str):
            self.unreadable.append(FileProblem(rel, header_reason(header)))
            return None
        self.dtypes[header.dtype] += 1
        self.protocols[str(header.protocol)] += 1
        self.full_loads += header.method == "full"
        reason = file_reason(header)
        if reason is not None:
            self.shape_problems.append(FileProblem(rel, reason, list(header.shape)))
            return None
        return header

    def sequence(self, seq: SequenceFolder, headers: list[PickledArray | str]) -> None:
        lengths: dict[str, int] = {}
        for position, (name, raw) in enumerate(zip(seq.files, headers, strict=True)):
            rel = self.rel(os.path.join(seq.path, name))
            header = self.header(rel, raw)
            if header is None:
                continue
            self.valid.append((rel, position, header))
            lengths[name] = header.shape[0]
        if lengths:
            self.frames_of[seq.key] = next(iter(lengths.values()))
        reason = frame_count_reason(lengths)
        if reason is not None:
            self.mismatch.append(FrameMismatch(list(seq.key), lengths, reason))

    def sizes(self) -> None:
        for refusal in size_reasons(self.valid):
            self.shape_problems.append(FileProblem(refusal.path, refusal.reason, list(refusal.shape or ())))
        self.shape_problems.sort(key=lambda p: p.path)


# ----------------------------------------------------------------------------- the report
def _walk(root: Path) -> TreeScan:
    if not root.exists():
        raise DataError(f"{root}: no such directory; pass the folder 'gait prepare' wrote ({_LAYOUT})")
    if not root.is_dir():
        raise DataError(f"{root}: not a directory; pass the dataset root folder ({_LAYOUT})")
    found = walk_sequences(root, {".pkl"}, follow_links=True)
    if not found.sequences:
        hint = (f" ({len(found.shallow)} .pkl file(s) sit less than three folders deep: did you pass a "
                "sequence folder instead of the dataset root?)") if found.shallow else ""
        raise DataError(f"{root}: no .pkl files found in the {_LAYOUT} layout{hint}; "
                        "run 'gait prepare' first or point at its output folder")
    return found


def _judge(root: Path, found: TreeScan, workers: int, console: Console | None) -> tuple[_Judge, list[Key]]:
    sequences = sorted(found.sequences, key=lambda s: _key_order(s.key))
    paths = [os.path.join(seq.path, name) for seq in sequences for name in seq.files]
    headers = read_headers(paths, workers, console)
    judge = _Judge(root)
    judge.unreadable.extend(FileProblem(rel, _SHALLOW) for rel in found.shallow)
    judge.unreadable.extend(FileProblem(judge.rel(p), reason) for p, reason in found.unlisted)
    start = 0
    for seq in sequences:
        judge.sequence(seq, headers[start:start + len(seq.files)])
        start += len(seq.files)
    judge.sizes()
    return judge, [seq.key for seq in sequences]


def _short_list(frames_of: dict[Key, int], short: int) -> list[ShortSequence]:
    rows = [ShortSequence(*key, frames=n) for key, n in frames_of.items() if n < short]
    return sorted(rows, key=lambda r: (r.frames, *_key_order((r.id, r.type, r.view))))


def inspect_dataset(directory: str | os.PathLike[str], *, short: int = SHORT_SEQUENCE_FRAMES,
                    partition: str | os.PathLike[str] | None = None, workers: int | None = None,
                    console: Console | None = None) -> InspectReport:
    """Inspect a prepared tree (see docs/inspect.md).

    ``short``: sequences with fewer frames are listed. ``partition``: a partition JSON to
    cross-check. ``workers``: threads reading headers (default: the CPU count). ``console``:
    where to draw a progress bar (only on a terminal).
    """
    root = Path(directory).expanduser()
    found = _walk(root)
    part_spec = load_partition(partition) if partition is not None else None
    workers = max(1, int(workers or os.cpu_count() or 1))
    judge, keys = _judge(root, found, workers, console)
    ids, types, views = (nsorted({k[i] for k in keys}) for i in range(3))
    per_type_view = {t: dict.fromkeys(views, 0) for t in types}
    for _id, typ, view in keys:
        per_type_view[typ][view] += 1
    present = set(keys)
    frames = np.fromiter(judge.frames_of.values(), dtype=np.int64, count=len(judge.frames_of))
    main_shape = majority_sizes(judge.valid).get(0)
    return InspectReport(
        directory=str(root), sequences=len(keys),
        files=sum(len(s.files) for s in found.sequences) + len(found.shallow),
        id_list=ids, types=types, views=views,
        frame_size=list(main_shape) if main_shape is not None else None,
        dtypes=dict(judge.dtypes.most_common()), protocols=dict(sorted(judge.protocols.items())),
        frames=frame_stats(frames), histogram=histogram(frames), per_type_view=per_type_view,
        missing=[[i, t, v] for i in ids for t in types for v in views if (i, t, v) not in present],
        short_threshold=short, short=_short_list(judge.frames_of, short), unreadable=judge.unreadable,
        shape_problems=judge.shape_problems, frame_mismatch=judge.mismatch, workers=workers,
        full_loads=judge.full_loads,
        partition=check_partition(part_spec, ids) if part_spec is not None else None,
    )
