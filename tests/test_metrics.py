"""Distances, rank-k and mAP against straightforward loop versions (SPEC §10)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gaitcli.errors import GaitError
from gaitcli.evaluation.metrics import (
    average_precision,
    distance_block,
    encode_labels,
    mean_average_precision,
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
    np.testing.assert_allclose(pairwise_distances(x, y, metric), loop_distance(x, y, metric), rtol=1e-5, atol=1e-5)


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
