"""Optimisers and learning-rate schedules by name, and lr(t) without touching a model.

``scheduler: warmup`` is the WarmupMultiStepLR of the MetaGait recipe (SPEC §8)::

    lr(t) = base_lr * w(t) * gamma ** bisect_right(milestones, t)
    w(t)  = 1                                 for t >= warmup_iters
          = f * (1 - t / T) + t / T           linear warm-up   (f = warmup_factor, T = warmup_iters)
          = f                                 constant warm-up

Any other name is a class of ``torch.optim.lr_scheduler`` with the remaining keys as its
arguments. The trainer and ``gait lr-plot`` both get their numbers from :func:`lr_values`, so
they cannot disagree. The scheduler steps once per iteration.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from gaitcli.errors import ConfigError

_NAME_KEYS = {"solver", "scheduler"}


def warmup_factor_at(
    t: int,
    *,
    milestones: Sequence[int],
    gamma: float = 0.1,
    warmup_iters: int = 0,
    warmup_factor: float = 0.01,
    warmup_method: str = "linear",
) -> float:
    """The multiplier of the base lr at iteration ``t`` for ``scheduler: warmup``."""
    decay = gamma ** bisect.bisect_right(list(milestones), t)
    if t >= warmup_iters:
        return decay
    if warmup_method == "constant":
        return warmup_factor * decay
    if warmup_method == "linear":
        alpha = t / warmup_iters
        return (warmup_factor * (1 - alpha) + alpha) * decay
    raise ConfigError(f"scheduler_cfg.warmup_method must be linear or constant, got {warmup_method!r}")


def _warmup_args(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "milestones": list(cfg.get("milestones", [])),
        "gamma": float(cfg.get("gamma", 0.1)),
        "warmup_iters": int(cfg.get("warmup_iters", 0)),
        "warmup_factor": float(cfg.get("warmup_factor", 0.01)),
        "warmup_method": cfg.get("warmup_method", "linear"),
    }


def check_schedule(scheduler_cfg: Mapping[str, Any], total_iter: int | None = None) -> None:
    """Reject combinations that cannot be what the user meant, with one clear line each."""
    milestones = scheduler_cfg.get("milestones")
    if milestones is not None:
        if any(b <= a for a, b in zip(milestones, milestones[1:], strict=False)):
            raise ConfigError(f"scheduler_cfg.milestones must be strictly increasing, got {list(milestones)}")
        if any(m < 0 for m in milestones):
            raise ConfigError(f"scheduler_cfg.milestones must not be negative, got {list(milestones)}")
    name = scheduler_cfg.get("scheduler")
    if name == "warmup":
        warmup = int(scheduler_cfg.get("warmup_iters", 0))
        if warmup < 0:
            raise ConfigError("scheduler_cfg.warmup_iters must not be negative")
        if total_iter is not None and warmup > total_iter:
            raise ConfigError(
                f"scheduler_cfg.warmup_iters ({warmup}) is longer than the run (total_iter {total_iter}); "
                "shorten the warm-up or train longer"
            )
    elif name is not None and not hasattr(torch.optim.lr_scheduler, str(name)):
        raise ConfigError(f"scheduler_cfg.scheduler: unknown scheduler {name!r} (warmup or a torch.optim.lr_scheduler class)")


def build_optimizer(params: Iterable[torch.nn.Parameter], optimizer_cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """``optimizer_cfg.solver`` from ``torch.optim`` with the other keys as its arguments."""
    name = optimizer_cfg.get("solver", "Adam")
    cls = getattr(torch.optim, name, None)
    if cls is None:
        raise ConfigError(f"optimizer_cfg.solver: unknown optimiser {name!r}")
    kwargs = {k: v for k, v in optimizer_cfg.items() if k not in _NAME_KEYS}
    return cls(params, **kwargs)


def build_scheduler(
    optimizer: torch.optim.Optimizer, scheduler_cfg: Mapping[str, Any]
) -> torch.optim.lr_scheduler.LRScheduler:
    """The scheduler of ``scheduler_cfg``; step it once per iteration."""
    name = scheduler_cfg.get("scheduler", "warmup")
    if name == "warmup":
        args = _warmup_args(scheduler_cfg)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: warmup_factor_at(t, **args))
    cls = getattr(torch.optim.lr_scheduler, name, None)
    if cls is None:
        raise ConfigError(f"scheduler_cfg.scheduler: unknown scheduler {name!r}")
    kwargs = {k: v for k, v in scheduler_cfg.items() if k not in _NAME_KEYS}
    return cls(optimizer, **kwargs)


def lr_values(optimizer_cfg: Mapping[str, Any], scheduler_cfg: Mapping[str, Any], iterations: Iterable[int]) -> np.ndarray:
    """The learning rate at each requested iteration (float64), computed the way training sees it.

    ``warmup`` uses its closed form. Other torch schedulers are stepped on a throw-away
    one-parameter optimiser (no model involved), because many of them are only defined
    recursively; that reproduces the trainer's values exactly.
    """
    its = np.asarray(list(iterations), dtype=np.int64)
    if its.size and its.min() < 0:
        raise ValueError("iterations must not be negative")
    base_lr = float(optimizer_cfg.get("lr", 1e-3))
    name = scheduler_cfg.get("scheduler", "warmup")
    if name == "warmup":
        args = _warmup_args(scheduler_cfg)
        return np.array([base_lr * warmup_factor_at(int(t), **args) for t in its], dtype=np.float64)
    dummy = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([dummy], lr=base_lr)
    scheduler = build_scheduler(optimizer, scheduler_cfg)
    wanted = np.unique(its)
    found: dict[int, float] = {}
    t = 0
    for target in wanted.tolist():
        while t < target:
            optimizer.step()  # keeps torch from warning about the call order; the grad is None
            scheduler.step()
            t += 1
        found[target] = float(optimizer.param_groups[0]["lr"])
    return np.array([found[int(t)] for t in its], dtype=np.float64)


def schedule_boundaries(scheduler_cfg: Mapping[str, Any], total_iter: int) -> list[int]:
    """Iterations where the schedule changes: 0, warm-up end, each milestone and the iteration
    before it, and the last iteration (``total_iter - 1``)."""
    last = max(total_iter - 1, 0)
    points = {0, last}
    if scheduler_cfg.get("scheduler") == "warmup":
        points.add(int(scheduler_cfg.get("warmup_iters", 0)))
    for m in scheduler_cfg.get("milestones", []) or []:
        points.update({int(m) - 1, int(m)})
    return sorted(p for p in points if 0 <= p <= last)
