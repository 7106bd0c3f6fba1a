"""``gait embed``: equal to eval's features on a tree, PNG walks pretreated exactly as prepare
does, bad inputs listed and skipped, --append, frame-size and output refusals."""

from __future__ import annotations

import json
import pickle

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gaitcli.build import build_model
from gaitcli.cli import app
from gaitcli.evaluation import FeatureSet
from gaitcli.models import save_checkpoint

IDS = ("001", "002")
TYPES = ("nm-01", "nm-02", "nm-05", "bg-01", "cl-01")
VIEWS = ("000", "090")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def silhouettes(seed: int, frames: int = 5, h: int = 80, w: int = 60) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros((frames, h, w), np.uint8)
    for f in range(frames):
        top, left = 5 + int(rng.integers(0, 6)), 18 + int(rng.integers(0, 8))
        out[f, top : top + 60, left : left + 16] = 255
        out[f, top : top + 8, left + 4 : left + 12] = 255
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from gaitcli.data.prepare import prepare_dataset

    base = tmp_path_factory.mktemp("embed")
    raw = base / "raw"
    for n, (i, t, v) in enumerate((i, t, v) for i in IDS for t in TYPES for v in VIEWS):
        folder = raw / i / t / v
        folder.mkdir(parents=True)
        for f, frame in enumerate(silhouettes(n)):
            cv2.imwrite(str(folder / f"{f:03d}.png"), frame)
    (raw / "001" / "nm-01" / "000" / "999.png").write_bytes(b"")  # a bad frame: skipped, as by prepare
    tree = base / "pkl"
    prepare_dataset(raw, tree, img_size=32, workers=1)
    part = base / "part.json"
    part.write_text(json.dumps({"TRAIN_SET": [], "TEST_SET": list(IDS)}))
    torch.manual_seed(0)
    model = build_model(
        {
            "model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 2, "bin_num": [32]},
            "data_cfg": {
                "dataset_name": "CASIA-B",
                "dataset_root": str(tree),
                "dataset_partition": str(part),
            },
        }
    )
    ckpt = save_checkpoint(
        base / "tiny.safetensors", model, model.config, iteration=3, labels=list(IDS), frame_size="32x32"
    )
    bare = save_checkpoint(base / "bare.safetensors", model, model.config, iteration=3, labels=list(IDS))
    return {"base": base, "raw": raw, "tree": tree, "part": part, "ckpt": ckpt, "bare": bare}


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:")


