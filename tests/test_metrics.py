"""Distances, rank-k and mAP against straightforward loop versions (docs/eval.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gaitcli.errors import GaitError
from gaitcli.evaluation.metrics import (
    average_precision,
    blockwise_topk_hits,
    decode_keys,
    distance_block,
    encode_labels,
    mean_average_precision,
    nearest_neighbours,
    order_keys,
    pairwise_distances,
    rank_k_accuracy,
    ranked_matches,
    topk_hits,
)


def loop_distance(x, y, metric):
    """One pair at a time, one part at a time, in float64."""
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    out = np.zeros((len(x), len(y)))
    for i in range(len(x)):
        for j in range(len(y)):
            total = 0.0
            for p in range(x.shape[1]):
                a, b = x[i, p], y[j, p]
                if metric == "euc":
                    total += np.sqrt(np.sum((a - b) ** 2))
                else:
                    total += np.dot(a, b) / max(np.linalg.norm(a), 1e-12) / max(np.linalg.norm(b), 1e-12)
            out[i, j] = total / x.shape[1] if metric == "euc" else 1 - total / x.shape[1]
    return out


def loop_rank_k(dist, pl, gl, k):
    hits = 0
    for i in range(len(pl)):
        order = sorted(range(len(gl)), key=lambda j: dist[i, j])
        hits += any(gl[j] == pl[i] for j in order[:k])
    return 100.0 * hits / len(pl)


def loop_map(dist, pl, gl):
    aps = []
    for i in range(len(pl)):
        order = sorted(range(len(gl)), key=lambda j: dist[i, j])
        found, precisions = 0, []
        for rank, j in enumerate(order, start=1):
            if gl[j] == pl[i]:
                found += 1
                precisions.append(found / rank)
        if found:
            aps.append(sum(precisions) / found)
    return 100.0 * float(np.mean(aps))


@pytest.mark.parametrize("metric", ["euc", "cos"])
def test_distances_match_the_loop(metric):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 4, 7)).astype(np.float32)
    y = rng.normal(size=(13, 4, 7)).astype(np.float32)
    np.testing.assert_allclose(pairwise_distances(x, y, metric), loop_distance(x, y, metric),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", ["euc", "cos"])
def test_tiling_does_not_change_the_result(metric):
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.normal(size=(37, 3, 5)).astype(np.float32))
    y = torch.from_numpy(rng.normal(size=(29, 3, 5)).astype(np.float32))
    whole = distance_block(x, y, metric, tile=(1000, 1000))
    for tile in [(1, 1), (4, 7), (16, 3), (37, 29)]:
        torch.testing.assert_close(distance_block(x, y, metric, tile=tile), whole, rtol=1e-6, atol=1e-6)


def test_euclidean_distance_is_zero_on_identical_features_and_not_negative():
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(6, 8, 16)) * 100).astype(np.float32)
    d = pairwise_distances(x, x)
    assert (d >= 0).all()
    assert np.abs(np.diag(d)).max() < 1e-2 * np.abs(d).max()


def test_mean_over_parts_is_not_one_flat_distance():
    x = np.zeros((1, 2, 1), np.float32)
    y = np.array([[[3.0], [4.0]]], np.float32)
    assert pairwise_distances(x, y)[0, 0] == pytest.approx(3.5)  # (3 + 4) / 2, not 5 / 2


def test_empty_sets_and_shape_mismatch():
    x = torch.zeros(0, 2, 3)
    y = torch.ones(4, 2, 3)
    assert distance_block(x, y).shape == (0, 4)
    assert distance_block(y, x).shape == (4, 0)
    with pytest.raises(ValueError):
        distance_block(torch.zeros(2, 2, 3), torch.zeros(2, 3, 2))
    with pytest.raises(GaitError):
        distance_block(y, y, "manhattan")


@pytest.mark.parametrize("k", [1, 2, 5, 50])
def test_rank_k_matches_the_loop(k):
    rng = np.random.default_rng(4)
    dist = rng.random((30, 20))
    pl = rng.integers(0, 6, 30).astype(str)
    gl = rng.integers(0, 6, 20).astype(str)
    assert rank_k_accuracy(dist, pl, gl, k) == pytest.approx(loop_rank_k(dist, pl, gl, k))


def test_map_matches_the_loop():
    rng = np.random.default_rng(5)
    dist = rng.random((40, 25))
    pl = rng.integers(0, 8, 40).astype(str)
    gl = rng.integers(0, 6, 25).astype(str)  # ids 6 and 7 have no relevant item: left out
    assert mean_average_precision(dist, pl, gl) == pytest.approx(loop_map(dist, pl, gl))


def test_excluded_items_are_neither_ranked_nor_relevant():
    dist = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    pl = torch.tensor([1])
    gl = torch.tensor([1, 2, 1, 2])
    excluded = torch.tensor([[True, False, False, False]])
    matches, valid = ranked_matches(dist, pl, gl, excluded)
    assert valid.tolist() == [True]
    assert matches.tolist() == [[False, True, False, False]]  # 0.2 (id 2), 0.3 (id 1), 0.4, excluded last
    assert average_precision(matches)[0] == pytest.approx(0.5)
    hits = topk_hits(dist.masked_fill(excluded, float("inf")), pl, gl, (1, 2))
    assert hits[1].tolist() == [False] and hits[2].tolist() == [True]


def test_encode_labels_shares_codes():
    _, (a, b) = encode_labels(["001", "003"], ["003", "002", "001"])
    assert a[0] == b[2] and a[1] == b[0] and len({*a.tolist(), *b.tolist()}) == 3


def tied_features(seed: int, n: int = 11, m: int = 23, parts: int = 3, channels: int = 4):
    """Small-integer features (exact arithmetic) with duplicated gallery rows under other labels:
    exact distance ties between different identities."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(n, parts, channels)).astype(np.float32)
    y = rng.integers(-2, 3, size=(m, parts, channels)).astype(np.float32)
    y[5] = y[17] = x[0]  # probe 0 has two exact matches at distance 0
    y[9] = y[2]
    y[20] = y[2]
    gl = rng.integers(0, 5, m)
    gl[17], gl[5] = 1, 2  # the first of the tied pair is not the probe's id, the second is
    pl = rng.integers(0, 5, n)
    pl[0] = 1
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(pl), torch.from_numpy(gl)


