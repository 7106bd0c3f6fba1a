"""Tests for gaitcli.video.tracking: blobs, association, merges and splits, quality and drop reasons.

Walks come from synthetic videos' ground-truth masks (gaitcli.synth.video, 320x180, at most 70
frames) or from hand-drawn rectangles where a scenario must be exact.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from gaitcli.synth.video import VideoStyle, VideoTruth, VideoWalker, render_video
from gaitcli.video.tracking import (
    Blob,
    Observation,
    Tracker,
    TrackingOptions,
    TrackSummary,
    assign,
    find_blobs,
)

STYLE = VideoStyle(width=320, height=180, lead_in=5, noise=0.0, light_drift=0.0)
OPTIONS = TrackingOptions(min_frames=10)


def _track(masks: Sequence[np.ndarray], options: TrackingOptions = OPTIONS,
           ) -> tuple[list[TrackSummary], dict[int, list[Observation]], list[tuple[int, list[int]]]]:
    """Run the tracker over masks; summaries in the order they ended, observations per track,
    and (frame, numbers of the tracks that ended there)."""
    tracker = Tracker(options)
    summaries: list[TrackSummary] = []
    observations: dict[int, list[Observation]] = {}
    ends: list[tuple[int, list[int]]] = []
    for frame, mask in enumerate(masks):
        update = tracker.update(frame, find_blobs(mask, options))
        for number, obs in update.assigned:
            assert obs.frame == frame
            observations.setdefault(number, []).append(obs)
        summaries += update.ended
        if update.ended:
            ends.append((frame, [s.number for s in update.ended]))
    summaries += tracker.finish()
    return summaries, observations, ends


def _owners(truth: VideoTruth, observations: list[Observation]) -> Counter[int]:
    """Per observation, the walker whose ground truth overlaps the blob most."""
    owners: Counter[int] = Counter()
    for obs in observations:
        x0, y0, x1, y1 = obs.blob.box
        overlap = [int((truth.mask(obs.frame, w)[y0:y1, x0:x1] & obs.blob.mask).sum())
                   for w in range(len(truth.walkers))]
        owners[int(np.argmax(overlap))] += 1
    return owners


def _gt_masks(truth: VideoTruth) -> list[np.ndarray]:
    return [truth.mask(f).astype(np.uint8) * 255 for f in range(truth.frames)]


@pytest.fixture(scope="module")
def apart(tmp_path_factory: pytest.TempPathFactory) -> VideoTruth:
    walkers = [VideoWalker(0, 1, offset=(0, 20), scale=0.5, length=40),
               VideoWalker(0, 2, offset=(160, 50), scale=0.5, start=5, length=40)]
    return render_video(tmp_path_factory.mktemp("v") / "apart.mp4", walkers, 65, STYLE)


@pytest.fixture(scope="module")
def crossing(tmp_path_factory: pytest.TempPathFactory) -> VideoTruth:
    # The first walks left from the right half, the second (mirrored, in front) right from the
    # left half: they meet, overlap and separate.
    walkers = [VideoWalker(0, 1, offset=(100, 40), scale=0.5, length=50),
               VideoWalker(0, 2, offset=(60, 50), scale=0.5, length=50, mirror=True)]
    return render_video(tmp_path_factory.mktemp("v") / "cross.mp4", walkers, 65, STYLE)


# --------------------------------------------------------------------------- synthetic walks
def test_one_pure_track_per_walker(apart: VideoTruth) -> None:
    summaries, observations, _ = _track(_gt_masks(apart))
    kept = [s for s in summaries if s.drop_reason is None]
    assert len(summaries) == len(kept) == 2
    for walker in (0, 1):
        span = apart.span(walker)
        assert span is not None
        mine = [s for s in kept if _owners(apart, observations[s.number]).most_common(1)[0][0] == walker]
        assert len(mine) == 1
        track = mine[0]
        owners = _owners(apart, observations[track.number])
        assert owners[walker] == sum(owners.values())  # purity 1
        assert (track.first, track.last) == span
        assert track.quality.frames == track.quality.kept == span[1] - span[0] + 1
        assert track.quality.border_frames == track.quality.merged_frames == 0
        assert track.quality.mean_area == pytest.approx(
            np.mean([apart.area(f, walker) for f in range(span[0], span[1] + 1)]))
    # numbered in order of appearance
    assert [s.number for s in sorted(kept, key=lambda s: s.first)] == [1, 2]


def test_crossing_walkers_merge_and_start_new_tracks_after_the_split(crossing: VideoTruth) -> None:
    summaries, observations, _ = _track(_gt_masks(crossing))
    by_number = {s.number: s for s in summaries}
    merged = [s for s in summaries if s.quality.merged_frames]
    assert len(merged) == 1
    m = merged[0]
    assert m.drop_reason == "two walkers merged and could not be told apart"
    assert m.ended_by == "split"
    assert m.quality.kept == 0 and m.quality.merged_frames == m.quality.frames
    assert all(obs.merged for obs in observations[m.number])
    before = [s for s in summaries if s.ended_by == "merge"]
    assert len(before) == 2 and all(s.last == m.first - 1 for s in before)
    after = [s for s in summaries if s.first > m.last]
    assert len(after) == 2 and all(s.first == m.last + 1 for s in after)
    # every track but the merged one belongs to one walker only
    for number, obs in observations.items():
        if number != m.number:
            owners = _owners(crossing, obs)
            assert len(owners) == 1, (number, owners)
    # each walker: one track before and one after the merge
    walkers = sorted(_owners(crossing, observations[s.number]).most_common(1)[0][0] for s in before)
    assert walkers == [0, 1]
    assert set(by_number) == {s.number for s in before + after} | {m.number}


# --------------------------------------------------------------------------- exact scenarios
def _rectangles(frames: int, size: tuple[int, int],
                draw: Callable[[int, np.ndarray], None]) -> list[np.ndarray]:
    out = []
    for f in range(frames):
        img = np.zeros(size, np.uint8)
        draw(f, img)
        out.append(img)
    return out


def _person(img: np.ndarray, x: int, y: int = 30, w: int = 12, h: int = 40) -> None:
    img[y : y + h, x : x + w] = 255


def test_touching_blobs_end_both_tracks_and_the_merged_one_is_dropped() -> None:
    # Two people walk toward each other, touch for frames 20..25, then separate.
    def draw(f: int, img: np.ndarray) -> None:
        gap = abs(f - 22) * 3 - 8  # <= 0 (touching) for frames 20..25
        left = 80 - 12 - max(gap, 0) // 2
        _person(img, left)
        _person(img, left + 12 + max(gap, 0) - (0 if gap > 0 else 4))

    masks = _rectangles(45, (120, 160), draw)
    assert find_blobs(masks[22], OPTIONS)[0].area < 2 * 12 * 40  # they overlap: one blob
    summaries, observations, ends = _track(masks)
    first_merge = min(f for f in range(45) if len(find_blobs(masks[f], OPTIONS)) == 1)
    first_split = min(f for f in range(first_merge, 45) if len(find_blobs(masks[f], OPTIONS)) == 2)
    assert (first_merge, [1, 2]) in ends  # both walkers' tracks end when they touch
    ended_at_merge = [s for s in summaries if s.number in (1, 2)]
    assert all(s.ended_by == "merge" and s.last == first_merge - 1 for s in ended_at_merge)
    assert all(s.drop_reason is None for s in ended_at_merge)  # enough frames before the merge
    merged = next(s for s in summaries if s.number == 3)
    assert (merged.first, merged.last) == (first_merge, first_split - 1)
    assert merged.drop_reason == "two walkers merged and could not be told apart"
    assert merged.quality.merged_frames == merged.quality.frames == first_split - first_merge
    assert all(o.merged for o in observations[3])
    assert (first_split, [3]) in ends
    later = [s for s in summaries if s.number > 3]
    assert sorted(s.number for s in later) == [4, 5]
    assert all(s.first == first_split and s.last == 44 and s.drop_reason is None for s in later)
    assert not any(o.merged for s in later for o in observations[s.number])
    # With a higher min-frames, the walkers' tracks are too short, and say that they merged.
    summaries, _, _ = _track(masks, TrackingOptions(min_frames=first_merge + 1))
    for s in summaries[:2]:
        assert s.drop_reason is not None
        assert s.drop_reason.startswith(f"{first_merge} usable frames < ")
        assert s.drop_reason.endswith("(ended when it merged with another walker)")


def test_a_short_track_is_dropped_with_its_reason() -> None:
    masks = _rectangles(30, (120, 160), lambda f, img: _person(img, 40 + f) if 10 <= f < 18 else None)
    summaries, _, _ = _track(masks, TrackingOptions(min_frames=15))
    assert len(summaries) == 1
    s = summaries[0]
    assert (s.first, s.last, s.quality.kept) == (10, 17, 8)
    assert s.drop_reason is not None and s.drop_reason.startswith("8 usable frames < ")
    assert "min_frames" in s.drop_reason and "15" in s.drop_reason


def test_a_walker_always_at_the_border_is_dropped(tmp_path: Path) -> None:
    walker = VideoWalker(0, 5, view="000", offset=(-80, 0), scale=0.5, length=30)
    truth = render_video(tmp_path / "edge.mp4", [walker], 35, VideoStyle(width=160, height=120, lead_in=0))
    summaries, _, _ = _track(_gt_masks(truth))
    assert summaries
    for s in summaries:
        assert s.quality.border_frames == s.quality.frames and s.quality.kept == 0
        assert s.drop_reason == "touches the image border in every frame"


def test_border_frames_are_counted_not_used() -> None:
    # Enters at the left edge, walks across: the frames at the edge are counted, not kept.
    masks = _rectangles(40, (120, 200), lambda f, img: _person(img, max(0, f * 4 - 8)))
    summaries, observations, _ = _track(masks)
    assert len(summaries) == 1
    s = summaries[0]
    border = sum(o.blob.touches_border for o in observations[s.number])
    assert border >= 3
    assert s.quality.border_frames == border and s.quality.kept == s.quality.frames - border
    assert s.drop_reason is None


@pytest.mark.parametrize(("missing", "tracks"), [(2, 1), (5, 1), (6, 2)])
def test_max_gap_bridges_short_dropouts(missing: int, tracks: int) -> None:
    gap = range(15, 15 + missing)
    masks = _rectangles(40, (120, 200), lambda f, img: None if f in gap else _person(img, 10 + 3 * f))
    summaries, observations, ends = _track(masks, TrackingOptions(min_frames=5, max_gap=5))
    assert len(summaries) == tracks
    if tracks == 1:
        assert summaries[0].quality.frames == 40 - missing
        assert [o.frame for o in observations[1]] == [f for f in range(40) if f not in gap]
    else:  # the walker was gone too long: the first track ended while it was away
        assert summaries[0].ended_by == "left" and summaries[0].last == 14
        assert ends[0] == (14 + 5 + 1, [1])
        assert summaries[1].first == 15 + missing


def test_walker_leaving_ends_its_track_at_once_after_max_gap() -> None:
    masks = _rectangles(30, (120, 200), lambda f, img: _person(img, 20 + 3 * f) if f < 20 else None)
    _, _, ends = _track(masks, TrackingOptions(min_frames=5, max_gap=3))
    assert ends == [(19 + 3 + 1, [1])]


def test_two_walkers_passing_close_are_not_swapped() -> None:
    # Two walkers on parallel paths, one fast one slow, one passing above the other.
    def draw(f: int, img: np.ndarray) -> None:
        _person(img, 10 + 5 * f, y=15)
        _person(img, 40 + 2 * f, y=66)

    summaries, observations, _ = _track(_rectangles(25, (120, 200), draw))
    assert len(summaries) == 2
    for s in summaries:
        ys = {o.blob.box[1] for o in observations[s.number]}
        assert len(ys) == 1


def test_unusable_lowers_kept() -> None:
    tracker = Tracker(TrackingOptions(min_frames=3))
    mask = np.zeros((100, 100), np.uint8)
    _person(mask, 40)
    for f in range(4):
        update = tracker.update(f, find_blobs(mask, tracker.options))
        if f == 1:
            tracker.unusable(update.assigned[0][0])
            tracker.unusable(update.assigned[0][0])  # once per observation
    (summary,) = tracker.finish()
    assert (summary.quality.frames, summary.quality.kept) == (4, 3)
    assert summary.drop_reason is None and summary.ended_by == "end"


# --------------------------------------------------------------------------- blobs
def test_find_blobs_joins_pieces_of_one_body_and_keeps_people_apart() -> None:
    mask = np.zeros((120, 200), np.uint8)
    mask[20:30, 30:40] = 255  # head, cut off by a band of background colour
    mask[33:80, 28:42] = 255  # body
    mask[40:44, 43:49] = 255  # a detached hand, beside the body
    mask[30:80, 120:134] = 255  # a second person
    mask[5:7, 180:182] = 255  # a speck
    blobs = find_blobs(mask, TrackingOptions())
    assert [b.box for b in blobs] == [(28, 20, 49, 80), (120, 30, 134, 80)]
    first = blobs[0]
    assert first.area == 100 + 47 * 14 + 24
    assert first.mask.shape == (60, 21) and int(first.mask.sum()) == first.area
    assert first.centroid[0] == pytest.approx(np.nonzero(mask[:, :100])[1].mean())
    assert not first.touches_border


def test_blob_mask_holds_only_its_own_pixels() -> None:
    mask = np.zeros((100, 100), np.uint8)
    mask[10:90, 10:20] = 255  # an L: a body and a long shadow along the floor
    mask[80:90, 10:60] = 255
    mask[30:60, 50:90] = 255  # someone else, reaching into the L's box
    a, b = find_blobs(mask, TrackingOptions(min_area=50))
    assert a.box == (10, 10, 60, 90) and b.box == (50, 30, 90, 60)
    assert int(a.mask.sum()) == a.area == 80 * 10 + 10 * 40
    assert not a.mask[30 - 10 : 60 - 10, 50 - 10 :].any()  # b's pixels inside a's box are not a's
    assert b.mask.all()


def test_min_area_and_border() -> None:
    mask = np.zeros((100, 100), bool)
    mask[40:60, 1:11] = True  # 200 pixels, 1 pixel from the left edge
    assert find_blobs(mask, TrackingOptions(min_area=201)) == []
    (blob,) = find_blobs(mask, TrackingOptions(min_area=200))
    assert blob.touches_border
    (blob,) = find_blobs(mask, TrackingOptions(min_area=200, border_margin=0))
    assert not blob.touches_border
    assert TrackingOptions().area_floor((360, 640)) == 461  # auto: 0.2 % of the frame


# --------------------------------------------------------------------------- assignment
def _brute_force(cost: np.ndarray) -> float:
    n, m = cost.shape
    if n <= m:
        return min(sum(cost[r, c] for r, c in zip(range(n), p, strict=True))
                   for p in itertools.permutations(range(m), n))
    return min(sum(cost[r, c] for r, c in zip(p, range(m), strict=True))
               for p in itertools.permutations(range(n), m))


def test_assign_is_an_optimal_assignment() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        n, m = (int(v) for v in rng.integers(1, 6, 2))
        cost = rng.random((n, m))
        cost[rng.random((n, m)) < 0.2] = 1e6
        pairs = assign(cost)
        assert len(pairs) == min(n, m)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
        assert sum(cost[r, c] for r, c in pairs) == pytest.approx(_brute_force(cost))


def test_assign_beats_greedy_where_greedy_swaps() -> None:
    # Greedy takes the cheapest pair (0, 0) first and must then pay 1.0 for (1, 1).
    cost = np.array([[0.1, 0.2], [0.15, 1.0]])
    assert assign(cost) == [(0, 1), (1, 0)]
    assert assign(np.zeros((0, 3))) == []


def test_blob_is_a_plain_record() -> None:
    blob = Blob((0, 0, 2, 2), 4, (0.5, 0.5), True, np.ones((2, 2), bool))
    assert blob.height == 2
