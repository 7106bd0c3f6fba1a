"""``gait train --time-budget MINUTES`` (docs/train.md, "Time budget").

The run is timed from the trainer's start (start-up included). After 5 untimed iterations, the
next ``time_budget_probe`` iterations are timed; from their pace the run length that fits the
budget is derived, every schedule length is scaled to it (:func:`gaitcli.schedule.scale_schedule`)
and the run switches to that schedule. The first pace is often pessimistic (a cold data cache,
other work on the cores), so every 5 % of the run (at least ``time_budget_probe`` iterations) it
measures again, over all the iterations since the first derivation (a passing slowdown moves it
little), until 75 % of the run, and switches to the re-derived schedule when the run length moves
by more than 1 %. The derived schedule is stored in every later checkpoint's state,
so a resumed run follows it exactly instead of measuring again. When the clock passes the budget
the run saves a checkpoint and stops.

The budget itself (minutes and probe) is stored in the state too, so a run resumed before its
pace was measured keeps it and measures again. A budget is at most :data:`MAX_MINUTES`, and
nothing is sized by the run length it derives: :func:`follow_schedule` computes lr(t) when asked.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import torch

from gaitcli.config_types import GaitConfig
from gaitcli.errors import ConfigError, option
from gaitcli.schedule import base_lr, build_scheduler, lr_values, scale_schedule
from gaitcli.training.state import entry, number

MARGIN = 0.02
"""Share of the time left kept free when the run length is derived, so that a slightly slower
tail still reaches the schedule's end before the budget."""
RECHECK_EVERY = 0.05
"""Re-estimate after this share of the derived run length (at least ``probe`` iterations)."""
RECHECK_UNTIL = 0.75
"""No re-estimation after this share of the derived run length: the schedule's tail (a late
milestone, the end of a cosine) stays put."""
RECHECK_TOLERANCE = 0.01
"""A re-derived run length within this share of the current one changes nothing."""

MAX_MINUTES = 43200.0
"""The largest budget (30 days); a longer run is given by ``total_iter`` instead."""

UNTIMED = 5
"""Iterations after start-up (or a resume) before the timing starts: the first steps are slow."""

clock: Callable[[], float] = time.monotonic
"""The clock of the budget (tests replace it with a fake one)."""


@dataclass
class DerivedSchedule:
    """The schedule a time budget derived; stored in the run's state."""

    total_iter: int
    """The run length that fits the budget."""
    scheduler_cfg: dict[str, object]
    """The configured schedule with every length scaled to ``total_iter``."""
    seconds_per_iter: float
    """The pace measured over the timed iterations."""
    derived_at: int
    """The iteration at which it was derived."""

    def to_json(self) -> dict[str, object]:
        """A plain mapping (what the state file stores)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> DerivedSchedule:
        """The inverse of :meth:`to_json` (one line for a malformed state)."""
        return cls(entry(data, "total_iter", int), dict(entry(data, "scheduler_cfg", dict)),
                   number(data, "seconds_per_iter"), entry(data, "derived_at", int))


@dataclass(frozen=True)
class BudgetSetting:
    """A run's time budget as its state stores it, so a resumed run keeps it."""

    minutes: float
    """The budget."""
    probe: int
    """Iterations timed before the first derivation."""

    def to_json(self) -> dict[str, float]:
        return {"minutes": self.minutes, "probe": self.probe}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> BudgetSetting:
        """The inverse of :meth:`to_json` (one line for a malformed state)."""
        return cls(number(data, "minutes"), entry(data, "probe", int))


