"""lr(t): SPEC §8's worked examples, torch's own schedulers stepped t times, bad combinations."""

from __future__ import annotations

import pytest
import torch

from gaitcli.config import load_config
from gaitcli.errors import ConfigError
from gaitcli.training.schedule import (
    build_optimizer,
    build_scheduler,
    check_schedule,
    lr_values,
    schedule_boundaries,
    warmup_factor_at,
)

METAGAIT = load_config("metagait")


@pytest.mark.parametrize(
    ("t", "expected"),
    [(0, 3.5e-6), (5000, 1.7675e-4), (10000, 3.5e-4), (79999, 3.5e-4), (80000, 3.5e-5), (100000, 3.5e-6), (119999, 3.5e-6)],
)
def test_metagait_worked_examples(t, expected):
    (lr,) = lr_values(METAGAIT["optimizer_cfg"], METAGAIT["scheduler_cfg"], [t])
    assert lr == pytest.approx(expected, rel=1e-12)


def test_constant_warmup():
    args = dict(milestones=[10], gamma=0.5, warmup_iters=4, warmup_factor=0.25, warmup_method="constant")
    assert [warmup_factor_at(t, **args) for t in (0, 3, 4, 9, 10)] == [0.25, 0.25, 1.0, 1.0, 0.5]


def _stepped(optimizer_cfg, scheduler_cfg, steps):
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model.parameters(), optimizer_cfg)
    scheduler = build_scheduler(optimizer, scheduler_cfg)
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize(
    "scheduler_cfg",
    [
        {"scheduler": "warmup", "milestones": [30, 60], "gamma": 0.1, "warmup_iters": 20, "warmup_factor": 0.01, "warmup_method": "linear"},
        {"scheduler": "MultiStepLR", "milestones": [30, 60], "gamma": 0.1},
        {"scheduler": "CosineAnnealingLR", "T_max": 50},
        {"scheduler": "StepLR", "step_size": 7, "gamma": 0.5},
    ],
)
def test_lr_values_equal_the_trainers_scheduler(scheduler_cfg):
    optimizer_cfg = {"solver": "Adam", "lr": 3.5e-4, "weight_decay": 5e-4}
    expected = _stepped(optimizer_cfg, scheduler_cfg, 80)
    got = lr_values(optimizer_cfg, scheduler_cfg, range(80))
    assert got.tolist() == pytest.approx(expected, rel=1e-12, abs=0)


def test_lr_values_any_order_and_repeats():
    cfg = {"scheduler": "MultiStepLR", "milestones": [5], "gamma": 0.1}
    got = lr_values({"lr": 1.0}, cfg, [7, 0, 7, 4])
    assert got.tolist() == pytest.approx([0.1, 1.0, 0.1, 1.0])


def test_boundaries():
    assert schedule_boundaries(METAGAIT["scheduler_cfg"], 120000) == [0, 10000, 79999, 80000, 99999, 100000, 119999]


@pytest.mark.parametrize(
    ("cfg", "total", "message"),
    [
        ({"scheduler": "warmup", "milestones": [100, 50]}, 200, "strictly increasing"),
        ({"scheduler": "warmup", "milestones": [10], "warmup_iters": 500}, 200, "longer than the run"),
        ({"scheduler": "NoSuchLR"}, 200, "unknown scheduler"),
    ],
)
def test_bad_combinations(cfg, total, message):
    with pytest.raises(ConfigError, match=message):
        check_schedule(cfg, total)
