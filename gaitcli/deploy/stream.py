"""``gait identify --stream``: identities of the walkers of a live source, as the frames come.

Frames are read one at a time (:func:`gaitcli.video.readers.open_video` with ``stream=True``),
segmented, tracked and normalised by the very :class:`~gaitcli.video.stream.TrackStream` that
``gait silhouettes`` uses. Per track, once it holds ``min(window, min_frames)`` silhouettes and
then every ``every`` new ones, its last ``window`` silhouettes are embedded and matched against
the gallery: one :class:`Decision`. When the track ends (its walker left, two walkers merged,
the source ended or Ctrl-C), the silhouettes that came after its last window give one more
window, then a final decision votes over its windows: the answer given most often, ties broken
by the smaller mean distance. See docs/video.md, "Streaming".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from gaitcli.errors import GaitError, option
from gaitcli.evaluation.features import FeatureSet
from gaitcli.fileio import JSONValue
from gaitcli.video.backends import make_segmenter
from gaitcli.video.readers import open_video
from gaitcli.video.silhouettes import SilhouetteOptions
from gaitcli.video.stream import TrackFrames, TrackStream
from gaitcli.video.tracking import TrackSummary

from .compat import Source, check_compatible, feature_file
from .embed import LoadedModel, embed_walks, load_for_inference
from .identify import GalleryIndex, Threshold, answer_probes, select_gallery
from .inputs import Walk, WalkSet

__all__ = ["Decision", "StreamResult", "open_stream_model", "stream_identify", "vote"]


@dataclass(frozen=True)
class Decision:
    """One answer for one track: over a window, or (``final``) the vote of its windows."""

    probe: str
    """The source (file, camera index or URL)."""
    track: int
    """The track's number in the source."""
    frames: tuple[int, int]
    """First and last decoded frame index (from 0) of the silhouettes it used."""
    answer: str | None
    """The identity, or ``None`` (unknown: above the threshold)."""
    distance: float | None
    """Distance to that identity (final: the mean over the windows that gave it)."""
    final: bool = False
    """The track's last line: the vote over its windows."""
    windows: int = 1
    """Windows behind this answer (final: all the track's windows)."""

    def to_json(self) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {"probe": self.probe, "track": self.track, "frames": list(self.frames),
                                     "answer": self.answer,
                                     "distance": None if self.distance is None else round(self.distance, 6)}
        if self.final:
            out.update({"final": True, "windows": self.windows})
        return out


@dataclass
class StreamResult:
    """Everything a stream produced."""

    decisions: list[Decision] = field(default_factory=list)
    frames: int = 0
    """Frames decoded."""
    seconds: float = 0.0
    interrupted: bool = False
    """Ended by Ctrl-C."""


def vote(probe: str, track: int, windows: list[Decision]) -> Decision:
    """The final decision of a track: the most frequent answer, ties broken by the smaller mean
    distance (unknown counts as an answer of its own)."""
    tally: dict[str | None, list[float]] = {}
    for d in windows:
        tally.setdefault(d.answer, []).append(d.distance if d.distance is not None else float("inf"))
    best = min(tally, key=lambda a: (-len(tally[a]), float(np.mean(tally[a]))))
    mean = float(np.mean(tally[best]))
    first, last = windows[0].frames[0], windows[-1].frames[1]
    distance = mean if np.isfinite(mean) else None
    return Decision(probe, track, (first, last), best, distance, True, len(windows))


