"""``gait prepare``: turn folders of silhouette frames into one ``.pkl`` per sequence.

The per-frame work is the OpenGait pretreatment in :mod:`gaitcli.data.pretreat`; the output
folder's rules (manifest, refusals, ``--overwrite``) are in :mod:`gaitcli.data.prepare_output`.
This module finds the sequence folders (with the one walker, :mod:`gaitcli.data.walker`), plans
one job per sequence, runs them on the one worker pool (:mod:`gaitcli.runtime.pool`) under the
one lock (:mod:`gaitcli.runtime.lock`), and sums up what happened in a :class:`PrepareSummary`.

* every ``.pkl`` is written atomically (temp file + rename), so a killed run never leaves a
  truncated file, and a re-run skips what is already there and finishes the rest;
* an unreadable frame is listed and skipped instead of ending the run;
* directory links in IN are not followed unless ``follow_links`` (and then never into a folder
  already walked); each one skipped is listed. See docs/prepare.md;
* ``layout`` reads a data set's own download layout (GREW, Gait3D, CCPG, OU-MVLP) instead of
  ``id/type/view`` folders: :mod:`gaitcli.data.layouts` maps its folders to ``id/type/view`` and
  the rest is the same (docs/prepare-layouts.md).
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console

from gaitcli.data.layouts import FRAMES_AS_IS, Layout, LayoutScan, get_layout, scan_layout, suggest_layout
from gaitcli.data.pickle_io import save_array
from gaitcli.data.prepare_output import (
    MANIFEST_NAME,
    Manifest,
    check_output,
    remove_foreign_pkls,
    write_manifest,
)
from gaitcli.data.pretreat import (
    MIN_PIXEL_SUM,
    check_img_size,
    pretreat_frame,
    pretreat_sequence,
    read_frame,
)
from gaitcli.data.validity import SHORT_SEQUENCE_FRAMES
from gaitcli.data.walker import SequenceFolder, TreeScan, walk_sequences
from gaitcli.errors import DataError, GaitError, option, render
from gaitcli.progress import make_progress
from gaitcli.runtime.lock import exclusive_lock
from gaitcli.runtime.pool import run_pool

__all__ = ["IMAGE_EXTENSIONS", "LOCK_NAME", "MANIFEST_NAME", "MIN_PIXEL_SUM", "SHORT_SEQUENCE_FRAMES",
           "FileSkip", "PrepareSummary", "SequenceJob", "prepare_dataset", "pretreat_frame",
           "pretreat_sequence", "read_frame", "render_summary"]

#: File name endings (lower-cased) that are read as frames.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
#: How many sequences one worker task handles at most.
MAX_CHUNK = 16
#: With the default ``workers=None``, each worker process gets at least this many frames.
MIN_FRAMES_PER_WORKER = 1000

LOCK_NAME = ".gait-prepare.lock"
_NOT_IMAGE = "not an image file"


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class FileSkip:
    """A file or folder that was not used, and why."""

    path: str
    """The file or folder."""
    reason: str
    """Why it was skipped."""

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class SequenceJob:
    """One input folder and where its pkl goes."""

    key: str
    source: str
    frames: tuple[str, ...]
    others: tuple[str, ...]
    target: str
    as_is: bool = False
    """Keep frames as they are read (a layout whose frames are already normalised: GREW)."""


@dataclass(frozen=True)
class SequenceResult:
    """What one job did (travels back from a worker)."""

    key: str
    kept: int
    dropped: int
    unreadable: list[FileSkip]
    removed: str | None


@dataclass
class PrepareSummary:
    """What one ``gait prepare`` run did (the closing table and ``--json``)."""

    input: str
    """IN, absolute."""
    output: str
    """OUT, absolute."""
    img_size: int
    """``--img-size``."""
    sequences_found: int
    """Sequence folders found in IN."""
    settings: Manifest
    """What the manifest in OUT records."""
    workers: int = 1
    """Worker processes used (1: in this process)."""
    sequences_written: int = 0
    """Pkls written by this run."""
    frames_kept: int = 0
    """Frames in the pkls written."""
    frames_dropped: int = 0
    """Frames dropped (empty or without a centre)."""
    skipped_existing: int = 0
    """Sequences whose pkl was already in OUT and was kept (no ``--overwrite``)."""
    unreadable: list[FileSkip] = field(default_factory=list)
    """Files that could not be used."""
    empty_sequences: list[str] = field(default_factory=list)
    """Sequences that kept no frame: no pkl written."""
    short_sequences: list[tuple[str, int]] = field(default_factory=list)
    """``(sequence, frames)`` of pkls written with fewer than SHORT_SEQUENCE_FRAMES frames."""
    stale_removed: list[str] = field(default_factory=list)
    """Pkls removed from OUT by ``--overwrite`` because IN does not produce them."""
    skipped_links: list[FileSkip] = field(default_factory=list)
    """Directory links in IN that were not followed."""
    layout: str = "default"
    """``--layout``: the raw layout IN was read as (docs/prepare-layouts.md)."""
    layout_root: str = ""
    """The folder the frames were read from (IN, or e.g. IN/2D_Silhouettes); IN for ``default``."""
    companions_ignored: int = 0
    """Companion files a layout ships beside its frames and that are not read (GREW's poses and GEIs)."""
    not_read: list[FileSkip] = field(default_factory=list)
    """Folders the layout leaves out on purpose (GREW's distractors, Gait3D's SMPLs, ...)."""
    seconds: float = 0.0
    """Wall-clock time."""

    def absorb(self, result: SequenceResult) -> None:
        self.frames_dropped += result.dropped
        self.unreadable.extend(result.unreadable)
        if result.removed is not None:
            self.stale_removed.append(result.removed)
        if result.kept == 0:
            self.empty_sequences.append(result.key)
            return
        self.sequences_written += 1
        self.frames_kept += result.kept
        if result.kept < SHORT_SEQUENCE_FRAMES:
            self.short_sequences.append((result.key, result.kept))

    def finish(self, started: float) -> PrepareSummary:
        self.unreadable.sort(key=lambda item: item.path)
        self.empty_sequences.sort()
        self.short_sequences.sort()
        self.stale_removed.sort()
        self.seconds = round(time.perf_counter() - started, 3)
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "input": self.input, "output": self.output, "img_size": self.img_size, "workers": self.workers,
            "sequences_found": self.sequences_found, "sequences_written": self.sequences_written,
            "frames_kept": self.frames_kept, "frames_dropped": self.frames_dropped,
            "skipped_existing": self.skipped_existing, "unreadable": [u.to_json() for u in self.unreadable],
            "empty_sequences": self.empty_sequences,
            "short_sequences": [{"sequence": k, "frames": n} for k, n in self.short_sequences],
            "stale_removed": self.stale_removed, "skipped_links": [s.to_json() for s in self.skipped_links],
            "layout": self.layout, "layout_root": self.layout_root,
            "companions_ignored": self.companions_ignored, "not_read": [n.to_json() for n in self.not_read],
            "settings": self.settings.to_json(), "seconds": self.seconds,
        }


