"""The data augmentations of OpenGait's configs (GaitBase's DA chains) against OpenGait's code.

OpenGait's transforms draw from Python's ``random``; gaitcli's from a per-sequence numpy
generator. ``tests/parity/transforms_da_harness.py`` ran OpenGait's transforms with fixed seeds
and recorded every draw (kind, bounds, value) and the output; here a scripted generator replays
those draws through gaitcli's transforms, so each test checks at once that gaitcli draws the same
numbers from the same ranges in the same order, applies the same ``prob`` rule and produces the
same pixels (exactly on uint8 frames; within half a grey level where OpenGait warps the divided
float frames and gaitcli rounds back to uint8). The distributions themselves are checked with
numpy's generator below.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gaitcli.config import load_config
from gaitcli.data.transforms import (
    RandomErasing,
    RandomPerspective,
    RandomRotate,
    build_transform,
)
from gaitcli.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures" / "parity"
CASES = json.loads((FIXTURES / "transforms_da.json").read_text())["cases"]


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "transforms_da.npz") as data:
        return {k: data[k] for k in data.files}


class Replay:
    """Stands in for ``numpy.random.Generator``: returns OpenGait's recorded draws in order and
    fails when gaitcli asks for another kind of draw or other bounds."""

    def __init__(self, calls: list[dict]) -> None:
        self.calls = list(calls)

    def _take(self, kind: str, low: float, high: float) -> float:
        assert self.calls, f"gaitcli draws more than OpenGait ({kind} in [{low}, {high}))"
        call = self.calls.pop(0)
        assert call["kind"] == kind, f"OpenGait drew {call}, gaitcli a {kind} in [{low}, {high})"
        assert (call["low"], call["high"]) == pytest.approx((low, high), rel=1e-12), (call, low, high)
        return call["value"]

    def random(self) -> float:
        return self._take("uniform", 0, 1)

    def uniform(self, low: float, high: float) -> float:
        return self._take("uniform", low, high)

    def integers(self, low: int, high: int) -> int:
        return int(self._take("int", int(low), int(high)))


@pytest.mark.parametrize("case", CASES, ids=[f"{c['name']}-{c['seed']}" for c in CASES])
def test_replayed_draws_give_opengaits_frames(case, arrays):
    frames = arrays[f"{case['key']}_in"]
    expected = arrays[f"{case['key']}_out"].astype(np.float64)
    replay = Replay(case["calls"])
    out = build_transform(case["spec"], training=True)(frames.copy(), replay)  # type: ignore[arg-type]
    assert not replay.calls, f"gaitcli drew less than OpenGait: {replay.calls} left"
    assert out.dtype == np.uint8 and out.shape == expected.shape
    if case["divided"]:  # OpenGait's frames are float / 255 there: ours are within half a level
        assert np.abs(out - expected).max() <= 0.5 + 1e-3
    else:
        assert np.array_equal(out, expected)


def test_the_chains_cover_every_transform_applied_and_skipped():
    """The fixture's chain cases exercise each transform both ways (else the test above proves less)."""
    seen: dict[str, set[bool]] = {}
    for case in CASES:
        if case["name"].startswith("gaitbase_da"):
            kinds = [(c["kind"], c["low"], c["high"]) for c in case["calls"]]
            seen.setdefault("rotate", set()).add(("uniform", -10, 10) in kinds)
            seen.setdefault("erasing", set()).add(("uniform", 0.05, 0.2) in kinds)
            seen.setdefault("perspective", set()).add(any(k[0] == "int" and k[1] == 54 for k in kinds))
    assert all(both == {True, False} for both in seen.values()), seen


def test_packaged_gaitbase_config_uses_opengaits_chain():
    chain = next(c["spec"] for c in CASES if c["name"] == "gaitbase_da_casiab")
    cfg = load_config("gaitbase")
    assert [dict(t) for t in cfg.trainer.transform] == chain
    assert cfg.model.name == "Baseline"


# ------------------------------------------------------------------------ distributions, geometry
N = 4000


@pytest.mark.parametrize("prob", [0.2, 0.3])
@pytest.mark.parametrize("name", ["RandomRotate", "RandomPerspective", "RandomErasing",
                                  "RandomHorizontalFlip", "RandomAffine"])
def test_applied_with_probability_prob(name, prob):
    t = build_transform([{"type": name, "prob": prob}], training=True).items[0]
    rng = np.random.default_rng(1)
    applied = sum(t.draw(rng, (1, 64, 64)) is not None for _ in range(N))  # type: ignore[attr-defined]
    assert abs(applied / N - prob) <= 4 * np.sqrt(prob * (1 - prob) / N)


