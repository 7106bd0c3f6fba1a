"""``gait silhouettes``: videos → tracked, normalised silhouettes in a prepared pkl tree.

For each input (a video file or a folder of frames) the frames are decoded
(:mod:`gaitcli.video.readers`), segmented (:mod:`gaitcli.video.backends`), tracked
(:mod:`gaitcli.video.tracking`) and normalised (:mod:`gaitcli.video.stream`, i.e. ``gait
prepare``'s own pretreatment). Every kept track becomes one sequence ``OUT/<id>/<type>/<view>/
<view>.pkl`` with ``<id>`` = ``<video stem>-t<k>`` unless ``names`` maps it, so every command
that reads a prepared tree reads it. See docs/video.md.

OUT carries ``gait prepare``'s manifest (so the tree is checked like any prepared tree and
``overwrite`` only ever removes pkls gaitcli wrote) and ``.gait-silhouettes.json``: for every
video, its resolved path, size and modification time, the settings it was processed with and
the tracks it gave. A rerun skips the videos already done with the same settings; the same
video with other settings is refused (two data sets never mix) unless ``overwrite``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console

from gaitcli import __version__
from gaitcli.data.pickle_io import save_array
from gaitcli.data.prepare_output import (
    MANIFEST_NAME,
    Manifest,
    check_output,
    remove_foreign_pkls,
    write_manifest,
)
from gaitcli.data.pretreat import check_img_size
from gaitcli.errors import DataError, GaitError, option, render
from gaitcli.fileio import JSONValue, atomic_write_bytes
from gaitcli.progress import make_progress
from gaitcli.runtime.lock import exclusive_lock
from gaitcli.video.backends import BackendOptions, Segmenter, make_segmenter
from gaitcli.video.readers import ReadOptions, VideoInfo, open_video
from gaitcli.video.stream import TrackFrames, TrackStream
from gaitcli.video.tracking import TrackingOptions, TrackSummary

__all__ = [
    "RECORD_NAME",
    "SOURCE",
    "NoWalkerError",
    "SilhouetteOptions",
    "SilhouettesSummary",
    "TrackResult",
    "VideoResult",
    "contact_sheet",
    "extract_video",
    "parse_names",
    "run_silhouettes",
]

RECORD_NAME = ".gait-silhouettes.json"
RECORD_FORMAT = 1
LOCK_NAME = ".gait-prepare.lock"
SOURCE = "gait silhouettes"
"""The ``source`` of the prepare manifest of a silhouettes tree: videos may be added to it, but
it never mixes with a tree ``gait prepare`` made from PNG folders."""
MASKS_MARKER = ".gait-masks.json"
NO_WALKER_EXIT = 3
"""Exit code when no input gave a single kept track (docs/video.md)."""


class NoWalkerError(GaitError):
    """No walker was found in any input."""

    exit_code = NO_WALKER_EXIT


@dataclass(frozen=True)
class SilhouetteOptions:
    """How videos become silhouettes (every field is a ``gait silhouettes`` option)."""

    backend: str = "mog2"
    """Segmentation backend: ``mog2``, ``knn``, ``mediapipe`` or ``onnx:MODEL.onnx``."""
    segmentation: BackendOptions = field(default_factory=BackendOptions)
    """The backend's parameters."""
    reading: ReadOptions = field(default_factory=ReadOptions)
    """Subsampling and cutting of the decoded frames."""
    tracking: TrackingOptions = field(default_factory=TrackingOptions)
    """Blob and association parameters, and ``min_frames``."""
    img_size: int = 64
    """Side of the normalised silhouettes (as ``gait prepare --img-size``)."""
    type: str = "00"
    """The sequence type every track gets (the ``type`` level of the tree)."""
    view: str = "000"
    """The view every track gets (the ``view`` level of the tree)."""
    names: tuple[tuple[str, str], ...] = ()
    """``(track id, name)`` pairs: the track ``<stem>-t<k>`` is written as ``name``."""

    def settings(self) -> dict[str, JSONValue]:
        """What must agree between two runs into one OUT (recorded per video)."""
        return {
            "backend": self.backend,
            "segmentation": _plain(asdict(self.segmentation)),
            "reading": _plain(asdict(self.reading)),
            "tracking": _plain(asdict(self.tracking)),
            "img_size": self.img_size,
            "type": self.type,
            "view": self.view,
        }


