"""Several walkers per video, one track each: blobs per frame, association across frames.

A segmenter gives one person mask per frame; :func:`find_blobs` cuts it into person-sized
blobs and :class:`Tracker` links the blobs of consecutive frames into tracks, one per walker.
Everything here works frame by frame on a few numbers per track, so a stream of any length
needs no more memory than its first frame (``gait identify --stream``).

**Blobs.** The 8-connected components of the mask (``cv2.connectedComponentsWithStats``).
Background subtraction often cuts a body in pieces (an arm, or a head or legs separated by a
band of clothing the colour of the background), so a smaller component joins a larger one when
its box lies mostly (at least ``_ABSORB`` of its box area) within the larger box grown by
``_GROW`` of its height, or when it sits right above or below it (:func:`_stacked`: most of
the narrower one's width over the other, a gap of at most ``_GROW`` of their joint height, the
two together still taller than wide); this repeats until nothing changes. People side by side
stay apart. Blobs smaller than ``min_area`` are dropped after that (fragments counted into
their body first).

**Association.** Each live track predicts its box at the new frame with a constant velocity
(the smoothed centroid motion per update). A blob may continue a track when its box overlaps
the prediction with an IoU of at least ``iou_threshold``, or when its centroid lies within
``max_distance`` box heights of the predicted centroid (a small, fast or partly missing walker
has little overlap). Among those pairs the tracks and blobs are matched by an *exact* minimum-
cost assignment (:func:`assign`, SciPy's ``linear_sum_assignment``; cost ``1 - IoU + distance
/ height``): with a handful of people a greedy match on sorted costs is usually the same, but when two
walkers pass close by, greedy can give the nearest blob to the wrong walker and swap them,
and the exact method costs microseconds at this size.

**Merges and splits.** When one blob covers the predicted boxes of two or more live tracks
seen at the last update and at least ``_MERGE_AGE`` times (at least ``_COVER`` of each box
inside the blob's box, each track at least ``_PART`` of the blob's area, and the blob at least
``_UNION`` of their areas together), the walkers touched or overlap and their pixels can no
longer be told apart: their tracks end there (``ended_by="merge"``; kept if they have enough
usable frames), and the merged blob starts a *merged* track whose every frame is marked
``merged``; it is dropped ("two walkers merged ..."). When its last box (grown by
``_SPLIT_GROW``) later holds two or more blobs of a walker's size (each at least
``_SPLIT_PART`` of its area, together at most ``_SPLIT_SUM`` times it), the walkers separated:
the merged track ends (``ended_by="split"``) and the blobs start new tracks. A plain track that
splits like that held two walkers who came into view together: it ends the same way, is
counted as merged in every frame and dropped for the same reason. A walker is not
re-identified across a merge; identifying the new tracks does that.

**End and quality.** A track ends when no blob matched it for more than ``max_gap`` updates
(its walker left, or was hidden too long); :meth:`Tracker.finish` ends the rest at the end of
the video. Its :class:`TrackSummary` counts the frames it was seen, those usable for gait
(not touching the image border, not merged), mean area, border and merged frames, and gives
the reason when it is dropped (merged, always at the border, fewer usable frames than
``min_frames``).

Frame counts (``max_gap``, velocity) are in updates, i.e. processed frames: with ``--stride``
or ``--fps`` a gap of 5 is 5 processed frames, whatever their decoded indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from gaitcli.errors import option

__all__ = [
    "Blob",
    "Observation",
    "TrackQuality",
    "TrackSummary",
    "TrackUpdate",
    "Tracker",
    "TrackingOptions",
    "assign",
    "box_iou",
    "find_blobs",
]

Box = tuple[int, int, int, int]
"""``x0, y0, x1, y1`` in frame pixels, ``x1``/``y1`` exclusive."""

AUTO_MIN_AREA = 0.002
"""``min_area = 0`` means this share of the frame area (0.2 %: 461 pixels at 640x360)."""

_ABSORB = 0.6  # a fragment joins a larger blob when this share of its box lies in the grown box
_GROW = 0.1  # the larger blob's box is grown by this share of its height (detached head, feet)
_FRAGMENT = 4  # components below this many pixels are speckle: never blobs, never joined
_COVER = 0.5  # a walker is inside a blob when this share of its predicted box is in the blob's box
_PART = 0.15  # ... and it is at least this share of the blob's area (not a stray speck's track)
_UNION = 0.5  # ... and the blob is at least this share of the walkers' areas together
_RECENT = 1  # only walkers seen within this many updates can merge
_MERGE_AGE = 3  # ... and only tracks seen this often (not a fragment that came and went)
_SPLIT_GROW = 0.25  # a track's last box, grown by this share, holds the blobs it splits into
_SPLIT_PART = 0.3  # ... each at least this share of the track's last area
_SPLIT_SUM = 1.4  # ... and together at most this multiple of it (not a neighbour walking by)
_VELOCITY_SMOOTHING = 0.5  # weight of the newest displacement in the velocity estimate
_INFEASIBLE = 1e6  # cost of a pair the gates refuse


@dataclass(frozen=True)
class TrackingOptions:
    """Blob and association parameters (every field is a ``gait silhouettes`` option)."""

    min_area: int = 0
    """Blobs with fewer pixels are ignored (noise, small animals); 0 = auto, 0.2 % of the frame
    area. Raise it when far-away people or shadows start tracks of their own."""
    iou_threshold: float = 0.1
    """Box IoU with a track's predicted box that lets a blob continue the track."""
    max_distance: float = 0.5
    """Or: the blob's centroid within this many box heights of the predicted centroid."""
    max_gap: int = 5
    """Processed frames a track survives without a blob (a walker hidden behind a pillar, a
    frame the segmenter missed) before it ends."""
    min_frames: int = 15
    """Tracks with fewer usable frames are dropped, with the reason."""
    border_margin: int = 2
    """A blob whose box comes this close (pixels) to the frame edge is cut by it: its frames
    are counted, not used."""

    def area_floor(self, shape: tuple[int, ...]) -> int:
        """``min_area`` in pixels for a frame of ``shape`` (the auto value when 0)."""
        if self.min_area > 0:
            return int(self.min_area)
        return max(1, int(round(AUTO_MIN_AREA * int(shape[0]) * int(shape[1]))))


