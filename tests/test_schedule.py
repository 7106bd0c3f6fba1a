"""lr(t): the MetaGait recipe's worked examples, torch's own schedulers stepped t times, bad combinations."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gaitcli.config import load_config
from gaitcli.config_types import OptimizerConfig
from gaitcli.errors import ConfigError
from gaitcli.schedule import (
    build_optimizer,
    build_scheduler,
    check_config_optimisation,
    check_schedule,
    lr_values,
    schedule_boundaries,
    warmup_factor_at,
)

METAGAIT = load_config("metagait")


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (0, 3.5e-6),
        (5000, 1.7675e-4),
        (10000, 3.5e-4),
        (79999, 3.5e-4),
        (80000, 3.5e-5),
        (100000, 3.5e-6),
        (119999, 3.5e-6),
    ],
)
def test_metagait_worked_examples(t, expected):
    (lr,) = lr_values(METAGAIT.optimizer.as_mapping(), METAGAIT.scheduler.as_mapping(), [t])
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
        {
            "scheduler": "warmup",
            "milestones": [30, 60],
            "gamma": 0.1,
            "warmup_iters": 20,
            "warmup_factor": 0.01,
            "warmup_method": "linear",
        },
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
    assert schedule_boundaries(METAGAIT.scheduler.as_mapping(), 120000) == [
        0,
        10000,
        79999,
        80000,
        99999,
        100000,
        119999,
    ]


@pytest.mark.parametrize(
    ("cfg", "total", "message"),
    [
        ({"scheduler": "warmup", "milestones": [100, 50]}, 200, "strictly increasing"),
        ({"scheduler": "NoSuchLR"}, 200, "unknown scheduler"),
    ],
)
def test_bad_combinations(cfg, total, message):
    with pytest.raises(ConfigError, match=message):
        check_schedule(cfg, total)


def test_warmup_longer_than_the_run_is_a_note():
    assert any(
        "longer than the run" in n for n in check_schedule({"scheduler": "warmup", "warmup_iters": 500}, 200)
    )
    assert check_schedule({"scheduler": "warmup", "warmup_iters": 5, "milestones": [10]}, 200) == ()


def _cfg(*overrides):
    return load_config("metagait", ["trainer_cfg.total_iter=100", *overrides])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer_cfg.lr=-0.001", "optimizer_cfg.lr must be > 0"),
        ("optimizer_cfg.lr=0", "optimizer_cfg.lr must be > 0"),
        ("optimizer_cfg.lr=.nan", "optimizer_cfg.lr must be a finite number"),
        ("optimizer_cfg.weight_decay=-1", "optimizer_cfg.weight_decay must be >= 0"),
        ("scheduler_cfg.gamma=-1", "scheduler_cfg.gamma must be in (0, 1]"),
        ("scheduler_cfg.warmup_factor=-1", "scheduler_cfg.warmup_factor must be in (0, 1]"),
        ("scheduler_cfg.warmup_factor=2", "scheduler_cfg.warmup_factor must be in (0, 1]"),
        ("scheduler_cfg.warmup_iters=-5", "scheduler_cfg.warmup_iters must be >= 0"),
        ("scheduler_cfg.milestones=[80, 50]", "strictly increasing"),
        ("trainer_cfg.sampler.batch_size=[0, 4]", "trainer_cfg.sampler.batch_size must be >= 1"),
        ("evaluator_cfg.sampler.batch_size=0", "evaluator_cfg.sampler.batch_size must be >= 1"),
        ("trainer_cfg.total_iter=100000000000000000000", "too large"),
    ],
)
def test_ranges_are_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        _cfg(override)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_optimiser_arguments_are_range_checked_and_built():
    with pytest.raises(ConfigError, match="optimizer_cfg.momentum must be in"):
        _cfg("optimizer_cfg.solver=SGD", "optimizer_cfg.momentum=1.5")
    with pytest.raises(ConfigError, match="optimizer_cfg.betas must be in"):
        _cfg("optimizer_cfg.betas=[0.9, 1.5]")
    with pytest.raises(ConfigError, match="optimizer_cfg: Adam refuses its arguments"):
        _cfg("optimizer_cfg.betas=[0.9]")  # torch's own complaint, one line, naming the section
    with pytest.raises(ConfigError, match="scheduler_cfg: ReduceLROnPlateau cannot be built"):
        _cfg("scheduler_cfg.scheduler=ReduceLROnPlateau")  # it steps on a metric the trainer has not
    with pytest.raises(ConfigError, match="scheduler_cfg: LambdaLR cannot be built"):
        _cfg("scheduler_cfg.scheduler=LambdaLR", "scheduler_cfg.lr_lambda=x")


def test_check_optimisation_is_what_validation_runs():
    cfg = _cfg("scheduler_cfg.milestones=[50, 500]")
    assert "never take effect" in " ".join(check_config_optimisation(cfg).notes)
    bad = dataclasses.replace(cfg, optimizer=OptimizerConfig("Adam", {"lr": -1.0}))
    with pytest.raises(ConfigError, match="optimizer_cfg.lr must be > 0"):
        check_config_optimisation(bad)


def test_warmup_cosine_closed_form_and_validation():
    from gaitcli.errors import ConfigError
    from gaitcli.schedule import check_schedule, lr_values

    scfg = {"scheduler": "warmup", "warmup_iters": 10, "warmup_factor": 0.1, "decay": "cosine",
            "cosine_iters": 110, "min_factor": 0.0, "milestones": [20]}
    lr = lr_values({"lr": 1.0}, scfg, [0, 5, 10, 60, 110, 200])
    assert lr[0] == pytest.approx(0.1) and lr[1] == pytest.approx(0.55) and lr[2] == pytest.approx(1.0)
    assert lr[3] == pytest.approx(0.5) and lr[4] == pytest.approx(0.0) and lr[5] == pytest.approx(0.0)
    assert check_schedule(scfg, 50) == ()  # milestones are unused with decay: cosine
    with pytest.raises(ConfigError, match="cosine_iters must be set"):
        check_schedule({**scfg, "cosine_iters": None})