def _plain(values: Mapping[str, object]) -> dict[str, JSONValue]:
    out: dict[str, JSONValue] = {}
    for key, value in values.items():
        if value is None or isinstance(value, (bool, int, float, str)):
            out[key] = value
        else:
            out[key] = str(value)
    return out


@dataclass
class TrackResult:
    """One track of one video."""

    video: str
    """The input it came from."""
    number: int
    """Its number in that video (1, 2, ... in order of appearance)."""
    id: str
    """Its subject id in the tree (``<stem>-t<k>`` or the mapped name)."""
    summary: TrackSummary
    """The tracker's account: frames, quality, why it was dropped."""
    frames: TrackFrames
    """Its normalised silhouettes and their frame indices."""
    reason: str | None
    """``None`` when kept; else why it was dropped (one line)."""
    pkl: str | None = None
    """Where it was written (relative to OUT), when it was."""

    @property
    def kept(self) -> bool:
        return self.reason is None

    @property
    def span(self) -> tuple[int, int]:
        """``(first, last)`` decoded frame index of its silhouettes (of the track when it has none)."""
        if self.frames.indices:
            return self.frames.indices[0], self.frames.indices[-1]
        return self.summary.first, self.summary.last

    def to_json(self) -> dict[str, JSONValue]:
        q = self.summary.quality
        return {
            "track": self.number, "id": self.id, "frames": list(self.span),
            "observed": q.frames, "kept": len(self.frames.silhouettes), "mean_area": round(q.mean_area, 1),
            "border_frames": q.border_frames, "merged_frames": q.merged_frames,
            "dropped_by_pretreatment": self.frames.dropped, "status": "kept" if self.kept else "dropped",
            "reason": None if self.reason is None else render(self.reason), "pkl": self.pkl,
        }


@dataclass
class VideoResult:
    """What one input gave."""

    info: VideoInfo
    tracks: list[TrackResult]
    decoded: int
    """Frames decoded."""
    seconds: float
    """Wall-clock time to decode, segment, track and normalise."""
    warning: str | None = None
    """Set when decoding stopped early (a truncated or corrupt file)."""
    skipped: str | None = None
    """Set when the video was already done (a rerun)."""

    @property
    def kept(self) -> list[TrackResult]:
        return [t for t in self.tracks if t.kept]

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "video": self.info.source, "frames_decoded": self.decoded, "seconds": round(self.seconds, 3),
            "fps": round(self.decoded / self.seconds, 2) if self.seconds > 0 else None,
            "warning": None if self.warning is None else render(self.warning), "skipped": self.skipped,
            "tracks": [t.to_json() for t in self.tracks],
        }


@dataclass
class SilhouettesSummary:
    """The outcome of ``gait silhouettes``."""

    out: str
    videos: list[VideoResult] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    """Pkls ``overwrite`` removed."""

    @property
    def written(self) -> int:
        return sum(1 for v in self.videos for t in v.tracks if t.pkl)

    def to_json(self) -> dict[str, JSONValue]:
        return {"tool": SOURCE, "gaitcli": __version__, "format": RECORD_FORMAT, "out": self.out,
                "written": self.written, "removed": list(self.removed),
                "videos": [v.to_json() for v in self.videos]}