def test_embed_tree_equals_eval_features(setup):
    base = setup["base"]
    res = run(
        "embed",
        setup["ckpt"],
        setup["tree"],
        "--partition",
        setup["part"],
        "--out",
        base / "t.npz",
        "--device",
        "cpu",
    )
    assert res.exit_code == 0, res.output
    res = run("eval", setup["ckpt"], "--save-features", base / "e.npz", "--device", "cpu")
    assert res.exit_code == 0, res.output
    a, b = FeatureSet.load(base / "t.npz"), FeatureSet.load(base / "e.npz")
    assert len(a) == len(IDS) * len(TYPES) * len(VIEWS)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    for key in ("labels", "types", "views"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert a.meta["frame_size"] == "32x32" and a.meta["model"] == "GaitGL" and a.meta["metric"] == "euc"
    assert len(a.meta["checkpoint_sha256"]) == 64 and a.meta["dataset_name"] == "CASIA-B"


def test_png_walks_are_pretreated_like_prepare_and_bad_inputs_are_listed(setup):
    base, raw, tree = setup["base"], setup["raw"], setup["tree"]
    empty = base / "dark" / "nm-01" / "000"
    empty.mkdir(parents=True)
    cv2.imwrite(str(empty / "000.png"), np.zeros((80, 60), np.uint8))
    bad_pkl = base / "evil.pkl"
    bad_pkl.write_bytes(pickle.dumps(print))  # a pickle that would call code: refused, listed, skipped
    walk = raw / "001" / "nm-01" / "000"
    res = run(
        "embed",
        setup["ckpt"],
        walk,
        empty,
        bad_pkl,
        tree / "002" / "bg-01" / "090" / "090.pkl",
        "--out",
        base / "w.npz",
        "--json",
        base / "w.json",
    )
    assert res.exit_code == 0, res.output
    report = json.loads((base / "w.json").read_text())
    reasons = {p["path"]: p["reason"] for p in report["skipped"]}
    assert set(reasons) == {str(walk / "999.png"), str(empty), str(bad_pkl)}, reasons
    assert "empty file" in reasons[str(walk / "999.png")] and "no usable frame" in reasons[str(empty)]
    assert "skipped 3 input(s)" in res.output
    walks = FeatureSet.load(base / "w.npz")
    assert walks.labels.tolist() == ["001", "002"] and walks.views.tolist() == ["000", "090"]
    run("embed", setup["ckpt"], tree, "--out", base / "all.npz", "--overwrite")
    every = FeatureSet.load(base / "all.npz")
    for row, (i, t, v) in enumerate([("001", "nm-01", "000"), ("002", "bg-01", "090")]):
        k = np.flatnonzero((every.labels == i) & (every.types == t) & (every.views == v))[0]
        np.testing.assert_array_equal(walks.embeddings[row], every.embeddings[k])  # PNG == prepared pkl


def test_append_adds_without_reembedding_and_refuses_mismatch(setup):
    base, tree = setup["base"], setup["tree"]
    g = base / "g.npz"
    assert run("embed", setup["ckpt"], tree / "001", "--out", g, "--overwrite").exit_code == 0
    first = FeatureSet.load(g)
    res = run("embed", setup["ckpt"], tree / "001", tree / "002", "--append", g)
    assert res.exit_code == 0, res.output
    grown = FeatureSet.load(g)
    assert len(grown) == 2 * len(first) and "not re-embedded" in res.output
    np.testing.assert_array_equal(grown.embeddings[: len(first)], first.embeddings)
    again = run("embed", setup["ckpt"], tree / "002", "--append", g)
    assert again.exit_code == 0 and len(FeatureSet.load(g)) == len(grown)  # idempotent
    other = FeatureSet.load(g)
    other.meta.update(checkpoint_sha256="0" * 64)
    other.save(base / "other.npz")
    assert one_error_line(res := run("embed", setup["ckpt"], tree / "002", "--append", base / "other.npz"))
    assert "checkpoint" in res.output


def test_one_line_errors(setup):
    base, tree = setup["base"], setup["tree"]
    assert one_error_line(res := run("embed", setup["bare"], tree, "--out", base / "x.npz"))
    assert "--img-size" in res.output
    assert run("embed", setup["bare"], tree, "--out", base / "x.npz", "--img-size", "32").exit_code == 0
    assert one_error_line(
        run("embed", setup["bare"], tree, "--out", base / "x.npz", "--img-size", "32")
    )  # exists
    assert one_error_line(
        res := run("embed", setup["ckpt"], tree, "--out", base / "y.npz", "--img-size", "64")
    )
    assert "64x64" in res.output
    assert one_error_line(run("embed", setup["ckpt"], base / "nowhere", "--out", base / "y.npz"))
    assert one_error_line(run("embed", setup["ckpt"], setup["part"], "--out", base / "y.npz"))
    assert one_error_line(run("embed", setup["ckpt"], tree, "--out", base / "y.npz", "--img-size", "abc"))
    assert one_error_line(
        run(
            "embed",
            setup["ckpt"],
            tree,
            "--partition",
            setup["part"],
            "--split",
            "dev",
            "--out",
            base / "y.npz",
        )
    )


def test_eval_calibration_feeds_identify_on_the_same_checkpoint(setup):
    base, tree = setup["base"], setup["tree"]
    cal = base / "cal.json"
    res = run(
        "eval",
        setup["ckpt"],
        "--device",
        "cpu",
        "--verification",
        "--calibrate",
        0.5,
        "--calibration-out",
        cal,
    )
    assert res.exit_code == 0, res.output
    stored = json.loads(cal.read_text())
    assert stored["frame_size"] == "32x32" and len(stored["checkpoint_sha256"]) == 64
    gallery = base / "cal-gallery.npz"
    assert run("embed", setup["ckpt"], tree, "--out", gallery, "--overwrite").exit_code == 0
    res = run(
        "identify",
        tree / "001" / "nm-05" / "000",
        "--checkpoint",
        setup["ckpt"],
        "--gallery",
        gallery,
        "--calibration",
        cal,
        "--gallery-types",
        "nm-01,nm-02",
    )
    assert res.exit_code == 0, res.output
    assert "FAR 0.5 calibrated on CASIA-B test split" in res.output
    res = run(
        "identify",
        tree / "001" / "nm-05" / "000",
        "--checkpoint",
        setup["bare"],
        "--img-size",
        "32",
        "--gallery",
        gallery,
    )
    assert one_error_line(res) and "checkpoint" in res.output  # another checkpoint file: refused
