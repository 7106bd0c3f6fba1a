"""The run folder never touches a config.yaml that gaitcli did not write (issue 19, item 20): a
fresh run and ``--overwrite`` refuse a user's ``OUT/config.yaml`` in one line and leave it (and
everything else) as it was; the config.yaml of an earlier run of the same folder is replaced."""

from __future__ import annotations

import pytest
import yaml
from conftest import tiny_config
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.config import resolve_config
from gaitcli.errors import GaitError
from gaitcli.training.trainer import list_checkpoints, train

pytestmark = pytest.mark.usefixtures("one_thread")

MINE = "# my experiment: do not lose these notes\ntrainer_cfg:\n  total_iter: 2\n"


def run(cfg, out, **kwargs):
    return train(resolve_config(cfg), output=out, device="cpu", progress=False, **kwargs)


def test_a_fresh_run_refuses_a_config_yaml_it_did_not_write(tiny_data, tmp_path):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "config.yaml").write_text(MINE)
    with pytest.raises(GaitError) as info:
        run(tiny_config(*tiny_data, total_iter=2, save_iter=2), out)
    message = str(info.value)
    assert "\n" not in message and "config.yaml" in message and "output" in message
    assert (out / "config.yaml").read_text() == MINE
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml"]  # nothing written, no lock left


def test_the_cli_refusal_is_one_line_when_the_config_lives_in_the_output_folder(tiny_data, tmp_path):
    out = tmp_path / "exp"
    out.mkdir()
    text = "# mine\n" + yaml.safe_dump(tiny_config(*tiny_data, total_iter=2, save_iter=2))
    (out / "config.yaml").write_text(text)
    result = CliRunner().invoke(app, ["train", "-c", str(out / "config.yaml"), "--output", str(out),
                                      "--device", "cpu"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert result.exit_code == 2 and errors == lines[-1:], result.output  # config warnings may come first
    assert (out / "config.yaml").read_text() == text


def test_overwrite_keeps_a_foreign_config_yaml_and_removes_nothing(tiny_data, tmp_path):
    out = tmp_path / "run"
    run(tiny_config(*tiny_data, total_iter=2, save_iter=2), out)
    (out / "config.yaml").write_text(MINE)  # the user replaced the run's config with their own
    with pytest.raises(GaitError, match="config.yaml"):
        run(tiny_config(*tiny_data, total_iter=2, save_iter=2), out, overwrite=True)
    assert (out / "config.yaml").read_text() == MINE
    assert [i for i, _ in list_checkpoints(out / "checkpoints")] == [2]  # the old run is still there


def test_the_config_yaml_of_an_earlier_run_of_the_folder_is_replaced(tiny_data, tmp_path):
    out = tmp_path / "run"
    run(tiny_config(*tiny_data, total_iter=0), out)  # wrote config.yaml, no checkpoint
    assert run(tiny_config(*tiny_data, total_iter=2, save_iter=2), out).iteration == 2
    assert "total_iter: 2" in (out / "config.yaml").read_text()
    assert run(tiny_config(*tiny_data, total_iter=4, save_iter=2), out, overwrite=True).iteration == 4
    assert run(tiny_config(*tiny_data, total_iter=6, save_iter=2), out, resume="latest").iteration == 6
    assert run(tiny_config(*tiny_data, total_iter=2, save_iter=2), out, overwrite=True).iteration == 2
    assert "total_iter: 2" in (out / "config.yaml").read_text()