# --------------------------------------------------------------------------- options
def parse_names(pairs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``["walk-t1=alice", ...]`` → pairs; a malformed entry is a one-line error."""
    out: dict[str, str] = {}
    for text in pairs:
        track, sep, name = text.partition("=")
        track, name = track.strip(), name.strip()
        if not sep or not track or not name:
            raise GaitError(f"{option('names', text)}: expected TRACK=NAME, e.g. walk-t1=alice")
        if "/" in name or "\\" in name or name.startswith("."):
            raise GaitError(f"{option('names', text)}: a name cannot hold a slash or start with a dot")
        if track in out and out[track] != name:
            raise GaitError(f"{option('names')}: {track} is given two names ({out[track]}, {name})")
        out[track] = name
    return tuple(out.items())


def _check_options(options: SilhouetteOptions) -> None:
    try:
        check_img_size(options.img_size)
    except (TypeError, ValueError) as exc:
        raise GaitError(f"{option('img_size', options.img_size)}: {exc}") from None
    for name, value in (("type", options.type), ("view", options.view)):
        if not value or "/" in value or "\\" in value or value.startswith("."):
            raise GaitError(f"{option(name, value)}: must be a plain folder name (no slash, no leading dot)")


# --------------------------------------------------------------------------- one video
def _drop_reason(summary: TrackSummary, frames: TrackFrames, min_frames: int) -> str | None:
    if summary.drop_reason is not None:
        return summary.drop_reason
    kept = len(frames.silhouettes)
    if kept < min_frames:
        return f"{kept} usable silhouettes < {option('min_frames', min_frames)}"
    return None


class _MaskWriter:
    """``--keep-masks``: ``DIR/<stem>/t<k>/<frame:06d>.png`` for every observation of a track;
    the folder of a track that is dropped is removed at its end."""

    def __init__(self, root: Path, stem: str) -> None:
        self.folder = root / stem
        self.made: set[int] = set()

    def __call__(self, track: int, frame: int, mask: np.ndarray) -> None:
        folder = self.folder / f"t{track}"
        if track not in self.made:
            folder.mkdir(parents=True, exist_ok=True)
            self.made.add(track)
        ok, data = cv2.imencode(".png", mask)
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
            raise DataError(f"cannot encode the mask of frame {frame} of track {track}")
        atomic_write_bytes(folder / f"{frame:06d}.png", data.tobytes())

    def drop(self, track: int) -> None:
        shutil.rmtree(self.folder / f"t{track}", ignore_errors=True)


def _prepare_masks(root: Path, stem: str, overwrite: bool) -> _MaskWriter:
    """The masks folder of one video: new, or one gaitcli wrote (replaced)."""
    folder = root / stem
    if folder.exists():
        if not (folder / MASKS_MARKER).is_file():
            raise DataError(f"{folder} exists and gaitcli did not write it; choose another "
                            f"{option('keep_masks')} folder or move it away")
        shutil.rmtree(folder)  # ours, from an earlier run of this video: start over
    folder.mkdir(parents=True)
    atomic_write_bytes(folder / MASKS_MARKER, (json.dumps({"tool": SOURCE, "format": 1}) + "\n").encode())
    return _MaskWriter(root, stem)


def extract_video(
    source: str | os.PathLike[str],
    options: SilhouetteOptions,
    *,
    segmenter: Segmenter | None = None,
    masks: Path | None = None,
    overwrite: bool = False,
    console: Console | None = None,
) -> VideoResult:
    """Decode, segment, track and normalise one input; nothing is written except ``masks``."""
    _check_options(options)
    started = time.perf_counter()
    reader = open_video(source, options.reading)
    own = segmenter is None
    seg = make_segmenter(options.backend, options.segmentation) if segmenter is None else segmenter
    sink = _prepare_masks(masks, reader.info.stem, overwrite) if masks is not None else None
    stream = TrackStream(seg, options.tracking, options.img_size, sink)
    results: list[TrackResult] = []
    names = dict(options.names)

    def settle(summaries: Sequence[TrackSummary]) -> None:
        for summary in summaries:
            frames = stream.pop(summary.number)
            reason = _drop_reason(summary, frames, options.tracking.min_frames)
            if reason is not None and sink is not None:
                sink.drop(summary.number)
            default = f"{reader.info.stem}-t{summary.number}"
            results.append(TrackResult(str(source), summary.number, names.get(default, default),
                                       summary, frames, reason))

    total = reader.info.frames
    progress = make_progress(reader.info.stem, console, unit="frames/s", transient=True,
                             disable=console is None)
    try:
        with progress, reader:
            task = progress.add_task("frames", total=total)
            for frame in reader:
                step = stream.push(frame)
                settle(step.ended)
                progress.update(task, completed=reader.decoded)
            settle(stream.finish())
    finally:
        if own:
            seg.close()
    results.sort(key=lambda t: t.number)
    return VideoResult(reader.info, results, reader.decoded, time.perf_counter() - started,
                       warning=reader.warning)


# --------------------------------------------------------------------------- contact sheet
def contact_sheet(silhouettes: np.ndarray, every: int = 5, columns: int = 10) -> np.ndarray:
    """Every ``every``-th silhouette of ``[T, S, S]`` tiled left to right, top to bottom, with a
    one-pixel grey grid; returns a ``uint8`` image."""
    picked = silhouettes[:: max(1, every)]
    count, size = len(picked), silhouettes.shape[-1]
    cols = max(1, min(columns, count))
    rows = max(1, -(-count // cols))
    sheet = np.full((rows * (size + 1) + 1, cols * (size + 1) + 1), 96, dtype=np.uint8)
    for i, sil in enumerate(picked):
        r, c = divmod(i, cols)
        top, left = 1 + r * (size + 1), 1 + c * (size + 1)
        sheet[top: top + size, left: left + size] = sil
    return sheet


def _write_sheet(folder: Path, track: TrackResult, every: int) -> None:
    ok, data = cv2.imencode(".png", contact_sheet(track.frames.array(), every))
    if ok:
        atomic_write_bytes(folder / f"{track.id}.png", data.tobytes())


# --------------------------------------------------------------------------- the tree
def _record(out: Path) -> dict[str, dict[str, JSONValue]]:
    path = out / RECORD_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read ({exc}); move it away or use "
                        f"{option('overwrite')}") from None
    videos = data.get("videos") if isinstance(data, dict) else None
    fmt = data.get("format") if isinstance(data, dict) else None
    if isinstance(fmt, int) and fmt > RECORD_FORMAT:
        raise DataError(f"{path}: record format {fmt} comes from a newer gaitcli (this one reads "
                        f"{RECORD_FORMAT}); upgrade gaitcli, or use {option('overwrite')}")
    if not isinstance(videos, dict):
        raise DataError(f"{path}: not a gait silhouettes record; move it away or use {option('overwrite')}")
    return {str(k): v for k, v in videos.items() if isinstance(v, dict)}


def _write_record(out: Path, videos: Mapping[str, dict[str, JSONValue]]) -> None:
    data = {"tool": SOURCE, "gaitcli": __version__, "format": RECORD_FORMAT,
            "videos": dict(sorted(videos.items()))}
    atomic_write_bytes(out / RECORD_NAME, (json.dumps(data, indent=1) + "\n").encode())


def _identity(path: str) -> dict[str, JSONValue]:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _pkl_of(track_id: str, type_: str, view: str) -> str:
    return f"{track_id}/{type_}/{view}/{view}.pkl"


def _check_inputs(inputs: Sequence[str | os.PathLike[str]], options: SilhouetteOptions) -> list[str]:
    """Open every input before anything is written: a bad one is a one-line error, and two
    inputs with the same stem would give clashing track ids."""
    if not inputs:
        raise GaitError("no INPUT given: pass video files or folders of frames")
    stems: dict[str, str] = {}
    resolved: list[str] = []
    for raw in inputs:
        with open_video(raw, options.reading) as reader:
            stem = reader.info.stem
        other = stems.setdefault(stem, str(raw))
        if other != str(raw):
            raise GaitError(f"{other} and {raw} are both named {stem!r}, so their tracks would get the "
                            "same ids; rename one of them")
        resolved.append(os.path.realpath(raw))
    return resolved


def run_silhouettes(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    options: SilhouetteOptions = SilhouetteOptions(),
    *,
    keep_masks: Path | None = None,
    sheets: Path | None = None,
    sheet_every: int = 5,
    overwrite: bool = False,
    console: Console | None = None,
) -> SilhouettesSummary:
    """Turn every input into tracks and write the kept ones into ``out`` (module docstring)."""
    _check_options(options)
    if sheet_every < 1:
        raise GaitError(f"{option('sheet_every', sheet_every)}: must be at least 1")
    sources = _check_inputs(inputs, options)
    out_path = Path(out).expanduser()
    fresh = not out_path.exists()
    try:
        out_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create output folder {out_path} ({exc.strerror or exc})") from None
    try:
        summary = _write_tracks(sources, inputs, out_path, options, keep_masks, sheets, sheet_every,
                                overwrite, console)
    except BaseException:
        if fresh:
            _remove_if_empty(out_path)
        raise
    if not any(v.kept or v.skipped for v in summary.videos):
        if fresh:
            _remove_if_empty(out_path)
        raise NoWalkerError(_nobody(summary, options.backend))
    return summary


def _remove_if_empty(out: Path) -> None:
    """Remove an OUT this run created when it holds no track: only gaitcli's own bookkeeping
    files, nothing else (a failed first run leaves nothing half-written behind)."""
    own = {LOCK_NAME, RECORD_NAME, MANIFEST_NAME}
    try:
        names = {p.name for p in out.iterdir()}
    except OSError:
        return
    if names <= own:
        for name in names:
            (out / name).unlink(missing_ok=True)
        try:
            out.rmdir()
        except OSError:
            pass


def _write_tracks(sources: Sequence[str], inputs: Sequence[str | os.PathLike[str]], out_path: Path,
                  options: SilhouetteOptions, keep_masks: Path | None, sheets: Path | None,
                  sheet_every: int, overwrite: bool, console: Console | None) -> SilhouettesSummary:
    summary = SilhouettesSummary(str(out_path))
    settings = options.settings()
    manifest = Manifest(source=SOURCE, img_size=options.img_size,
                        frame_size=[options.img_size, options.img_size])
    with exclusive_lock(out_path / LOCK_NAME, what="'gait silhouettes'"):
        old = check_output(out_path, manifest, overwrite)
        if old is not None and old.source != SOURCE:  # pragma: no cover - check_output refuses it
            raise DataError(f"{out_path} holds a tree gait prepare made; choose another OUT")
        listed = set(old.pkls) if old is not None else set()
        record = {} if overwrite else _record(out_path)
        if overwrite:
            write_manifest(out_path, replace(manifest, complete=False, pkls=tuple(sorted(listed))))
            summary.removed = remove_foreign_pkls(out_path, set(), listed)
            listed -= set(summary.removed)
            (out_path / RECORD_NAME).unlink(missing_ok=True)
        written: set[str] = set()
        for raw, real in zip(inputs, sources, strict=True):
            done = record.get(real)
            if done is not None and done.get("settings") == settings and \
                    all(done.get(k) == v for k, v in _identity(real).items()):
                summary.videos.append(_skipped(raw, done, options))
                continue
            if done is not None:
                raise DataError(
                    f"{out_path} already holds tracks of {raw} made with other settings or from an older "
                    f"version of the file; use the same options, another OUT, or {option('overwrite')}"
                )
            result = extract_video(raw, options, masks=keep_masks, overwrite=overwrite, console=console)
            for track in result.kept:
                rel = _pkl_of(track.id, options.type, options.view)
                if rel in written or (rel in listed and not overwrite):
                    raise DataError(f"{out_path / rel}: two tracks are named {track.id}; give them "
                                    f"different names with {option('names')}")
                claimed = tuple(sorted(listed | written | {rel}))
                write_manifest(out_path, replace(manifest, pkls=claimed))
                save_array(out_path / rel, track.frames.array())
                written.add(rel)
                track.pkl = rel
                if sheets is not None:
                    sheets.mkdir(parents=True, exist_ok=True)
                    _write_sheet(sheets, track, sheet_every)
            record[real] = {"source": str(raw), **_identity(real), "settings": settings,
                            "tracks": [t.to_json() for t in result.tracks]}
            _write_record(out_path, record)
            summary.videos.append(result)
        write_manifest(out_path, replace(manifest, pkls=tuple(sorted(listed | written))))
    return summary


def _skipped(raw: str | os.PathLike[str], done: Mapping[str, JSONValue],
             options: SilhouetteOptions) -> VideoResult:
    info = VideoInfo(source=str(raw), stem=Path(raw).stem, fps=0.0, width=0, height=0, frames=None,
                     rotation=0, live=False)
    return VideoResult(info, [], 0, 0.0, skipped="already done with the same settings")


def _nobody(summary: SilhouettesSummary, backend: str) -> str:
    dropped = [t for v in summary.videos for t in v.tracks]
    names = ", ".join(v.info.source for v in summary.videos)
    if not dropped and backend in ("mog2", "knn"):
        return (f"no walker found in {names}: nothing moved against the background (static camera needed "
                f"for mog2/knn; try {option('backend', 'mediapipe')})")
    if not dropped:
        return (f"no walker found in {names}: the {backend} backend found no person (a learned detector "
                f"may miss small or top-down people; try {option('backend', 'mog2')} for a static camera)")
    return (f"no track kept in {names}: {len(dropped)} dropped, first: track {dropped[0].number}: "
            f"{dropped[0].reason}")


def iter_tracks(results: Sequence[VideoResult]) -> Iterator[TrackResult]:
    """Every kept track of ``results``, in input order."""
    for video in results:
        yield from video.kept
