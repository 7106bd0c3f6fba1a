"""``gait synth``: a synthetic, CASIA-B-shaped silhouette data set.

Why synthetic data: the real CASIA-B needs a licence and a download, yet every part of the
pipeline (prepare, inspect, train, evaluate) should be runnable and testable on a laptop. The
generator writes exactly the raw layout of CASIA-B (docs/synth.md)::

    OUT/{id}/{type}-{seq}/{view}/{id}-{type}-{seq}-{view}-{frame:03d}.png

with 320x240 8-bit greyscale frames (0 background, 255 person), empty lead-in/lead-out frames
and background-subtraction-like noise, so ``gait prepare`` treats it like the real thing.

The people are articulated 3-D walkers (:mod:`gaitcli.synth.body`) seen through a pinhole
camera and rasterised with segmentation noise (:mod:`gaitcli.synth.render`). Identity lives
in body proportions and gait kinematics; bags and coats change the outline; views change the
projection -- so recognition is learnable, and the usual covariates make it harder.

Reproducibility: every random choice comes from a numpy ``SeedSequence`` keyed by *what* is
drawn, never by the order work happens in -- ``(seed, id)`` for a person, ``(seed, id, type)``
for one walk (shared by all its views, as the 11 CASIA-B cameras film one walk), and
``(seed, id, type, view)`` for one sequence's length, camera jitter and noise. The same seed
therefore gives byte-identical files for any number of worker processes (on one platform and
library version: OpenCV's PNG encoder and numpy's maths are deterministic, but not guaranteed
bit-equal across CPUs and versions).

Robustness: each sequence is rendered into a hidden temporary folder beside its target and
renamed into place when complete, so an interrupted run never leaves half a sequence, and a
re-run skips the sequences that are already there.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from gaitcli.errors import GaitError, option
from gaitcli.runtime.pool import run_pool
from gaitcli.synth.body import draw_identity, draw_walk
from gaitcli.synth.render import walker_frames

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

CASIA_B_VIEWS: list[str] = [f"{angle:03d}" for angle in range(0, 181, 18)]
"""The 11 CASIA-B view angles, ``000`` (walking toward the camera) to ``180`` (walking away)."""

CASIA_B_TYPES: list[str] = [f"nm-{i:02d}" for i in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"]
"""The 10 CASIA-B walks per person: 6 normal, 2 carrying a bag, 2 wearing a coat."""

MIN_FRAMES = 8
"""Smallest accepted mean sequence length: shorter walks show less than a third of a gait cycle."""

_TYPE_RE = re.compile(r"^(nm|bg|cl)-(\d{2})$")
_CONDITIONS = ("nm", "bg", "cl")

# Domain tags keep the three kinds of seed sequences apart even when their numbers coincide.
_TAG_IDENTITY = 0x1D
_TAG_WALK = 0x3A
_TAG_SEQUENCE = 0x5E


# --------------------------------------------------------------------------- validation
def _check_views(views: list[str] | None) -> list[str]:
    """The requested views, in the order given (duplicates dropped); CASIA-B's 11 by default."""
    if views is None:
        return list(CASIA_B_VIEWS)
    if not views:
        raise GaitError(
            f"no views given; use e.g. {option('views', '000,090')} (CASIA-B views: "
            + ",".join(CASIA_B_VIEWS) + ")"
        )
    for view in views:
        if view not in CASIA_B_VIEWS:
            raise GaitError(f"unknown view {view!r}; CASIA-B views are " + ",".join(CASIA_B_VIEWS))
    return list(dict.fromkeys(views))


def _check_types(types: list[str] | None) -> list[str]:
    """The requested walk types (``nm-NN``, ``bg-NN``, ``cl-NN``); CASIA-B's 10 by default."""
    if types is None:
        return list(CASIA_B_TYPES)
    if not types:
        raise GaitError(f"no types given; use e.g. {option('types', 'nm-01,bg-01,cl-01')}")
    for type_ in types:
        if not _TYPE_RE.match(type_):
            raise GaitError(
                f"unknown type {type_!r}; expected nm-NN, bg-NN or cl-NN "
                "(CASIA-B: " + ",".join(CASIA_B_TYPES) + ")"
            )
    return list(dict.fromkeys(types))


def _check_numbers(subjects: int, frames: int, seed: int, workers: int | None) -> None:
    """Reject counts that cannot produce a data set, with the option name in the message."""
    if subjects < 1:
        raise GaitError(f"{option('subjects', subjects)}: must be at least 1")
    if frames < MIN_FRAMES:
        raise GaitError(f"{option('frames', frames)}: must be at least {MIN_FRAMES}")
    if seed < 0:
        raise GaitError(f"{option('seed', seed)}: must be 0 or positive")
    if workers is not None and workers < 1:
        raise GaitError(f"{option('workers', workers)}: must be at least 1")


