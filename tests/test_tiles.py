"""Matching tiles tuned to the CPU (docs/eval.md, "Speed and memory"): a grouped walk gives the
distances and neighbours of the whole-part one (to fp32 summation order), the choice is measured
once per CPU and feature shape and cached, and a tuned match gives the same tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gaitcli.evaluation import tiles
from gaitcli.evaluation.matching import run_protocol
from gaitcli.evaluation.metrics import distance_block, nearest_neighbours
from gaitcli.evaluation.protocols import resolve_protocol
from gaitcli.runtime.cpu import MeasurementCache

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("metric", ["euc", "cos"])
def test_grouped_parts_give_the_same_distances_and_neighbours(metric):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(70, 12, 16, generator=gen), torch.randn(90, 12, 16, generator=gen)
    whole = distance_block(x, y, metric, tile=(32, 32))
    for group in (1, 5, 12):
        grouped = distance_block(x, y, metric, tile=(32, 32), group=group)
        torch.testing.assert_close(grouped, whole, rtol=1e-5, atol=1e-6)
        near = nearest_neighbours(x, y, 5, metric, tile=(16, 64), group=group)
        assert torch.equal(near.indices, whole.argsort(dim=1, stable=True)[:, :5])


def test_the_choice_is_measured_once_per_cpu_and_shape(tmp_path):
    cache = MeasurementCache(tmp_path)
    assert tiles.choose_tiles(8, 16, "cpu", 10**6, cache=cache) is None  # a small match: defaults
    assert tiles.choose_tiles(8, 16, "cuda", 10**12, cache=cache) is None  # tuned for CPUs only
    first = tiles.choose_tiles(8, 16, "cpu", 10**12, cache=cache, reps=1)
    assert first is not None and first.source.startswith("measured")
    assert (first.rows, first.cols, first.group) in tiles.candidates(8, torch.device("cpu"))
    assert set(first.seconds) == {f"{r}x{c}/{g}" for r, c, g in tiles.candidates(8, torch.device("cpu"))}
    again = tiles.choose_tiles(8, 16, "cpu", 10**12, cache=cache)
    assert again is not None and again.source.startswith("cached")
    assert (again.rows, again.cols, again.group) == (first.rows, first.cols, first.group)
    other = tiles.choose_tiles(4, 16, "cpu", 10**12, cache=cache, reps=1)  # another feature shape
    assert other is not None and other.source.startswith("measured")


def test_a_tuned_match_gives_the_same_tables(monkeypatch, tmp_path):
    monkeypatch.setenv("GAIT_CACHE_DIR", str(tmp_path))
    rng = np.random.default_rng(0)
    ids, views = 12, ["000", "090", "180"]
    labels, types, vs, rows = [], [], [], []
    for i in range(ids):
        centre = rng.standard_normal((6, 8)).astype(np.float32)
        for t in ("nm-01", "nm-02", "nm-03", "nm-04", "nm-05", "bg-01", "cl-01"):
            for v in views:
                rows.append(centre + 0.9 * rng.standard_normal((6, 8)).astype(np.float32))
                labels.append(f"{i:03d}")
                types.append(t)
                vs.append(v)
    emb = np.stack(rows)
    spec = resolve_protocol("casia-b")
    plain = run_protocol(emb, labels, types, vs, spec)
    calls = []
    real = tiles.choose_tiles

    def tuned(*args, **kwargs):
        calls.append(args)
        return real(*args, **{**kwargs, "min_pairs": 0, "reps": 1})

    monkeypatch.setattr("gaitcli.evaluation.matching.choose_tiles", tuned)
    again = run_protocol(emb, labels, types, vs, spec)
    assert calls and again.rank1 == plain.rank1
    assert again.tables.rank1_exclude == plain.tables.rank1_exclude
