"""From frames to normalised silhouettes per track: segment, track, pretreat (docs/video.md).

:class:`TrackStream` takes decoded frames one at a time, so ``gait silhouettes`` (whole videos)
and ``gait identify --stream`` (frames as they come) share it. For every frame it asks the
segmenter for a person mask, finds the blobs and lets the tracker assign them to tracks; each
blob of a track that is not cut by the image border and not merged with another walker is
pasted alone into an empty full-frame mask and normalised by :func:`gaitcli.data.pretreat.
pretreat_frame`, the very function ``gait prepare`` applies to a PNG silhouette, so a track's
silhouettes are what ``gait prepare`` makes of its masks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gaitcli.data.pretreat import pretreat_frame
from gaitcli.video.backends import Segmenter
from gaitcli.video.readers import Frame
from gaitcli.video.tracking import Blob, Tracker, TrackingOptions, TrackSummary, find_blobs

__all__ = ["MaskSink", "StreamStep", "TrackFrames", "TrackStream", "full_frame_mask"]

MaskSink = Callable[[int, int, np.ndarray], None]
"""Called as ``sink(track, frame_index, mask)`` with the full-frame ``uint8`` mask (0 / 255) of
every observation of a track (``--keep-masks``)."""


@dataclass
class TrackFrames:
    """The normalised silhouettes of one track so far."""

    number: int
    """The track's number in its video (1, 2, ... in order of appearance)."""
    indices: list[int] = field(default_factory=list)
    """Decoded frame index (from 0) of every silhouette."""
    silhouettes: list[np.ndarray] = field(default_factory=list)
    """``[img_size, img_size]`` uint8 silhouettes, in frame order."""
    dropped: int = 0
    """Usable frames the pretreatment dropped (too few pixels, no centre)."""
    total: int = 0
    """Silhouettes added so far (``silhouettes`` may hold only the last ones, see ``keep_last``)."""

    def array(self, last: int | None = None) -> np.ndarray:
        """The silhouettes as ``[T, S, S]`` (only the ``last`` ones when given)."""
        picked = self.silhouettes if last is None else self.silhouettes[-last:]
        return np.stack(picked)


@dataclass(frozen=True)
class StreamStep:
    """What one frame changed."""

    added: tuple[int, ...]
    """Tracks that received a new silhouette at this frame."""
    ended: tuple[TrackSummary, ...]
    """Tracks that ended at this frame (their walker left, or two walkers merged)."""


def full_frame_mask(blob: Blob, shape: tuple[int, int], canvas: np.ndarray | None = None) -> np.ndarray:
    """``blob`` alone in an otherwise empty ``uint8`` frame of ``shape`` (255 = person).

    With ``canvas`` (an all-zero array of ``shape``), the blob is pasted into it and the caller
    must clear it again (:func:`_clear`); this saves an allocation per blob."""
    out = np.zeros(shape, dtype=np.uint8) if canvas is None else canvas
    x0, y0, x1, y1 = blob.box
    out[y0:y1, x0:x1][blob.mask] = 255
    return out


def _clear(canvas: np.ndarray, blob: Blob) -> None:
    x0, y0, x1, y1 = blob.box
    canvas[y0:y1, x0:x1] = 0


class TrackStream:
    """Segment, track and normalise frames one at a time.

    ``tracks`` holds the silhouettes of every track seen so far (kept until :meth:`pop`; with
    ``keep_last`` only about the last ones, for endless streams), and ``summaries`` every track
    that has ended, in the order they ended.
    """

    def __init__(self, segmenter: Segmenter, tracking: TrackingOptions, img_size: int,
                 masks: MaskSink | None = None, keep_last: int | None = None) -> None:
        self.segmenter = segmenter
        self.tracking = tracking
        self.tracker = Tracker(tracking)
        self.img_size = img_size
        self.masks = masks
        self.keep_last = keep_last
        self.tracks: dict[int, TrackFrames] = {}
        self.summaries: list[TrackSummary] = []
        self.frames_seen = 0
        self._canvas: np.ndarray | None = None

    def push(self, frame: Frame) -> StreamStep:
        """Process one decoded frame."""
        mask = self.segmenter.segment(frame.image)
        self.frames_seen += 1
        if self.frames_seen <= self.segmenter.warmup:
            return StreamStep((), ())  # the background model is still learning: no blobs yet
        blobs = find_blobs(mask, self.tracking)
        update = self.tracker.update(frame.index, blobs)
        shape = (int(mask.shape[0]), int(mask.shape[1]))
        if self._canvas is None or self._canvas.shape != shape:
            self._canvas = np.zeros(shape, dtype=np.uint8)
        added: list[int] = []
        for number, obs in update.assigned:
            track = self.tracks.setdefault(number, TrackFrames(number))
            canvas = full_frame_mask(obs.blob, shape, self._canvas)
            try:
                if self.masks is not None:
                    self.masks(number, frame.index, canvas)
                if obs.merged or obs.blob.touches_border:
                    continue  # a merged or cut body is not one walker's gait
                silhouette = pretreat_frame(canvas, self.img_size)
            finally:
                _clear(canvas, obs.blob)
            if silhouette is None:
                track.dropped += 1
                self.tracker.unusable(number)
                continue
            track.indices.append(frame.index)
            track.silhouettes.append(silhouette)
            track.total += 1
            if self.keep_last is not None and len(track.silhouettes) > 2 * self.keep_last:
                del track.silhouettes[: -self.keep_last], track.indices[: -self.keep_last]
            added.append(number)
        self.summaries.extend(update.ended)
        return StreamStep(tuple(added), tuple(update.ended))

    def finish(self) -> tuple[TrackSummary, ...]:
        """End every open track (end of the video); returns the tracks that ended now."""
        ended = tuple(self.tracker.finish())
        self.summaries.extend(ended)
        return ended

    def pop(self, number: int) -> TrackFrames:
        """The silhouettes of track ``number`` (forgotten here; empty if it never had one)."""
        return self.tracks.pop(number, None) or TrackFrames(number)
