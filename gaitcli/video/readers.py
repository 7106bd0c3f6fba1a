"""Frames from a video file, a folder of images, a camera or a stream URL (docs/video.md).

:func:`open_video` opens a source and returns a :class:`VideoReader`, an iterator of
:class:`Frame` (BGR ``uint8``, rotation metadata applied) that also subsamples (``stride`` or
``fps``) and cuts (``start`` / ``end``) as :class:`ReadOptions` say. Frame indices always count
every decoded frame of the source from 0, before subsampling, so they name the same frame
whatever the options.

Every user mistake is one :class:`~gaitcli.errors.DataError` line naming the source: a missing
file, a file that cannot be opened or decodes to no frame, a folder of mixed image sizes, bad
options. A file that decodes some frames and then fails (truncated, corrupt) is not an error:
reading stops at the last good frame and :attr:`VideoReader.warning` says so.
"""

from __future__ import annotations

import math
import os
import re
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol
from urllib.parse import urlsplit

import cv2
import numpy as np

from gaitcli.data.prepare import IMAGE_EXTENSIONS
from gaitcli.errors import DataError, option

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "Frame",
    "ReadOptions",
    "VideoInfo",
    "VideoReader",
    "is_camera",
    "is_stream_url",
    "is_video_file",
    "open_video",
]

VIDEO_SUFFIXES: frozenset[str] = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp", ".ogv"})
"""File suffixes (lower case) taken for video files."""

IMAGE_SUFFIXES: frozenset[str] = IMAGE_EXTENSIONS | frozenset({".tif", ".tiff", ".webp"})
"""Suffixes (lower case) of the frames an image-sequence folder may hold: ``gait prepare``'s
image types plus TIFF and WebP."""

