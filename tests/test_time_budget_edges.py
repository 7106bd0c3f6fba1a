"""``--time-budget`` at its edges (issue 19, items 11, 16, 17, 18): a resume before the pace was
measured keeps the budget, ``--iters 0`` trains nothing, a huge budget is one line and nothing is
sized by it, a budget stop mid-window writes the partial window. A fake clock: one second per
training step, no real waiting."""

from __future__ import annotations

import json
import os
import signal

import pytest
import yaml
from conftest import tiny_config
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.config import resolve_config
from gaitcli.training import time_budget
from gaitcli.training import trainer as trainer_module
from gaitcli.training.trainer import TrainingStopped, list_checkpoints, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def fake_clock(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(time_budget, "clock", lambda: now[0])
    step = trainer_module.Trainer.step

    def timed_step(self, batch):
        now[0] += 1.0
        return step(self, batch)

    monkeypatch.setattr(trainer_module.Trainer, "step", timed_step)
    return now


def budget_cfg(tiny_data, **trainer):
    # 18 s at 1 s per step: timed over iterations 5..9, so 9 + floor(0.98 * 9) = 17 iterations fit
    values = {"total_iter": 8, "save_iter": 6, "log_iter": 1, "time_budget": 0.3, "time_budget_probe": 4}
    return tiny_config(*tiny_data, **{**values, **trainer})


def run(cfg, out, **kwargs):
    return train(resolve_config(cfg), output=out, device="cpu", progress=False, **kwargs)


def metrics(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]


def cli(tmp_path, cfg, *args):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return CliRunner().invoke(app, ["train", "-c", str(path), "--device", "cpu", *[str(a) for a in args]])


def test_a_resume_before_the_pace_was_measured_keeps_the_budget(tiny_data, tmp_path, fake_clock, monkeypatch):
    """Ctrl-C at iteration 3 (before the pace is known), then ``--resume latest`` without
    ``--time-budget``: the run measures again and fits its own budget, instead of silently
    running the configured 8 iterations without one."""
    out = tmp_path / "run"
    step = trainer_module.Trainer.step

    def interrupt_in_the_third_step(self, batch):
        if self.state.iteration == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, batch)

    monkeypatch.setattr(trainer_module.Trainer, "step", interrupt_in_the_third_step)
    with pytest.raises(TrainingStopped):
        run(budget_cfg(tiny_data), out)
    assert [i for i, _ in list_checkpoints(out / "checkpoints")] == [3]
    monkeypatch.setattr(trainer_module.Trainer, "step", step)
    again = budget_cfg(tiny_data)
    del again["trainer_cfg"]["time_budget"]  # the user resumes without repeating --time-budget
    # resumed at 3, timed over 8..12, 9 s of its own 18 s spent: 12 + floor(0.98 * 9) = 20 fit
    assert run(again, out, resume="latest").iteration == 20
    log = (out / "train.log").read_text()
    assert "20 iterations fit" in log and "time_budget: 0.3 -> null" not in log
    assert yaml.safe_load((out / "config.yaml").read_text())["trainer_cfg"]["time_budget"] == 0.3


def test_zero_iterations_win_over_a_time_budget(tiny_data, tmp_path, fake_clock):
    result = cli(tmp_path, budget_cfg(tiny_data), "--output", tmp_path / "run", "--iters", "0",
                 "--time-budget", "0.1")
    assert result.exit_code == 0, result.output
    assert "trained 0 iterations" in result.output and "no checkpoint written" in result.output
    assert "total_iter is 0: nothing is trained, the time budget has no effect" in result.output
    assert list_checkpoints(tmp_path / "run" / "checkpoints") == []


def test_a_budget_past_the_maximum_is_one_line(tiny_data, tmp_path):
    """30 days (43200 minutes) at most: 1e7 minutes used to end in a MemoryError traceback."""
    result = cli(tmp_path, budget_cfg(tiny_data), "--output", tmp_path / "run", "--time-budget", "1e7")
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert result.exit_code == 2 and errors == lines[-1:], result.output  # config warnings may come first
    assert "at most 43200 minutes" in result.output
    assert not (tmp_path / "run").exists()


def test_nothing_is_sized_by_the_run_length_a_budget_derives(tiny_data, tmp_path, fake_clock, monkeypatch):
    """A pace of a nanosecond per step at the largest budget derives ~2.6e15 iterations; switching
    to that schedule used to build an lr table of that length (MemoryError)."""
    out = tmp_path / "run"
    derive = time_budget.TimeBudget.derive

    def blazing_then_late(self, iteration, pace, cfg):
        derived = derive(self, iteration, 1e-9, cfg)
        fake_clock[0] = self.deadline  # and then the time is up
        return derived

    monkeypatch.setattr(time_budget.TimeBudget, "derive", blazing_then_late)
    summary = run(budget_cfg(tiny_data, time_budget=43200), out)  # the documented maximum
    assert summary.iteration == 9  # derived, then stopped by the clock with a checkpoint
    assert [i for i, _ in list_checkpoints(out / "checkpoints")] == [6, 9]
    assert "time budget reached at iteration 9" in (out / "train.log").read_text()


def test_a_budget_stop_mid_window_writes_the_partial_window(tiny_data, tmp_path, fake_clock, monkeypatch):
    """Windows of 4 iterations; the clock runs out at iteration 9: the 9th iteration's window
    (one iteration) is written as partial, and a resumed run completes that window."""
    out = tmp_path / "run"
    derive = time_budget.TimeBudget.derive

    def slow_down(self, iteration, pace, cfg):  # the pace doubles after the derivation
        monkeypatch.setattr(time_budget, "clock", lambda: fake_clock[0] * 2)
        return derive(self, iteration, pace, cfg)

    monkeypatch.setattr(time_budget.TimeBudget, "derive", slow_down)
    summary = run(budget_cfg(tiny_data, log_iter=4), out)
    assert summary.iteration == 9
    lines = metrics(out)
    assert [(line["iteration"], line.get("partial", False)) for line in lines] == [
        (4, False), (8, False), (9, True)]
    assert summary.metrics["iteration"] == 9
