"""Videos into ``gait embed`` and ``gait identify``: one walk per kept track, answers per track
(video as probe, track number, frames), and ``gait identify --stream`` as JSON lines with a
final vote per track. A gallery made from ``gait silhouettes``' tree of the same video must name
each track by itself."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from gaitcli.build import build_model
from gaitcli.cli import app
from gaitcli.evaluation import FeatureSet
from gaitcli.models import save_checkpoint
from gaitcli.synth.video import VideoStyle, VideoWalker, render_video

STYLE = VideoStyle(width=320, height=180)
TWO = [
    VideoWalker(0, 1, offset=(0, 10), scale=0.5, length=40),
    VideoWalker(0, 2, offset=(160, 30), scale=0.5, start=5, length=40),
]


pytestmark = pytest.mark.usefixtures("one_thread_for_module")


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("vdeploy")
    video = base / "walk two.mp4"  # the stem becomes walk_two: ids are safe folder names
    truth = render_video(video, TWO, 60, STYLE)
    torch.manual_seed(0)
    model = build_model({
        "model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 2, "bin_num": [32]},
        "data_cfg": {"dataset_name": "CASIA-B", "dataset_root": str(base), "dataset_partition": "p.json"},
    })
    ckpt = save_checkpoint(base / "tiny.safetensors", model, model.config, iteration=3, labels=["a", "b"],
                           frame_size="32x32")
    tree = base / "tree"
    res = run("silhouettes", video, "--out", tree, "--img-size", "32")
    assert res.exit_code == 0, res.output
    gallery = base / "G.npz"
    res = run("embed", ckpt, tree, "--out", gallery, "--device", "cpu")
    assert res.exit_code == 0, res.output
    return {"base": base, "video": video, "truth": truth, "ckpt": ckpt, "gallery": gallery}


def test_embed_a_video_gives_one_row_per_kept_track(setup):
    out = setup["base"] / "V.npz"
    res = run("embed", setup["ckpt"], setup["video"], "--out", out, "--device", "cpu")
    assert res.exit_code == 0, res.output
    feats = FeatureSet.load(out)
    assert sorted(feats.labels) == ["walk_two-t1", "walk_two-t2"]
    # the same silhouettes as the tree gait silhouettes wrote: the same embeddings
    gal = FeatureSet.load(setup["gallery"])
    for label in ("walk_two-t1", "walk_two-t2"):
        a = feats.embeddings[list(feats.labels).index(label)]
        b = gal.embeddings[list(gal.labels).index(label)]
        torch.testing.assert_close(torch.from_numpy(a), torch.from_numpy(b), rtol=1e-4, atol=1e-6)


def test_identify_a_video_answers_per_track(setup):
    out = setup["base"] / "answers.json"
    res = run("identify", "--checkpoint", setup["ckpt"], "--gallery", setup["gallery"], setup["video"],
              "--json", out, "--device", "cpu")
    assert res.exit_code == 0, res.output
    answers = json.loads(out.read_text())["answers"]
    assert [a["track"] for a in answers] == [1, 2]
    for walker, a in enumerate(answers):
        assert a["probe"] == str(setup["video"])
        assert a["answer"] == f"walk_two-t{a['track']}"
        first, last = setup["truth"].span(walker)
        assert abs(a["frames"][0] - first) <= 3 and abs(a["frames"][1] - last) <= 3
    assert "track 1" in res.output  # the human table names the track too


def test_stream_gives_json_lines_and_a_final_vote_per_track(setup):
    res = CliRunner().invoke(app, [
        "identify", "--checkpoint", str(setup["ckpt"]), "--gallery", str(setup["gallery"]),
        "--stream", str(setup["video"]), "--window", "20", "--stride", "10", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    finals = [d for d in lines if d.get("final")]
    assert sorted(d["track"] for d in finals) == [1, 2]
    for d in lines:
        assert d["probe"] == str(setup["video"])
        assert d["answer"] in ("walk_two-t1", "walk_two-t2")
        assert d["frames"][0] <= d["frames"][1]
    # an untrained model: a window may pick the other walker, the vote must not
    for final in finals:
        assert final["answer"] == f"walk_two-t{final['track']}"
    own = [d["answer"] == f"walk_two-t{d['track']}" for d in lines if not d.get("final")]
    assert sum(own) > len(own) / 2
    windows = [d for d in lines if not d.get("final")]
    assert all(d["frames"][1] - d["frames"][0] + 1 <= 20 for d in windows)
    for final in finals:
        mine = [d for d in windows if d["track"] == final["track"]]
        assert final["windows"] == len(mine) >= 2
        # the final line covers the track's whole time, its last window included
        assert final["frames"] == [mine[0]["frames"][0], mine[-1]["frames"][1]]


def test_stream_refuses_probes_and_needs_a_checkpoint(setup):
    res = run("identify", "--gallery", setup["gallery"], "--stream", setup["video"])
    assert res.exit_code == 2 and "--checkpoint" in res.output
    res = run("identify", "--checkpoint", setup["ckpt"], "--gallery", setup["gallery"],
              "--stream", setup["video"], setup["video"])
    assert res.exit_code == 2 and "PROBE" in res.output