# --------------------------------------------------------------------------- blobs
@dataclass(frozen=True, eq=False)
class Blob:
    """One person-sized region of a frame's mask."""

    box: Box
    """``x0, y0, x1, y1`` (exclusive) in frame pixels."""
    area: int
    """Pixels of the blob."""
    centroid: tuple[float, float]
    """``x, y`` centre of mass of its pixels."""
    touches_border: bool
    """Its box comes within ``border_margin`` of the frame edge (the body may be cut)."""
    mask: np.ndarray
    """``bool`` of the box's shape: the blob's pixels (only this blob's, not a neighbour's)."""

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]


def _box_area(box: Box) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def _intersection(a: Box, b: Box) -> int:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when either is empty)."""
    inter = _intersection(a, b)
    union = _box_area(a) + _box_area(b) - inter
    return inter / union if union > 0 else 0.0


def _grow(box: Box, by: float) -> Box:
    """``box`` grown on every side by ``by`` times its height."""
    d = int(round(by * (box[3] - box[1])))
    return box[0] - d, box[1] - d, box[2] + d, box[3] + d


def _union(a: Box, b: Box) -> Box:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _stacked(big: Box, small: Box) -> bool:
    """``small`` sits right above or below ``big`` (a body cut across by a band of background
    colour): at least ``_ABSORB`` of the narrower one's width over the other (legs in mid-stride
    are wider than the torso above them), a gap of at most ``_GROW`` of the two's joint height,
    and the two together still upright (taller than wide)."""
    overlap = min(big[2], small[2]) - max(big[0], small[0])
    gap = max(small[1] - big[3], big[1] - small[3])
    joint = _union(big, small)
    narrower = min(small[2] - small[0], big[2] - big[0])
    return (overlap >= _ABSORB * narrower and gap <= _GROW * (joint[3] - joint[1])
            and joint[3] - joint[1] >= joint[2] - joint[0])


def _group_components(boxes: list[Box], areas: list[int]) -> list[list[int]]:
    """Indices of the components that form each blob: fragments join the larger boxes they
    lie in, largest first, until nothing changes."""
    groups = [[i] for i in range(len(boxes))]
    gbox = list(boxes)
    garea = list(areas)
    changed = True
    while changed:
        changed = False
        order = sorted(range(len(groups)), key=lambda g: -garea[g])
        for big in order:
            if not groups[big]:
                continue
            grown = _grow(gbox[big], _GROW)
            for small in order:
                if small == big or not groups[small] or garea[small] > garea[big]:
                    continue
                box = gbox[small]
                if _intersection(grown, box) >= _ABSORB * _box_area(box) or _stacked(gbox[big], box):
                    groups[big] += groups[small]
                    gbox[big] = _union(gbox[big], box)
                    garea[big] += garea[small]
                    groups[small] = []
                    changed = True
    return [g for g in groups if g]


def find_blobs(mask: np.ndarray, options: TrackingOptions) -> list[Blob]:
    """The person-sized blobs of a ``H x W`` mask (non-zero = person), left to right.

    Components are merged as described in the module docstring, then blobs under
    ``options.min_area`` (auto when 0) are dropped.
    """
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    binary = mask if mask.dtype == np.uint8 else (mask != 0).astype(np.uint8)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
    ids = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= _FRAGMENT]
    if not ids:
        return []
    boxes: list[Box] = []
    areas: list[int] = []
    for i in ids:
        x, y, w, h = (int(v) for v in stats[i, :4])
        boxes.append((x, y, x + w, y + h))
        areas.append(int(stats[i, cv2.CC_STAT_AREA]))
    floor = options.area_floor(mask.shape)
    height, width = mask.shape
    margin = options.border_margin
    blobs: list[Blob] = []
    for group in _group_components(boxes, areas):
        area = sum(areas[g] for g in group)
        if area < floor:
            continue
        x0 = min(boxes[g][0] for g in group)
        y0 = min(boxes[g][1] for g in group)
        x1 = max(boxes[g][2] for g in group)
        y1 = max(boxes[g][3] for g in group)
        crop = labels[y0:y1, x0:x1]
        if len(group) == 1:
            own = crop == ids[group[0]]
        else:
            own = np.isin(crop, [ids[g] for g in group])
        cx = sum(float(centroids[ids[g], 0]) * areas[g] for g in group) / area
        cy = sum(float(centroids[ids[g], 1]) * areas[g] for g in group) / area
        border = x0 <= margin or y0 <= margin or x1 >= width - margin or y1 >= height - margin
        blobs.append(Blob((x0, y0, x1, y1), area, (cx, cy), bool(border), own))
    blobs.sort(key=lambda b: (b.box[0], b.box[1]))
    return blobs


# --------------------------------------------------------------------------- assignment
def assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """The ``(row, column)`` pairs of a minimum-cost assignment of a rectangular cost matrix,
    sorted by row.

    Every row is matched when there are no more rows than columns (else every column):
    SciPy's ``linear_sum_assignment`` (an exact shortest-augmenting-path method). The caller
    removes pairs whose cost marks them infeasible (a large finite cost: the assignment then
    first maximises the number of feasible pairs, as long as the large cost exceeds any sum of
    feasible ones).
    """
    cost = np.asarray(cost, dtype=float)
    if cost.ndim != 2 or cost.size == 0:
        return []
    rows, cols = linear_sum_assignment(cost)
    return sorted((int(r), int(c)) for r, c in zip(rows, cols, strict=True))


# --------------------------------------------------------------------------- tracks
@dataclass(frozen=True)
class Observation:
    """A blob given to a track at one frame."""

    frame: int
    """Decoded frame index."""
    blob: Blob
    merged: bool
    """The blob covers two or more walkers (its track is a merged one)."""


@dataclass
class TrackQuality:
    """How much of a track is usable for gait."""

    frames: int = 0
    """Frames it was observed in."""
    kept: int = 0
    """Usable frames: not touching the border, not merged (lowered by :meth:`Tracker.unusable`
    when the normalisation drops one)."""
    mean_area: float = 0.0
    """Mean blob area over its frames (pixels)."""
    border_frames: int = 0
    """Frames whose blob touched the image border."""
    merged_frames: int = 0
    """Frames whose blob covered two or more walkers."""


@dataclass
class TrackSummary:
    """A track that has ended, with its decision."""

    number: int
    """1, 2, 3, ... in order of first appearance in the video."""
    first: int
    """Decoded index of its first frame."""
    last: int
    """Decoded index of its last frame."""
    quality: TrackQuality
    drop_reason: str | None
    """``None``: kept; else why it is dropped (one line)."""
    ended_by: str = "left"
    """Why it ended: ``left`` (no blob for more than ``max_gap`` frames), ``merge`` (it merged
    with another walker), ``split`` (a merged track whose walkers separated) or ``end`` (the
    video ended)."""


@dataclass(frozen=True)
class TrackUpdate:
    """What one frame changed."""

    assigned: list[tuple[int, Observation]]
    """``(track number, observation)`` for every blob of this frame, in blob order."""
    ended: list[TrackSummary]
    """Tracks that ended at this update (walker left, merge, split)."""


@dataclass
class _Track:
    number: int
    merged: bool
    first: int
    last: int
    box: Box
    centroid: tuple[float, float]
    area: int
    seen_at: int  # update count of its last observation
    velocity: tuple[float, float] = (0.0, 0.0)
    quality: TrackQuality = field(default_factory=TrackQuality)
    area_sum: float = 0.0
    usable_last: bool = False
    entered_merged: bool = False  # a plain track that split in two: it held two walkers

    def predict(self, now: int) -> tuple[Box, tuple[float, float]]:
        """Box and centroid expected at update ``now`` (constant velocity)."""
        dt = now - self.seen_at
        dx = int(round(self.velocity[0] * dt))
        dy = int(round(self.velocity[1] * dt))
        x0, y0, x1, y1 = self.box
        return (x0 + dx, y0 + dy, x1 + dx, y1 + dy), (self.centroid[0] + dx, self.centroid[1] + dy)

    def observe(self, now: int, frame: int, blob: Blob) -> Observation:
        dt = max(1, now - self.seen_at)
        if self.quality.frames:
            step = ((blob.centroid[0] - self.centroid[0]) / dt, (blob.centroid[1] - self.centroid[1]) / dt)
            a = _VELOCITY_SMOOTHING
            vx, vy = self.velocity
            self.velocity = (a * step[0] + (1 - a) * vx, a * step[1] + (1 - a) * vy)
        self.box, self.centroid, self.area = blob.box, blob.centroid, blob.area
        self.seen_at, self.last = now, frame
        q = self.quality
        q.frames += 1
        self.area_sum += blob.area
        q.mean_area = self.area_sum / q.frames
        q.border_frames += blob.touches_border
        q.merged_frames += self.merged
        self.usable_last = not (self.merged or blob.touches_border)
        q.kept += self.usable_last
        return Observation(frame, blob, self.merged)


class Tracker:
    """Links the blobs of successive frames into tracks (see the module docstring).

    Call :meth:`update` once per processed frame with that frame's blobs, in frame order,
    then :meth:`finish` at the end of the video. Only the live tracks are kept in memory.
    """

    def __init__(self, options: TrackingOptions) -> None:
        self.options = options
        self._live: list[_Track] = []
        self._next = 1
        self._now = 0

    @property
    def live(self) -> list[int]:
        """Numbers of the tracks still open."""
        return [t.number for t in self._live]

    def unusable(self, number: int) -> None:
        """The latest observation of live track ``number`` turned out unusable (the
        normalisation dropped it): it no longer counts as kept."""
        for track in self._live:
            if track.number == number and track.usable_last:
                track.quality.kept -= 1
                track.usable_last = False

    # -- the end of a track
    def _summary(self, track: _Track, ended_by: str) -> TrackSummary:
        q = track.quality
        reason: str | None = None
        if track.merged:
            reason = "two walkers merged and could not be told apart"
        elif track.entered_merged:
            reason = ("two walkers merged and could not be told apart (they came into view together "
                      f"and separated after frame {track.last})")
        elif q.border_frames == q.frames:
            reason = "touches the image border in every frame"
        elif q.kept < self.options.min_frames:
            reason = f"{q.kept} usable frames < {option('min_frames', self.options.min_frames)}"
            if ended_by == "merge":
                reason += " (ended when it merged with another walker)"
        return TrackSummary(track.number, track.first, track.last, q, reason, ended_by)

    def _end(self, tracks: Sequence[_Track], ended_by: str, into: list[TrackSummary]) -> None:
        gone = {id(t) for t in tracks}
        self._live = [t for t in self._live if id(t) not in gone]
        into.extend(self._summary(t, ended_by) for t in sorted(tracks, key=lambda t: t.number))

    def _start(self, frame: int, blob: Blob, merged: bool) -> tuple[int, Observation]:
        track = _Track(self._next, merged, frame, frame, blob.box, blob.centroid, blob.area, self._now)
        self._next += 1
        self._live.append(track)
        return track.number, track.observe(self._now, frame, blob)

    # -- one frame
    def _merges(self, blobs: Sequence[Blob], used: set[int]) -> list[tuple[int, list[_Track]]]:
        """Blobs that cover two or more recently seen walkers, with those walkers."""
        out: list[tuple[int, list[_Track]]] = []
        taken: set[int] = set()
        for b, blob in enumerate(blobs):
            inside: list[_Track] = []
            for track in self._live:
                if (id(track) in taken or self._now - track.seen_at > _RECENT
                        or track.quality.frames < _MERGE_AGE):
                    continue
                box, _ = track.predict(self._now)
                if (_intersection(box, blob.box) >= _COVER * _box_area(box)
                        and track.area >= _PART * blob.area):
                    inside.append(track)
            if len(inside) >= 2 and blob.area >= _UNION * sum(t.area for t in inside):
                out.append((b, inside))
                taken.update(id(t) for t in inside)
                used.add(b)
        return out

    def _splits(self, blobs: Sequence[Blob], used: set[int]) -> list[_Track]:
        """Tracks seen at the last update whose (grown) last box now holds two or more separate
        blobs of a walker's size: the blob held two walkers. A merged track expects it; a plain
        one held two walkers who came into view together, so it is marked merged too."""
        out = []
        for track in self._live:
            if self._now - track.seen_at > _RECENT:
                continue
            region = _grow(track.box, _SPLIT_GROW)
            parts = [
                blob for b, blob in enumerate(blobs)
                if b not in used and blob.area >= _SPLIT_PART * track.area
                and _intersection(region, blob.box) >= _ABSORB * _box_area(blob.box)
            ]
            total = sum(blob.area for blob in parts)
            if len(parts) >= 2 and total <= _SPLIT_SUM * track.area:
                if not track.merged:
                    track.entered_merged = True
                    track.quality.merged_frames = track.quality.frames
                    track.quality.kept = 0
                out.append(track)
        return out

    def _match(self, blobs: Sequence[Blob], used: set[int]) -> list[tuple[_Track, int]]:
        """Live tracks to free blobs by the exact minimum-cost assignment within the gates."""
        free = [b for b in range(len(blobs)) if b not in used]
        if not self._live or not free:
            return []
        cost = np.full((len(self._live), len(free)), _INFEASIBLE)
        for r, track in enumerate(self._live):
            box, centre = track.predict(self._now)
            height = max(1, box[3] - box[1])
            for c, b in enumerate(free):
                blob = blobs[b]
                iou = box_iou(box, blob.box)
                dist = float(np.hypot(blob.centroid[0] - centre[0], blob.centroid[1] - centre[1]))
                scale = max(height, blob.height)
                if iou >= self.options.iou_threshold or dist <= self.options.max_distance * scale:
                    cost[r, c] = 1.0 - iou + dist / scale
        pairs = assign(cost)
        return [(self._live[r], free[c]) for r, c in pairs if cost[r, c] < _INFEASIBLE]

    def update(self, frame: int, blobs: Sequence[Blob]) -> TrackUpdate:
        """Assign this frame's blobs to tracks; returns the assignments and the tracks that ended."""
        self._now += 1
        ended: list[TrackSummary] = []
        assigned: dict[int, tuple[int, Observation]] = {}
        used: set[int] = set()

        merges = self._merges(blobs, used)
        for _, tracks in merges:
            self._end(tracks, "merge", ended)
        self._end(self._splits(blobs, used), "split", ended)
        fresh = {b for b, _ in merges}
        matched = self._match(blobs, used)
        seen = {id(t) for t, _ in matched}
        for track, b in matched:
            assigned[b] = (track.number, track.observe(self._now, frame, blobs[b]))
            used.add(b)
        for b, blob in enumerate(blobs):
            if b not in assigned:
                assigned[b] = self._start(frame, blob, merged=b in fresh)
                seen.add(id(self._live[-1]))
        gone = [t for t in self._live if id(t) not in seen and self._now - t.seen_at > self.options.max_gap]
        self._end(gone, "left", ended)
        return TrackUpdate([assigned[b] for b in sorted(assigned)], ended)

    def finish(self) -> list[TrackSummary]:
        """End every open track (the end of the video), in track order."""
        ended: list[TrackSummary] = []
        self._end(list(self._live), "end", ended)
        return ended


def _inside(point: tuple[float, float], box: Box) -> bool:
    return box[0] <= point[0] < box[2] and box[1] <= point[1] < box[3]
