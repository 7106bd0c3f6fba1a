"""--precision fp32|bf16|auto of gait eval / embed / identify (docs/eval.md, "Precision"): what
auto picks on which CPU, that the choice reaches the network and the feature file, and that a
gallery extended in the other precision says so."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gaitcli.build import build_model
from gaitcli.cli import app
from gaitcli.errors import GaitError
from gaitcli.evaluation import FeatureSet
from gaitcli.evaluation import precision as precision_module
from gaitcli.evaluation.precision import resolve_precision
from gaitcli.models import save_checkpoint
from gaitcli.runtime.cpu import CpuIdentity

pytestmark = pytest.mark.usefixtures("one_thread_for_module")

AMX = CpuIdentity("Test CPU", avx512_bf16=True, amx=True, threads=1, torch_version="t")
PLAIN = CpuIdentity("Old CPU", avx512_bf16=False, amx=False, threads=1, torch_version="t")


def test_auto_is_bf16_exactly_where_the_cpu_has_bf16_hardware(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_identity", lambda: AMX)
    chosen = resolve_precision("auto", "cpu")
    assert chosen.bf16 and "AMX" in chosen.reason
    assert resolve_precision(None, "cpu").bf16  # the commands' default is auto
    assert not resolve_precision("fp32", "cpu").bf16
    assert not resolve_precision("auto", "cuda").bf16  # fp16 on CUDA is evaluator_cfg.enable_float16's
    monkeypatch.setattr(precision_module, "cpu_identity", lambda: PLAIN)
    assert not resolve_precision("auto", "cpu").bf16
    forced = resolve_precision("bf16", "cpu")  # asked for: given, with a word on its cost
    assert forced.bf16 and "emulated" in forced.reason
    with pytest.raises(GaitError, match="fp32, bf16 or auto"):
        resolve_precision("fp16", "cpu")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from conftest import write_tiny_tree

    base = tmp_path_factory.mktemp("precision")
    tree = base / "pkl"
    write_tiny_tree(tree, ids=3, types=("nm-01", "nm-05", "bg-01", "cl-01"), views=("000", "090"), frames=8)
    part = base / "part.json"
    part.write_text(json.dumps({"TRAIN_SET": [], "TEST_SET": ["001", "002", "003"]}))
    torch.manual_seed(0)
    model = build_model({
        "model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 3, "bin_num": [32]},
        "data_cfg": {"dataset_name": "CASIA-B", "dataset_root": str(tree), "dataset_partition": str(part)},
    })
    ckpt = save_checkpoint(base / "tiny.safetensors", model, model.config, iteration=1,
                           labels=["001", "002", "003"], frame_size="32x32")
    return base, tree, part, ckpt


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_the_precision_reaches_the_embeddings_and_the_file(setup):
    base, tree, part, ckpt = setup
    files = {}
    for precision in ("fp32", "bf16"):
        files[precision] = base / f"{precision}.npz"
        res = run("embed", ckpt, tree, "--partition", part, "--out", files[precision], "--device", "cpu",
                  "--precision", precision, "--overwrite")
        assert res.exit_code == 0, res.output
        assert f"extraction in {precision} (asked for)" in res.output
    fp32, bf16 = FeatureSet.load(files["fp32"]), FeatureSet.load(files["bf16"])
    assert fp32.meta["precision"] == "fp32" and bf16.meta["precision"] == "bf16"
    # bf16 rounds inside the network: close to fp32, not equal to it
    assert not np.array_equal(fp32.embeddings, bf16.embeddings)
    scale = np.abs(fp32.embeddings).max()
    assert np.abs(fp32.embeddings - bf16.embeddings).max() < 0.1 * scale
    # gait eval --save-features records it too, and auto says what it found
    res = run("eval", ckpt, "--device", "cpu", "--save-features", base / "e.npz", "--precision", "auto")
    assert res.exit_code == 0, res.output
    assert "extraction in" in res.output and "auto:" in res.output
    assert FeatureSet.load(base / "e.npz").meta["precision"] in ("fp32", "bf16")


def test_a_gallery_extended_in_the_other_precision_says_so(setup):
    base, tree, part, ckpt = setup
    gallery = base / "g.npz"
    first = run("embed", ckpt, tree / "001", "--out", gallery, "--device", "cpu", "--precision", "fp32",
                "--overwrite")
    assert first.exit_code == 0, first.output
    more = run("embed", ckpt, tree / "002", "--append", gallery, "--device", "cpu", "--precision", "bf16")
    assert more.exit_code == 0, more.output
    assert FeatureSet.load(gallery).meta["precision"] == "fp32+bf16"


def test_precision_with_saved_features_is_refused(setup):
    base, *_ = setup
    res = run("eval", "--features", base / "fp32.npz", "--precision", "bf16")
    assert res.exit_code == 2 and "--precision" in res.output and "no effect" in res.output
    res = run("embed", setup[3], setup[1] / "001", "--out", base / "x.npz", "--precision", "fp16")
    assert res.exit_code == 2 and "fp32, bf16 or auto" in res.output
