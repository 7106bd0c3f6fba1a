"""Malicious and broken files: refused with one clear line, no code from them runs."""

from __future__ import annotations

import json
import os
import pickle

import torch
import yaml
from conftest import tiny_config, write_tiny_tree
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.config import resolve_config
from gaitcli.training.trainer import train


class RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def one_line_error(result, code=2):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return lines[-1]


def test_malicious_pkl_in_training_data(tmp_path):
    root = tmp_path / "pkl"
    write_tiny_tree(root, ids=4)
    marker = tmp_path / "pwned"
    (root / "002" / "nm-01" / "000" / "000.pkl").write_bytes(pickle.dumps(RunsCode(marker)))
    part = tmp_path / "part.json"
    part.write_text(json.dumps({"TRAIN_SET": ["001", "002", "003", "004"], "TEST_SET": []}))
    cfg_path = tmp_path / "cfg.yaml"
    cfg = tiny_config(root, part, total_iter=30, save_iter=30)
    cfg["data_cfg"]["cache"] = False
    cfg_path.write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["train", "--config", str(cfg_path), "--output", str(tmp_path / "run"),
                                      "--device", "cpu"])
    line = one_line_error(result)
    assert "002/nm-01/000/000.pkl" in line and "refused" in line
    assert not marker.exists()
    # inspect lists it as refused, also without running it
    result = CliRunner().invoke(app, ["inspect", str(root), "--json", "-"])
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert any("002/nm-01/000/000.pkl" in u["path"] and u["reason"].startswith("refused")
               for u in report["unreadable"])
    assert not marker.exists()


def test_malicious_pt_is_refused_by_convert(tmp_path):
    marker = tmp_path / "pwned"
    src = tmp_path / "evil.pt"
    with open(src, "wb") as handle:
        pickle.dump({"model": RunsCode(marker)}, handle)
    line = one_line_error(CliRunner().invoke(app, ["convert", str(src), str(tmp_path / "out.safetensors")]))
    assert "evil.pt" in line
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_corrupt_safetensors_and_non_checkpoints(tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a safetensors file at all")
    assert "garbage.safetensors" in one_line_error(CliRunner().invoke(app, ["eval", str(garbage)]))
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    assert "empty.safetensors" in one_line_error(CliRunner().invoke(app, ["eval", str(empty)]))
    missing = CliRunner().invoke(app, ["eval", str(tmp_path / "nope.safetensors")])
    assert "no such checkpoint" in one_line_error(missing)


def test_checkpoint_of_the_wrong_model_for_the_config(tiny_data, tmp_path):
    gaitgl = resolve_config(tiny_config(*tiny_data, total_iter=2, save_iter=2))
    train(gaitgl, output=tmp_path / "run", device="cpu", progress=False)
    metagait = tiny_config(*tiny_data, total_iter=4, save_iter=2)
    metagait["model_cfg"]["model"] = "MetaGait"
    cfg_path = tmp_path / "metagait.yaml"
    cfg_path.write_text(yaml.safe_dump(metagait))
    # a run folder's own config.yaml already refuses the change (model_cfg.model); a checkpoint
    # path resumed into a new folder reaches the weights check
    ckpt = tmp_path / "run" / "checkpoints" / "tiny-00002.safetensors"
    args = ["train", "--config", str(cfg_path), "--output", str(tmp_path / "new"), "--device", "cpu",
            "--resume", str(ckpt)]
    line = one_line_error(CliRunner().invoke(app, args))
    assert "does not match the MetaGait model" in line and "eca." in line


def test_pt_with_wrong_shapes_lists_names(tmp_path):
    from gaitcli.build import build_model

    model = build_model({"model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 3}})
    state = model.state_dict()
    state["Head1.fc_bin"] = torch.zeros(64, 8, 5)
    torch.save({"model": state, "iteration": 7}, tmp_path / "ref.pt")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 3}}))
    line = one_line_error(CliRunner().invoke(app, [
        "convert", str(tmp_path / "ref.pt"), str(tmp_path / "o.safetensors"), "--config", str(cfg)]))
    assert "Head1.fc_bin" in line