# --------------------------------------------------------------------------- discovery
def _validate_paths(input_dir: Path, output_dir: Path, layout: Layout) -> tuple[Path, Path]:
    inp = Path(os.path.abspath(os.path.expanduser(input_dir)))
    out = Path(os.path.abspath(os.path.expanduser(output_dir)))
    holding = "id/type-seq/view/*.png" if layout.name == "default" else layout.expected
    if not inp.exists():
        raise DataError(f"input folder {inp} does not exist; pass the folder holding {holding}")
    if not inp.is_dir():
        raise DataError(f"input {inp} is not a folder; pass the folder holding {holding}")
    real_in, real_out = Path(os.path.realpath(inp)), Path(os.path.realpath(out))
    if real_out == real_in or real_in in real_out.parents:
        raise DataError(
            f"output folder {out} is inside the input folder {inp}; choose an OUT outside IN "
            "so prepared files are never mixed with the raw frames"
        )
    if out.exists() and not out.is_dir():
        raise DataError(f"output {out} exists and is not a folder; choose another OUT")
    return inp, out


def _discover(inp: Path, follow_links: bool) -> TreeScan:
    if suggest_layout(str(inp)) == "oumvlp":  # its folders would become ids like Silhouette_000-00
        raise DataError(f"{inp} holds OU-MVLP's Silhouette_VIEW-SEQ folders, which are not id/type-seq/view "
                        f"folders: pass {option('layout', 'oumvlp')} (docs/prepare-layouts.md)")
    found = walk_sequences(inp, IMAGE_EXTENSIONS, follow_links=follow_links, key_prefix=inp.parts[1:])
    if not found.sequences:
        pkls = found.suffix_counts.get(".pkl", 0)
        hint = f" It holds {pkls} .pkl files: is it already prepared?" if pkls else ""
        shallow = ""
        if found.shallow:
            shallow = f" {len(found.shallow)} image(s) sit outside id/type-seq/view folders."
        suggested = suggest_layout(str(inp))
        if suggested is not None:
            hint += f" It looks like a {suggested} download: pass {option('layout', suggested)}."
        raise DataError(
            f"no folders with image files (.png/.jpg/.jpeg/.bmp) under {inp}; expected "
            f"IN/id/type-seq/view/*.png.{shallow}{hint}"
        )
    return found


