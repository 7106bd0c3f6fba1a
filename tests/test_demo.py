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
    first = CliRunner(env={"COLUMNS": "80"}).invoke(app, args)
    assert first.exit_code == 0, first.output
    payload = json.loads((tmp_path / "d.json").read_text())
    assert payload["protocol"] == "casia-b" and set(payload["rank1_exclude"]) == {"NM", "BG", "CL"}
    assert set(payload["stages"]) == {"synth", "prepare", "inspect", "train", "eval", "identify", "total"}
    # the last stage identifies a held-back test walk from its PNG frames, next to the truth
    ident = payload["identify"]
    assert ident["truth"] == "003" and ident["walk"].endswith("003/nm-05/090")  # test ids: 003, 004
    assert ident["gallery_sequences"] == 2 * 4 * 5  # 2 test ids x nm-01..04 x 5 views
    line = f"answer {ident['answer']} (distance {ident['distance']:.3f}) · truth 003"
    assert line in first.output
    too_long = [ln for ln in first.output.splitlines() if len(ln) > 80]
    assert not too_long, too_long
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
