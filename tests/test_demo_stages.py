"""``gait demo`` re-runs (issue 19, items 13 and 21): a stage is reused only while its files are
all there (a deleted file redoes its stage and the stages after it), and a re-run never deletes a
finished training run it cannot continue."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from gaitcli.cli import app

pytestmark = pytest.mark.slow


def demo(workdir, *args):
    return CliRunner(env={"COLUMNS": "80"}).invoke(
        app, ["demo", "--workdir", str(workdir), "--subjects", "4", *[str(a) for a in args]]
    )


def test_a_stage_whose_files_were_deleted_is_redone(tmp_path):
    workdir = tmp_path / "demo"
    first = demo(workdir, "--iters", "2")
    assert first.exit_code == 0, first.output
    final = workdir / "run" / "checkpoints" / "demo-00002.safetensors"
    assert final.exists()

    # the training run's checkpoint deleted: synth and prepare are reused, training is redone
    for path in final.parent.iterdir():
        path.unlink()
    second = demo(workdir, "--iters", "2")
    assert second.exit_code == 0, second.output
    assert second.output.count("reusing") == 2 and final.exists()

    # a prepared walk deleted: prepare is redone (and the stages after it); synth is reused
    pkl = workdir / "pkl" / "004" / "cl-01" / "090" / "090.pkl"
    pkl.unlink()
    third = demo(workdir, "--iters", "2")
    assert third.exit_code == 0, third.output
    assert third.output.count("reusing") == 1 and pkl.exists()

    # a synthetic walk deleted: everything from synth on is redone
    shutil.rmtree(workdir / "raw" / "002" / "bg-02" / "054")
    fourth = demo(workdir, "--iters", "2")
    assert fourth.exit_code == 0, fourth.output
    assert "reusing" not in fourth.output and (workdir / "raw" / "002" / "bg-02" / "054").is_dir()


def test_a_shorter_run_never_deletes_a_finished_longer_one(tmp_path):
    workdir = tmp_path / "demo"
    assert demo(workdir, "--iters", "3").exit_code == 0
    final = workdir / "run" / "checkpoints" / "demo-00003.safetensors"
    before = final.read_bytes()
    shorter = demo(workdir, "--iters", "2")
    lines = [line for line in shorter.output.splitlines() if line.strip()]
    assert shorter.exit_code == 2, shorter.output
    assert lines[-1].startswith("error:") and "--workdir" in lines[-1] and "3-iteration" in lines[-1]
    assert final.read_bytes() == before and "synth" not in shorter.output  # refused before any stage
    again = demo(workdir, "--iters", "3")  # the finished run is still there and reused
    assert again.exit_code == 0 and again.output.count("reusing") == 3, again.output