class _Decider:
    def __init__(self, source: str, loaded: LoadedModel, gallery: FeatureSet, threshold: Threshold | None,
                 every: int, window: int, first_at: int) -> None:
        self.source, self.loaded, self.threshold = source, loaded, threshold
        self.every, self.window, self.first_at = every, window, first_at
        metric = str(gallery.meta.get("metric") or "euc")
        self.index = GalleryIndex(gallery, select_gallery(gallery, None), metric)
        self.last: dict[int, int] = {}
        self.windows: dict[int, list[Decision]] = {}

    def due(self, track: TrackFrames) -> bool:
        n = track.total
        last = self.last.get(track.number)
        return n >= self.first_at if last is None else n - last >= self.every

    def pending(self, track: TrackFrames) -> bool:
        """At the track's end: silhouettes that no window has used yet (and enough of them)."""
        last = self.last.get(track.number)
        return track.total >= self.first_at if last is None else track.total > last

    def decide(self, track: TrackFrames) -> Decision:
        arr = track.array(self.window)
        walk = Walk(f"{Path(self.source).name}-t{track.number}", "", "", self.source,
                    lambda: [arr], track=track.number)
        with torch.inference_mode():
            feats = embed_walks(self.loaded, WalkSet([walk]))
        [answer] = answer_probes(self.index, feats, top_k=1, threshold=self.threshold)
        best = answer.best
        frames = (track.indices[-len(arr)], track.indices[-1])
        decision = Decision(self.source, track.number, frames, answer.identity,
                            None if best is None else float(best.distance))
        self.last[track.number] = track.total
        self.windows.setdefault(track.number, []).append(decision)
        return decision

    def final(self, summary: TrackSummary) -> Decision | None:
        windows = self.windows.pop(summary.number, [])
        self.last.pop(summary.number, None)
        return vote(self.source, summary.number, windows) if windows else None


def open_stream_model(checkpoint: str, gallery: FeatureSet, gallery_name: str, *, img_size: str | None,
                      device: str | None, precision: str = "fp32") -> LoadedModel:
    """The checkpoint that embeds the walkers, checked against the gallery (same model)."""
    loaded = load_for_inference(checkpoint, img_size=img_size, device=device,
                                metric=gallery.meta.get("metric"), precision=precision)
    check_compatible(feature_file(gallery.provenance, f"gallery {gallery_name}"),
                     Source(loaded.provenance, f"checkpoint {checkpoint}"))
    return loaded


def stream_identify(
    source: str,
    loaded: LoadedModel,
    gallery: FeatureSet,
    video: SilhouetteOptions,
    *,
    every: int = 10,
    window: int = 30,
    threshold: Threshold | None = None,
    emit: Callable[[Decision], None] = lambda d: None,
) -> StreamResult:
    """Identify the walkers of ``source`` as its frames come (module docstring); every decision
    is passed to ``emit`` as soon as it is made."""
    if every < 1:
        raise GaitError(f"{option('stride', every)}: must be at least 1")
    if window < 1:
        raise GaitError(f"{option('window', window)}: must be at least 1")
    size = loaded.frame_size
    if size[0] != size[1]:
        raise GaitError(f"{source}: video tracks are square silhouettes, and this checkpoint takes "
                        f"{size[0]}x{size[1]} frames")
    video = replace(video, img_size=size[0])
    decider = _Decider(source, loaded, gallery, threshold, every, window,
                       min(window, video.tracking.min_frames))
    result = StreamResult()
    started = time.perf_counter()
    segmenter = make_segmenter(video.backend, video.segmentation)
    stream = TrackStream(segmenter, video.tracking, size[0], keep_last=window)

    def publish(decision: Decision | None) -> None:
        if decision is not None:
            result.decisions.append(decision)
            emit(decision)

    def finish(summaries: tuple[TrackSummary, ...]) -> None:
        for summary in summaries:
            frames = stream.pop(summary.number)
            if decider.pending(frames):  # the silhouettes since the last window count too
                publish(decider.decide(frames))
            publish(decider.final(summary))

    try:
        with open_video(source, video.reading, stream=True) as reader:
            try:
                for frame in reader:
                    step = stream.push(frame)
                    for number in step.added:
                        track = stream.tracks[number]
                        if decider.due(track):
                            publish(decider.decide(track))
                    finish(step.ended)
            except KeyboardInterrupt:
                result.interrupted = True
            result.frames = reader.decoded
        finish(stream.finish())
    finally:
        segmenter.close()
    result.seconds = time.perf_counter() - started
    return result