def _walk_problems(inp: Path, found: TreeScan, summary: PrepareSummary) -> None:
    """Shallow images, unlisted folders, skipped links and empty view folders into ``summary``."""
    folders = sorted({str(inp / rel.rsplit("/", 1)[0]) if "/" in rel else str(inp) for rel in found.shallow})
    summary.unreadable.extend(FileSkip(f, "folder holds images but its path has fewer than 3 parts "
                                          "(id/type-seq/view)") for f in folders)
    summary.unreadable.extend(FileSkip(path, reason) for path, reason in found.unlisted)
    summary.skipped_links.extend(FileSkip(path, reason) for path, reason in sorted(found.skipped_links))
    depths: dict[int, int] = {}
    for seq in found.sequences:
        depths[seq.depth] = depths.get(seq.depth, 0) + 1
    sequence_depth = max(depths.items(), key=lambda kv: (kv[1], -kv[0]))[0]
    keys = {seq.key_text for seq in found.sequences}
    for folder, depth, others in found.leaves:
        key = "/".join((inp.parts[1:] + Path(os.path.relpath(folder, inp)).parts)[-3:])
        if depth != sequence_depth or key in keys:
            continue
        summary.empty_sequences.append(key)
        summary.unreadable.extend(FileSkip(os.path.join(folder, name), _NOT_IMAGE) for name in others)


def _layout_problems(scan: LayoutScan, summary: PrepareSummary) -> None:
    """What a named layout did not use, into ``summary``."""
    summary.unreadable.extend(FileSkip(path, reason) for path, reason in scan.skipped)
    summary.skipped_links.extend(FileSkip(path, reason) for path, reason in scan.skipped_links)
    summary.empty_sequences.extend(scan.empty)
    summary.not_read.extend(FileSkip(path, reason) for path, reason in scan.not_read)
    summary.companions_ignored = scan.companions


def _check_as_is(sequences: list[SequenceFolder], img_size: int, layout: Layout) -> None:
    """A layout whose frames are kept as they are: the first readable frame must be img_size square."""
    for seq in sequences:
        for name in seq.files:
            path = os.path.join(seq.path, name)
            img, _ = read_frame(path)
            if img is None:
                continue
            if img.shape != (img_size, img_size):
                size = "x".join(str(n) for n in img.shape)
                fix = (f"pass {option('img_size', img.shape[0])}" if img.shape[0] == img.shape[1] else
                       "this is not the data set as distributed")
                raise DataError(f"{path} is {size}: the {layout.name} layout keeps frames as they are (as "
                                f"OpenGait does), so frames must be {img_size}x{img_size} "
                                f"({option('img_size', img_size)}); {fix}")
            return


def _pkl_of(key: str) -> str:
    """The pkl of sequence ``key`` (``id/type/view``), relative to OUT: ``id/type/view/view.pkl``."""
    return f"{key}/{key.rsplit('/', 1)[-1]}.pkl"


def _target(out: Path, key: str) -> str:
    return os.path.join(str(out), *_pkl_of(key).split("/"))


def _plan_target(target: str) -> bool:
    """Whether ``target`` exists; also deletes temp files a killed run left next to it."""
    folder, name = os.path.split(target)
    prefix = f".{name}."
    exists = False
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name == name:
                    exists = True
                elif entry.name.startswith(prefix) and entry.name.endswith(".tmp"):
                    try:
                        os.unlink(entry.path)
                    except OSError:
                        pass
    except (FileNotFoundError, NotADirectoryError):
        return False
    return exists


