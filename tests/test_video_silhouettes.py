"""``gait silhouettes``: tracks of rendered walkers become a prepared tree every command reads,
through prepare's own pretreatment; reruns are idempotent, other settings are refused,
--overwrite starts over without touching foreign files, bad inputs are one line and leave
nothing behind, a video without walkers exits 3."""

from __future__ import annotations

import json
import os
import shutil

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.data.pickle_io import load_array
from gaitcli.data.pretreat import pretreat_frame
from gaitcli.synth.video import VideoStyle, VideoWalker, render_video

STYLE = VideoStyle(width=320, height=180)
# two walkers crossing the frame side by side at different depths, never touching
TWO = [
    VideoWalker(0, 1, offset=(0, 10), scale=0.5, length=40),
    VideoWalker(0, 2, offset=(160, 30), scale=0.5, start=5, length=40),
]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result, code: int = 2) -> bool:
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code == code and len(lines) == 1 and lines[0].startswith("error:")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    base = tmp_path_factory.mktemp("videos")
    folder = base / "my clips #1"  # a space and a '#' in the path change nothing
    folder.mkdir()
    truth = render_video(folder / "two.mp4", TWO, 60, STYLE)
    return {"base": base, "two": folder / "two.mp4", "truth": truth}


def test_two_walkers_give_two_tracks_in_a_tree_inspect_reads(videos, tmp_path):
    out, masks, sheets = tmp_path / "out", tmp_path / "masks", tmp_path / "sheets"
    res = run("silhouettes", videos["two"], "--out", out, "--img-size", "32",
              "--keep-masks", masks, "--sheet", sheets, "--json", tmp_path / "s.json")
    assert res.exit_code == 0, res.output
    text = (tmp_path / "s.json").read_text()
    summary = json.loads(text)
    assert summary["tool"] == "gait silhouettes" and summary["format"] == 1 and summary["gaitcli"]
    # reasons are plain text ("... < --min-frames 15"), not the terminal's option markup
    dropped = [t for v in summary["videos"] for t in v["tracks"] if t["reason"] is not None]
    assert all("--min-frames" in t["reason"] or "merged" in t["reason"] or "border" in t["reason"]
               for t in dropped)
    assert not any(0xE000 <= ord(ch) <= 0xF8FF for ch in text)
    kept = [t for v in summary["videos"] for t in v["tracks"] if t["reason"] is None]
    assert [t["id"] for t in kept] == ["two-t1", "two-t2"]
    truth = videos["truth"]
    for walker, track in enumerate(kept):
        # each track follows one walker over (almost) its whole time in view
        first, last = truth.span(walker)
        assert abs(track["frames"][0] - first) <= 3 and abs(track["frames"][1] - last) <= 3, track
    for tid in ("two-t1", "two-t2"):
        pkl = out / tid / "00" / "000" / "000.pkl"
        arr = load_array(pkl)
        assert arr.dtype == np.uint8 and arr.shape[1:] == (32, 32) and len(arr) >= 30
        assert (sheets / f"{tid}.png").is_file()
    res = run("inspect", out)
    assert res.exit_code == 0, res.output
    assert "no problems found" in res.output


def test_pkl_is_prepare_pretreatment_of_the_kept_masks(videos, tmp_path):
    out, masks = tmp_path / "out", tmp_path / "masks"
    assert run("silhouettes", videos["two"], "--out", out, "--img-size", "32",
               "--keep-masks", masks).exit_code == 0
    for k in (1, 2):
        files = sorted((masks / "two" / f"t{k}").glob("*.png"))
        assert files and all(len(f.stem) == 6 for f in files)
        pretreated = [pretreat_frame(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), 32) for f in files]
        expected = np.stack([p for p in pretreated if p is not None])
        np.testing.assert_array_equal(load_array(out / f"two-t{k}" / "00" / "000" / "000.pkl"), expected)


def test_rerun_is_idempotent_other_settings_refused_overwrite_starts_over(videos, tmp_path):
    out = tmp_path / "out"
    assert run("silhouettes", videos["two"], "--out", out, "--img-size", "32").exit_code == 0
    pkl = out / "two-t1" / "00" / "000" / "000.pkl"
    before = pkl.stat().st_mtime_ns
    res = run("silhouettes", videos["two"], "--out", out, "--img-size", "32")
    assert res.exit_code == 0 and "already done" in res.output
    assert pkl.stat().st_mtime_ns == before
    res = run("silhouettes", videos["two"], "--out", out, "--img-size", "32", "--min-frames", "20")
    assert one_error_line(res), res.output
    assert "other settings" in res.output
    foreign = out / "notes.txt"
    foreign.write_text("mine")
    res = run("silhouettes", videos["two"], "--out", out, "--img-size", "32", "--min-frames", "20",
              "--type", "nm-01", "--view", "090", "--overwrite")
    assert res.exit_code == 0, res.output
    assert foreign.read_text() == "mine"
    assert not pkl.exists()  # the earlier run's files are gone: start over, exactly
    assert (out / "two-t1" / "nm-01" / "090" / "090.pkl").is_file()


