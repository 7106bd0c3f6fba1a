"""gait demo end to end at a tiny size: every stage runs, a re-run reuses them, JSON has timings."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gaitcli.cli import app


@pytest.mark.slow
def test_demo_runs_then_reuses_finished_stages(tmp_path):
    workdir = tmp_path / "demo"
    args = ["demo", "--workdir", str(workdir), "--subjects", "4", "--iters", "2",
            "--json", str(tmp_path / "d.json")]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    payload = json.loads((tmp_path / "d.json").read_text())
    assert payload["protocol"] == "casia-b" and set(payload["rank1_exclude"]) == {"NM", "BG", "CL"}
    assert set(payload["stages"]) == {"synth", "prepare", "inspect", "train", "eval", "total"}
    assert (workdir / "run" / "checkpoints" / "demo-00002.safetensors").exists()
    assert "artefacts" in first.output

    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert second.output.count("reusing") == 3  # synth, prepare, train
    again = json.loads((tmp_path / "d.json").read_text())
    assert again["rank1_exclude"] == payload["rank1_exclude"]
    assert again["stages"]["train"] == 0.0

    # more iterations: synth and prepare are reused, training continues from the finished run
    third = CliRunner().invoke(app, [*args[:-2], "--iters", "3"])
    assert third.exit_code == 0, third.output
    assert third.output.count("reusing") == 2
    assert (workdir / "run" / "checkpoints" / "demo-00003.safetensors").exists()


def test_demo_rejects_too_few_subjects(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path), "--subjects", "2"])
    assert result.exit_code == 2
