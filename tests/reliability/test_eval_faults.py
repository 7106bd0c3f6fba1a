"""Evaluation and conversion faults (issue 9, items 7-10): each refused with one line that says
what to do, before any work, with nothing written.

* 7: NaN / inf features, and a checkpoint whose weights are NaN, are never evaluated as valid.
* 8: a training-state file given to ``eval`` / ``convert`` names the weights file beside it.
* 9: ``--heatmap`` with a protocol picked automatically as cross-view fails before extraction.
* 10: ``convert`` into a folder, from random bytes or an empty zip: one line, no torch advice.
"""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from gaitcli.build import build_model
from gaitcli.cli import app
from gaitcli.evaluation import FeatureSet
from gaitcli.models import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result, code=2):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and len(lines) == 1 and lines[0].startswith("error:"), (
        result.output
    )
    return lines[0]


def casia_features(value=None):
    rng = np.random.default_rng(0)
    rows = [
        (f"{i:03d}", t, v) for i in range(1, 4) for t in ("nm-01", "nm-05", "bg-01") for v in ("000", "090")
    ]
    emb = rng.normal(size=(len(rows), 2, 3)).astype(np.float32)
    if value is not None:
        emb[4, 1, 2] = value
    labels, types, views = zip(*rows, strict=True)
    return FeatureSet(emb, labels, types, views, meta={"dataset_name": "CASIA-B"})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_features_are_refused(tmp_path, value):
    path = casia_features(value).save(tmp_path / "f.npz")
    line = one_line_error(run("eval", "--features", path, "--json", tmp_path / "r.json"))
    assert "1 of 18 embeddings hold NaN or infinite values" in line and "001/bg-01/000" in line
    assert not (tmp_path / "r.json").exists()
    assert run("eval", "--features", casia_features().save(tmp_path / "ok.npz")).exit_code == 0


def tiny_tree(
    root, ids=("001", "002", "003"), types=("nm-01", "nm-02", "nm-05", "bg-01", "cl-01"), views=("000", "090")
):
    for n, i in enumerate(ids):
        for t in types:
            for v in views:
                frames = np.zeros((4, 64, 64), np.uint8)
                frames[:, 10 + 6 * n : 50, 20 + 3 * n : 40] = 255
                (root / i / t / v).mkdir(parents=True)
                (root / i / t / v / f"{v}.pkl").write_bytes(pickle.dumps(frames))
    return root


def tiny_checkpoint(tmp_path, evaluator_cfg=None, nan=False):
    tree = tiny_tree(tmp_path / "pkl")
    part = tmp_path / "part.json"
    part.write_text(json.dumps({"TRAIN_SET": [], "TEST_SET": ["001", "002", "003"]}))
    torch.manual_seed(0)
    cfg = {
        "model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 3},
        "data_cfg": {"dataset_name": "CASIA-B", "dataset_root": str(tree), "dataset_partition": str(part)},
        "evaluator_cfg": evaluator_cfg or {},
    }
    model = build_model(cfg)
    if nan:
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] = float("nan")
    return save_checkpoint(tmp_path / "run-00010.safetensors", model, model.config, iteration=10)


def test_nan_weights_are_refused_before_extraction(tmp_path, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path, nan=True)
    monkeypatch.setattr("gaitcli.evaluation.api.extract_features", _no_extraction)
    line = one_line_error(run("eval", ckpt, "--device", "cpu"))
    assert "NaN or infinite" in line and "earlier checkpoint" in line


def _no_extraction(*_args, **_kwargs):
    raise AssertionError("extraction must not start")


def test_training_state_file_names_its_weights(tmp_path):
    state = tmp_path / "run-00010.state.safetensors"
    save_file({"s.__empty__": torch.zeros(0)}, str(state), metadata={"state": "{}"})
    for args in (["eval", state], ["convert", state, tmp_path / "o.safetensors"]):
        line = one_line_error(run(*args))
        assert "training-state file" in line and line.endswith(str(tmp_path / "run-00010.safetensors")), line
        assert "gaitcli metadata" not in line
    assert not (tmp_path / "o.safetensors").exists()


def test_heatmap_with_automatic_cross_view_fails_before_extraction(tmp_path, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path, evaluator_cfg={"cross_view_gallery": True})
    monkeypatch.setattr("gaitcli.evaluation.api.extract_features", _no_extraction)
    out = tmp_path / "out"
    line = one_line_error(
        run(
            "eval",
            ckpt,
            "--device",
            "cpu",
            "--heatmap",
            out / "h.png",
            "--json",
            out / "r.json",
            "--save-features",
            out / "f.npz",
        )
    )
    assert "--heatmap" in line and "cross-view" in line
    assert not out.exists()  # nothing written: not the features, not the JSON


def test_output_targets_are_checked_before_extraction(tmp_path, monkeypatch):
    ckpt = tiny_checkpoint(tmp_path)
    monkeypatch.setattr("gaitcli.evaluation.api.extract_features", _no_extraction)
    folder = tmp_path / "folder"
    folder.mkdir()
    for option in ("--json", "--csv", "--save-features", "--heatmap"):
        line = one_line_error(run("eval", ckpt, "--device", "cpu", option, folder))
        assert option in line and "is a folder" in line
    line = one_line_error(run("eval", ckpt, "--device", "cpu", "--heatmap", tmp_path / "h.docx"))
    assert "unknown image type" in line


def test_convert_oddities_are_one_line(tmp_path):
    ckpt = tiny_checkpoint(tmp_path)
    folder = tmp_path / "outdir"
    folder.mkdir()
    assert "is a folder" in one_line_error(run("convert", ckpt, folder))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(256))
    empty_zip = tmp_path / "empty.pt"
    empty_zip.write_bytes(b"PK\x05\x06" + bytes(18))
    for src in (junk, empty_zip):
        line = one_line_error(run("convert", src, tmp_path / "o.safetensors"))
        assert (
            "not a torch checkpoint" in line and "could run code" not in line and "weights_only" not in line
        )
    assert not (tmp_path / "o.safetensors").exists()