STREAM_SCHEMES: frozenset[str] = frozenset(
    {"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "rtp", "srt", "mms", "mmsh"})
"""URL schemes read as network streams."""

FOLDER_FPS = 25.0
"""The frame rate of an image folder when ``fps`` is not given."""

SEEK_MIN_FRAMES = 50
"""``start`` seeks (instead of decoding and skipping) only past this many frames: short skips
decode faster than a seek and are exact."""

_TRUNCATION_SLACK = 0.02
"""A file ending more than this share of its reported frame count early is reported as cut
short (containers that only estimate their frame count are off by a frame or two)."""

# OpenCV's FFmpeg back end would print every decoding complaint of a corrupt file on stderr;
# the reader reports what matters in one line. A user's own setting wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


@dataclass(frozen=True)
class VideoInfo:
    """What a source is, known once it is open."""

    source: str
    """The source as given: path text, camera index text (``"0"``) or URL."""
    stem: str
    """The name its tracks are named after: the file stem, the folder name, ``camera<N>`` or the
    last part of the URL path, with every character outside ``[A-Za-z0-9._-]`` replaced by ``_``."""
    fps: float
    """Native frames per second (an image folder: ``fps`` when given, else 25.0); 0.0 when unknown."""
    width: int
    """Frame width in pixels, after rotation."""
    height: int
    """Frame height in pixels, after rotation."""
    frames: int | None
    """The number of frames the container reports (images in a folder); None for streams or
    when unknown. The frames actually decoded may differ (see :attr:`VideoReader.warning`)."""
    rotation: int
    """Degrees of rotation metadata applied to every frame, clockwise: 0, 90, 180 or 270."""
    live: bool
    """A camera or network stream: frames come as they are captured, with no known count."""


@dataclass(frozen=True)
class Frame:
    """One decoded frame."""

    index: int
    """Its index among all decoded frames of the source, from 0, before ``stride`` / ``fps``."""
    time: float
    """Seconds from the start of the source: ``index / fps`` (a live source of unknown rate:
    seconds since it was opened)."""
    image: np.ndarray
    """``H × W × 3`` ``uint8`` BGR, rotation applied, C-contiguous."""


@dataclass(frozen=True)
class ReadOptions:
    """Which frames of a source are read. Checked when made: a bad value is a DataError."""

    stride: int = 1
    """Keep every ``stride``-th decoded frame (1: all)."""
    fps: float | None = None
    """Subsample to about this many frames per second: a frame is kept when its time, counted
    from ``start``, enters a new ``1/fps`` slot; at or above the native rate every frame is
    kept. Cannot be combined with ``stride`` > 1. For an image folder, whose frames carry no
    rate, it is the folder's frame rate instead (default 25) and every image is kept."""
    start: float | None = None
    """Seconds: frames before it are skipped (seeking where the container allows)."""
    end: float | None = None
    """Seconds: frames at or after it are not read (``[start, end)``)."""

    def __post_init__(self) -> None:
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 1:
            raise DataError(f"{option('stride', self.stride)} must be a whole number ≥ 1 "
                            "(1 keeps every frame)")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise DataError(f"{option('fps', self.fps)} must be a positive number of frames per second")
        if self.fps is not None and self.stride > 1:
            raise DataError(f"{option('fps')} and {option('stride')} both subsample frames: give one of them")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise DataError(f"{option(name, value)} must be a number of seconds ≥ 0")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise DataError(f"{option('start', self.start)} must be before {option('end', self.end)}")


def is_camera(source: str) -> bool:
    """``"0"``, ``"1"``, …: a camera index."""
    return source.isascii() and source.isdigit()


def is_stream_url(source: str) -> bool:
    """A URL of a network stream (``rtsp://``, ``http(s)://``, ``udp://``, …; see STREAM_SCHEMES)."""
    scheme, sep, _ = source.partition("://")
    return bool(sep) and scheme.lower() in STREAM_SCHEMES


def is_video_file(path: Path) -> bool:
    """A regular file with a video suffix (VIDEO_SUFFIXES, any case)."""
    return path.suffix.lower() in VIDEO_SUFFIXES and path.is_file()


def open_video(source: str | os.PathLike[str], options: ReadOptions = ReadOptions(), *,
               stream: bool = False) -> VideoReader:
    """Open ``source``: a video file, a folder of images, or — with ``stream``, or when no such
    path exists — a camera index (``"0"``) or a stream URL. The first frame is decoded here, so a
    source that yields no frame is refused before anything else happens."""
    text = os.fspath(source)
    path = Path(text)
    if stream or not path.exists():
        if is_camera(text):
            return VideoReader(_CaptureSource.camera(int(text)), text, f"camera{text}", options, live=True)
        if is_stream_url(text):
            return VideoReader(_CaptureSource.url(text), text, _url_stem(text), options, live=True)
    if not path.exists():
        raise DataError(f"no such file or folder: {text}; check the path (a camera is a number such as 0, "
                        "a stream a URL such as rtsp://host/path)")
    if path.is_dir():
        return VideoReader(_FolderSource(path, text, options.fps or FOLDER_FPS), text, _clean_stem(path.name),
                           options, live=False)
    return VideoReader(_CaptureSource.file(path, text), text, _clean_stem(path.stem), options, live=False)


class VideoReader:
    """Frames of one source, subsampled and cut by :class:`ReadOptions`; iterate it once, in a
    ``with`` block or followed by :meth:`close`."""

    def __init__(self, source: _Source, text: str, stem: str, options: ReadOptions, *, live: bool) -> None:
        self._source = source
        self._options = options
        self._warning: str | None = None
        self._done = False
        self._next_index = 0
        self._last_slot = -1
        self._first: int | None = None  # index of the first frame in [start, end)
        first = source.read()  # a source that decodes nothing is refused now, not mid-way
        if first is None:
            source.close()
            raise DataError(f"{text} decodes to no frame (empty, truncated or not a video); "
                            "check the file plays, or re-encode it")
        self._pending: tuple[np.ndarray, float | None] | None = first
        self._decoded = 1
        height, width = first[0].shape[:2]
        self.info = VideoInfo(source=text, stem=stem, fps=source.fps, width=int(width), height=int(height),
                              frames=source.frames, rotation=source.rotation, live=live)
        self._text = text
        self._origin = options.start or 0.0
        if options.start and self.info.frames and self.info.fps > 0 and \
                options.start >= self.info.frames / self.info.fps:
            source.close()
            raise DataError(f"{option('start', options.start)} is past the end of {text} "
                            f"({self.info.frames / self.info.fps:.2f} s); give an earlier start")
        if options.start:
            self._seek(options.start)

    # ---------------------------------------------------------------------------- public
    @property
    def decoded(self) -> int:
        """Frames decoded from the source so far (skipped and subsampled ones included)."""
        return self._decoded

    @property
    def warning(self) -> str | None:
        """Set when decoding stopped before the end the container announced (a truncated or
        corrupt file): one line saying how many frames were read. None otherwise."""
        return self._warning

    def close(self) -> None:
        """Release the source; the reader yields nothing more."""
        self._done = True
        self._pending = None
        self._source.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        while not self._done:
            got = self._take()
            if got is None:
                self._finish()
                break
            index, image, seconds = got
            if self._options.start is not None and seconds < self._options.start - 1e-9:
                continue
            if self._options.end is not None and seconds >= self._options.end - 1e-9:
                self._done = True  # a cut, not an early end: no warning
                break
            if self._first is None:
                self._first = index
            if not self._keep(index, seconds):
                continue
            return Frame(index, seconds, image)
        raise StopIteration

    # ---------------------------------------------------------------------------- internals
    def _take(self) -> tuple[int, np.ndarray, float] | None:
        """The next decoded frame with its index and time, or None at the end."""
        got = self._pending
        if got is not None:
            self._pending = None
        else:
            got = self._source.read()
            if got is None:
                return None
            self._decoded += 1
        image, stamp = got
        index = self._next_index
        self._next_index += 1
        fps = self.info.fps
        seconds = index / fps if fps > 0 else (stamp if stamp is not None else 0.0)
        return index, image, seconds

    def _keep(self, index: int, seconds: float) -> bool:
        options = self._options
        if options.stride > 1:
            return (index - (self._first or 0)) % options.stride == 0
        if options.fps is not None and not isinstance(self._source, _FolderSource):
            if self.info.fps > 0 and options.fps >= self.info.fps:
                return True
            slot = math.floor((seconds - self._origin) * options.fps + 1e-6)
            if slot <= self._last_slot:
                return False
            self._last_slot = slot
        return True

    def _seek(self, start: float) -> None:
        """Skip to the first frame at or after ``start`` by seeking, when that is cheaper than
        decoding; the frames in between are otherwise skipped while iterating."""
        fps = self.info.fps
        if self.info.live or fps <= 0:
            return
        target = math.ceil(start * fps - 1e-6)
        if target < SEEK_MIN_FRAMES:
            return
        self._pending = None
        self._next_index = self._source.seek(target)

    def _finish(self) -> None:
        self._done = True
        expected = self.info.frames
        if self.info.live or expected is None or expected <= 0:
            return
        read = self._next_index
        if read < expected - max(1, round(expected * _TRUNCATION_SLACK)):
            self._warning = (f"{self._text}: decoding stopped after {read} of the {expected} frames the file "
                             "announces (truncated or corrupt?); using the frames read")


# ------------------------------------------------------------------------------------ sources
class _Source(Protocol):
    """Where decoded images come from: a capture (file, camera, URL) or an image folder."""

    fps: float
    frames: int | None
    rotation: int

    def read(self) -> tuple[np.ndarray, float | None] | None:
        """The next image and, when the source knows it, its time in seconds; None at the end."""
        ...

    def seek(self, index: int) -> int:
        """Make frame ``index`` the next one read; returns the index of the frame that now is
        next (smaller than ``index`` when the source ends before it)."""
        ...

    def close(self) -> None: ...


def rotate_image(image: np.ndarray, degrees: int) -> np.ndarray:
    """``image`` turned clockwise by ``degrees`` (0, 90, 180 or 270), as a player shows a video
    whose rotation metadata says so."""
    if degrees == 90:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if degrees == 180:
        return cv2.rotate(image, cv2.ROTATE_180)
    if degrees == 270:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """``H × W × 3`` ``uint8`` C-contiguous BGR from whatever a decoder gave."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.shape[2] == 1:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / 65535.0) if image.dtype == np.uint16 else \
            np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def _quiet_open(target: str | int, api: int) -> cv2.VideoCapture:
    """``cv2.VideoCapture`` without OpenCV's warnings on stderr (the reader reports failures itself)."""
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)
    try:
        return cv2.VideoCapture(target, api)
    finally:
        cv2.utils.logging.setLogLevel(previous)


class _CaptureSource:
    """A source read through ``cv2.VideoCapture``."""

    def __init__(self, capture: cv2.VideoCapture, *, live: bool, path: Path | None = None) -> None:
        self._capture = capture
        self._live = live
        self._path = path
        self._opened_at = time.monotonic()
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if math.isfinite(fps) and 0 < fps < 10_000 else 0.0
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frames: int | None = int(count) if not live and math.isfinite(count) and count > 0 else None
        meta = capture.get(cv2.CAP_PROP_ORIENTATION_META)
        self.rotation = int(round(meta / 90.0)) * 90 % 360 if math.isfinite(meta) else 0
        # OpenCV turns frames itself when asked; where the back end cannot, the reader does.
        automatic = bool(capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)) and \
            capture.get(cv2.CAP_PROP_ORIENTATION_AUTO) == 1
        self._turn = 0 if automatic else self.rotation

    @classmethod
    def file(cls, path: Path, text: str) -> _CaptureSource:
        try:
            with open(path, "rb") as handle:
                empty = not handle.read(1)
        except OSError as exc:
            raise DataError(f"cannot read {text}: {exc.strerror or exc}; check its permissions") from None
        if empty:
            raise DataError(f"{text} is an empty file (0 bytes); it holds no video")
        # FFmpeg by name: the generic back-end choice would read '%d' in a file name as an image pattern.
        capture = _quiet_open(str(path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            known = path.suffix.lower() in VIDEO_SUFFIXES
            hint = ("the file is damaged, truncated or in a codec OpenCV cannot decode" if known
                    else "it is not a video format OpenCV's FFmpeg can read")
            raise DataError(f"cannot open {text} as a video: {hint}; check it plays, or re-encode it "
                            "(e.g. to H.264 mp4)")
        return cls(capture, live=False, path=path)

    @classmethod
    def camera(cls, index: int) -> _CaptureSource:
        capture = _quiet_open(index, cv2.CAP_ANY)
        if not capture.isOpened():
            capture.release()
            raise DataError(f"cannot open camera {index}: check it is connected and not used by "
                            "another program")
        return cls(capture, live=True)

    @classmethod
    def url(cls, url: str) -> _CaptureSource:
        capture = _quiet_open(url, cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            raise DataError(f"cannot open the stream {url}: check the address and that the stream is up")
        return cls(capture, live=True)

    def read(self) -> tuple[np.ndarray, float | None] | None:
        try:
            ok, image = self._capture.read()
        except cv2.error:
            return None  # a decoder failure mid-way ends the video at its last good frame
        if not ok or image is None or image.size == 0:
            return None
        if self._turn:
            image = rotate_image(image, self._turn)
        stamp = time.monotonic() - self._opened_at if self._live else \
            float(self._capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
        return _as_bgr(image), stamp

    def seek(self, index: int) -> int:
        if self._path is None:
            raise RuntimeError("only a file can seek")
        if self._capture.set(cv2.CAP_PROP_POS_FRAMES, index) and \
                int(round(self._capture.get(cv2.CAP_PROP_POS_FRAMES))) == index:
            return index
        # The container cannot seek exactly: read from the start again, skipping frames.
        self._capture.release()
        self._capture = _quiet_open(str(self._path), cv2.CAP_FFMPEG)
        self._capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        done = 0
        while done < index and self._capture.grab():
            done += 1
        return done

    def close(self) -> None:
        self._capture.release()


class _FolderSource:
    """The images of one folder, in natural name order (``frame2`` before ``frame10``)."""

    def __init__(self, folder: Path, text: str, fps: float) -> None:
        try:
            names = [e.name for e in os.scandir(folder)
                     if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES and e.is_file()]
        except OSError as exc:
            raise DataError(f"cannot list {text}: {exc.strerror or exc}; check its permissions") from None
        if not names:
            raise DataError(f"{text} is a folder without images ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                            "and not a video; pass a video file or a folder of frames")
        names.sort(key=natural_key)
        self._paths = [folder / name for name in names]
        self._text = text
        self._next = 0
        self._size: tuple[int, int] | None = None
        self.fps = fps
        self.frames: int | None = len(names)
        self.rotation = 0
        self._check_sizes()

    def _check_sizes(self) -> None:
        """Refuse a folder of mixed frame sizes before decoding, from the image headers
        (PNG, BMP, JPEG; other types are checked as they are decoded)."""
        first: tuple[int, int] | None = None
        first_path: Path | None = None
        for path in self._paths:
            size = image_header_size(path)
            if size is None:
                continue
            if first is None:
                first, first_path = size, path
            elif size != first:
                raise self._mixed(path, size, first, first_path)

    def _mixed(self, path: Path, size: tuple[int, int], first: tuple[int, int],
               first_path: Path | None) -> DataError:
        name = first_path.name if first_path is not None else self._paths[0].name
        return DataError(f"{path} is {size[0]}×{size[1]} but {name} is {first[0]}×{first[1]}: every frame of "
                         f"{self._text} must have one size; move the odd images out or resize them")

    def read(self) -> tuple[np.ndarray, float | None] | None:
        if self._next >= len(self._paths):
            return None
        path = self._paths[self._next]
        self._next += 1
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"cannot decode {path} as an image (damaged or not an image); "
                            "replace or remove it")
        size = (int(image.shape[1]), int(image.shape[0]))
        if self._size is None:
            self._size = size
        elif size != self._size:
            raise self._mixed(path, size, self._size, self._paths[0])
        return _as_bgr(image), None

    def seek(self, index: int) -> int:
        self._next = min(max(index, 0), len(self._paths))
        return self._next

    def close(self) -> None:
        self._next = len(self._paths)


# ------------------------------------------------------------------------------------ helpers
def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders the digit runs of a name by value: ``frame2`` before ``frame10``."""
    return tuple((0, int(part)) if part.isdigit() else (1, part.lower())
                 for part in re.split(r"(\d+)", name) if part)


def _clean_stem(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return cleaned or "video"


def _url_stem(url: str) -> str:
    parts = urlsplit(url)
    last = [p for p in parts.path.split("/") if p]
    name = os.path.splitext(last[-1])[0] if last else (parts.hostname or "stream")
    return _clean_stem(name)


def image_header_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from the header of a PNG, BMP or JPEG file (a JPEG's EXIF
    orientation applied, as the decoder does), None for other or unreadable files."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(65536)
    except OSError:
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    if head[:2] == b"BM" and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return abs(int(width)), abs(int(height))
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(head)
    return None


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    at, turned = 2, False
    while at + 4 <= len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker == 0xFF:
            at += 1
            continue
        length = struct.unpack(">H", head[at + 2:at + 4])[0]
        if marker == 0xE1 and head[at + 4:at + 10] == b"Exif\x00\x00":
            turned = _exif_orientation(head[at + 10:at + 2 + length]) in (5, 6, 7, 8)
        if marker in _SOF and at + 9 <= len(head):
            height, width = struct.unpack(">HH", head[at + 5:at + 9])
            return (int(height), int(width)) if turned else (int(width), int(height))
        at += 2 + length
    return None


def _exif_orientation(tiff: bytes) -> int:
    """The EXIF orientation tag (1–8) of a TIFF block, 1 when absent or unreadable."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    order = "<" if tiff[:2] == b"II" else ">"
    try:
        ifd = struct.unpack(order + "I", tiff[4:8])[0]
        count = struct.unpack(order + "H", tiff[ifd:ifd + 2])[0]
        for k in range(count):
            entry = ifd + 2 + 12 * k
            tag, _kind, _n = struct.unpack(order + "HHI", tiff[entry:entry + 8])
            if tag == 0x0112:
                return int(struct.unpack(order + "H", tiff[entry + 8:entry + 10])[0])
    except struct.error:
        return 1
    return 1