def _plan(sequences: list[SequenceFolder], out: Path, overwrite: bool, summary: PrepareSummary
          ) -> list[SequenceJob]:
    jobs: list[SequenceJob] = []
    as_is = summary.settings.frames == FRAMES_AS_IS
    for seq in sequences:
        target = _target(out, seq.key_text)
        if _plan_target(target) and not overwrite:
            summary.skipped_existing += 1
            continue
        jobs.append(SequenceJob(seq.key_text, seq.path, seq.files, seq.others, target, as_is))
    return jobs


# --------------------------------------------------------------------------- per-sequence work
def _as_is(img: np.ndarray, img_size: int) -> np.ndarray | str:
    """A frame kept as it is (GREW): the frame, or why it cannot be kept."""
    if img.shape != (img_size, img_size):
        size = "x".join(str(n) for n in img.shape)
        return f"frame is {size}, not {img_size}x{img_size} (this layout keeps frames as they are)"
    return img


def _process_sequence(job: SequenceJob, img_size: int, overwrite: bool) -> SequenceResult:
    unreadable = [FileSkip(os.path.join(job.source, name), _NOT_IMAGE) for name in job.others]
    kept: list[np.ndarray] = []
    dropped = 0
    for name in job.frames:
        path = os.path.join(job.source, name)
        img, reason = read_frame(path)
        if img is None:
            unreadable.append(FileSkip(path, reason or "unreadable"))
            continue
        if job.as_is:
            frame = _as_is(img, img_size)
            if isinstance(frame, str):
                unreadable.append(FileSkip(path, frame))
            else:
                kept.append(frame)
            continue
        try:
            result = pretreat_frame(img, img_size)
        except (cv2.error, ValueError, MemoryError) as exc:  # one bad frame must not end a long run
            unreadable.append(FileSkip(path, f"cannot process ({type(exc).__name__}: {exc})"))
            continue
        if result is None:
            dropped += 1
        else:
            kept.append(result)
    removed: str | None = None
    if kept:
        try:
            save_array(job.target, np.stack(kept))
        except OSError as exc:
            raise DataError(
                f"cannot write {job.target} ({exc.strerror or exc}); check free space and permissions"
            ) from None
    elif overwrite and os.path.exists(job.target):
        os.unlink(job.target)  # --overwrite: OUT holds exactly what IN gives, no stale pkl
        removed = _pkl_of(job.key)
    return SequenceResult(job.key, len(kept), dropped, unreadable, removed)


def _process_chunk(jobs: list[SequenceJob], img_size: int, overwrite: bool) -> list[SequenceResult]:
    return [_process_sequence(job, img_size, overwrite) for job in jobs]


def _worker_init() -> None:
    cv2.setNumThreads(1)  # the worker processes already use every core


def _chunks(jobs: list[SequenceJob], workers: int) -> list[list[SequenceJob]]:
    size = max(1, min(MAX_CHUNK, math.ceil(len(jobs) / (workers * 8))))
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