# --------------------------------------------------------------------------- seeding
def subject_id(index: int) -> str:
    """CASIA-B style id: ``001``, ``002``, ... (wider only beyond 999)."""
    return f"{index:03d}"


def _type_key(type_: str) -> list[int]:
    """Stable integers for a type string, for seeding (never Python's salted ``hash``)."""
    m = _TYPE_RE.match(type_)
    if m:
        return [_CONDITIONS.index(m.group(1)), int(m.group(2))]
    return [len(_CONDITIONS), zlib.crc32(type_.encode())]


def identity_rng(seed: int, subject: int) -> np.random.Generator:
    """The generator of one person's body and gait style: depends on ``(seed, id)`` only."""
    return np.random.default_rng(np.random.SeedSequence([seed, _TAG_IDENTITY, subject]))


def walk_rng(seed: int, subject: int, type_: str) -> np.random.Generator:
    """The generator of one walk (speed jitter, bag, coat), shared by every view of it."""
    return np.random.default_rng(np.random.SeedSequence([seed, _TAG_WALK, subject, *_type_key(type_)]))


def sequence_rng(seed: int, subject: int, type_: str, view: str) -> np.random.Generator:
    """The generator of one sequence: its length, camera jitter and every noise pixel."""
    key = [seed, _TAG_SEQUENCE, subject, *_type_key(type_), int(view)]
    return np.random.default_rng(np.random.SeedSequence(key))


# --------------------------------------------------------------------------- one sequence
def render_sequence(seed: int, subject: int, type_: str, view: str, frames: int) -> list[np.ndarray]:
    """All frames of ``{id}/{type_}/{view}`` as uint8 ``[240, 320]`` arrays (0 or 255).

    Pure: the same arguments always give the same pixels, whichever process calls it.
    """
    ident = draw_identity(identity_rng(seed, subject))
    walk = draw_walk(walk_rng(seed, subject, type_), ident, type_[:2])
    return walker_frames(ident, walk, float(int(view)), frames, sequence_rng(seed, subject, type_, view))


def encode_png(img: np.ndarray) -> bytes:
    """PNG bytes of a greyscale frame with OpenCV's default (deterministic) settings."""
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - OpenCV only fails on invalid input
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def frame_name(sid: str, type_: str, view: str, index: int) -> str:
    """CASIA-B file name of frame ``index`` (1-based): ``001-nm-01-090-001.png``."""
    return f"{sid}-{type_}-{view}-{index:03d}.png"


@dataclass(frozen=True)
class SequenceTask:
    """Everything a worker process needs to write one sequence (picklable, small)."""

    out: Path
    seed: int
    subject: int
    type: str
    view: str
    frames: int

    @property
    def target(self) -> Path:
        return self.out / subject_id(self.subject) / self.type / self.view


