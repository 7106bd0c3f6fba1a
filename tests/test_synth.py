"""Tests for ``gait synth`` (gaitcli.synth.generate): layout, determinism, covariates, robustness.

Data sets here are tiny (2 subjects, 2 views, 3 types, ~20 frames) so the whole file runs in a
few seconds on one core; the one multi-process run checks that workers do not change bytes.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from rich.console import Console

from gaitcli.errors import GaitError
from gaitcli.synth import generate as synth
from gaitcli.synth.body import Bag, Coat, RecordedWalk, draw_identity
from gaitcli.synth.generate import (
    CASIA_B_TYPES,
    CASIA_B_VIEWS,
    identity_rng,
    render_sequence,
    synthesize,
)
from gaitcli.synth.render import walker_frames

SMALL = dict(subjects=2, views=["000", "090"], types=["nm-01", "bg-01", "cl-01"], frames=20, seed=3)
NAME = re.compile(r"^(\d{3})-((?:nm|bg|cl)-\d{2})-(\d{3})-(\d{3})\.png$")


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _sequence_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*/*") if p.is_dir())


def _frames(seq_dir: Path) -> list[np.ndarray]:
    return [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(seq_dir.glob("*.png"))]


def _pretreat(img: np.ndarray) -> np.ndarray | None:
    """A minimal SPEC section 2 pretreatment (row crop, height 64, centre by column mass, 64x64)."""
    if int(img.sum()) <= 10000:
        return None
    rows = np.flatnonzero(img.sum(axis=1))
    img = img[rows[0] : rows[-1] + 1]
    h, w = img.shape
    img = cv2.resize(img, (int(64 * (w / h)), 64), interpolation=cv2.INTER_CUBIC)
    cum = np.cumsum(img.sum(axis=0).astype(np.int64))
    above = np.flatnonzero(cum > cum[-1] / 2)
    if above.size == 0 or above[0] == 0:
        return None
    img = np.pad(img, ((0, 0), (32, 32)))
    x = int(above[0]) + 32
    return img[:, x - 32 : x + 32]


def _gei(frames: list[np.ndarray]) -> np.ndarray:
    """Gait energy image: the mean pretreated silhouette, a classic shape+motion summary."""
    kept = [f for f in (_pretreat(img) for img in frames) if f is not None]
    return np.mean(np.stack(kept).astype(np.float32) / 255.0, axis=0)


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "casia"
    summary = synthesize(out, workers=1, **SMALL)
    return out, summary


# --------------------------------------------------------------------------- layout
def test_constants_match_casia_b() -> None:
    assert CASIA_B_VIEWS == ["000", "018", "036", "054", "072", "090", "108", "126", "144", "162", "180"]
    assert CASIA_B_TYPES == [f"nm-0{i}" for i in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"]


def test_layout_names_and_image_format(small_set: tuple[Path, dict]) -> None:
    out, _ = small_set
    seqs = _sequence_dirs(out)
    assert [str(p.relative_to(out)) for p in seqs] == [
        f"{i}/{t}/{v}" for i in ("001", "002") for t in sorted(SMALL["types"]) for v in SMALL["views"]
    ]
    for seq in seqs:
        sid, type_, view = seq.parts[-3:]
        names = sorted(p.name for p in seq.iterdir())
        assert names == [f"{sid}-{type_}-{view}-{k:03d}.png" for k in range(1, len(names) + 1)]
        for name in names:
            assert NAME.match(name)
        for img in _frames(seq)[:3]:
            assert img.dtype == np.uint8 and img.shape == (240, 320)  # 8-bit grey, 320 wide, 240 high
            assert set(np.unique(img)) <= {0, 255}
    assert not list(out.rglob(".*")), "no temporary folders may remain"


def test_summary_counts_and_is_json(small_set: tuple[Path, dict]) -> None:
    out, summary = small_set
    assert set(summary.to_json()) == {"sequences_written", "frames_written", "skipped_existing", "seconds"}
    json.dumps(summary.to_json())
    assert summary.sequences_written == 12 and summary.skipped_existing == 0
    assert summary.frames_written == len(list(out.rglob("*.png")))


def test_lengths_vary_around_the_mean(small_set: tuple[Path, dict]) -> None:
    out, _ = small_set
    lengths = [len(list(seq.glob("*.png"))) for seq in _sequence_dirs(out)]
    assert all(14 <= n <= 26 for n in lengths), lengths  # 20 +- 25 %
    assert len(set(lengths)) > 2


def test_lead_in_and_lead_out_frames_are_empty(small_set: tuple[Path, dict]) -> None:
    out, _ = small_set
    for seq in _sequence_dirs(out):
        sums = [int(img.sum()) for img in _frames(seq)]
        # Below the pretreatment's 10000 threshold: `prepare` drops them like real empty frames.
        assert sums[0] <= 10000 and sums[-1] <= 10000
        assert sum(s > 10000 for s in sums) >= len(sums) - 6
        # ...while the walker is a person-sized blob, not a speck.
        assert max(sums) > 255 * 800


def test_pretreated_frames_look_like_a_standing_person(small_set: tuple[Path, dict]) -> None:
    out, _ = small_set
    for seq in _sequence_dirs(out):
        kept = [f for f in (_pretreat(img) for img in _frames(seq)) if f is not None]
        assert len(kept) >= 8
        mid = kept[len(kept) // 2]
        cols = np.flatnonzero(mid.max(axis=0) > 127)
        width = cols[-1] - cols[0] + 1
        assert 8 <= width <= 48, (seq, width)  # taller than wide, like a walking person
        assert mid[:8].sum() < mid[24:40].sum()  # head narrower than the torso


# --------------------------------------------------------------------------- determinism
def test_same_seed_same_bytes_for_any_worker_count(small_set: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = small_set
    again = tmp_path / "again"
    synthesize(again, workers=2, **SMALL)
    assert _tree_bytes(again) == _tree_bytes(out)


def test_render_is_pure_and_seed_sensitive() -> None:
    a = render_sequence(3, 1, "nm-01", "090", 20)
    b = render_sequence(3, 1, "nm-01", "090", 20)
    c = render_sequence(4, 1, "nm-01", "090", 20)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert len(a) != len(c) or any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_identity_depends_on_seed_and_id_only() -> None:
    assert draw_identity(identity_rng(3, 1)) == draw_identity(identity_rng(3, 1))
    one, two = draw_identity(identity_rng(3, 1)), draw_identity(identity_rng(3, 2))
    for field in ("leg_ratio", "shoulder_half", "hip_half", "girth", "head_scale", "cadence", "arm_amp"):
        assert getattr(one, field) != getattr(two, field)
    assert draw_identity(identity_rng(4, 1)) != one


# --------------------------------------------------------------------------- content
@pytest.mark.parametrize("view", ["000", "090"])
def test_ids_differ_more_than_two_walks_of_one_id(view: str) -> None:
    """Shape and motion carry identity: on gait energy images, two walks of one person are
    much closer than walks of different people, and nearest-neighbour mostly finds the person."""
    ids = (1, 2, 3, 4)
    gallery = [_gei(render_sequence(0, i, "nm-01", view, 40)) for i in ids]
    probes = [_gei(render_sequence(0, i, "nm-02", view, 40)) for i in ids]
    d = np.array([[_dist(p, g) for g in gallery] for p in probes])
    within = np.diag(d).mean()
    between = d[~np.eye(len(ids), dtype=bool)].mean()
    assert between > 1.5 * within, d
    assert (d.argmin(axis=1) == np.arange(len(ids))).sum() >= 3, d


def test_bag_and_coat_change_the_silhouette() -> None:
    """Side view: a bag or a coat moves a walk further from the person's normal walk than a
    second normal walk is (the covariates must hurt recognition)."""
    ratios = []
    for i in (1, 2, 3, 4):
        nm1, nm2, bg, cl = (
            _gei(render_sequence(0, i, t, "090", 40)) for t in ("nm-01", "nm-02", "bg-01", "cl-01")
        )
        base = _dist(nm1, nm2)
        assert _dist(nm1, bg) > 1.1 * base and _dist(nm1, cl) > 1.1 * base, i
        ratios += [_dist(nm1, bg) / base, _dist(nm1, cl) / base]
    assert np.mean(ratios) > 1.6, ratios


@pytest.mark.parametrize("style", ["backpack", "shoulder", "hand", "coat"])
def test_covariates_add_to_the_outline(style: str) -> None:
    """The same walk, camera and noise seed with and without the bag/coat: the extra solid shows."""
    ident = draw_identity(identity_rng(0, 1))
    plain = RecordedWalk(cadence_factor=1.0, amp_factor=1.0, arm_factor=1.0, lean_delta=0.0,
                         bag=None, coat=None)
    if style == "coat":
        dressed = replace(plain, coat=Coat(length=0.8, ease=0.035, flare=0.03, sleeve=0.015))
    else:
        dressed = replace(plain, bag=Bag(style=style, side=1, half=(0.15, 0.06, 0.15)))
    for view in (90.0, 36.0):
        bare = walker_frames(ident, plain, view, 20, np.random.default_rng(7))
        worn = walker_frames(ident, dressed, view, 20, np.random.default_rng(7))
        assert sum(int((f > 0).sum()) for f in worn) > 1.05 * sum(int((f > 0).sum()) for f in bare), view


def test_bag_styles_vary_between_walks() -> None:
    from gaitcli.synth.body import draw_walk
    from gaitcli.synth.generate import walk_rng

    ident = draw_identity(identity_rng(0, 1))
    styles = {
        draw_walk(walk_rng(0, i, t), ident, "bg").bag.style for i in range(1, 9) for t in ("bg-01", "bg-02")
    }
    assert styles == {"backpack", "shoulder", "hand"}
    assert draw_walk(walk_rng(0, 1, "nm-01"), ident, "nm").bag is None
    assert draw_walk(walk_rng(0, 1, "cl-01"), ident, "cl").coat is not None


# --------------------------------------------------------------------------- robustness
def test_rerun_skips_existing_and_overwrite_rewrites(small_set: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = small_set
    before = _tree_bytes(out)
    summary = synthesize(out, workers=1, **SMALL)
    assert summary.sequences_written == 0 and summary.skipped_existing == 12
    assert summary.frames_written == 0
    assert _tree_bytes(out) == before

    # A removed sequence is the only one written again.
    victim = out / "002" / "cl-01" / "090"
    for p in victim.iterdir():
        p.unlink()
    victim.rmdir()
    summary = synthesize(out, workers=1, **SMALL)
    assert summary.sequences_written == 1 and summary.skipped_existing == 11
    assert _tree_bytes(out) == before

    summary = synthesize(out, workers=1, overwrite=True, **SMALL)
    assert summary.sequences_written == 12 and summary.skipped_existing == 0
    assert _tree_bytes(out) == before
    assert not list(out.rglob(".*"))


def test_failed_sequence_leaves_nothing_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = synth.encode_png

    def flaky(img: np.ndarray) -> bytes:
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("disk on fire")
        return real(img)

    monkeypatch.setattr(synth, "encode_png", flaky)
    out = tmp_path / "casia"
    with pytest.raises(RuntimeError):
        synthesize(out, subjects=1, views=["090"], types=["nm-01"], frames=10, workers=1)
    parent = out / "001" / "nm-01"
    assert not (parent / "090").exists()
    assert list(parent.iterdir()) == []


def test_leftovers_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "casia"
    stale = out / "001" / "nm-01" / ".090.tmp-dead"
    stale.mkdir(parents=True)
    (stale / "001-nm-01-090-001.png").write_bytes(b"half")
    synthesize(out, subjects=1, views=["090"], types=["nm-01"], frames=10, workers=1)
    assert not stale.exists()
    assert len(list((out / "001" / "nm-01" / "090").glob("*.png"))) >= 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"views": ["045"]}, "unknown view '045'"),
        ({"views": ["90"]}, "unknown view '90'"),
        ({"types": ["xx-01"]}, "unknown type 'xx-01'"),
        ({"types": ["nm01"]}, "unknown type 'nm01'"),
        ({"subjects": 0}, "subjects="),
        ({"frames": 3}, "frames="),
        ({"seed": -1}, "seed="),
        ({"workers": 0}, "workers="),
    ],
)
def test_invalid_input_raises_gait_error(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(GaitError) as info:
        synthesize(tmp_path / "x", **kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "x").exists()


def test_out_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(GaitError, match="not a folder"):
        synthesize(target, subjects=1, views=["090"], types=["nm-01"], frames=10, workers=1)


def test_progress_bar_on_console(tmp_path: Path) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=False)
    synthesize(
        tmp_path / "c", subjects=1, views=["090"], types=["nm-01"], frames=10, workers=1, console=console
    )
    text = buffer.getvalue()
    assert "synth" in text and "1/1" in text and "seq/s" in text


def test_cli_synth(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gaitcli.cli import app

    runner = CliRunner()
    out = tmp_path / "cli"
    ok = runner.invoke(
        app,
        [
            "synth",
            str(out),
            "--subjects",
            "1",
            "--views",
            "090",
            "--types",
            "nm-01",
            "--frames",
            "10",
            "--workers",
            "1",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert (out / "001" / "nm-01" / "090").is_dir()
    bad = runner.invoke(app, ["synth", str(tmp_path / "bad"), "--views", "045"])
    assert bad.exit_code == 2
    assert "unknown view" in bad.output
