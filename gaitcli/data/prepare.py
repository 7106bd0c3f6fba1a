"""``gait prepare``: turn folders of silhouette frames into one ``.pkl`` per sequence.

This is the OpenGait pretreatment (SPEC section 2), pixel-identical to the reference because it
uses the same OpenCV calls, with these differences:

* an unreadable frame (zero bytes, truncated, not an image) is listed and skipped instead of
  crashing the run; a frame whose resized width would be 0 is dropped (the reference crashes);
* every ``.pkl`` is written atomically (temp file + rename), so a killed run never leaves a
  truncated file, and a re-run skips what is already there and finishes the rest;
* a lock file stops two runs from writing to the same output folder at once, and a small
  ``.gait-prepare.json`` in OUT records ``img_size`` so a re-run with another size cannot
  silently mix frame sizes.

The pure pieces, :func:`pretreat_frame` and :func:`pretreat_sequence`, take numpy arrays and
touch no files, so other modules and tests can use them directly.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gaitcli.errors import DataError, GaitError

#: File name endings (lower-cased) that are read as frames.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
#: A frame whose pixel values sum to this or less is dropped (about 40 white pixels).
MIN_PIXEL_SUM = 10000
#: Sequences with fewer kept frames than this are written but reported as short.
SHORT_SEQUENCE_FRAMES = 5
#: How many sequences one worker task handles at most.
MAX_CHUNK = 16
#: With the default ``workers=None``, each worker process gets at least this many frames.
MIN_FRAMES_PER_WORKER = 1000

MANIFEST_NAME = ".gait-prepare.json"
LOCK_NAME = ".gait-prepare.lock"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_INT32_SAFE_WIDTH = (2**31 - 1) // 255


# --------------------------------------------------------------------------- the algorithm
def _check_img_size(img_size: int) -> None:
    if not isinstance(img_size, (int, np.integer)) or isinstance(img_size, bool):
        raise TypeError(f"img_size must be an int, got {type(img_size).__name__}")
    if img_size < 2 or img_size % 2:
        raise ValueError(f"img_size must be an even number >= 2, got {img_size}")


def pretreat_frame(img: np.ndarray, img_size: int = 64) -> np.ndarray | None:
    """Crop, resize and centre one greyscale frame; ``None`` when the frame is dropped.

    ``img`` is a 2-D ``uint8`` array (a silhouette, 0 = background). The steps are SPEC
    section 2, in order: drop if the pixel sum is <= 10000; keep the rows from the first to the
    last non-zero row; resize with OpenCV bicubic to height ``img_size`` and width
    ``int(img_size * (w / h))``; take as horizontal centre the first column whose cumulative
    column sum exceeds half the total (drop if there is none or it is column 0); cut the
    ``img_size`` columns ``[x - img_size//2, x + img_size//2)``, with zeros where the cut runs
    past an edge. Returns a C-contiguous ``uint8`` array ``[img_size, img_size]``.

    Also dropped (the reference would crash on these): a frame so narrow that the resized
    width would be 0.
    """
    if type(img_size) is not int or img_size < 2 or img_size % 2:
        _check_img_size(img_size)
        img_size = int(img_size)
    if not isinstance(img, np.ndarray) or img.ndim != 2:
        raise ValueError(f"expected a 2-D greyscale frame, got shape {getattr(img, 'shape', None)}")
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 frame, got {img.dtype}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        return None
    img = np.ascontiguousarray(img)  # no copy for frames straight from a decoder

    # Step 2: the pixel sum. Row sums fit int32 for any width below 8 million pixels; the
    # total is accumulated in int64 so nothing can overflow.
    if img.shape[1] < _INT32_SAFE_WIDTH:
        row_sums = cv2.reduce(img, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    else:  # pragma: no cover - absurdly wide frames
        row_sums = img.sum(axis=1, dtype=np.int64)
    if int(row_sums.sum(dtype=np.int64)) <= MIN_PIXEL_SUM:
        return None

    # Step 3: rows between the first and the last row holding any non-zero pixel.
    nonzero_rows = np.flatnonzero(row_sums)
    top, bottom = int(nonzero_rows[0]), int(nonzero_rows[-1])
    cropped = img[top : bottom + 1]
    height, width = cropped.shape

    # Step 4: ratio first, then truncate, exactly like the reference.
    new_width = int(img_size * (width / height))
    if new_width < 1:
        return None
    resized = cv2.resize(cropped, (new_width, img_size), interpolation=cv2.INTER_CUBIC)

    # Step 5: first column where the cumulative sum exceeds half the total. Comparing
    # 2 * cumsum > total in integers is the same test as cumsum > total / 2.
    col_sums = cv2.reduce(resized, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    cumulative = np.cumsum(col_sums, dtype=np.int64)
    total = int(cumulative[-1])
    if total <= 0:
        return None
    centre = int(np.argmax(2 * cumulative > total))
    if centre == 0:
        return None

    # Step 6: cut [centre - half, centre + half); zero-padding both sides by `half` and cutting
    # the shifted window gives exactly this zero-filled copy of the overlapping columns.
    half = img_size // 2
    left, right = centre - half, centre + half
    if left >= 0 and right <= new_width:
        return np.ascontiguousarray(resized[:, left:right])
    out = np.zeros((img_size, 2 * half), dtype=np.uint8)
    src_left, src_right = max(left, 0), min(right, new_width)
    out[:, src_left - left : src_right - left] = resized[:, src_left:src_right]
    return out


def pretreat_sequence(frames: Sequence[np.ndarray], img_size: int = 64) -> tuple[np.ndarray, int]:
    """Pretreat every frame and stack the kept ones.

    Returns ``(array, dropped)``: ``array`` is ``uint8`` ``[T, img_size, img_size]`` (``T`` may
    be 0) and ``dropped`` is how many frames :func:`pretreat_frame` rejected.
    """
    _check_img_size(img_size)
    kept: list[np.ndarray] = []
    dropped = 0
    for frame in frames:
        result = pretreat_frame(frame, img_size)
        if result is None:
            dropped += 1
        else:
            kept.append(result)
    if not kept:
        return np.zeros((0, img_size, img_size), dtype=np.uint8), dropped
    return np.stack(kept), dropped


def read_frame(path: str | os.PathLike) -> tuple[np.ndarray | None, str | None]:
    """Read an image file as 8-bit greyscale: ``(array, None)`` or ``(None, reason)``.

    Decoding is OpenCV's ``IMREAD_GRAYSCALE``, as in the reference; the bytes are read by
    Python so any path works. Never raises for a bad file.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return None, f"cannot read ({exc.strerror or exc})"
    if not data:
        return None, "empty file (0 bytes)"
    # A PNG without its end chunk is truncated; OpenCV would refuse it too, but only after
    # libpng prints a message on stderr for every such file.
    if data.startswith(_PNG_SIGNATURE) and data.rfind(b"IEND") < 0:
        return None, "truncated PNG (no IEND chunk)"
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    except cv2.error as exc:  # pragma: no cover - OpenCV only raises on empty buffers
        return None, f"cannot decode ({str(exc).strip().splitlines()[-1]})"
    if img is None or img.size == 0:
        return None, "cannot decode as an image (corrupt, truncated or not an image)"
    return img, None


# --------------------------------------------------------------------------- discovery
@dataclass
class SequenceJob:
    """One input folder and where its pkl goes."""

    key: str
    source: str
    frames: tuple[str, ...]
    others: tuple[str, ...]
    target: str


@dataclass
class _Discovery:
    sequences: dict[str, tuple[str, list[str], list[str]]] = field(default_factory=dict)
    # folders without images but at the depth where sequences live: (abs path, depth, others)
    leaves: list[tuple[str, int, list[str]]] = field(default_factory=list)
    depths: dict[int, int] = field(default_factory=dict)
    problems: list[dict[str, str]] = field(default_factory=list)
    pkl_files: int = 0


def _sequence_key(folder: str) -> str | None:
    parts = Path(folder).parts
    parts = parts[1:] if parts and parts[0] == Path(folder).anchor else parts
    if len(parts) < 3:
        return None
    return "/".join(parts[-3:])


def _walk(root: str) -> _Discovery:
    """Scan ``root`` once with ``os.scandir``; dotfiles and dot-folders are ignored."""
    found = _Discovery()
    seen: set[tuple[int, int]] = set()
    try:
        st = os.stat(root)
        seen.add((st.st_dev, st.st_ino))
    except OSError:
        pass
    stack: list[tuple[str, int]] = [(root, 0)]
    by_key: dict[str, list[str]] = {}
    while stack:
        folder, depth = stack.pop()
        images: list[str] = []
        others: list[str] = []
        subdirs: list[str] = []
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith("."):
                        continue
                    try:
                        is_dir = entry.is_dir()
                    except OSError:
                        is_dir = False
                    if is_dir:
                        if entry.is_symlink():
                            try:
                                st = entry.stat()
                            except OSError:
                                continue
                            ident = (st.st_dev, st.st_ino)
                            if ident in seen:  # a link back into the tree: do not loop
                                continue
                            seen.add(ident)
                        subdirs.append(entry.path)
                        continue
                    ext = os.path.splitext(name)[1].lower()
                    if ext in IMAGE_EXTENSIONS:
                        images.append(name)
                    else:
                        if ext == ".pkl":
                            found.pkl_files += 1
                        others.append(name)
        except OSError as exc:
            found.problems.append({"path": folder, "reason": f"cannot list folder ({exc.strerror or exc})"})
            continue
        if images:
            key = _sequence_key(folder)
            if key is None:
                found.problems.append({
                    "path": folder,
                    "reason": "folder holds images but its path has fewer than 3 parts (id/type-seq/view)",
                })
            else:
                by_key.setdefault(key, []).append(folder)
                images.sort()
                others.sort()
                found.sequences[key] = (folder, images, others)
                found.depths[depth] = found.depths.get(depth, 0) + 1
        elif not subdirs and depth > 0:
            found.leaves.append((folder, depth, sorted(others)))
        stack.extend((sub, depth + 1) for sub in sorted(subdirs, reverse=True))
    clashes = {k: v for k, v in by_key.items() if len(v) > 1}
    if clashes:
        key, folders = sorted(clashes.items())[0]
        more = f" (and {len(clashes) - 1} more keys)" if len(clashes) > 1 else ""
        raise DataError(
            f"{folders[0]} and {folders[1]} both map to sequence {key}{more}; the output "
            f"{key}/{key.rsplit('/', 1)[-1]}.pkl can hold only one. Prepare each root into its own OUT"
        )
    return found


def _validate_paths(input_dir: Path, output_dir: Path) -> tuple[Path, Path]:
    inp = Path(os.path.abspath(os.path.expanduser(input_dir)))
    out = Path(os.path.abspath(os.path.expanduser(output_dir)))
    if not inp.exists():
        raise DataError(f"input folder {inp} does not exist; pass the folder holding id/type-seq/view/*.png")
    if not inp.is_dir():
        raise DataError(f"input {inp} is not a folder; pass the folder holding id/type-seq/view/*.png")
    real_in, real_out = Path(os.path.realpath(inp)), Path(os.path.realpath(out))
    if real_out == real_in or real_in in real_out.parents:
        raise DataError(
            f"output folder {out} is inside the input folder {inp}; choose an OUT outside IN "
            "so prepared files are never mixed with the raw frames"
        )
    if out.exists() and not out.is_dir():
        raise DataError(f"output {out} exists and is not a folder; choose another OUT")
    return inp, out


# --------------------------------------------------------------------------- output folder
@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on OUT so two runs never write (or clean up) the same files."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, carry on
        yield
        return
    path = out / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DataError(f"cannot create {path} ({exc.strerror or exc}); check that OUT is writable") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DataError(
                f"another 'gait prepare' is writing to {out}; wait for it to finish or choose another OUT"
            ) from None
        yield
    finally:
        os.close(fd)


def _check_manifest(out: Path, img_size: int, overwrite: bool) -> None:
    from gaitcli.fileio import atomic_write_bytes

    path = out / MANIFEST_NAME
    if path.exists() and not overwrite:
        try:
            previous = json.loads(path.read_text()).get("img_size")
        except (OSError, ValueError, AttributeError):
            previous = None
        if previous is not None and previous != img_size:
            raise DataError(
                f"{out} was prepared with --img-size {previous}, not {img_size}; use the same size, "
                "another OUT, or --overwrite to rewrite every sequence"
            )
    payload = {"tool": "gait prepare", "img_size": img_size}
    atomic_write_bytes(path, (json.dumps(payload) + "\n").encode())


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


# --------------------------------------------------------------------------- per-sequence work
def _process_sequence(job: SequenceJob, img_size: int, overwrite: bool) -> dict[str, Any]:
    from gaitcli.data.pickle_io import save_array

    unreadable = [{"path": os.path.join(job.source, name), "reason": "not an image file"} for name in job.others]
    kept: list[np.ndarray] = []
    dropped = 0
    for name in job.frames:
        path = os.path.join(job.source, name)
        img, reason = read_frame(path)
        if img is None:
            unreadable.append({"path": path, "reason": reason or "unreadable"})
            continue
        try:
            result = pretreat_frame(img, img_size)
        except Exception as exc:  # a data problem in one frame must not end a long run
            unreadable.append({"path": path, "reason": f"cannot process ({type(exc).__name__}: {exc})"})
            continue
        if result is None:
            dropped += 1
        else:
            kept.append(result)
    removed_stale = False
    if kept:
        try:
            save_array(job.target, np.stack(kept))
        except OSError as exc:
            raise DataError(
                f"cannot write {job.target} ({exc.strerror or exc}); check free space and permissions"
            ) from None
    elif overwrite and os.path.exists(job.target):
        # --overwrite means "make OUT what a clean run would make": no stale pkl.
        os.unlink(job.target)
        removed_stale = True
    return {
        "key": job.key,
        "kept": len(kept),
        "dropped": dropped,
        "unreadable": unreadable,
        "removed_stale": removed_stale,
    }


def _process_chunk(jobs: list[SequenceJob], img_size: int, overwrite: bool) -> list[dict[str, Any]]:
    return [_process_sequence(job, img_size, overwrite) for job in jobs]


def _worker_init() -> None:
    # Ctrl-C goes to the whole process group; only the parent decides what to do with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)
    # If the parent is SIGKILLed, an idle worker would wait for work forever: watch the
    # parent and leave with it (a pkl being written then is a temp file, cleaned next run).
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: Any) -> None:
    parent.join()
    os._exit(1)


