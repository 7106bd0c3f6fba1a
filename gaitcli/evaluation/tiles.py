"""Matching tiles tuned to this CPU's caches (docs/eval.md, "Speed and memory").

The fused distance walk (:func:`~.metrics.nearest_neighbours`) computes a ``[parts, rows, cols]``
block per tile: one batched product over the parts, then the square roots and the sum over
parts. With the default tile that block is about 16 MB — more than a core's L2 — so every pass
after the product streams it from the shared cache or memory. Taking the parts ``group`` at a
time keeps the block in L2; which tile and group is fastest depends on the CPU (its L2 size, its
matrix kernels). So before a large match (at least :data:`MIN_PAIRS` probe × gallery pairs, where
seconds of measurement are a small share of minutes of matching) the candidates are timed on a
sample of the real features' shape and the fastest is used; the answer is cached per CPU and
feature shape (:class:`gaitcli.runtime.cpu.MeasurementCache`). The distances are the same
formula whatever the tile: only the order of the fp32 sums over parts changes (last-bit
differences, as between any two tile shapes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch

from gaitcli.runtime.cpu import MeasurementCache, cpu_identity

from .metrics import default_tile, nearest_neighbours

KIND = "matching-tiles"
"""The measurement cache's section for these choices."""
MIN_PAIRS = 200_000_000
"""Probe × gallery pairs from which a match is tuned (CASIA-B's eval is about 5 million)."""
SAMPLE = (1024, 2048)
"""Probes and gallery items of the timed sample."""
L2_TARGETS = (512 << 10, 1 << 20, 2 << 20)
"""Bytes of the ``[group, rows, cols]`` block the grouped candidates aim at."""
TILES = ((256, 256), (512, 256), (512, 512), (128, 512))


@dataclass(frozen=True)
class TileSetting:
    """Tile rows × columns and parts per group for the fused walk."""

    rows: int
    cols: int
    group: int
    source: str = ""
    """``measured in 4.2 s`` or ``cached ...``."""
    seconds: dict[str, float] = field(default_factory=dict, compare=False)
    """Median seconds of each candidate on the sample (``rows x cols / group``)."""

    @property
    def label(self) -> str:
        return f"{self.rows}x{self.cols}/{self.group}"


def candidates(parts: int, device: torch.device) -> list[tuple[int, int, int]]:
    """The default tile with all parts, then each tile with groups sized to the L2 targets."""
    rows, cols = default_tile(device, parts, SAMPLE[0], SAMPLE[1])
    out = [(rows, cols, parts)]
    for r, c in TILES:
        for target in L2_TARGETS:
            group = max(1, min(parts, target // (4 * r * c)))
            if (r, c, group) not in out:
                out.append((r, c, group))
    return out


def _time(fn: Callable[[], object], reps: int) -> float:
    """Best of ``reps`` timed calls after one untimed one."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def choose_tiles(parts: int, channels: int, device: torch.device | str, pairs: int, *,
                 cache: MeasurementCache | None = None, reps: int = 2,
                 min_pairs: int | None = None) -> TileSetting | None:
    """The tile setting for a match of ``pairs`` probe × gallery pairs on ``device``: None (the
    defaults) off the CPU or below ``min_pairs``; else measured once per CPU and feature shape."""
    dev = torch.device(device)
    if dev.type != "cpu" or pairs < (MIN_PAIRS if min_pairs is None else min_pairs) or parts < 1:
        return None
    cache = cache if cache is not None else MeasurementCache()
    key = f"{cpu_identity().key()} | {parts}x{channels}"
    stored = cache.get(KIND, key)
    if stored is not None:
        r, c, g = stored.get("rows"), stored.get("cols"), stored.get("group")
        if all(isinstance(v, int) and v >= 1 for v in (r, c, g)):
            assert isinstance(r, int) and isinstance(c, int) and isinstance(g, int)
            return TileSetting(r, c, min(g, parts), f"cached {stored.get('measured', '')}".strip())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(SAMPLE[0], parts, channels, generator=gen)
    y = torch.randn(SAMPLE[1], parts, channels, generator=gen)
    began = time.perf_counter()
    seconds: dict[str, float] = {}
    best: tuple[float, tuple[int, int, int]] | None = None
    for r, c, g in candidates(parts, dev):
        t = _time(partial(nearest_neighbours, x, y, 5, tile=(r, c), group=g), reps)
        seconds[f"{r}x{c}/{g}"] = round(t, 4)
        if best is None or t < best[0]:
            best = (t, (r, c, g))
    assert best is not None
    r, c, g = best[1]
    setting = TileSetting(r, c, g, f"measured in {time.perf_counter() - began:.1f} s", seconds)
    cache.put(KIND, key, {"rows": r, "cols": c, "group": g, "seconds": dict(seconds)})
    return setting