def test_rotation_angle_is_uniform_in_plus_minus_degree():
    t = RandomRotate(prob=1.0, degree=10)
    rng = np.random.default_rng(2)
    angles = np.array([t.draw(rng, (1, 64, 44)) for _ in range(N)])
    assert angles.min() >= -10 and angles.max() <= 10
    assert abs(angles.mean()) < 0.3 and abs(np.mean(np.abs(angles)) - 5) < 0.3  # uniform: E|a| = 5


def test_rotation_pivot_is_opengaits_h_half_w_half_as_x_y():
    """OpenGait passes (H // 2, W // 2) as OpenCV's (x, y): on 64x44 frames the pixel at row 22,
    column 32 stays where it is, the frame centre (row 32, column 22) moves."""
    frames = np.zeros((1, 64, 44), np.uint8)
    frames[0, 22, 32] = 255
    frames[0, 32, 22] = 255
    out = RandomRotate(prob=1.0).apply(frames, 40.0)
    assert out[0, 22, 32] == 255 and out[0, 32, 22] < 128


def test_perspective_corners_cover_opengaits_ranges():
    t = RandomPerspective(prob=1.0)
    rng = np.random.default_rng(3)
    corners = np.array([t.draw(rng, (1, 64, 44)) for _ in range(N)])
    assert set(corners[:, 0]) == set(range(10)) and set(corners[:, 2]) == set(range(10))
    assert set(corners[:, 1]) == set(range(34, 44)) and set(corners[:, 3]) == set(range(34, 44))
    assert t.draw(rng, (1, 64, 43)) is None  # under 44 wide: nothing to draw (OpenGait fails)


def test_perspective_maps_the_drawn_source_corners_onto_the_frame():
    t = RandomPerspective(prob=1.0)
    m = t.matrix(64, 44, (3, 40, 5, 38))
    for (x, y), (u, v) in [((3, 0), (0, 0)), ((40, 0), (44, 0)), ((38, 64), (44, 64)), ((5, 64), (0, 64))]:
        p = m @ np.array([x, y, 1.0])
        assert p[:2] / p[2] == pytest.approx((u, v), abs=1e-6)


def test_erasing_rectangles_fit_and_follow_area_and_aspect():
    t = RandomErasing(prob=1.0)
    rng = np.random.default_rng(4)
    rects = [t.draw(rng, (3, 64, 44))[0] for _ in range(N)]  # type: ignore[index]
    top, left, h, w = np.array(rects, dtype=float).T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 64).all() and (left + w <= 44).all()
    area = h * w / (64 * 44)
    assert 0.04 < area.min() and area.max() < 0.22 and abs(area.mean() - 0.125) < 0.01
    ratio = h / w  # round(sqrt(A a)) / round(sqrt(A / a)) ~ a, uniform in [0.3, 3.33]
    assert ratio.min() < 0.4 and ratio.max() > 3.0 and abs(np.median(ratio) - 1.8) < 0.2


def test_erasing_zeroes_the_rectangle_in_every_frame_or_per_frame():
    frames = np.full((3, 64, 44), 200, np.uint8)
    out = RandomErasing(prob=1.0).apply(frames, [(5, 6, 10, 7)])
    assert (out[:, 5:15, 6:13] == 0).all() and (out == 0).sum() == 3 * 70
    out = RandomErasing(prob=1.0, per_frame=True).apply(frames, [None, (0, 0, 2, 3), None])
    assert (out[1, :2, :3] == 0).all() and (out == 0).sum() == 6 and (frames == 200).all()


def test_opengait_cutting_arguments():
    cut = build_transform([{"type": "BaseSilCuttingTransform", "img_w": 64}], training=False)
    assert cut(np.zeros((1, 64, 64), np.uint8), np.random.default_rng(0)).shape == (1, 64, 44)
    with pytest.raises(ConfigError, match="img_w must be a whole number"):
        build_transform([{"type": "BaseSilCuttingTransform", "img_w": "wide"}], training=False)


def test_warps_see_float_frames_only_after_a_dividing_transform():
    before = build_transform([{"type": "RandomRotate"}, {"type": "BaseSilCuttingTransform"}], training=True)
    after = build_transform([{"type": "BaseSilCuttingTransform"}, {"type": "RandomRotate"}], training=True)
    assert not before.items[0].after_division and after.items[1].after_division  # type: ignore[attr-defined]