def stable_order(dist: torch.Tensor) -> torch.Tensor:
    """Plain restatement of the tie rule: by distance, then by gallery index."""
    return torch.tensor([sorted(range(dist.shape[1]), key=lambda j: (float(dist[i, j]), j))
                         for i in range(dist.shape[0])])


@pytest.mark.parametrize("metric", ["euc", "cos"])
@pytest.mark.parametrize("tile", [(4, 5), (3, 23), (11, 1), (1000, 1000)])
def test_nearest_neighbours_fused_per_tile_equal_the_sorted_matrix(metric, tile):
    x, y, pl, gl = tied_features(6)
    dist = distance_block(x, y, metric)
    order = stable_order(dist)
    for k in (1, 3, 40):
        near = nearest_neighbours(x, y, k, metric, tile=tile)
        kk = min(k, y.shape[0])
        assert torch.equal(near.indices, order[:, :kk])
        assert torch.equal(near.distances, dist.gather(1, order[:, :kk]))
    assert nearest_neighbours(x, y, 1, metric, tile=tile).indices[0, 0] == 5  # first of the exact tie


@pytest.mark.parametrize("metric", ["euc", "cos"])
def test_blockwise_hits_equal_topk_hits_and_the_loop_with_ties(metric):
    x, y, pl, gl = tied_features(7)
    dist = distance_block(x, y, metric)
    whole = topk_hits(dist, pl, gl, (1, 2, 5, 100))
    fused = blockwise_topk_hits(x, y, pl, gl, (1, 2, 5, 100), metric, tile=(4, 6))
    order = stable_order(dist)
    for k in (1, 2, 5, 100):
        assert torch.equal(whole[k], fused[k])
        loop = [bool((gl[order[i, :k]] == pl[i]).any()) for i in range(len(pl))]
        assert whole[k].tolist() == loop
    assert not whole[1][0] and whole[2][0]  # the tied nearest at index 5 (id 2) ranks before 17 (id 1)
    empty = blockwise_topk_hits(x, y[:0], pl, gl[:0], (1, 5), metric)
    assert not empty[1].any() and empty[5].shape == (len(pl),)


def test_order_keys_sort_like_distance_then_column():
    d = torch.tensor([[0.5, -0.0, 0.0, -1.5, float("inf"), 0.5, -1e-30]])
    keys = order_keys(d, col0=10)
    back = decode_keys(keys)
    assert torch.equal(back.indices, torch.arange(10, 17).view(1, 7))
    assert torch.equal(back.distances, d + 0.0)
    assert keys.argsort(dim=1).tolist() == [[3, 6, 1, 2, 0, 5, 4]]


def test_first_tile_keys_only_its_k_nearest_per_row(monkeypatch):
    """A row block's first tile admits only entries within its own k nearest, not the whole tile
    (that was most of the matching time when a view's gallery fits in one or two tiles)."""
    import gaitcli.evaluation.metrics as metrics

    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(12, 3, 4, generator=g), torch.randn(40, 3, 4, generator=g)
    keyed = []
    real_keys = metrics._keys

    def counting(values, cols):
        keyed.append(values.numel())
        return real_keys(values, cols)

    monkeypatch.setattr(metrics, "_keys", counting)
    got = metrics.nearest_neighbours(x, y, 3, tile=(12, 40))
    assert sum(keyed) == 12 * 3  # no ties in random data: exactly k per row
    order = metrics.pairwise_distances(x, y).argsort(axis=1, kind="stable")[:, :3]
    assert got.indices.tolist() == order.tolist()
