"""gait train --time-budget: the run length and schedule derived from a measured pace (a fake
clock: one second per training step, no real waiting), stored in the state, resumed exactly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import tiny_config

from gaitcli.config import resolve_config
from gaitcli.models import read_checkpoint
from gaitcli.schedule import lr_values, scale_schedule
from gaitcli.training import time_budget
from gaitcli.training import trainer as trainer_module
from gaitcli.training.state import load_state
from gaitcli.training.trainer import list_checkpoints, train

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


def budget_cfg(tiny_data):
    # 18 s at 1 s per step: timed over iterations 5..9, so 9 + floor(0.98 * 9) = 17 iterations fit
    # (configured: 8; 2 % of the time left is kept free)
    return tiny_config(*tiny_data, total_iter=8, save_iter=6, log_iter=1, time_budget=0.3,
                       time_budget_probe=4)


def run(cfg, out, **kwargs):
    return train(resolve_config(cfg), output=out, device="cpu", progress=False, **kwargs)


def lrs(folder):
    lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [line["lr"] for line in lines]


def test_budget_scales_schedule_stops_with_checkpoint_and_stores_it(tiny_data, tmp_path, fake_clock):
    out = tmp_path / "run"
    summary = run(budget_cfg(tiny_data), out)
    assert summary.iteration == 17
    assert [i for i, _ in list_checkpoints(out / "checkpoints")] == [6, 12, 17]
    cfg = resolve_config(budget_cfg(tiny_data)).to_dict()
    scaled = scale_schedule(cfg["scheduler_cfg"], 8, 17)
    assert scaled["warmup_iters"] == 8 and scaled["milestones"] == [212]  # 4 * 17/8, 100 * 17/8
    expected = lr_values(cfg["optimizer_cfg"], cfg["scheduler_cfg"], range(9)).tolist()
    expected += lr_values(cfg["optimizer_cfg"], scaled, range(9, 17)).tolist()
    assert np.allclose(lrs(out), expected)  # the configured schedule until the pace is known
    state = load_state(out / "checkpoints" / "tiny-00012.state.safetensors")
    assert state["derived_schedule"]["total_iter"] == 17
    assert "17 iterations fit" in (out / "train.log").read_text()


def test_budget_reached_stops_cleanly_with_a_checkpoint(tiny_data, tmp_path, fake_clock, monkeypatch):
    out = tmp_path / "run"
    derive = time_budget.TimeBudget.derive

    def slow_down(self, iteration, pace, cfg):  # the pace doubles after the derivation
        monkeypatch.setattr(time_budget, "clock", lambda: fake_clock[0] * 2)
        return derive(self, iteration, pace, cfg)

    monkeypatch.setattr(time_budget.TimeBudget, "derive", slow_down)
    summary = run(budget_cfg(tiny_data), out)
    assert summary.iteration == 9  # 2 * 9 s = 18 s: the budget is spent right after deriving
    assert [i for i, _ in list_checkpoints(out / "checkpoints")] == [6, 9]
    assert "time budget reached at iteration 9" in (out / "train.log").read_text()


def test_budget_is_re_estimated_when_the_pace_improves(tiny_data, tmp_path, fake_clock, monkeypatch):
    # the first pace (1 s per step, a cold cache) gives 9 + floor(0.98 * 27) = 35 iterations of a
    # 36 s budget; then the steps take 0.5 s: at iteration 13 (9 + the probe's 4) the pace since
    # iteration 9 is 0.5 s, so 13 + floor(0.98 * (36 - 11) / 0.5) = 62 fit; the later re-estimates
    # agree and change nothing
    out = tmp_path / "run"
    derive = time_budget.TimeBudget.derive
    step = trainer_module.Trainer.step

    def faster_after_first_derivation(self, iteration, pace, cfg):
        def half_step(trainer, batch):  # the fixture's step adds 1 s
            fake_clock[0] -= 0.5
            return step(trainer, batch)

        monkeypatch.setattr(trainer_module.Trainer, "step", half_step)
        return derive(self, iteration, pace, cfg)

    monkeypatch.setattr(time_budget.TimeBudget, "derive", faster_after_first_derivation)
    cfg = budget_cfg(tiny_data)
    cfg["trainer_cfg"].update(time_budget=0.6, save_iter=100)
    summary = run(cfg, out)
    assert summary.iteration == 62  # not the 35 the first pace promised
    log = (out / "train.log").read_text()
    assert "35 iterations fit" in log and "re-estimated at iteration 13" in log and "62 iterations fit" in log
    resolved = resolve_config(cfg).to_dict()
    expected = lr_values(resolved["optimizer_cfg"], resolved["scheduler_cfg"], range(9)).tolist()
    expected += lr_values(resolved["optimizer_cfg"], scale_schedule(resolved["scheduler_cfg"], 8, 35),
                          range(9, 13)).tolist()
    expected += lr_values(resolved["optimizer_cfg"], scale_schedule(resolved["scheduler_cfg"], 8, 62),
                          range(13, 62)).tolist()
    assert np.allclose(lrs(out), expected)
    state = load_state(out / "checkpoints" / "tiny-00062.state.safetensors")
    assert state["derived_schedule"]["total_iter"] == 62 and state["derived_schedule"]["derived_at"] == 13
    assert log.count("re-estimated") == 1


def test_resumed_budget_run_follows_the_stored_schedule_exactly(tiny_data, tmp_path, fake_clock):
    run(budget_cfg(tiny_data), tmp_path / "full")
    split = tmp_path / "split"
    shutil.copytree(tmp_path / "full", split)
    for name in ("tiny-00017.safetensors", "tiny-00017.state.safetensors"):
        (split / "checkpoints" / name).unlink()
    again = budget_cfg(tiny_data)
    del again["trainer_cfg"]["time_budget"]  # not needed: the state holds the derived schedule
    assert run(again, split, resume="latest").iteration == 17
    assert lrs(split) == lrs(tmp_path / "full")
    log = (split / "train.log").read_text()  # the run keeps its budget: no "0.3 -> null"
    assert "keeps its time budget of 0.3 minutes" in log and "time_budget: 0.3 -> null" not in log
    a, _ = read_checkpoint(tmp_path / "full" / "checkpoints" / "tiny-00017.safetensors")
    b, _ = read_checkpoint(split / "checkpoints" / "tiny-00017.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_scale_schedule_stretches_every_length():
    cfg = {"scheduler": "warmup", "warmup_iters": 100, "milestones": [800, 900], "decay": "cosine",
           "cosine_iters": 1000, "T_max": 5}
    out = scale_schedule(cfg, 1000, 250)
    assert out["warmup_iters"] == 25 and out["milestones"] == [200, 225] and out["cosine_iters"] == 250
    assert out["T_max"] == 1 and cfg["warmup_iters"] == 100  # the input is not changed


def test_cpu_recipe_trains_two_iterations_on_the_tiny_fixture(tiny_data, tmp_path):
    from gaitcli.config import load_config

    root, partition = tiny_data
    cfg = load_config("casia-b-cpu", [
        f"data_cfg.dataset_root={root}", f"data_cfg.dataset_partition={partition}", "data_cfg.num_workers=0",
        "model_cfg.class_num=4", "model_cfg.channels=[4, 8, 8]", "trainer_cfg.total_iter=2",
        "trainer_cfg.time_budget=null", "trainer_cfg.sampler.batch_size=[2, 2]",
        "trainer_cfg.sampler.frames_num_fixed=4",
    ])
    assert cfg.model.values["init"] == "torch" and cfg.scheduler.arguments["decay"] == "cosine"
    summary = train(cfg, output=tmp_path / "run", device="cpu", progress=False)
    assert summary.iteration == 2
    _, meta = read_checkpoint(tmp_path / "run" / "checkpoints" / "casia-b-cpu-00002.safetensors")
    assert meta["frame_size"] == "32x32"


def test_bf16_on_a_cpu_without_native_bf16_warns(tiny_data, tmp_path, monkeypatch):
    # measured (docs/recipes.md): emulated bf16 is 2.9x (AVX-512) to 15x (AVX2) slower than fp32
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    cfg = tiny_config(*tiny_data, total_iter=1, save_iter=1, log_iter=1)
    cfg["trainer_cfg"]["enable_bfloat16"] = True
    run(cfg, tmp_path / "emulated")
    assert "enable_bfloat16=false" in (tmp_path / "emulated" / "train.log").read_text()
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    run(cfg, tmp_path / "native")
    assert "enable_bfloat16=false" not in (tmp_path / "native" / "train.log").read_text()