def _worker_count(jobs: list[SequenceJob], workers: int | None) -> int:
    if workers is None:
        # Starting a worker costs about as much as pretreating a few hundred frames: give
        # each at least MIN_FRAMES_PER_WORKER frames, so small trees run in-process.
        n_frames = sum(len(job.frames) for job in jobs)
        workers = max(1, min(os.cpu_count() or 1, n_frames // MIN_FRAMES_PER_WORKER))
    return max(1, min(workers, len(jobs)))


def _run(jobs: list[SequenceJob], summary: PrepareSummary, overwrite: bool, console: Console | None) -> None:
    """Process ``jobs`` in this process or on the pool, with a progress bar on a terminal."""
    show = console is not None and console.is_terminal
    with make_progress("prepare", console, disable=not show) as progress:
        task = progress.add_task("prepare", total=len(jobs))

        def absorb(results: list[SequenceResult]) -> None:
            for result in results:
                summary.absorb(result)
            progress.advance(task, len(results))

        if summary.workers <= 1:
            for job in jobs:
                absorb([_process_sequence(job, summary.img_size, overwrite)])
            return
        work = functools.partial(_process_chunk, img_size=summary.img_size, overwrite=overwrite)
        run_pool(work, _chunks(jobs, summary.workers), workers=summary.workers, on_result=absorb,
                 initializer=_worker_init, preload=["gaitcli.data.prepare"], what="gait prepare worker")


# --------------------------------------------------------------------------- the command
def _check_options(img_size: int, workers: int | None, layout: str) -> Layout:
    chosen = get_layout(layout)
    try:
        check_img_size(img_size)
    except (TypeError, ValueError) as exc:
        raise GaitError(f"{option('img_size')}: {exc}") from None
    if workers is not None and workers < 1:
        raise GaitError(f"{option('workers', workers)}: must be at least 1")
    return chosen


def _interrupted(summary: PrepareSummary, console: Console | None, exc: KeyboardInterrupt) -> None:
    if console is not None:
        console.print(
            f"[yellow]interrupted:[/] {summary.sequences_written} sequences written to {summary.output} "
            f"({summary.skipped_existing} were already there); every pkl on disk is complete. "
            "Run the same command again to finish the rest.",
            highlight=False,
            soft_wrap=True,
        )
    exc.summary = summary  # type: ignore[attr-defined]


def _write(sequences: list[SequenceFolder], out: Path, summary: PrepareSummary, overwrite: bool,
           workers: int | None, console: Console | None) -> None:
    """Under the lock: check OUT, clean it for --overwrite, process, record the manifest.

    The manifest lists every pkl gaitcli wrote into OUT. Before any pkl is written it claims
    every pkl this run may write; at the end it lists exactly what is there from gaitcli."""
    old = check_output(out, summary.settings, overwrite)
    listed = set(old.pkls) if old is not None else set()
    jobs = _plan(sequences, out, overwrite, summary)
    summary.workers = _worker_count(jobs, workers)
    planned = {_pkl_of(job.key) for job in jobs}
    claimed = tuple(sorted(listed | planned))
    write_manifest(out, replace(summary.settings, complete=not overwrite, pkls=claimed))
    if overwrite:
        produced = {_pkl_of(seq.key_text) for seq in sequences}
        summary.stale_removed.extend(remove_foreign_pkls(out, produced, listed))
    _run(jobs, summary, overwrite, console)
    written = planned - {_pkl_of(key) for key in summary.empty_sequences}
    final = (listed | written) - set(summary.stale_removed)
    write_manifest(out, replace(summary.settings, pkls=tuple(sorted(final))))


def prepare_dataset(
    input_dir: Path,
    output_dir: Path,
    *,
    img_size: int = 64,
    workers: int | None = None,
    overwrite: bool = False,
    follow_links: bool = False,
    layout: str = "default",
    console: Console | None = None,
) -> PrepareSummary:
    """Prepare every sequence folder under ``input_dir`` into ``output_dir`` (docs/prepare.md).

    ``layout``: ``default`` (``id/type/view/*.png``) or a data set's download layout, ``grew``,
    ``gait3d``, ``ccpg`` or ``oumvlp`` (docs/prepare-layouts.md).

    Raises :class:`DataError` for a missing or empty input, an output inside the input, two
    folders mapping to the same sequence, an input that does not fit ``layout``, or an OUT that
    holds another data set. On Ctrl-C it stops, prints what was written on ``console`` and
    re-raises ``KeyboardInterrupt`` (whose ``summary`` attribute holds the partial summary).
    """
    started = time.perf_counter()
    chosen = _check_options(img_size, workers, layout)
    inp, out = _validate_paths(Path(input_dir), Path(output_dir), chosen)
    found: TreeScan | None = None
    scan: LayoutScan | None = None
    if chosen.name == "default":
        found = _discover(inp, follow_links)
        sequences = found.sequences
    else:
        scan = scan_layout(chosen, str(inp), IMAGE_EXTENSIONS, follow_links=follow_links)
        sequences = scan.sequences
        if chosen.frames == FRAMES_AS_IS:
            _check_as_is(sequences, img_size, chosen)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create output folder {out} ({exc.strerror or exc})") from None
    settings = Manifest(source=os.path.realpath(inp), img_size=img_size, frame_size=[img_size, img_size],
                        follow_links=follow_links, layout=chosen.name, frames=chosen.frames)
    summary = PrepareSummary(str(inp), str(out), img_size, len(sequences), settings, layout=chosen.name,
                             layout_root=scan.root if scan is not None else str(inp))
    if found is not None:
        _walk_problems(inp, found, summary)
    if scan is not None:
        _layout_problems(scan, summary)
    with exclusive_lock(out / LOCK_NAME, what="'gait prepare'"):
        try:
            _write(sequences, out, summary, overwrite, workers, console)
        except KeyboardInterrupt as exc:
            _interrupted(summary.finish(started), console, exc)
            raise
    return summary.finish(started)


# --------------------------------------------------------------------------- report
def _summary_table(summary: PrepareSummary) -> Any:
    from rich.table import Table

    frames = summary.frames_kept + summary.frames_dropped
    table = Table(title="gait prepare", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    rows = [("output", summary.output)]
    if summary.layout != "default":
        kept = " (frames kept as they are)" if summary.settings.frames == FRAMES_AS_IS else ""
        rows += [("layout", f"{summary.layout}{kept}"), ("read from", summary.layout_root)]
    rows += [
        ("sequence folders found", str(summary.sequences_found)),
        ("sequences written", str(summary.sequences_written)),
        ("already there (skipped)", str(summary.skipped_existing)), ("frames kept", str(summary.frames_kept)),
        ("frames dropped (empty / no centre)", str(summary.frames_dropped)),
        ("unreadable files", str(len(summary.unreadable))),
        ("sequences with no frame kept", str(len(summary.empty_sequences))),
        (f"short sequences (< {SHORT_SEQUENCE_FRAMES} frames)", str(len(summary.short_sequences))),
    ]
    if summary.stale_removed:
        label = render(f"pkls removed ({option('overwrite')}: not from IN)")
        rows.append((label, str(len(summary.stale_removed))))
    if summary.skipped_links:
        rows.append(("directory links skipped", str(len(summary.skipped_links))))
    if summary.companions_ignored:
        rows.append(("companion files not read (poses, GEIs)", str(summary.companions_ignored)))
    rate = f" ({frames / summary.seconds:,.0f} frames/s)" if summary.seconds > 0 and frames else ""
    rows.append(("time", f"{summary.seconds:.1f} s{rate}"))
    for what, value in rows:
        table.add_row(what, value)
    return table


def _listing(console: Console, title: str, items: list[str], limit: int, level: str = "warning") -> None:
    if not items:
        return
    style = "yellow" if level == "warning" else "cyan"
    console.print(f"[{style}]{level}:[/] {title}:", highlight=False)
    for item in items[:limit]:
        console.print(f"  {item}", highlight=False, soft_wrap=True, markup=False)
    if len(items) > limit:
        more = render(f"  ... and {len(items) - limit} more (see {option('json_out')})")
        console.print(more, highlight=False)


def render_summary(summary: PrepareSummary, console: Console | None, *, limit: int = 10) -> None:
    """Print the closing table and the first ``limit`` problems of each kind on ``console``."""
    if console is None:
        return
    console.print(_summary_table(summary))
    _listing(console, f"{len(summary.unreadable)} file(s) skipped",
             [f"{item.path}: {item.reason}" for item in summary.unreadable], limit)
    _listing(console, f"{len(summary.skipped_links)} directory link(s) skipped",
             [f"{item.path}: {item.reason}" for item in summary.skipped_links], limit)
    _listing(console, f"{len(summary.empty_sequences)} sequence(s) kept no frame, no pkl written",
             list(summary.empty_sequences), limit)
    _listing(console, f"{len(summary.short_sequences)} sequence(s) have fewer than {SHORT_SEQUENCE_FRAMES} "
             "frames (written)", [f"{key}: {n} frame(s)" for key, n in summary.short_sequences], limit)
    _listing(console, f"{len(summary.not_read)} folder(s) not read ({summary.layout} layout)",
             [f"{item.path}: {item.reason}" for item in summary.not_read], limit, level="note")
    _listing(console, render(f"{len(summary.stale_removed)} pkl(s) removed from OUT ({option('overwrite')}; "
             "IN does not produce them)"), list(summary.stale_removed), limit, level="note")
