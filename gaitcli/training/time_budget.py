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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from gaitcli.schedule import scale_schedule

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

UNTIMED = 5
"""Iterations after start-up (or a resume) before the timing starts: the first steps are slow."""

clock: Callable[[], float] = time.monotonic
"""The clock of the budget (tests replace it with a fake one)."""


@dataclass
class DerivedSchedule:
    """The schedule a time budget derived; stored in the run's state."""

    total_iter: int
    """The run length that fits the budget."""
    scheduler_cfg: dict[str, Any]
    """The configured schedule with every length scaled to ``total_iter``."""
    seconds_per_iter: float
    """The pace measured over the timed iterations."""
    derived_at: int
    """The iteration at which it was derived."""

    def to_json(self) -> dict[str, Any]:
        """A plain mapping (what the state file stores)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DerivedSchedule:
        """The inverse of :meth:`to_json`."""
        return cls(int(data["total_iter"]), dict(data["scheduler_cfg"]), float(data["seconds_per_iter"]),
                   int(data["derived_at"]))


class TimeBudget:
    """Measures the pace and says when to derive the schedule and when the time is up."""

    def __init__(self, minutes: float, probe: int, started: float) -> None:
        self.deadline = started + 60.0 * minutes
        self.probe = probe
        self.first: int | None = None
        self.timed_from: tuple[int, float] | None = None
        self.origin: tuple[int, float] | None = None  # iteration and clock of the first derivation
        self.next_check = 0

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

    def derive(self, iteration: int, seconds_per_iter: float, cfg: Mapping[str, Any]) -> DerivedSchedule:
        """The run length that fits and the schedule scaled to it."""
        now = clock()
        if self.origin is None:
            self.origin = (iteration, now)
        left = max(self.deadline - now, 0.0) * (1.0 - MARGIN)
        total = max(iteration + int(math.floor(left / seconds_per_iter)), iteration)
        self.next_check = iteration + max(self.probe, math.ceil(RECHECK_EVERY * total))
        configured = int(cfg["trainer_cfg"]["total_iter"])
        scaled = scale_schedule(cfg["scheduler_cfg"], configured, total)
        return DerivedSchedule(total, scaled, seconds_per_iter, iteration)
