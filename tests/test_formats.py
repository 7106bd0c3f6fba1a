"""Files written by older gaitcli versions load through one migration step per format version
(docs/config.md, "Format versions"); the fixtures are files of each older shape."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.config_types import CONFIG_FORMAT
from gaitcli.models import load_checkpoint, read_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"
OLD_CHECKPOINT = FIXTURES / "checkpoint_v1.safetensors"


def test_a_format_1_checkpoint_is_evaluated_and_converted_to_the_current_format(tiny_data, tmp_path):
    # format 1: no config_format in the stored config, and a GaitGL model_cfg carrying `variant`
    _, meta = read_checkpoint(OLD_CHECKPOINT)
    stored = yaml.safe_load(meta["config"])
    assert "config_format" not in stored and stored["model_cfg"]["variant"] == "reference"
    assert isinstance(load_checkpoint(OLD_CHECKPOINT).config, dict)

    root, partition = tiny_data
    result = CliRunner().invoke(app, ["eval", str(OLD_CHECKPOINT), "--data", str(root),
                                      "--partition", str(partition), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "NM" in result.output

    new = tmp_path / "new.safetensors"
    result = CliRunner().invoke(app, ["convert", str(OLD_CHECKPOINT), str(new)])
    assert result.exit_code == 0, result.output
    _, meta = read_checkpoint(new)
    again = yaml.safe_load(meta["config"])
    assert again["config_format"] == CONFIG_FORMAT and "variant" not in again["model_cfg"]


def test_a_checkpoint_from_a_newer_gaitcli_is_one_line(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(OLD_CHECKPOINT), framework="pt") as fh:
        meta = dict(fh.metadata())
    meta["config"] = f"config_format: {CONFIG_FORMAT + 1}\n" + meta["config"]
    newer = tmp_path / "newer.safetensors"
    save_file(load_file(OLD_CHECKPOINT), newer, metadata=meta)
    result = CliRunner().invoke(app, ["eval", str(newer), "--device", "cpu"])
    assert result.exit_code == 2
    assert "newer gaitcli" in result.output and "Traceback" not in result.output
