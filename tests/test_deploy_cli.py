"""``gait embed`` → ``gait identify`` → ``gait export`` end to end through the command line, with a
tiny GaitGL (32x32 frames) on a tiny prepared tree: JSON on stdout stays pure, the open-set answer
is null/known=false, and the exported network embeds a walk as ``gait embed`` did."""

from __future__ import annotations

import hashlib
import json
import pickle

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import write_tiny_tree
from typer.testing import CliRunner

from gaitcli.build import build_model
from gaitcli.cli import app
from gaitcli.data.pickle_io import load_array
from gaitcli.evaluation import FeatureSet
from gaitcli.models import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("deploy-cli")
    tree = base / "pkl"
    write_tiny_tree(tree, ids=4, types=("nm-01", "nm-02", "nm-05"), views=("000", "090"), frames=8)
    part = base / "partition.json"
    part.write_text(json.dumps({"TRAIN_SET": ["001", "002"], "TEST_SET": ["003", "004"]}))
    torch.manual_seed(0)
    model_cfg = {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 2, "bin_num": [32]}
    model = build_model({"model_cfg": model_cfg, "data_cfg": {
        "dataset_name": "CASIA-B", "dataset_root": str(tree), "dataset_partition": str(part)}})
    ckpt = save_checkpoint(base / "tiny.safetensors", model, model.config, iteration=5, frame_size="32x32")
    return {"base": base, "tree": tree, "part": part, "ckpt": ckpt}


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_embed_identify_export(world):
    base, tree, ckpt = world["base"], world["tree"], world["ckpt"]
    gallery = base / "g.npz"
    res = run("embed", ckpt, tree, "--partition", world["part"], "--out", gallery, "--json", "-")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)  # the summary alone on stdout
    assert summary["sequences"] == 2 * 3 * 2 and summary["frame_size"] == "32x32"
    assert summary["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()

    probe = tree / "003" / "nm-05" / "090" / "090.pkl"
    res = run("identify", probe, "--checkpoint", ckpt, "--gallery", gallery, "--gallery-types", "nm-01,nm-02",
              "--top-k", 2, "--json", "-")
    assert res.exit_code == 0, res.output
    answer = json.loads(res.stdout)["answers"][0]
    assert (answer["probe"], answer["type"], answer["view"]) == ("003", "nm-05", "090")
    assert answer["known"] is True and answer["answer"] == answer["matches"][0]["label"]
    assert [m["label"] for m in answer["matches"]] != [] and len(answer["matches"]) == 2
    # a walk no gallery sequence equals (the tiny tree repeats frames across types), open set at 0
    frames = load_array(probe).copy()
    frames[:, ::5, ::3] = 255
    other = base / "other" / "003" / "nm-06" / "090" / "090.pkl"
    other.parent.mkdir(parents=True)
    other.write_bytes(pickle.dumps(frames))
    res = run("identify", other, "--checkpoint", ckpt, "--gallery", gallery, "--threshold", 0, "--json", "-")
    answer = json.loads(res.stdout)["answers"][0]
    assert answer["known"] is False and answer["answer"] is None and answer["matches"]
    assert answer["matches"][0]["distance"] > 0
    res = run("identify", other, "--checkpoint", ckpt, "--gallery", gallery, "--threshold", 0)
    row = next(line.split() for line in res.output.splitlines() if line.startswith("003/nm-06/090"))
    assert row[1] == "no"  # the 'known' column: never an identity

    model = base / "m.onnx"
    res = run("export", ckpt, model, "--json", "-")
    assert res.exit_code == 0, res.output
    meta = json.loads(res.stdout)["metadata"]
    assert meta["frame_size"] == "32x32" and meta["checkpoint_sha256"] == summary["checkpoint_sha256"]
    # the exported network, fed as its metadata says, gives gait embed's embedding of that walk (to
    # float rounding: another runtime, other kernels)
    frames = load_array(probe).astype(np.float32) / 255.0
    cut = int(meta["cut_width"])
    frames = frames[:, :, cut : frames.shape[2] - cut] if cut else frames
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    got = session.run(None, {"frames": frames[None]})[0]
    feats = FeatureSet.load(gallery)
    res = run("embed", ckpt, probe, "--out", base / "p.npz", "--precision", "fp32")  # the export is fp32
    assert res.exit_code == 0, res.output
    ref = FeatureSet.load(base / "p.npz").embeddings[0]
    assert got.shape == ref.shape == feats.embeddings.shape[1:]
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))


def test_errors_are_one_line_through_the_cli(world):
    base, ckpt = world["base"], world["ckpt"]
    for args in (
        ("embed", ckpt, base / "nowhere", "--out", base / "x.npz"),
        ("identify", base / "nowhere.npz", "--gallery", base / "nowhere.npz"),
        ("export", ckpt, base / "m.txt"),
        ("embed", ckpt, world["tree"], "--out", base / "x.npz", "--img-size", "48"),
    ):
        res = run(*args)
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (args, res.output)
