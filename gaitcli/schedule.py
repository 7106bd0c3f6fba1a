"""Optimisers and learning-rate schedules by name, their validation, and lr(t) without a model.

``scheduler: warmup`` is the WarmupMultiStepLR of the MetaGait recipe (docs/lr-plot.md)::

    lr(t) = base_lr * w(t) * d(t)
    w(t)  = 1                                 for t >= warmup_iters
          = f * (1 - t / T) + t / T           linear warm-up   (f = warmup_factor, T = warmup_iters)
          = f                                 constant warm-up
    d(t)  = gamma ** bisect_right(milestones, t)                    decay: multistep (the default)
          = m + (1 - m) * (1 + cos(pi * p)) / 2,                    decay: cosine (milestones unused)
            p = clamp((t - T) / (cosine_iters - T), 0, 1), m = min_factor

``warmup`` with ``decay: cosine`` is the warm-up + cosine schedule of the CPU recipe
(docs/recipes.md). :func:`scale_schedule` stretches every length of a schedule to a new run
length (``gait train --time-budget``, docs/train.md).

Any other name is a class of ``torch.optim.lr_scheduler`` with the remaining keys as its
arguments. The trainer and ``gait lr-plot`` both get their numbers from :func:`lr_values`, so
they cannot disagree. The scheduler steps once per iteration.

:func:`check_optimisation` is the one validation of ``optimizer_cfg`` / ``scheduler_cfg``:
``gait config``, ``gait train`` and ``gait lr-plot`` all run it. It checks every numeric
argument's range, builds the optimiser and the scheduler on a dummy parameter (turning torch's
complaints into one line that names the section), and returns the harmless oddities as notes.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import SupportsFloat, SupportsIndex, SupportsInt, TypedDict

import numpy as np
import torch

from gaitcli.config_schema import ARGUMENT_RANGES, check_number
from gaitcli.config_types import GaitConfig
from gaitcli.errors import ConfigError

_NAME_KEYS = {"solver", "scheduler"}
MAX_STEPPED = 1_000_000  # torch schedulers are stepped one iteration at a time to read lr(t)


@dataclass(frozen=True)
class OptimisationCheck:
    """What :func:`check_optimisation` found in a config that it accepts."""

    notes: tuple[str, ...]
    """Harmless oddities, one line each (a warm-up longer than the run, milestones after it)."""

    def to_json(self) -> dict[str, list[str]]:
        """``{"notes": [...]}``."""
        return {"notes": list(self.notes)}


def warmup_factor_at(
    t: int,
    *,
    milestones: Sequence[float],
    gamma: float = 0.1,
    warmup_iters: int = 0,
    warmup_factor: float = 0.01,
    warmup_method: str = "linear",
    decay: str = "multistep",
    cosine_iters: int = 0,
    min_factor: float = 0.0,
) -> float:
    """The multiplier of the base lr at iteration ``t`` for ``scheduler: warmup``."""
    if decay == "cosine":
        span = max(cosine_iters - warmup_iters, 1)
        progress = min(max((t - warmup_iters) / span, 0.0), 1.0)
        factor = min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))
    elif decay == "multistep":
        factor = gamma ** bisect.bisect_right(list(milestones), t)
    else:
        raise ConfigError(f"scheduler_cfg.decay must be multistep or cosine, got {decay!r}")
    if t >= warmup_iters:
        return factor
    if warmup_method == "constant":
        return warmup_factor * factor
    if warmup_method == "linear":
        alpha = t / warmup_iters
        return (warmup_factor * (1 - alpha) + alpha) * factor
    raise ConfigError(f"scheduler_cfg.warmup_method must be linear or constant, got {warmup_method!r}")


def to_float(value: object) -> float:
    """``float(value)`` of a number (or numeric text) the config holds."""
    if isinstance(value, (SupportsFloat, SupportsIndex, str)):
        return float(value)
    raise TypeError(f"float() argument must be a string or a real number, not {type(value).__name__!r}")


def to_int(value: object) -> int:
    """``int(value)`` of a number (or numeric text) the config holds."""
    if isinstance(value, (SupportsInt, SupportsIndex, str)):
        return int(value)
    raise TypeError(f"int() argument must be a string or a real number, not {type(value).__name__!r}")


def to_numbers(value: object) -> list[int | float]:
    """The numbers of a list argument (``milestones``)."""
    if not isinstance(value, Sequence):
        raise TypeError(f"expected a list of numbers, got {value!r}")
    out: list[int | float] = []
    for item in value:
        if not isinstance(item, (int, float)):
            raise TypeError(f"expected a list of numbers, got {list(value)!r}")
        out.append(item)
    return out


class _WarmupArgs(TypedDict):
    """The keyword arguments of :func:`warmup_factor_at` but ``t``."""

    milestones: list[int | float]
    gamma: float
    warmup_iters: int
    warmup_factor: float
    warmup_method: str
    decay: str
    cosine_iters: int
    min_factor: float


def _warmup_args(cfg: Mapping[str, object]) -> _WarmupArgs:
    return {
        "milestones": to_numbers(cfg.get("milestones", [])),
        "gamma": to_float(cfg.get("gamma", 0.1)),
        "warmup_iters": to_int(cfg.get("warmup_iters", 0)),
        "warmup_factor": to_float(cfg.get("warmup_factor", 0.01)),
        "warmup_method": str(cfg.get("warmup_method", "linear")),
        "decay": str(cfg.get("decay", "multistep")),
        "cosine_iters": to_int(cfg.get("cosine_iters") or 0),
        "min_factor": to_float(cfg.get("min_factor", 0.0)),
    }


LENGTH_KEYS = (
    "warmup_iters", "milestones", "cosine_iters", "T_max", "T_0", "total_steps", "step_size",
    "step_size_up", "step_size_down", "total_iters",
)
"""Scheduler arguments counted in iterations: what :func:`scale_schedule` stretches."""


def scale_schedule(scheduler_cfg: Mapping[str, object], old_total: int, new_total: int) -> dict[str, object]:
    """``scheduler_cfg`` with every length (:data:`LENGTH_KEYS`) multiplied by
    ``new_total / old_total`` (rounded; lengths that must be positive stay >= 1), so the schedule
    has the same shape over a run of ``new_total`` iterations."""
    ratio = new_total / max(old_total, 1)
    out = dict(scheduler_cfg)
    for key in LENGTH_KEYS:
        value = out.get(key)
        if value is None or isinstance(value, bool):
            continue
        floor = 0 if key in ("warmup_iters", "milestones", "total_iters") else 1
        if isinstance(value, (list, tuple)):
            scaled = sorted({max(round(v * ratio), floor) for v in value})
            out[key] = scaled
        elif isinstance(value, (int, float)):
            out[key] = max(round(value * ratio), floor)
        else:
            raise TypeError(f"scheduler_cfg.{key} is not a number: {value!r}")
    return out


def check_schedule(scheduler_cfg: Mapping[str, object], total_iter: int | None = None) -> tuple[str, ...]:
    """Ordering rules of the schedule (one error line each); returns the notes for a run of
    ``total_iter`` iterations (one rule for training and lr-plot: a warm-up longer than the run
    is allowed, with a note)."""
    given = scheduler_cfg.get("milestones")
    milestones = None if given is None else to_numbers(given)
    if milestones is not None:
        if any(b <= a for a, b in zip(milestones, milestones[1:], strict=False)):
            raise ConfigError(f"scheduler_cfg.milestones must be strictly increasing, got {list(milestones)}")
        if any(m < 0 for m in milestones):
            raise ConfigError(f"scheduler_cfg.milestones must not be negative, got {list(milestones)}")
    name = scheduler_cfg.get("scheduler")
    notes: list[str] = []
    if name == "warmup":
        if scheduler_cfg.get("decay") == "cosine" and not scheduler_cfg.get("cosine_iters"):
            raise ConfigError("scheduler_cfg.cosine_iters must be set with decay: cosine "
                              "(usually trainer_cfg.total_iter)")
        warmup = to_int(scheduler_cfg.get("warmup_iters", 0))
        if warmup < 0:
            raise ConfigError("scheduler_cfg.warmup_iters must not be negative")
        if total_iter is not None and warmup > total_iter:
            notes.append(
                f"the warm-up ({warmup} iterations) is longer than the run ({total_iter} iterations)"
            )
    elif name is not None and not hasattr(torch.optim.lr_scheduler, str(name)):
        raise ConfigError(
            f"scheduler_cfg.scheduler: unknown scheduler {name!r} "
            "(warmup or a torch.optim.lr_scheduler class)"
        )
    cosine = name == "warmup" and scheduler_cfg.get("decay") == "cosine"
    if total_iter is not None and milestones and not cosine:
        late = [int(m) for m in milestones if int(m) >= total_iter]
        if late:
            notes.append(
                f"milestones {late} lie after the last iteration ({max(total_iter - 1, 0)}); "
                "they never take effect"
            )
    return tuple(notes)


def _check_arguments(section: str, body: Mapping[str, object], source: str) -> None:
    """Every numeric argument in range (by argument name, whichever class takes it)."""
    for key, value in body.items():
        if key in _NAME_KEYS:
            continue
        dotted = f"{section}.{key}"
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            check_number(item, source, dotted, ARGUMENT_RANGES.get(str(key)))


def check_config_optimisation(cfg: GaitConfig, source: str = "<config>") -> OptimisationCheck:
    """:func:`check_optimisation` of a resolved config, for its run of ``trainer.total_iter``."""
    return check_optimisation(cfg.optimizer.as_mapping(), cfg.scheduler.as_mapping(), cfg.trainer.total_iter,
                              source)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_optimisation(
    ocfg: Mapping[str, object], scfg: Mapping[str, object], total: int | None, source: str = "<config>"
) -> OptimisationCheck:
    """Validate ``optimizer_cfg`` and ``scheduler_cfg`` (as YAML holds them) for a run of
    ``total`` iterations: ranges, ordering, then the real optimiser and scheduler built on a
    dummy parameter. Any failure is one :class:`ConfigError` line naming the key."""
    _check_arguments("optimizer_cfg", ocfg, source)
    _check_arguments("scheduler_cfg", scfg, source)
    try:
        notes = check_schedule(scfg, None if total is None else int(total))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    dummy = torch.nn.Parameter(torch.zeros(1))
    try:
        optimizer = build_optimizer([dummy], ocfg)
    except Exception as exc:  # noqa: BLE001 - any refusal of user arguments is one line
        raise ConfigError(
            f"{source}: optimizer_cfg: {ocfg.get('solver')} refuses its arguments: {_first_line(exc)}"
        ) from None
    try:
        scheduler = build_scheduler(optimizer, scfg)
        values = [float(optimizer.param_groups[0]["lr"])]
        optimizer.step()  # one step as the trainer takes it (the grad is None: nothing changes)
        scheduler.step()  # refuses e.g. ReduceLROnPlateau, which needs a metric per step
        values.append(float(optimizer.param_groups[0]["lr"]))
        if scfg.get("scheduler", "warmup") == "warmup":  # closed form: every boundary of the run
            values += lr_values(ocfg, scfg, schedule_boundaries(scfg, max(int(total or 0), 1))).tolist()
    except Exception as exc:  # noqa: BLE001 - any refusal of user arguments is one line
        raise ConfigError(
            f"{source}: scheduler_cfg: {scfg.get('scheduler')} cannot be built: {_first_line(exc)}"
        ) from None
    bad = [v for v in values if not math.isfinite(v) or v < 0]
    if bad:
        raise ConfigError(
            f"{source}: scheduler_cfg: the schedule reaches lr {bad[0]!r}; check gamma and the factors"
        )
    return OptimisationCheck(notes)


def build_optimizer(
    params: Iterable[torch.nn.Parameter], optimizer_cfg: Mapping[str, object]
) -> torch.optim.Optimizer:
    """``optimizer_cfg.solver`` from ``torch.optim`` with the other keys as its arguments."""
    name = optimizer_cfg.get("solver", "Adam")
    cls = getattr(torch.optim, name, None) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(f"optimizer_cfg.solver: unknown optimiser {name!r}")
    kwargs = {k: v for k, v in optimizer_cfg.items() if k not in _NAME_KEYS}
    optimizer: torch.optim.Optimizer = cls(params, **kwargs)
    return optimizer


def build_scheduler(
    optimizer: torch.optim.Optimizer, scheduler_cfg: Mapping[str, object]
) -> torch.optim.lr_scheduler.LRScheduler:
    """The scheduler of ``scheduler_cfg``; step it once per iteration."""
    name = scheduler_cfg.get("scheduler", "warmup")
    if name == "warmup":
        args = _warmup_args(scheduler_cfg)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: warmup_factor_at(t, **args))
    cls = getattr(torch.optim.lr_scheduler, name, None) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(f"scheduler_cfg.scheduler: unknown scheduler {name!r}")
    kwargs = {k: v for k, v in scheduler_cfg.items() if k not in _NAME_KEYS}
    scheduler: torch.optim.lr_scheduler.LRScheduler = cls(optimizer, **kwargs)
    return scheduler


def base_lr(optimizer_cfg: Mapping[str, object]) -> float:
    """``optimizer_cfg.lr`` (1e-3 when not given, torch's usual default)."""
    return to_float(optimizer_cfg.get("lr", 1e-3))


def lr_values(
    optimizer_cfg: Mapping[str, object], scheduler_cfg: Mapping[str, object], iterations: Iterable[int]
) -> np.ndarray:
    """The learning rate at each requested iteration (float64), computed the way training sees it.

    ``warmup`` uses its closed form. Other torch schedulers are stepped on a throw-away
    one-parameter optimiser (no model involved), because many of them are only defined
    recursively; that reproduces the trainer's values exactly.
    """
    its = np.asarray(list(iterations), dtype=np.int64)
    if its.size and its.min() < 0:
        raise ValueError("iterations must not be negative")
    base = base_lr(optimizer_cfg)
    name = scheduler_cfg.get("scheduler", "warmup")
    if name == "warmup":
        args = _warmup_args(scheduler_cfg)
        return np.array([base * warmup_factor_at(int(t), **args) for t in its], dtype=np.float64)
    if its.size and int(its.max()) > MAX_STEPPED:
        raise ConfigError(
            f"scheduler_cfg: {name} is stepped one iteration at a time to read its lr; "
            f"iteration {int(its.max()):,} is past the {MAX_STEPPED:,} this allows"
        )
    dummy = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([dummy], lr=base)
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


def schedule_boundaries(scheduler_cfg: Mapping[str, object], total_iter: int) -> list[int]:
    """Iterations where the schedule changes: 0, warm-up end, each milestone and the iteration
    before it, and the last iteration (``total_iter - 1``)."""
    last = max(total_iter - 1, 0)
    points = {0, last}
    if scheduler_cfg.get("scheduler") == "warmup":
        points.add(to_int(scheduler_cfg.get("warmup_iters", 0)))
        if scheduler_cfg.get("decay") == "cosine" and scheduler_cfg.get("cosine_iters"):
            points.add(to_int(scheduler_cfg["cosine_iters"]))
    for m in to_numbers(scheduler_cfg.get("milestones", []) or []):

        points.update({int(m) - 1, int(m)})
    return sorted(p for p in points if 0 <= p <= last)
