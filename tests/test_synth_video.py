"""Tests for gaitcli.synth.video: synthetic videos of ``gait synth`` walkers with ground truth.

Videos are small (320x180 or less, at most 70 frames), so the file runs in a few seconds.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from gaitcli.errors import GaitError
from gaitcli.synth.generate import render_sequence
from gaitcli.synth.video import (
    VideoStyle,
    VideoTruth,
    VideoWalker,
    clean_silhouettes,
    ideal_silhouettes,
    render_video,
)

SMALL = VideoStyle(width=320, height=180, lead_in=5)
QUIET = replace(SMALL, noise=0.0, light_drift=0.0)
# Two walkers, half size (about 60 pixels tall), side by side at different depths; the second
# starts 5 frames later.
TWO = (
    VideoWalker(0, 1, offset=(0, 20), scale=0.5, length=40),
    VideoWalker(0, 2, offset=(160, 50), scale=0.5, start=5, length=40),
)


def _decode(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> tuple[VideoTruth, list[np.ndarray]]:
    path = tmp_path_factory.mktemp("video") / "two walkers.mp4"
    truth = render_video(path, TWO, 60, QUIET)
    return truth, _decode(path)


def test_video_decodes_to_its_frame_count_and_size(two: tuple[VideoTruth, list[np.ndarray]]) -> None:
    truth, frames = two
    assert truth.path.is_file()
    assert len(frames) == truth.frames == 60
    assert frames[0].shape == (180, 320, 3)
    # nothing but the finished file in the folder (written under a temporary name, then renamed)
    assert [p.name for p in truth.path.parent.iterdir()] == ["two walkers.mp4"]


def test_person_pixels_differ_from_the_background_inside_the_mask(
    two: tuple[VideoTruth, list[np.ndarray]],
) -> None:
    truth, frames = two
    background = frames[0].astype(np.float32)  # lead-in: the empty scene
    assert not truth.mask(0).any()
    kernel = np.ones((3, 3), np.uint8)
    inside_diffs, outside_diffs = [], []
    for f in range(truth.frames):
        gt = truth.mask(f)
        if gt.sum() < 200:
            continue
        diff = np.abs(frames[f].astype(np.float32) - background).max(axis=2)
        inside = cv2.erode(gt.astype(np.uint8), kernel).astype(bool)
        near = cv2.dilate(gt.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)
        inside_diffs.append(np.median(diff[inside]))
        outside_diffs.append(np.median(diff[~near]))
    assert len(inside_diffs) > 30
    assert np.median(inside_diffs) > 25  # the person stands out from what was behind it
    assert np.median(outside_diffs) < 4  # and the static scene stays put


def test_shadow_darkens_the_floor_but_is_not_in_the_mask(tmp_path: Path) -> None:
    walker = [VideoWalker(0, 3, offset=(60, 40), scale=0.5, length=30)]
    lit = render_video(tmp_path / "lit.mp4", walker, 40, replace(QUIET, shadow=False))
    shaded = render_video(tmp_path / "shaded.mp4", walker, 40, replace(QUIET, shadow=True))
    a, b = _decode(lit.path), _decode(shaded.path)
    darker, person = [], []
    for f in range(40):
        box = lit.box(f, 0)
        if box is None:
            continue
        assert np.array_equal(lit.mask(f), shaded.mask(f))  # the shadow never becomes person
        gt = lit.mask(f).astype(np.uint8)
        x0, y0, x1, y1 = box
        h = y1 - y0
        feet = np.zeros_like(gt, dtype=bool)
        feet[y1 - 3 : y1 + 3, max(0, x0 - h // 3) : x1 + h // 3] = True
        feet &= ~cv2.dilate(gt, np.ones((5, 5), np.uint8)).astype(bool)
        delta = a[f].astype(np.float32).mean(axis=2) - b[f].astype(np.float32).mean(axis=2)
        darker.append(delta[feet].max())
        person.append(np.abs(delta[cv2.erode(gt, np.ones((3, 3), np.uint8)).astype(bool)]).mean())
    assert len(darker) > 15
    assert np.median(darker) > 25  # a clearly darker patch at the feet
    assert np.median(person) < 3  # the person itself is unchanged


def test_two_walkers_have_their_own_visible_masks(two: tuple[VideoTruth, list[np.ndarray]]) -> None:
    truth, _ = two
    spans = [truth.span(0), truth.span(1)]
    assert spans[0] is not None and spans[1] is not None
    # the second starts 5 frames later (and both sequences begin with blank frames)
    assert spans[1][0] > spans[0][0]
    assert spans[0][0] >= SMALL.lead_in
    both = 0
    for f in range(truth.frames):
        m0, m1 = truth.mask(f, 0), truth.mask(f, 1)
        assert not (m0 & m1).any()
        assert np.array_equal(truth.mask(f), m0 | m1)
        both += bool(m0.any() and m1.any())
        for w, m in ((0, m0), (1, m1)):
            box = truth.box(f, w)
            assert (box is None) == (not m.any())
            assert truth.area(f, w) == int(m.sum())
    assert both > 20


def test_front_walker_hides_the_one_behind(tmp_path: Path) -> None:
    behind = VideoWalker(0, 1, offset=(0, 0), scale=0.5, length=20)
    front = replace(behind, subject=2, offset=(6, 0))
    style = replace(QUIET, lead_in=0, width=160, height=120)
    truth = render_video(tmp_path / "occl.mp4", [behind, front], 25, style)
    alone = render_video(tmp_path / "alone.mp4", [behind], 25, style)
    hidden = 0
    for f in range(25):
        full, visible, ahead = alone.mask(f, 0), truth.mask(f, 0), truth.mask(f, 1)
        assert np.array_equal(visible, full & ~ahead)
        hidden += int((full & ahead).sum())
    assert hidden > 0


def test_clean_silhouettes_are_what_gait_synth_writes() -> None:
    walker = VideoWalker(7, 2, "bg-01", "072", length=24)
    clean = clean_silhouettes(walker)
    expected = render_sequence(7, 2, "bg-01", "072", 24)
    assert len(clean) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(clean, expected, strict=True))
    mirrored = clean_silhouettes(replace(walker, mirror=True))
    assert all(np.array_equal(a, b[:, ::-1]) for a, b in zip(mirrored, expected, strict=True))


@pytest.mark.parametrize("mirror", [False, True])
def test_ground_truth_is_the_noise_free_synth_walk(tmp_path: Path, mirror: bool) -> None:
    """At scale 1 the video's ground truth is ideal_silhouettes moved by the offset, pixel for
    pixel, and ideal_silhouettes is gait synth's sequence without its segmentation noise."""
    walker = VideoWalker(1, 4, "nm-02", "090", start=3, offset=(0, -40), length=30, mirror=mirror)
    truth = render_video(tmp_path / "walk.mp4", [walker], 45, replace(QUIET, lead_in=2))
    ideal = ideal_silhouettes(walker)
    clean = clean_silhouettes(walker)
    assert len(ideal) == len(clean) == truth.lengths[0]
    assert truth.starts[0] == 2 + 3
    ious = []
    for f in range(truth.frames):
        k = truth.sequence_frame(f, 0)
        if k is None:
            assert not truth.mask(f, 0).any()
            continue
        assert np.array_equal(truth.mask(f, 0), ideal[k][40:220] > 0)
        a, b = ideal[k] > 0, clean[k] > 0
        assert a.any() == (b.sum() > 200)  # same blank lead-in / lead-out frames
        if a.any():
            ious.append((a & b).sum() / (a | b).sum())
    assert len(ious) > 20
    assert np.mean(ious) > 0.85  # the same walk, up to gait synth's segmentation noise


