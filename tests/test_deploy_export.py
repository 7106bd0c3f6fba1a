"""``gait export``: ONNX parity with PyTorch for GaitGL and both MetaGait variants (dynamic T),
preprocessing metadata, and the one-line errors. onnx / onnxruntime are required (the 'export'
extra, installed by .ci/run): these tests never skip."""

from __future__ import annotations

import builtins

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from gaitcli.build import build_model
from gaitcli.cli import app
from gaitcli.deploy.export import export_onnx
from gaitcli.errors import GaitError
from gaitcli.models import save_checkpoint

KINDS = [("GaitGL", {}), ("MetaGait", {"variant": "reference"}), ("MetaGait", {"variant": "paper"})]


pytestmark = pytest.mark.usefixtures("one_thread_for_module")


def checkpoint(tmp_path, kind, extra, **meta):
    torch.manual_seed(0)
    model = build_model({"model_cfg": {"model": kind, "channels": [4, 8, 8], "class_num": 3, **extra}})
    return save_checkpoint(
        tmp_path / f"{kind}{extra.get('variant', '')}.safetensors", model, model.config, iteration=1, **meta
    ), model


@pytest.mark.parametrize("kind,extra", KINDS)
def test_onnx_matches_pytorch_for_any_length(tmp_path, kind, extra):
    ckpt, model = checkpoint(tmp_path, kind, extra, frame_size="64x64")
    result = export_onnx(ckpt, tmp_path / "m.onnx")
    assert set(result.differences) == {10, 30, 100} and max(result.differences.values()) <= 1e-4
    proto = onnx.load(str(tmp_path / "m.onnx"))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["input_size"] == "64x44" and meta["cut_width"] == "10" and meta["scale"] == "1/255"
    assert meta["frame_size"] == "64x64" and meta["metric"] == "euc"
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    frames = (np.random.default_rng(5).random((1, 17, 64, 44)) > 0.5).astype(np.float32)
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(frames))["embeddings"][0].numpy()
    got = session.run(None, {"frames": frames})[0]
    assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-4


def one_error_line(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:")


def test_cli_prints_difference_and_refuses_bad_input(tmp_path, monkeypatch):
    ckpt, _ = checkpoint(tmp_path, "GaitGL", {})  # no frame_size recorded
    runner = CliRunner()
    res = runner.invoke(app, ["export", str(ckpt), str(tmp_path / "m.onnx")])
    assert one_error_line(res) and "--img-size" in res.output
    res = runner.invoke(app, ["export", str(ckpt), str(tmp_path / "m.onnx"), "--img-size", "64"])
    assert res.exit_code == 0, res.output
    assert "max |difference|" in res.output and "T=100" in res.output
    assert one_error_line(
        runner.invoke(app, ["export", str(ckpt), str(tmp_path / "m.onnx"), "--img-size", "64"])
    )
    assert one_error_line(
        runner.invoke(app, ["export", str(ckpt), str(tmp_path / "m.txt"), "--img-size", "64"])
    )
    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name.split(".")[0] in ("onnx", "onnxruntime"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(GaitError, match=r"'export' extra"):
        export_onnx(ckpt, tmp_path / "n.onnx", img_size="64")


def test_img_size_cannot_change_the_frame_size_and_a_size_too_small_is_named(tmp_path):
    """The checkpoint's frame size is the truth: another --img-size is one line (no GeM traceback,
    no file); for a checkpoint that does not record it, a size its network cannot embed is one line
    naming the smallest it can."""
    runner = CliRunner()
    ckpt, _ = checkpoint(tmp_path, "GaitGL", {}, frame_size="64x64")
    res = runner.invoke(app, ["export", str(ckpt), str(tmp_path / "m.onnx"), "--img-size", "16"])
    assert one_error_line(res), res.output
    assert "--img-size 16" in res.output and "trained on 64x64" in res.output
    assert not (tmp_path / "m.onnx").exists()
    bare, _ = checkpoint(tmp_path, "MetaGait", {"variant": "paper"})  # no frame size; 64 parts
    res = runner.invoke(app, ["export", str(bare), str(tmp_path / "m.onnx"), "--img-size", "16"])
    assert one_error_line(res), res.output
    assert "16x16" in res.output and "too small: the smallest frame size it embeds is 64x64" in res.output
    assert not (tmp_path / "m.onnx").exists()