def _mp_context() -> multiprocessing.context.BaseContext:
    # forkserver children start from a clean process: no inherited threads (rich's refresh
    # thread, OpenCV or torch pools) that could deadlock after fork().
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["gaitcli.data.prepare"])
        return ctx
    return multiprocessing.get_context("spawn")


def _chunks(jobs: list[SequenceJob], workers: int) -> list[list[SequenceJob]]:
    size = max(1, min(MAX_CHUNK, math.ceil(len(jobs) / (workers * 8))))
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


# --------------------------------------------------------------------------- the command
def _make_progress(console: Any, total: int) -> Any:
    from gaitcli.progress import sequence_progress

    return sequence_progress("prepare", console, disable=console is None or not console.is_terminal)


def prepare_dataset(
    input_dir: Path,
    output_dir: Path,
    *,
    img_size: int = 64,
    workers: int | None = None,
    overwrite: bool = False,
    console: Any = None,
) -> dict[str, Any]:
    """Prepare every sequence folder under ``input_dir`` into ``output_dir``.

    Returns the summary dict (see ``docs/prepare.md``). Raises :class:`DataError` for a missing
    or empty input, an output inside the input, or two folders mapping to the same sequence.
    On Ctrl-C it stops, prints what was written on ``console`` and re-raises
    ``KeyboardInterrupt`` (whose ``summary`` attribute holds the partial summary).
    """
    started = time.perf_counter()
    try:
        _check_img_size(img_size)
    except (TypeError, ValueError) as exc:
        raise GaitError(f"--img-size: {exc}") from None
    if workers is not None and workers < 1:
        raise GaitError(f"--workers must be at least 1, got {workers}")
    inp, out = _validate_paths(Path(input_dir), Path(output_dir))

    found = _walk(str(inp))
    if not found.sequences:
        hint = (
            f" It holds {found.pkl_files} .pkl files: is it already prepared?" if found.pkl_files else ""
        )
        raise DataError(
            f"no folders with image files (.png/.jpg/.jpeg/.bmp) under {inp}; expected "
            f"IN/id/type-seq/view/*.png.{hint}"
        )

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create output folder {out} ({exc.strerror or exc})") from None

    summary: dict[str, Any] = {
        "input": str(inp),
        "output": str(out),
        "img_size": img_size,
        "workers": 1,
        "sequences_found": len(found.sequences),
        "sequences_written": 0,
        "frames_kept": 0,
        "frames_dropped": 0,
        "skipped_existing": 0,
        "unreadable": list(found.problems),
        "empty_sequences": [],
        "short_sequences": [],
        "stale_removed": [],
        "seconds": 0.0,
    }

    # Folders with no image at the depth where sequences live: an empty view folder.
    sequence_depth = max(found.depths.items(), key=lambda kv: (kv[1], -kv[0]))[0]
    for folder, depth, others in found.leaves:
        if depth != sequence_depth:
            continue
        key = _sequence_key(folder)
        if key is None or key in found.sequences:
            continue
        summary["empty_sequences"].append(key)
        summary["unreadable"].extend(
            {"path": os.path.join(folder, name), "reason": "not an image file"} for name in others
        )

    with _locked(out):
        _check_manifest(out, img_size, overwrite)
        jobs: list[SequenceJob] = []
        for key in sorted(found.sequences):
            folder, images, others = found.sequences[key]
            target = os.path.join(str(out), *key.split("/"), key.rsplit("/", 1)[-1] + ".pkl")
            if _plan_target(target) and not overwrite:
                summary["skipped_existing"] += 1
                continue
            jobs.append(SequenceJob(key, folder, tuple(images), tuple(others), target))

        if workers is None:
            # Starting a worker costs about as much as pretreating a few hundred frames: give
            # each at least MIN_FRAMES_PER_WORKER frames, so small trees run in-process.
            n_frames = sum(len(job.frames) for job in jobs)
            workers = max(1, min(os.cpu_count() or 1, n_frames // MIN_FRAMES_PER_WORKER))
        n_workers = max(1, min(workers, len(jobs)))
        summary["workers"] = n_workers

        def absorb(results: list[dict[str, Any]]) -> None:
            for res in results:
                summary["frames_dropped"] += res["dropped"]
                summary["unreadable"].extend(res["unreadable"])
                if res["removed_stale"]:
                    summary["stale_removed"].append(res["key"])
                if res["kept"] == 0:
                    summary["empty_sequences"].append(res["key"])
                    continue
                summary["sequences_written"] += 1
                summary["frames_kept"] += res["kept"]
                if res["kept"] < SHORT_SEQUENCE_FRAMES:
                    summary["short_sequences"].append({"sequence": res["key"], "frames": res["kept"]})

        def finish() -> dict[str, Any]:
            summary["unreadable"].sort(key=lambda item: item["path"])
            summary["empty_sequences"].sort()
            summary["short_sequences"].sort(key=lambda item: item["sequence"])
            summary["stale_removed"].sort()
            summary["seconds"] = round(time.perf_counter() - started, 3)
            return summary

        progress = _make_progress(console, len(jobs))
        try:
            with progress:
                task = progress.add_task("prepare", total=len(jobs))
                if n_workers <= 1:
                    for job in jobs:
                        absorb([_process_sequence(job, img_size, overwrite)])
                        progress.advance(task)
                else:
                    _run_pool(jobs, n_workers, img_size, overwrite, absorb, lambda n: progress.advance(task, n))
        except KeyboardInterrupt as exc:
            finish()
            if console is not None:
                console.print(
                    f"[yellow]interrupted:[/] {summary['sequences_written']} sequences written to {out} "
                    f"({summary['skipped_existing']} were already there); every pkl on disk is complete. "
                    "Run the same command again to finish the rest.",
                    highlight=False,
                    soft_wrap=True,
                )
            exc.summary = summary  # type: ignore[attr-defined]
            raise
    return finish()


def _run_pool(
    jobs: list[SequenceJob],
    n_workers: int,
    img_size: int,
    overwrite: bool,
    absorb: Callable[[list[dict[str, Any]]], None],
    advance: Callable[[int], None],
) -> None:
    """Run ``jobs`` in chunks on a process pool, feeding each chunk's results to ``absorb``."""
    executor = ProcessPoolExecutor(max_workers=n_workers, mp_context=_mp_context(), initializer=_worker_init)
    sizes: dict[Future, int] = {}
    absorbed: set[Future] = set()

    def take(fut: Future) -> None:
        absorbed.add(fut)
        absorb(fut.result())
        advance(sizes[fut])

    try:
        for chunk in _chunks(jobs, n_workers):
            sizes[executor.submit(_process_chunk, chunk, img_size, overwrite)] = len(chunk)
        pending = set(sizes)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                take(fut)
    except BaseException:
        # Stop handing out work; the chunks already running finish (workers ignore SIGINT) and
        # what they wrote is counted, so the report matches the disk.
        executor.shutdown(wait=True, cancel_futures=True)
        for fut in sizes:
            if fut not in absorbed and fut.done() and not fut.cancelled() and fut.exception() is None:
                take(fut)
        raise
    executor.shutdown(wait=True)


# --------------------------------------------------------------------------- report
def render_summary(summary: dict[str, Any], console: Any, *, limit: int = 10) -> None:
    """Print the closing table and the first ``limit`` problems of each kind on ``console``."""
    if console is None:
        return
    from rich.table import Table

    seconds = float(summary.get("seconds") or 0.0)
    frames = summary.get("frames_kept", 0) + summary.get("frames_dropped", 0)
    table = Table(title="gait prepare", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    if "output" in summary:
        table.add_row("output", str(summary["output"]))
    if "sequences_found" in summary:
        table.add_row("sequence folders found", str(summary["sequences_found"]))
    table.add_row("sequences written", str(summary["sequences_written"]))
    table.add_row("already there (skipped)", str(summary["skipped_existing"]))
    table.add_row("frames kept", str(summary["frames_kept"]))
    table.add_row("frames dropped (empty / no centre)", str(summary["frames_dropped"]))
    table.add_row("unreadable files", str(len(summary["unreadable"])))
    table.add_row("sequences with no frame kept", str(len(summary["empty_sequences"])))
    table.add_row(f"short sequences (< {SHORT_SEQUENCE_FRAMES} frames)", str(len(summary["short_sequences"])))
    if summary.get("stale_removed"):
        table.add_row("stale pkls removed (--overwrite)", str(len(summary["stale_removed"])))
    rate = f" ({frames / seconds:,.0f} frames/s)" if seconds > 0 and frames else ""
    table.add_row("time", f"{seconds:.1f} s{rate}")
    console.print(table)

    def listing(title: str, items: list[str]) -> None:
        if not items:
            return
        console.print(f"[yellow]warning:[/] {title}:", highlight=False)
        for item in items[:limit]:
            console.print(f"  {item}", highlight=False, soft_wrap=True)
        if len(items) > limit:
            console.print(f"  ... and {len(items) - limit} more (see --json)", highlight=False)

    listing(
        f"{len(summary['unreadable'])} file(s) skipped",
        [f"{item['path']}: {item['reason']}" for item in summary["unreadable"]],
    )
    listing(
        f"{len(summary['empty_sequences'])} sequence(s) kept no frame, no pkl written",
        list(summary["empty_sequences"]),
    )
    listing(
        f"{len(summary['short_sequences'])} sequence(s) have fewer than {SHORT_SEQUENCE_FRAMES} frames (written)",
        [f"{item['sequence']}: {item['frames']} frame(s)" for item in summary["short_sequences"]],
    )
