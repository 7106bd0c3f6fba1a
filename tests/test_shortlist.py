"""bf16 shortlist + certified fp32 re-rank: the same rows and order as the fp32 path."""

from __future__ import annotations

import pytest
import torch

from gaitcli.evaluation.metrics import distance_block, nearest_neighbours
from gaitcli.evaluation.shortlist import bf16_distances, shortlist_neighbours


def _random(n: int, m: int, parts: int = 4, c: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, parts, c, generator=g), torch.randn(m, parts, c, generator=g)


def _clustered(n: int, m: int, parts: int = 4, c: int = 32,
               seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Identities as cluster centres; gallery with exact duplicates and near-ties (a row and
    the same row nudged by one ulp-sized step in one channel)."""
    g = torch.Generator().manual_seed(seed)
    ids = 20
    centres = torch.randn(ids, parts, c, generator=g) * 3
    gal = centres[torch.arange(m) % ids] + 0.3 * torch.randn(m, parts, c, generator=g)
    gal[m // 2 : m // 2 + 5] = gal[:5]  # exact duplicates
    gal[m // 2 + 5 : m // 2 + 10] = gal[5:10]
    gal[m // 2 + 5 : m // 2 + 10, 0, 0] += 1e-6  # near-ties
    probe = centres[torch.randint(0, ids, (n,), generator=g)] + 0.3 * torch.randn(n, parts, c, generator=g)
    probe[:5] = gal[:5]  # probes equal to a (duplicated) gallery row: distance 0, twice
    return probe, gal


def _check(x: torch.Tensor, y: torch.Tensor, k: int, metric: str) -> dict[str, float]:
    ref = nearest_neighbours(x, y, k, metric)
    stats: dict[str, float] = {}
    got = shortlist_neighbours(x, y, k, metric, stats=stats)
    assert torch.equal(got.indices, ref.indices)
    # within the certified δ of the fp32 path's distances (δ <= the bf16 pass's bound)
    _, bound = bf16_distances(x, y, metric)
    assert bool(((got.distances - ref.distances).abs() <= bound.gather(1, ref.indices)).all())
    assert torch.allclose(got.distances, ref.distances, rtol=1e-3, atol=1e-2)
    return stats


@pytest.mark.parametrize("metric", ["euc", "cos"])
@pytest.mark.parametrize("k", [1, 5])
def test_same_rows_and_order_as_fp32_path(metric: str, k: int) -> None:
    for x, y in (_random(150, 400), _clustered(150, 400)):
        stats = _check(x, y, k, metric)
        assert stats["probes"] == 150


def test_clustered_mostly_certified_without_fallback() -> None:
    x, y = _clustered(150, 400)
    stats = _check(x, y, 1, "euc")
    assert stats["fallback"] < stats["probes"] / 2  # the shortlist path does the work
    assert stats["mean_shortlist"] < 400 / 4


@pytest.mark.parametrize("metric", ["euc", "cos"])
def test_duplicates_fall_back_and_keep_gallery_order(metric: str) -> None:
    x, y = _clustered(40, 200)
    stats: dict[str, float] = {}
    got = shortlist_neighbours(x, y, 2, metric, stats=stats)
    ref = nearest_neighbours(x, y, 2, metric)
    assert stats["fallback"] >= 5  # probes 0..4 tie exactly between two gallery rows
    assert torch.equal(got.indices, ref.indices)
    assert torch.equal(got.distances[:5], ref.distances[:5])  # fallback rows: the fp32 path's bits
    assert torch.equal(got.indices[:5, 0], torch.arange(5))  # first of two equal rows first


def test_limit_forces_fallback_and_still_agrees() -> None:
    x, y = _random(60, 300)
    stats: dict[str, float] = {}
    got = shortlist_neighbours(x, y, 5, "euc", limit=5, stats=stats)
    ref = nearest_neighbours(x, y, 5, "euc")
    assert stats["fallback"] > 0
    assert torch.equal(got.indices, ref.indices)


def test_custom_tile_is_the_reference() -> None:
    x, y = _clustered(70, 250)
    got = shortlist_neighbours(x, y, 5, "cos", tile=(16, 64), limit=5)
    ref = nearest_neighbours(x, y, 5, "cos", tile=(16, 64))
    assert torch.equal(got.indices, ref.indices)
    assert torch.equal(got.distances, ref.distances)  # limit=5 sends every probe to the fp32 path


@pytest.mark.parametrize("metric", ["euc", "cos"])
@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e3])
def test_bound_never_violated(metric: str, scale: float) -> None:
    for x, y in (_random(120, 300, c=64), _clustered(120, 300, c=64)):
        x, y = x * scale, y * scale
        approx, bound = bf16_distances(x, y, metric)
        exact = distance_block(x, y, metric)
        assert bool((bound > 0).all())
        assert bool(((approx - exact).abs() <= bound).all())
        # the fp64 distance too: the bound covers the fp32 path's own rounding
        exact64 = _fp64(x, y, metric)
        assert bool(((approx.double() - exact64).abs() <= bound.double()).all())


@pytest.mark.parametrize("offset", [0.0, 100.0])
def test_centred_bound_never_violated(offset: float) -> None:
    x, y = _clustered(120, 300, c=64)
    x, y = x + offset, y + offset  # features far from the origin
    approx, bound = bf16_distances(x, y, "euc", centre=y.mean(dim=0))
    exact = distance_block(x, y, "euc")
    assert bool(((approx - exact).abs() <= bound).all())
    _, raw_bound = bf16_distances(x, y, "euc")
    if offset > 0:  # centring is what keeps the bound useful there
        assert float(bound.median()) < float(raw_bound.median()) / 4


def test_offset_features_shortlisted_and_agree() -> None:
    x, y = _clustered(100, 300)
    x, y = x + 20.0, y + 20.0
    stats: dict[str, float] = {}
    got = shortlist_neighbours(x, y, 5, "euc", stats=stats)
    assert torch.equal(got.indices, nearest_neighbours(x, y, 5, "euc").indices)
    assert stats["mean_shortlist"] < 300 / 4


def _fp64(x: torch.Tensor, y: torch.Tensor, metric: str) -> torch.Tensor:
    xd, yd = x.double(), y.double()
    if metric == "cos":
        xd = xd / xd.norm(dim=2, keepdim=True)
        yd = yd / yd.norm(dim=2, keepdim=True)
        return 1.0 - torch.einsum("npc,mpc->nmp", xd, yd).mean(-1)
    diff = xd[:, None] - yd[None]
    return diff.pow(2).sum(-1).sqrt().mean(-1)


def test_empty_and_small_k() -> None:
    x, y = _random(3, 4)
    assert shortlist_neighbours(x, y[:0], 5).indices.shape == (3, 0)
    assert shortlist_neighbours(x[:0], y, 5).indices.shape == (0, 4)
    got = shortlist_neighbours(x, y, 10)
    assert got.indices.shape == (3, 4)
    assert torch.equal(got.indices, nearest_neighbours(x, y, 10).indices)


def test_reduced_fp32_matmul_precision_falls_back_entirely() -> None:
    x, y = _random(30, 80)
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        stats: dict[str, float] = {}
        got = shortlist_neighbours(x, y, 3, "euc", stats=stats)
        ref = nearest_neighbours(x, y, 3, "euc")
    finally:
        torch.set_float32_matmul_precision(before)
    assert stats["fallback"] == 30
    assert torch.equal(got.indices, ref.indices) and torch.equal(got.distances, ref.distances)