def test_names_map_tracks_to_ids(videos, tmp_path):
    out = tmp_path / "out"
    res = run("silhouettes", videos["two"], "--out", out, "--img-size", "32", "--name", "two-t2=alice")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["alice", "two-t1"]
    res = run("silhouettes", videos["two"], "--out", tmp_path / "o2", "--name", "nonsense")
    assert one_error_line(res), res.output


def test_bad_inputs_are_one_line_and_leave_nothing(videos, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(2000))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for source in (bad, empty, tmp_path / "missing.mp4"):
        out = tmp_path / f"out-{source.stem}"
        res = run("silhouettes", source, "--out", out)
        assert one_error_line(res), res.output
        assert source.name in res.output
        assert not out.exists()  # nothing half-written
    # a bad video after a good one: every input is opened before anything is written
    out = tmp_path / "mixed"
    res = run("silhouettes", videos["two"], bad, "--out", out, "--img-size", "32")
    assert one_error_line(res) and "bad.mp4" in res.output, res.output
    assert not out.exists()


def test_a_video_without_walkers_exits_3(tmp_path):
    empty_scene = tmp_path / "nobody.mp4"
    render_video(empty_scene, [], 40, STYLE)
    res = run("silhouettes", empty_scene, "--out", tmp_path / "out")
    assert one_error_line(res, code=3), res.output
    assert "no walker" in res.output and not (tmp_path / "out").exists()


def test_walker_always_at_the_border_is_dropped_with_its_reason(tmp_path):
    # the canvas sticks out below the frame: the walker's feet are always cut by the border
    clip = tmp_path / "cut.mp4"
    render_video(clip, [VideoWalker(0, 3, offset=(0, 100), scale=0.6, length=30)], 45, STYLE)
    res = run("silhouettes", clip, "--out", tmp_path / "out", "--json", tmp_path / "s.json")
    assert res.exit_code == 3, res.output
    assert "border" in res.output


def test_frame_folders_and_mixed_sizes_in_one_run(videos, tmp_path):
    # the same video as a folder of frames, and a second video of another size
    frames = tmp_path / "frames"
    frames.mkdir()
    cap = cv2.VideoCapture(str(videos["two"]))
    n = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        cv2.imwrite(str(frames / f"{n:04d}.png"), img)
        n += 1
    cap.release()
    assert n == 60
    small = tmp_path / "small.avi"
    render_video(small, [VideoWalker(1, 4, offset=(20, 0), scale=0.6, length=36)], 55,
                 VideoStyle(width=240, height=160, codec="MJPG"))
    out = tmp_path / "out"
    res = run("silhouettes", frames, small, "--out", out, "--img-size", "32", "--json", tmp_path / "s.json")
    assert res.exit_code == 0, res.output
    ids = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert ids[:2] == ["frames-t1", "frames-t2"] and any(i.startswith("small-t") for i in ids), ids
    # the frame folder gives the tracks the video gives
    ref = tmp_path / "ref"
    assert run("silhouettes", videos["two"], "--out", ref, "--img-size", "32").exit_code == 0
    for k in (1, 2):
        a = load_array(out / f"frames-t{k}" / "00" / "000" / "000.pkl")
        b = load_array(ref / f"two-t{k}" / "00" / "000" / "000.pkl")
        assert a.shape == b.shape
    shutil.rmtree(frames)


def test_a_record_from_a_newer_gaitcli_is_refused(videos, tmp_path):
    out = tmp_path / "out"
    assert run("silhouettes", videos["two"], "--out", out, "--img-size", "32").exit_code == 0
    record = out / ".gait-silhouettes.json"
    data = json.loads(record.read_text())
    data["format"] = 99
    record.write_text(json.dumps(data))
    res = run("silhouettes", videos["two"], "--out", out, "--img-size", "32")
    assert one_error_line(res) and "newer gaitcli" in res.output, res.output
