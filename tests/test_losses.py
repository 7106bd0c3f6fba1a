"""Losses against straightforward loop versions written from docs/train.md."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from gaitcli.config_types import CrossEntropyLossConfig, TripletLossConfig
from gaitcli.training.losses import (
    CrossEntropyLoss,
    LossAggregator,
    TripletLoss,
    dense_triplet_terms,
    grouped_triplet_terms,
    pairwise_distance,
    triplet_terms,
)


def triplet_by_loops(emb: torch.Tensor, labels: list[int], margin: float):
    """For each part: every anchor a, positive p (a included), negative q: relu(d(a,p) - d(a,q) + m)."""
    n, parts, _ = emb.shape
    losses, nums, hards, dists = [], [], [], []
    for part in range(parts):
        x = emb[:, part].double()
        d = [[math.dist(x[i].tolist(), x[j].tolist()) for j in range(n)] for i in range(n)]
        terms = []
        for a, p, q in itertools.product(range(n), repeat=3):
            if labels[a] == labels[p] and labels[a] != labels[q]:
                terms.append(max(d[a][p] - d[a][q] + margin, 0.0))
        nonzero = sum(1 for t in terms if t != 0)
        losses.append(sum(terms) / (nonzero + 1e-9) if nonzero else 0.0)
        nums.append(nonzero)
        hards.append(max(terms))
        dists.append(sum(map(sum, d)) / n / n)
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    return mean(losses), mean(nums), mean(hards), mean(dists)


@pytest.mark.parametrize("seed", [0, 1])
def test_triplet_matches_loops(seed):
    torch.manual_seed(seed)
    labels = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    emb = torch.randn(len(labels), 4, 5) * 0.3
    loss, info = TripletLoss(margin=0.2)(emb, torch.tensor(labels))
    ref_loss, ref_num, ref_hard, ref_dist = triplet_by_loops(emb, labels, 0.2)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
    assert info["loss_num"].item() == pytest.approx(ref_num)
    assert info["hard_loss"].item() == pytest.approx(ref_hard, rel=1e-5)
    assert info["mean_dist"].item() == pytest.approx(ref_dist, rel=1e-5)


def test_triplet_unequal_group_sizes_and_zero_case():
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    emb = torch.randn(6, 3, 4)
    loss, info = TripletLoss(margin=0.3)(emb, labels)
    ref_loss, ref_num, _, _ = triplet_by_loops(emb, labels.tolist(), 0.3)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
    assert info["loss_num"].item() == pytest.approx(ref_num)
    # perfectly separated identities: no non-zero term, loss exactly 0
    far = torch.zeros(6, 3, 4)
    far[:, :, 0] = labels.float().view(6, 1) * 100
    loss, info = TripletLoss()(far, labels)
    assert loss.item() == 0.0 and info["loss_num"].item() == 0.0


def test_triplet_gradient_flows():
    emb = torch.randn(8, 2, 3, requires_grad=True)
    loss, _ = TripletLoss()(emb, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    loss.backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0


@pytest.mark.parametrize(("scale", "smooth"), [(1.0, False), (16.0, True)])
def test_cross_entropy_matches_reference_layout(scale, smooth):
    torch.manual_seed(0)
    n, p, k = 6, 4, 5
    logits = torch.randn(n, p, k)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    ce = CrossEntropyLoss(scale=scale, label_smooth=smooth, eps=0.1, log_accuracy=True)
    loss, info = ce(logits, labels)
    # the reference's layout: logits [n, classes, parts], label repeated over parts
    ref = F.cross_entropy(logits.permute(0, 2, 1) * scale, labels.view(n, 1).repeat(1, p),
                          label_smoothing=0.1 if smooth else 0.0)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    acc = sum(int(logits[i, j].argmax() == labels[i]) for i in range(n) for j in range(p)) / (n * p)
    assert info["accuracy"].item() == pytest.approx(acc)


def test_aggregator_weights_and_names():
    cfg = [
        TripletLossConfig(loss_term_weight=2.0, margin=0.2, log_prefix="triplet"),
        CrossEntropyLossConfig(loss_term_weight=0.5, scale=1.0, label_smooth=False, eps=0.1,
                               log_accuracy=True, log_prefix="softmax"),
    ]
    torch.manual_seed(0)
    outputs = {"embeddings": torch.randn(8, 3, 4), "logits": torch.randn(8, 3, 4)}
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    total, logged = LossAggregator(cfg)(outputs, labels)
    t, _ = TripletLoss()(outputs["embeddings"], labels)
    c, _ = CrossEntropyLoss(scale=1.0, label_smooth=False)(outputs["logits"], labels)
    assert total.item() == pytest.approx(2.0 * t.item() + 0.5 * c.item(), rel=1e-6)
    assert {"triplet/loss", "triplet/loss_num", "triplet/hard_loss", "triplet/mean_dist",
            "softmax/loss", "softmax/accuracy", "total_loss"} == set(logged)


def triplet_loss_by_torch_loops(emb: torch.Tensor, labels: list[int], margin: float) -> torch.Tensor:
    """Differentiable loop version: one triple at a time (for gradients)."""
    n, parts, _ = emb.shape
    per_part = []
    for part in range(parts):
        x = emb[:, part]
        terms = [F.relu(torch.dist(x[a], x[p]) - torch.dist(x[a], x[q]) + margin)
                 for a, p, q in itertools.product(range(n), repeat=3)
                 if labels[a] == labels[p] and labels[a] != labels[q]]
        stacked = torch.stack(terms)
        nonzero = int((stacked != 0).sum())
        per_part.append(stacked.sum() / (nonzero + 1e-9) if nonzero else stacked.sum() * 0)
    return torch.stack(per_part).mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_triplet_form_equals_the_dense_cube(seed):
    """P x K batches take the [p, n, K, n - K] form: same loss, loss_num, hard_loss and gradients
    as the masked [p, n, n, n] cube (the form used before) and as one triple at a time."""
    torch.manual_seed(seed)
    labels = torch.tensor([3, 1, 0, 1, 3, 0, 2, 2, 0, 1, 2, 3])  # P=4 x K=3, shuffled
    emb = (torch.randn(len(labels), 4, 6) * 0.4).requires_grad_()
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    dist = pairwise_distance(emb.permute(1, 0, 2), emb.permute(1, 0, 2))
    grouped = grouped_triplet_terms(dist, same, 3, margin=0.2)
    dense = dense_triplet_terms(dist, same, margin=0.2)
    assert grouped.shape == (4, 12 * 3 * 9) and dense.shape == (4, 12**3)
    valid = same.unsqueeze(2) & ~same.unsqueeze(1)
    assert torch.equal(grouped, dense.view(4, 12, 12, 12)[:, valid])  # the same terms, same order
    assert torch.equal((grouped != 0).sum(-1), (dense != 0).sum(-1))
    assert torch.equal(grouped.max(-1).values, dense.max(-1).values)
    torch.testing.assert_close(grouped.sum(-1), dense.sum(-1), rtol=1e-6, atol=1e-7)
    assert triplet_terms(dist, labels, 0.2).shape == grouped.shape  # the loss dispatches to it

    def loss_and_grad(terms_fn):
        e = emb.detach().clone().requires_grad_()
        d = pairwise_distance(e.permute(1, 0, 2), e.permute(1, 0, 2))
        t = terms_fn(d)
        num = (t != 0).sum(-1)
        loss = (t.sum(-1) / (num + 1e-9)).mean()
        loss.backward()
        return loss.detach(), num, e.grad

    l1, n1, g1 = loss_and_grad(lambda d: grouped_triplet_terms(d, same, 3, margin=0.2))
    l2, n2, g2 = loss_and_grad(lambda d: dense_triplet_terms(d, same, margin=0.2))
    assert torch.equal(n1, n2)
    torch.testing.assert_close(l1, l2, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-7)
    loss, info = TripletLoss(margin=0.2)(emb, labels)
    loss.backward()
    e = emb.detach().double().requires_grad_()
    ref = triplet_loss_by_torch_loops(e, labels.tolist(), 0.2)
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(emb.grad.double(), e.grad, rtol=1e-3, atol=1e-5)
    assert info["loss_num"].item() == pytest.approx(n2.double().mean().item())


def test_grouped_triplet_form_is_smaller():
    labels = torch.arange(8).repeat_interleave(4)  # P=8 x K=4, the real-data batch
    dist = torch.rand(16, 32, 32)
    assert triplet_terms(dist, labels, 0.2).numel() * 8 < 16 * 32**3