@functools.cache
def _dir_mode() -> int:
    """The mode a plain ``mkdir`` would give (``mkdtemp`` makes 0700 folders, too private for a data set)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def _remove_leftovers(parent: Path, view: str) -> None:
    """Delete temporary folders an interrupted earlier run left for this sequence."""
    for pattern in (f".{view}.tmp-*", f".{view}.old-*"):
        for stale in parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def _publish(tmp: Path, target: Path) -> None:
    """Move a finished sequence into place; an existing one (``--overwrite``) is swapped out first."""
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)


def write_sequence(task: SequenceTask) -> int:
    """Render one sequence and write it atomically; returns the number of frames written.

    Runs in a worker process. Frames go to ``.{view}.tmp-XXXX`` next to the target, which is
    renamed to ``{view}`` only when every frame is on disk.
    """
    target = task.target
    sid = subject_id(task.subject)
    images = render_sequence(task.seed, task.subject, task.type, task.view, task.frames)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(target.parent, task.view)
        tmp = Path(tempfile.mkdtemp(prefix=f".{task.view}.tmp-", dir=target.parent))
    except OSError as exc:
        raise GaitError(f"cannot write to {target.parent}: {exc.strerror or exc}") from None
    try:
        os.chmod(tmp, _dir_mode())
        for index, img in enumerate(images, start=1):
            (tmp / frame_name(sid, task.type, task.view, index)).write_bytes(encode_png(img))
        _publish(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise GaitError(f"cannot write {target}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(images)


# --------------------------------------------------------------------------- many sequences
def _progress(console: Console | None) -> Progress | None:
    """A rich progress bar with sequences/s and ETA, or None when there is no console."""
    if console is None:
        return None
    from rich.progress import TextColumn

    from gaitcli.progress import make_progress

    return make_progress("synth", console, TextColumn("{task.fields[frames]} frames"))


def _worker_init() -> None:
    """One OpenCV thread per worker: the processes already use every core."""
    cv2.setNumThreads(1)


Tick = Callable[[int], None]
"""Called once per finished sequence with its frame count (drives the progress bar)."""


def _run_serial(tasks: list[SequenceTask], tick: Tick) -> int:
    """Write the sequences one after another in this process."""
    frames = 0
    for task in tasks:
        n = write_sequence(task)
        frames += n
        tick(n)
    return frames


def _run_parallel(tasks: list[SequenceTask], workers: int, tick: Tick) -> int:
    """Fan the sequences out over the worker pool; the first failure stops the rest.

    A script that calls :func:`synthesize` with several workers must guard its entry point
    with ``if __name__ == "__main__":`` (the workers are fresh processes, see
    :mod:`gaitcli.runtime.pool`).
    """
    frames = [0]

    def absorb(n: int) -> None:
        frames[0] += n
        tick(n)

    run_pool(write_sequence, tasks, workers=workers, on_result=absorb, initializer=_worker_init,
             preload=["gaitcli.synth.generate"], what="gait synth worker")
    return frames[0]


@dataclass(frozen=True)
class SynthSummary:
    """What one :func:`synthesize` run did."""

    sequences_written: int
    """Sequences rendered and written by this run."""
    frames_written: int
    """PNG frames written by this run."""
    skipped_existing: int
    """Complete sequences already in OUT, kept as they were (no ``--overwrite``)."""
    seconds: float
    """Wall-clock time of the run."""

    def to_json(self) -> dict[str, int | float]:
        return asdict(self)


def plan_tasks(
    out: Path, subjects: int, types: list[str], views: list[str], frames: int, seed: int
) -> list[SequenceTask]:
    """Every sequence of the data set, ordered by id, type, view."""
    return [
        SequenceTask(out=out, seed=seed, subject=i, type=t, view=v, frames=frames)
        for i in range(1, subjects + 1)
        for t in types
        for v in views
    ]


def synthesize(
    out: Path,
    *,
    subjects: int = 20,
    views: list[str] | None = None,
    types: list[str] | None = None,
    frames: int = 60,
    seed: int = 0,
    workers: int | None = None,
    overwrite: bool = False,
    console: Console | None = None,
) -> SynthSummary:
    """Write a synthetic CASIA-B-shaped data set under ``out`` and summarise what was done.

    ``frames`` is the mean sequence length (each sequence draws its own, +-25 %, including the
    empty lead-in/out frames). Complete sequences already in ``out`` are kept and counted in
    ``skipped_existing`` unless ``overwrite``. ``workers`` defaults to ``os.cpu_count()``.

    Returns a :class:`SynthSummary`.
    Raises :class:`GaitError` for an unknown view or type and for impossible numbers.
    """
    views = _check_views(views)
    types = _check_types(types)
    _check_numbers(subjects, frames, seed, workers)
    out = _make_out(Path(out))
    started = time.perf_counter()
    # Absolute, because worker processes need not share this process's working directory.
    tasks = plan_tasks(out.absolute(), subjects, types, views, frames, seed)
    todo = tasks if overwrite else [t for t in tasks if not t.target.is_dir()]
    workers = min(workers or os.cpu_count() or 1, max(1, len(todo)))
    written = _with_progress(todo, workers, console)
    return SynthSummary(
        sequences_written=len(todo),
        frames_written=written,
        skipped_existing=len(tasks) - len(todo),
        seconds=round(time.perf_counter() - started, 3),
    )


def _make_out(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise GaitError(f"{out} exists and is not a folder; choose another OUT")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GaitError(f"cannot create {out}: {exc.strerror or exc}") from None
    return out


def _with_progress(todo: list[SequenceTask], workers: int, console: Console | None) -> int:
    """Write ``todo``, drawing the bar on ``console`` (none without a console or work)."""
    progress = _progress(console) if todo else None
    if progress is None:
        return _dispatch(todo, workers, lambda n: None)
    with progress:
        bar = progress.add_task("synth", total=len(todo), frames=0)
        count = [0]

        def tick(n: int) -> None:
            count[0] += n
            progress.update(bar, advance=1, frames=count[0])

        return _dispatch(todo, workers, tick)


def _dispatch(tasks: list[SequenceTask], workers: int, tick: Tick) -> int:
    """Serial in this process for one worker (no start-up cost), otherwise a process pool."""
    if not tasks:
        return 0
    if workers <= 1:
        return _run_serial(tasks, tick)
    return _run_parallel(tasks, workers, tick)