@dataclass
class _Shadow:
    """The stepped copy of a scheduler that :func:`follow_schedule` reads lr(t) from."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    t: int = 0


def check_minutes(minutes: float | None) -> None:
    """A budget lies in (0, :data:`MAX_MINUTES`]: one line otherwise."""
    if minutes is not None and not 0 < minutes <= MAX_MINUTES:
        raise ConfigError(
            f"trainer_cfg.time_budget ({option('time_budget')}) {minutes:g}: a time budget is more than "
            f"0 and at most {MAX_MINUTES:g} minutes (30 days); for a longer run set trainer_cfg.total_iter"
        )


class TimeBudget:
    """Measures the pace and says when to derive the schedule and when the time is up."""

    def __init__(self, minutes: float, probe: int, started: float) -> None:
        check_minutes(minutes)
        self.minutes = minutes
        self.deadline = started + 60.0 * minutes
        self.probe = probe
        self.first: int | None = None
        self.timed_from: tuple[int, float] | None = None
        self.origin: tuple[int, float] | None = None  # iteration and clock of the first derivation
        self.next_check = 0

    def to_state(self) -> BudgetSetting:
        """What a checkpoint's state stores, so a resumed run keeps the budget."""
        return BudgetSetting(self.minutes, self.probe)

    def expired(self) -> bool:
        """Whether the clock has passed the budget."""
        return clock() >= self.deadline

    def pace(self, iteration: int) -> float | None:
        """Seconds per iteration once ``probe`` iterations are timed (None before)."""
        if self.first is None:
            self.first = iteration
        if iteration == self.first + UNTIMED - 1:
            self.timed_from = (iteration, clock())
            return None
        if self.timed_from is None or iteration - self.timed_from[0] < self.probe:
            return None
        start_it, start_t = self.timed_from
        return max(clock() - start_t, 1e-9) / (iteration - start_it)

    def pace_since_origin(self, iteration: int, total: int) -> float | None:
        """Seconds per iteration since the first derivation, when a re-estimate is due (every
        :data:`RECHECK_EVERY` of ``total``, before :data:`RECHECK_UNTIL` of it). None otherwise
        (and always in a resumed run, which follows its state)."""
        if self.origin is None or iteration < self.next_check or iteration >= RECHECK_UNTIL * total:
            return None
        origin_it, origin_t = self.origin
        if iteration <= origin_it:
            return None
        return max(clock() - origin_t, 1e-9) / (iteration - origin_it)

    def derive(self, iteration: int, seconds_per_iter: float, cfg: GaitConfig) -> DerivedSchedule:
        """The run length that fits and the schedule scaled to it."""
        now = clock()
        if self.origin is None:
            self.origin = (iteration, now)
        left = max(self.deadline - now, 0.0) * (1.0 - MARGIN)
        total = max(iteration + int(math.floor(left / seconds_per_iter)), iteration)
        self.next_check = iteration + max(self.probe, math.ceil(RECHECK_EVERY * total))
        configured = cfg.trainer.total_iter
        scaled = scale_schedule(cfg.scheduler.as_mapping(), configured, total)
        return DerivedSchedule(total, scaled, seconds_per_iter, iteration)


def follow_schedule(
    optimizer: torch.optim.Optimizer,
    optimizer_cfg: Mapping[str, object],
    scheduler_cfg: Mapping[str, object],
    total_iter: int,
    start: int,
) -> torch.optim.lr_scheduler.LRScheduler:
    """A scheduler following ``scheduler_cfg`` over ``total_iter`` iterations, positioned at
    iteration ``start`` (every param group's lr set to its value there), so a derived schedule
    can be switched to mid-run and resumed exactly.

    lr(t) is computed when the scheduler asks for it, never tabulated: a budget that derives
    billions of iterations allocates nothing for them. ``warmup`` has a closed form; any other
    scheduler is a shadow copy on a one-parameter optimiser, stepped forward as t grows (as
    :func:`gaitcli.schedule.lr_values` steps it), so the lrs are the ones lr-plot shows.
    """
    base = base_lr(optimizer_cfg)
    closed_form = scheduler_cfg.get("scheduler", "warmup") == "warmup"
    shadow: list[_Shadow] = []  # the stepped copy, once built

    def factor(t: int) -> float:
        t = min(t, total_iter)
        if closed_form:
            return float(lr_values(optimizer_cfg, scheduler_cfg, (t,))[0]) / base
        if not shadow or t < shadow[0].t:
            dummy = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
            shadow[:] = [_Shadow(dummy, build_scheduler(dummy, scheduler_cfg))]
        copy = shadow[0]
        while copy.t < t:
            copy.optimizer.step()  # keeps torch from warning about the call order; the grad is None
            copy.scheduler.step()
            copy.t += 1
        return float(copy.optimizer.param_groups[0]["lr"]) / base

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    scheduler.last_epoch = start  # each group's lr from its initial lr, as a step would set it
    for group, initial_lr in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = initial_lr * factor(start)
    scheduler._last_lr = [float(group["lr"]) for group in optimizer.param_groups]
    return scheduler
