"""Tests for ``gait prepare`` (gaitcli/data/prepare.py).

The algorithm is checked against ``spec_pretreat`` below: SPEC section 2 re-stated step by step
with plain Python loops, so it is easy to see that it is right. It uses cv2.resize for the
bicubic step because that is what the reference does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gaitcli.data import prepare as prep
from gaitcli.data.pickle_io import load_array, save_array
from gaitcli.data.prepare import prepare_dataset, pretreat_frame, pretreat_sequence, render_summary
from gaitcli.errors import DataError, GaitError
from gaitcli.runtime.lock import LockError

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the spec, in loops
def spec_pretreat(img: np.ndarray, size: int = 64) -> tuple[np.ndarray | None, str]:
    """SPEC section 2 steps 2-6 for one frame: (frame or None, why)."""
    rows, cols = img.shape
    pixels = [[int(v) for v in img[r]] for r in range(rows)]

    # 2. drop if the sum of pixel values is <= 10000
    total = 0
    for r in range(rows):
        for c in range(cols):
            total += pixels[r][c]
    if total <= 10000:
        return None, "threshold"

    # 3. rows between the first and the last row with a non-zero pixel
    nonzero_rows = [r for r in range(rows) if any(v != 0 for v in pixels[r])]
    top, bottom = nonzero_rows[0], nonzero_rows[-1]
    crop = img[top : bottom + 1, :]
    h, w = crop.shape

    # 4. height `size`, width int(size * (w / h)), bicubic
    new_w = int(size * (w / h))
    if new_w == 0:
        return None, "zero width"  # the reference crashes in cv2.resize here
    resized = cv2.resize(crop, (new_w, size), interpolation=cv2.INTER_CUBIC)

    # 5. first column where the cumulative column sum exceeds half of the total
    r_pixels = [[int(v) for v in resized[r]] for r in range(size)]
    r_total = sum(sum(row) for row in r_pixels)
    running = 0
    centre = None
    for c in range(new_w):
        running += sum(r_pixels[r][c] for r in range(size))
        if running > r_total / 2:
            centre = c
            break
    if centre is None or centre == 0:
        return None, "no centre"

    # 6. cut [x - half, x + half); pad `half` zero columns on both sides if it runs off an edge
    half = size // 2
    left, right = centre - half, centre + half
    if left < 0 or right > new_w:
        pad = np.zeros((size, half), dtype=np.uint8)
        resized = np.concatenate([pad, resized, pad], axis=1)
        left, right = left + half, right + half
    return resized[:, left:right].astype(np.uint8), "kept"


def check_same(img: np.ndarray, size: int = 64) -> np.ndarray | None:
    expected, _why = spec_pretreat(img, size)
    got = pretreat_frame(img, size)
    if expected is None:
        assert got is None
        return None
    assert got is not None
    assert got.dtype == np.uint8 and got.shape == (size, size) and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)
    return got


def blank(h: int = 60, w: int = 80) -> np.ndarray:
    return np.zeros((h, w), dtype=np.uint8)


# --------------------------------------------------------------------------- one frame
def test_person_in_the_middle():
    img = blank(120, 160)
    img[20:100, 70:90] = 255
    img[10:20, 75:85] = 255
    assert check_same(img) is not None


def test_person_touching_left_border_uses_padding():
    img = blank()
    img[5:50, 0:4] = 255
    got = check_same(img)
    assert got is not None
    assert not got[:, :10].any()  # the zero padding on the left shows


def test_person_touching_right_border_uses_padding():
    img = blank()
    img[5:50, 76:80] = 255
    got = check_same(img)
    assert got is not None
    assert not got[:, -10:].any()


def test_one_pixel_wide_blob():
    img = blank()
    img[5:55, 40] = 255
    assert check_same(img) is not None


@pytest.mark.parametrize("column", [0, 1, 79])
def test_one_pixel_wide_blob_at_edges(column):
    img = blank()
    img[5:55, column] = 255
    check_same(img)


def test_threshold_exactly_10000_is_dropped_10001_kept():
    img = blank()
    img[10:50, 40] = 250  # 40 pixels * 250 = 10000
    assert int(img.sum(dtype=np.int64)) == 10000
    assert pretreat_frame(img) is None
    assert spec_pretreat(img)[1] == "threshold"
    img[30, 41] = 1
    assert int(img.sum(dtype=np.int64)) == 10001
    assert check_same(img) is not None


def test_all_black_and_nearly_black_frames_are_dropped():
    assert pretreat_frame(blank()) is None
    noisy = blank()
    noisy[::7, ::9] = 255  # 81 scattered pixels: above the threshold, so not dropped by it
    check_same(noisy)
    sparse = blank()
    sparse[3, 3] = 255
    assert pretreat_frame(sparse) is None


def test_centre_at_column_zero_is_dropped():
    img = blank(64, 2)
    img[:, 0] = 255  # 64 * 255 = 16320; the resize is the identity, all mass in column 0
    assert spec_pretreat(img)[1] == "no centre"
    assert pretreat_frame(img) is None


def test_tall_narrow_blob():
    img = blank(200, 12)
    img[10:190, 4:8] = 200
    got = check_same(img)
    assert got is not None


def test_wide_flat_blob():
    img = blank(20, 300)
    img[5:9, 10:290] = 255
    assert check_same(img) is not None


def test_resized_width_zero_is_dropped_not_a_crash():
    img = blank(130, 1)
    img[:, 0] = 255
    assert spec_pretreat(img)[1] == "zero width"
    assert pretreat_frame(img) is None


def test_grey_non_binary_values_are_kept_as_grey():
    rng = np.random.default_rng(3)
    img = blank(100, 90)
    img[15:90, 30:60] = rng.integers(1, 256, size=(75, 30), dtype=np.uint8)
    got = check_same(img)
    values = set(np.unique(got).tolist())
    assert len(values - {0, 255}) > 10  # no re-binarisation


def test_full_frame_320x240_silhouette():
    img = np.zeros((240, 320), dtype=np.uint8)
    cv2.ellipse(img, (150, 140), (25, 85), 0, 0, 360, 255, -1)
    cv2.circle(img, (152, 45), 16, 255, -1)
    check_same(img)


@pytest.mark.parametrize("size", [32, 128])
def test_other_image_sizes(size):
    img = blank(100, 90)
    img[10:95, 20:50] = 255
    got = check_same(img, size)
    assert got.shape == (size, size)


def test_non_contiguous_view_is_accepted():
    img = blank(120, 160)
    img[20:100, 60:100] = 255
    view = img[:, ::2]
    assert not view.flags.c_contiguous
    check_same(view)


def test_bad_arguments():
    with pytest.raises(ValueError):
        pretreat_frame(blank(), 63)
    with pytest.raises(ValueError):
        pretreat_frame(blank().astype(np.float32))
    with pytest.raises(ValueError):
        pretreat_frame(np.zeros((4, 4, 3), np.uint8))


@st.composite
def frames(draw):
    h = draw(st.integers(1, 48))
    w = draw(st.integers(1, 64))
    img = np.zeros((h, w), dtype=np.uint8)
    for _ in range(draw(st.integers(0, 4))):
        top = draw(st.integers(0, h - 1))
        left = draw(st.integers(0, w - 1))
        bottom = draw(st.integers(top + 1, h))
        right = draw(st.integers(left + 1, w))
        value = draw(st.integers(1, 255))
        img[top:bottom, left:right] = value
    return img


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(), st.sampled_from([16, 64]))
def test_random_frames_match_the_spec(img, size):
    check_same(img, size)


def test_pretreat_sequence_stacks_and_counts():
    good = blank()
    good[5:55, 30:50] = 255
    out, dropped = pretreat_sequence([blank(), good, good, blank()])
    assert out.shape == (2, 64, 64) and out.dtype == np.uint8 and dropped == 2
    empty, dropped = pretreat_sequence([blank()], 32)
    assert empty.shape == (0, 32, 32) and dropped == 1


# --------------------------------------------------------------------------- a PNG tree
def silhouette(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w), dtype=np.uint8)
    cx = int(rng.integers(4, w - 4))
    cv2.ellipse(img, (cx, h // 2 + 4), (int(rng.integers(3, 9)), h // 3), 0, 0, 360, 255, -1)
    cv2.circle(img, (cx, h // 6 + 2), 4, 255, -1)
    img[rng.random((h, w)) < 0.01] = int(rng.integers(1, 256))
    return img


def write_png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    path.write_bytes(buf.tobytes())


def expected_tree(raw: Path, size: int = 64) -> dict[str, np.ndarray]:
    """Key -> array, computed with spec_pretreat from the PNGs the test wrote."""
    result = {}
    for folder in sorted({p.parent for p in raw.rglob("*.png")}):
        kept = []
        for png in sorted(folder.glob("*.png")):
            img = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
            if img is None:
                continue
            frame, _ = spec_pretreat(img, size)
            if frame is not None:
                kept.append(frame)
        if kept:
            result["/".join(folder.parts[-3:])] = np.stack(kept)
    return result


def output_tree(out: Path) -> dict[str, np.ndarray]:
    found = {}
    for pkl in sorted(out.rglob("*.pkl")):
        rel = pkl.relative_to(out)
        assert rel.parts[-1] == rel.parts[-2] + ".pkl"
        found["/".join(rel.parts[:-1])] = load_array(pkl)
    return found


def assert_trees_equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].dtype == np.uint8
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


@pytest.fixture
def clean_tree(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    seed = 0
    for ident in ("001", "002"):
        for typ in ("nm-01", "bg-01"):
            for view in ("000", "090"):
                folder = raw / ident / typ / view
                for f in range(8):
                    seed += 1
                    img = silhouette(seed)
                    if f == 0:
                        img[:] = 0  # leading empty frame
                    write_png(folder / f"{ident}-{typ}-{view}-{f:03d}.png", img)
    return raw


def test_pipeline_matches_spec_on_png_tree(clean_tree, tmp_path):
    out = tmp_path / "out"
    summary = prepare_dataset(clean_tree, out, workers=1)
    want = expected_tree(clean_tree)
    assert_trees_equal(output_tree(out), want)
    assert summary.sequences_written == 8 == summary.sequences_found
    assert summary.frames_kept == sum(len(a) for a in want.values())
    assert summary.frames_dropped == 8 * 8 - summary.frames_kept
    assert summary.skipped_existing == 0
    assert summary.unreadable == [] and summary.empty_sequences == [] and summary.short_sequences == []
    json.dumps(summary.to_json())  # serialisable
    for key in ("sequences_written", "frames_kept", "frames_dropped", "skipped_existing", "unreadable",
                "empty_sequences", "short_sequences", "seconds"):
        assert key in summary.to_json()


def test_pipeline_with_worker_processes_gives_the_same_files(clean_tree, tmp_path):
    summary = prepare_dataset(clean_tree, tmp_path / "out", workers=2)
    assert summary.workers == 2
    assert_trees_equal(output_tree(tmp_path / "out"), expected_tree(clean_tree))


def test_bad_inputs_are_listed_and_the_run_goes_on(tmp_path):
    raw = tmp_path / "raw"
    good = raw / "001" / "nm-01" / "090"
    for f in range(6):
        write_png(good / f"f{f:02d}.png", silhouette(f))
    (good / "f90-zero.png").write_bytes(b"")
    (good / "f91-text.png").write_text("this is not a png\n")
    data = cv2.imencode(".png", silhouette(99))[1].tobytes()
    (good / "f92-trunc.png").write_bytes(data[: len(data) // 2])
    (good / "notes.txt").write_text("hello")
    (good / ".DS_Store").write_bytes(b"\0\1")
    black = raw / "001" / "nm-01" / "000"
    for f in range(4):
        write_png(black / f"f{f}.png", np.zeros((48, 64), np.uint8))
    short = raw / "001" / "bg-01" / "090"
    for f in range(3):
        write_png(short / f"f{f}.png", silhouette(50 + f))
    (raw / "001" / "cl-01" / "090").mkdir(parents=True)  # an empty view folder
    other = raw / "001" / "cl-02" / "090"  # no images at all, only a stray file
    other.mkdir(parents=True)
    (other / "readme.md").write_text("x")
    (raw / "README.txt").write_text("top-level files are not sequences")

    out = tmp_path / "out"
    summary = prepare_dataset(raw, out, workers=1)
    reasons = {Path(item.path).name: item.reason for item in summary.unreadable}
    assert reasons["f90-zero.png"].startswith("empty file")
    assert "decode" in reasons["f91-text.png"]
    assert "truncated" in reasons["f92-trunc.png"]
    assert reasons["notes.txt"] == "not an image file"
    assert reasons["readme.md"] == "not an image file"
    assert ".DS_Store" not in reasons and "README.txt" not in reasons
    assert summary.empty_sequences == ["001/cl-01/090", "001/cl-02/090", "001/nm-01/000"]
    assert summary.short_sequences == [("001/bg-01/090", 3)]
    assert summary.sequences_written == 2
    assert not (out / "001" / "nm-01" / "000").exists()
    want = expected_tree(raw)
    assert_trees_equal(output_tree(out), want)
    assert len(want["001/nm-01/090"]) == 6

    # the closing report names the problems
    from rich.console import Console

    console = Console(record=True, width=200)
    render_summary(summary, console)
    text = console.export_text()
    assert "f91-text.png" in text and "001/bg-01/090: 3 frame(s)" in text and "001/nm-01/000" in text


def test_deeper_roots_and_ou_mvlp_layout(tmp_path):
    raw = tmp_path / "dl" / "OUMVLP" / "Silhouette"
    for ident in ("00001", "00002"):
        for seq in ("00", "01"):
            for f in range(3):
                write_png(raw / ident / seq / "015" / f"{f:04d}.png", silhouette(f + int(ident)))
    summary = prepare_dataset(tmp_path / "dl", tmp_path / "out", workers=1)
    assert summary.sequences_written == 4
    assert (tmp_path / "out" / "00002" / "01" / "015" / "015.pkl").is_file()
    # IN may be one subject's folder: the key takes the folder names above it
    one = prepare_dataset(raw / "00001", tmp_path / "one", workers=1)
    assert one.sequences_written == 2 and (tmp_path / "one" / "00001" / "00" / "015" / "015.pkl").is_file()


def test_two_folders_with_the_same_key_is_an_error(tmp_path):
    for part in ("a", "b"):
        write_png(tmp_path / "raw" / part / "001" / "nm-01" / "090" / "0.png", silhouette(1))
    with pytest.raises(DataError, match="001/nm-01/090"):
        prepare_dataset(tmp_path / "raw", tmp_path / "out", workers=1)
    assert not (tmp_path / "out").exists()


def test_path_errors(tmp_path, clean_tree):
    with pytest.raises(DataError, match="does not exist"):
        prepare_dataset(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DataError, match="not a folder"):
        prepare_dataset(tmp_path / "file.png", tmp_path / "out")
    (tmp_path / "empty" / "a" / "b").mkdir(parents=True)
    with pytest.raises(DataError, match="no folders with image files"):
        prepare_dataset(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(DataError, match="inside the input"):
        prepare_dataset(clean_tree, clean_tree / "prepared")
    with pytest.raises(DataError, match="inside the input"):
        prepare_dataset(clean_tree, clean_tree)
    with pytest.raises(GaitError, match="even"):
        prepare_dataset(clean_tree, tmp_path / "out", img_size=63)
    prepared = tmp_path / "prepared"
    save_array(prepared / "001" / "nm-01" / "090" / "090.pkl", np.zeros((3, 64, 64), np.uint8))
    with pytest.raises(DataError, match="already prepared"):
        prepare_dataset(prepared, tmp_path / "out2")


def test_rerun_skips_existing_and_overwrite_rewrites(clean_tree, tmp_path):
    out = tmp_path / "out"
    first = prepare_dataset(clean_tree, out, workers=1)
    want = expected_tree(clean_tree)
    target = out / "001" / "nm-01" / "090" / "090.pkl"
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.pkl")}

    again = prepare_dataset(clean_tree, out, workers=1)
    assert again.skipped_existing == first.sequences_written and again.sequences_written == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pkl")} == mtimes

    # someone's edited file is never replaced without --overwrite
    save_array(target, np.full((2, 64, 64), 7, np.uint8))
    (target.parent / ".090.pkl.leftover.tmp").write_bytes(b"partial")
    prepare_dataset(clean_tree, out, workers=1)
    assert load_array(target).shape == (2, 64, 64)
    assert not (target.parent / ".090.pkl.leftover.tmp").exists()  # temp debris cleaned up

    # a missing sequence is filled in
    (out / "002" / "bg-01" / "000" / "000.pkl").unlink()
    fill = prepare_dataset(clean_tree, out, workers=1)
    assert fill.sequences_written == 1 and fill.skipped_existing == 7

    with pytest.raises(DataError, match="img_size=64"):
        prepare_dataset(clean_tree, out, workers=1, img_size=32)

    redo = prepare_dataset(clean_tree, out, workers=1, overwrite=True)
    assert redo.sequences_written == 8 and redo.skipped_existing == 0
    assert_trees_equal(output_tree(out), want)


def test_second_writer_on_the_same_output_is_refused(clean_tree, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / prep.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(LockError, match="another 'gait prepare'"):
            prepare_dataset(clean_tree, out, workers=1)
    finally:
        os.close(fd)
    assert prepare_dataset(clean_tree, out, workers=1).sequences_written == 8


def test_overwrite_removes_pkl_of_a_sequence_that_is_now_empty(tmp_path):
    raw = tmp_path / "raw"
    write_png(raw / "001" / "nm-01" / "000" / "0.png", silhouette(0))
    write_png(raw / "001" / "nm-01" / "090" / "0.png", silhouette(1))
    out = tmp_path / "out"
    stale = out / "001" / "nm-01" / "090" / "090.pkl"
    prepare_dataset(raw, out, workers=1)  # gaitcli writes it (and its manifest lists it)
    write_png(raw / "001" / "nm-01" / "090" / "0.png", np.zeros((48, 64), np.uint8))  # now empty
    kept = prepare_dataset(raw, out, workers=1)
    assert stale.exists() and kept.skipped_existing == 2
    summary = prepare_dataset(raw, out, workers=1, overwrite=True)
    assert not stale.exists()
    assert summary.stale_removed == ["001/nm-01/090/090.pkl"] and summary.empty_sequences == ["001/nm-01/090"]
    assert json.loads((out / prep.MANIFEST_NAME).read_text())["pkls"] == ["001/nm-01/000/000.pkl"]


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_overwrite_refuses_an_out_gaitcli_did_not_write_and_deletes_nothing(clean_tree, tmp_path):
    """issue 19 item 14: --overwrite into a folder without a prepare manifest (prepared by
    OpenGait, or anything else) deleted its pkls. It now refuses in one line; nothing changes."""
    out = tmp_path / "opengait"
    save_array(out / "001" / "nm-01" / "090" / "090.pkl", np.ones((3, 64, 64), np.uint8))  # a target path
    save_array(out / "123" / "cl-02" / "018" / "018.pkl", np.ones((5, 64, 64), np.uint8))  # not from IN
    (out / "README").write_text("the team's data")
    before = _snapshot(out)
    from gaitcli.cli import app

    result = CliRunner().invoke(app, ["prepare", str(clean_tree), str(out), "--overwrite", "--workers", "1"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert str(out) in lines[0] and "manifest" in lines[0] and "did not write" in lines[0]
    after = _snapshot(out)
    assert after.pop(prep.LOCK_NAME) == b"" and after == before  # not a byte changed, no manifest
    (out / prep.MANIFEST_NAME).write_text("{not json")  # an unreadable manifest proves nothing
    with pytest.raises(DataError, match="cannot be read"):
        prepare_dataset(clean_tree, out, workers=1, overwrite=True)
    assert {k: v for k, v in _snapshot(out).items() if not k.startswith(".")} == before


def test_overwrite_removes_only_what_the_manifest_lists(clean_tree, tmp_path):
    out = tmp_path / "out"
    first = prepare_dataset(clean_tree, out, workers=1)
    manifest = json.loads((out / prep.MANIFEST_NAME).read_text())
    assert len(manifest["pkls"]) == first.sequences_written == 8  # what it wrote, by path
    assert "pkls" not in first.to_json()["settings"]  # the summary stays short
    mine = out / "900" / "nm-01" / "000" / "000.pkl"  # dropped in by hand later
    save_array(mine, np.ones((2, 64, 64), np.uint8))
    before = _snapshot(out)
    with pytest.raises(DataError, match="does not list.*900/nm-01/000/000.pkl.*did not write"):
        prepare_dataset(clean_tree, out, workers=1, overwrite=True)
    assert _snapshot(out) == before
    mine.rename(tmp_path / "safe.pkl")
    for folder in ("nm-01", "bg-01"):  # IN loses subject 002: its pkls are gaitcli's, so they go
        for view in ("000", "090"):
            for png in (clean_tree / "002" / folder / view).glob("*.png"):
                png.unlink()
    redo = prepare_dataset(clean_tree, out, workers=1, overwrite=True)
    assert redo.stale_removed == [f"002/{t}/{v}/{v}.pkl" for t in ("bg-01", "nm-01") for v in ("000", "090")]
    assert json.loads((out / prep.MANIFEST_NAME).read_text())["pkls"] == sorted(
        f"001/{t}/{v}/{v}.pkl" for t in ("bg-01", "nm-01") for v in ("000", "090"))


def test_a_pkl_already_in_out_is_not_claimed_by_the_manifest(clean_tree, tmp_path):
    """A pkl that was there before gaitcli (kept, skipped_existing) is not listed as written, so a
    later --overwrite refuses rather than replace it."""
    out = tmp_path / "out"
    theirs = out / "001" / "nm-01" / "090" / "090.pkl"
    save_array(theirs, np.ones((3, 64, 64), np.uint8))
    summary = prepare_dataset(clean_tree, out, workers=1)
    assert summary.skipped_existing == 1 and summary.sequences_written == 7
    assert "001/nm-01/090/090.pkl" not in json.loads((out / prep.MANIFEST_NAME).read_text())["pkls"]
    with pytest.raises(DataError, match="does not list"):
        prepare_dataset(clean_tree, out, workers=1, overwrite=True)
    assert load_array(theirs).shape == (3, 64, 64)


def test_ctrl_c_reports_what_was_written_and_propagates(clean_tree, tmp_path, monkeypatch):
    real = prep._process_sequence
    calls = {"n": 0}

    def interrupted(job, img_size, overwrite):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(job, img_size, overwrite)

    monkeypatch.setattr(prep, "_process_sequence", interrupted)
    from rich.console import Console

    console = Console(record=True, width=200)
    with pytest.raises(KeyboardInterrupt) as info:
        prepare_dataset(clean_tree, tmp_path / "out", workers=1, console=console)
    assert info.value.summary.sequences_written == 2
    assert len(list((tmp_path / "out").rglob("*.pkl"))) == 2
    assert "interrupted" in console.export_text()
    monkeypatch.setattr(prep, "_process_sequence", real)
    rest = prepare_dataset(clean_tree, tmp_path / "out", workers=1)
    assert rest.skipped_existing == 2 and rest.sequences_written == 6


# --------------------------------------------------------------------------- the CLI
def test_cli_end_to_end(clean_tree, tmp_path):
    from gaitcli.cli import app

    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(app, ["prepare", str(clean_tree), str(out), "--workers", "1", "--json", "-"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["sequences_written"] == 8
    assert "sequences written" in result.stderr  # the rich table goes to stderr

    result = runner.invoke(app, ["prepare", str(clean_tree), str(out), "--workers", "1",
                                 "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0
    assert json.loads((tmp_path / "s.json").read_text())["skipped_existing"] == 8

    result = runner.invoke(app, ["prepare", str(clean_tree), str(out), "--overwrite", "--img-size", "32",
                                 "--workers", "1"])
    assert result.exit_code == 0
    assert load_array(out / "001" / "nm-01" / "090" / "090.pkl").shape[1:] == (32, 32)

    result = runner.invoke(app, ["prepare", str(tmp_path / "missing"), str(out)])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr

    result = runner.invoke(app, ["prepare", str(clean_tree), str(tmp_path / "o2"), "--img-size", "65"])
    assert result.exit_code == 2


# --------------------------------------------------------------------------- SIGKILL, then re-run
def test_sigkill_midway_then_rerun_finishes(tmp_path):
    raw = tmp_path / "raw"
    distinct = []
    for k in range(6):
        img = np.zeros((240, 320), np.uint8)
        cv2.ellipse(img, (60 + 40 * k, 140), (22, 85), 0, 0, 360, 255, -1)
        cv2.circle(img, (60 + 40 * k, 45), 16, 255, -1)
        img[np.random.default_rng(k).random((240, 320)) < 0.01] = 255
        distinct.append((img, cv2.imencode(".png", img)[1].tobytes()))
    expected_frames = [pretreat_frame(img) for img, _ in distinct]
    want = {}
    n_frames = 50
    for i in range(30):
        key = f"{i // 3 + 1:03d}/nm-0{i % 3 + 1}/090"
        folder = raw / key
        folder.mkdir(parents=True)
        for f in range(n_frames):
            (folder / f"{f:03d}.png").write_bytes(distinct[(i + f) % 6][1])
        want[key] = np.stack([expected_frames[(i + f) % 6] for f in range(n_frames)])

    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gaitcli", "prepare", str(raw), str(out), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(out.rglob("*.pkl"))) >= 3:
                break
            time.sleep(0.005)
        still_running = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert still_running, "the run finished before it could be killed; make the tree bigger"

    written = list(out.rglob("*.pkl"))
    assert 3 <= len(written) < 30
    for pkl in written:  # every pkl on disk is complete
        key = "/".join(pkl.relative_to(out).parts[:-1])
        np.testing.assert_array_equal(load_array(pkl), want[key])

    summary = prepare_dataset(raw, out, workers=1)
    assert summary.skipped_existing == len(written)
    assert summary.sequences_written == 30 - len(written)
    assert not list(out.rglob("*.tmp"))
    assert_trees_equal(output_tree(out), want)