def test_a_walker_can_stay_at_the_border(tmp_path: Path) -> None:
    # Frontal view: the walker stays near the canvas centre; putting that centre on x = 0 cuts
    # the walker by the left edge in every frame.
    walker = VideoWalker(0, 5, view="000", offset=(-80, 0), scale=0.5, length=24)
    truth = render_video(tmp_path / "edge.mp4", [walker], 30, replace(QUIET, lead_in=0, width=160,
                                                                       height=120))
    boxes = [truth.box(f, 0) for f in range(truth.frames)]
    seen = [b for b in boxes if b is not None]
    assert len(seen) > 15
    assert all(b[0] == 0 for b in seen)


def test_same_arguments_same_video(tmp_path: Path) -> None:
    style = replace(SMALL, width=160, height=120, lead_in=2)
    walkers = [VideoWalker(3, 1, offset=(0, 0), scale=0.5, length=12)]
    a = render_video(tmp_path / "a.mp4", walkers, 16, style)
    b = render_video(tmp_path / "b.mp4", walkers, 16, style)
    assert all(np.array_equal(a.mask(f), b.mask(f)) for f in range(16))
    da, db = _decode(a.path), _decode(b.path)
    assert all(np.array_equal(x, y) for x, y in zip(da, db, strict=True))
    other = render_video(tmp_path / "c.mp4", walkers, 16, replace(style, background_seed=1))
    assert not np.array_equal(_decode(other.path)[0], da[0])


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(GaitError, match="unknown view"):
        VideoWalker(0, 1, view="045")
    with pytest.raises(GaitError, match="unknown type"):
        VideoWalker(0, 1, type="xx-01")
    missing = tmp_path / "no such folder" / "v.mp4"
    with pytest.raises(GaitError, match="cannot write the video"):
        render_video(missing, [VideoWalker(0, 1, scale=0.25, length=8)], 4, replace(SMALL, width=64,
                                                                                     height=48))
    assert not missing.parent.exists()
