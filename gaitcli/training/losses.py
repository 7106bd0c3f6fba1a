"""The training losses (docs/train.md), vectorised over parts, anchors, positives and negatives.

Batch-all triplet loss per part: every (anchor, positive, negative) triple of the batch
contributes ``relu(d(a, p) - d(a, q) + margin)``; per part the sum is divided by the number of
non-zero terms (+1e-9), and the parts are averaged. When every anchor has the same number ``K`` of
positives (itself included), as in every P×K batch, the terms are built as ``[p, n, K, n - K]``
(positives × negatives per anchor); otherwise as the masked ``[p, n, n, n]`` cube. Both give the
same terms in the same order, so the same loss, ``loss_num`` and gradients. ``loss_num``
(non-zero terms) is the signal to watch: it falls toward 0 as the embedding separates
identities, while the averaged loss itself can stay flat ("my loss does not converge" is usually this).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaitcli.config_types import LossConfig, TripletLossConfig
from gaitcli.errors import ConfigError

Gather = Callable[[Tensor], Tensor]


def pairwise_distance(x: Tensor, y: Tensor) -> Tensor:
    """Euclidean distance per part: ``x`` [p, n, c], ``y`` [p, m, c] -> [p, n, m].

    Expanded form ``sqrt(relu(|x|^2 + |y|^2 - 2 x.y))`` as the reference computes it, in fp32.
    """
    x = x.float()
    y = y.float()
    x2 = (x * x).sum(-1, keepdim=True)
    y2 = (y * y).sum(-1).unsqueeze(1)
    inner = x @ y.transpose(1, 2)
    return torch.sqrt(F.relu(x2 + y2 - 2 * inner))


def triplet_terms(dist: Tensor, labels: Tensor, margin: float) -> Tensor:
    """``relu(d(a, i) - d(a, j) + margin)`` for every anchor ``a``, positive ``i`` (``a`` itself
    included) and negative ``j``, flattened per part in (a, i, j) order: ``[p, terms]``.

    With the same positive count ``K`` for every anchor (and at least one negative) this is
    :func:`grouped_triplet_terms`; otherwise :func:`dense_triplet_terms`.
    """
    same = labels.unsqueeze(0) == labels.unsqueeze(1)  # [n, n], anchor x other
    counts = same.sum(dim=1)
    n = same.shape[0]
    if n and bool((counts == counts[0]).all()) and int(counts[0]) < n:
        return grouped_triplet_terms(dist, same, int(counts[0]), margin=margin)
    return dense_triplet_terms(dist, same, margin=margin) if n else dist.new_zeros(dist.shape[0], 1)


def grouped_triplet_terms(dist: Tensor, same: Tensor, k: int, margin: float = 0.2) -> Tensor:
    """The ``[p, n, K, n - K]`` form (positives × negatives per anchor), flattened to
    ``[p, n * K * (n - K)]``: every anchor has exactly ``k`` positives in ``same`` [n, n]."""
    p, n = dist.shape[0], dist.shape[1]
    # column indices of each row's positives / negatives, ascending (nonzero is row-major)
    pos = same.nonzero()[:, 1].view(1, n, k).expand(p, n, k)
    neg = (~same).nonzero()[:, 1].view(1, n, n - k).expand(p, n, n - k)
    ap = dist.gather(2, pos)  # [p, n, K]
    an = dist.gather(2, neg)  # [p, n, n - K]
    return F.relu(ap.unsqueeze(3) - an.unsqueeze(2) + margin).flatten(1)


def dense_triplet_terms(dist: Tensor, same: Tensor, margin: float = 0.2) -> Tensor:
    """The masked ``[p, n, n, n]`` cube flattened to ``[p, n³]``: the invalid triples are zeros,
    which neither add to the sum nor count as non-zero terms (any group sizes)."""
    valid = (same.unsqueeze(2) & ~same.unsqueeze(1)).unsqueeze(0)  # [1, n, n, n]
    return (F.relu(dist.unsqueeze(3) - dist.unsqueeze(2) + margin) * valid).flatten(1)


class TripletLoss(nn.Module):
    """Batch-all triplet loss on ``embeddings`` [n, parts, channels]."""

    input_key = "embeddings"

    def __init__(self, margin: float = 0.2, loss_term_weight: float = 1.0, log_prefix: str = "triplet",
                 gather: Gather | None = None, world_size: int = 1) -> None:
        super().__init__()
        self.margin = float(margin)
        self.loss_term_weight = float(loss_term_weight)
        self.log_prefix = log_prefix
        self.gather = gather
        self.world_size = world_size

    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if self.gather is not None:
            # every rank sees the whole global batch; the local slice keeps its gradient
            embeddings = self.gather(embeddings)
            labels = self.gather(labels)
        feats = embeddings.float().permute(1, 0, 2)  # [p, n, c]
        dist = pairwise_distance(feats, feats)  # [p, n, n]
        terms = triplet_terms(dist, labels, self.margin)  # [p, terms]
        loss_sum = terms.sum(-1)
        loss_num = (terms != 0).sum(-1).to(loss_sum.dtype)
        loss_avg = torch.where(loss_num > 0, loss_sum / (loss_num + 1e-9), torch.zeros_like(loss_sum))
        loss = loss_avg.mean() * self.world_size
        info = {
            "loss": loss_avg.detach().mean(),
            "hard_loss": terms.detach().max(-1).values.mean(),
            "loss_num": loss_num.detach().mean(),
            "mean_dist": dist.detach().mean(),
        }
        return loss, info


class CrossEntropyLoss(nn.Module):
    """Cross-entropy on per-part ``logits`` [n, parts, classes] with the label repeated over parts."""

    input_key = "logits"

    def __init__(self, scale: float = 16.0, label_smooth: bool = True, eps: float = 0.1,
                 loss_term_weight: float = 1.0, log_accuracy: bool = False,
                 log_prefix: str = "softmax") -> None:
        super().__init__()
        self.scale = float(scale)
        self.label_smoothing = float(eps) if label_smooth else 0.0
        self.loss_term_weight = float(loss_term_weight)
        self.log_accuracy = log_accuracy
        self.log_prefix = log_prefix

    def forward(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        n, p, k = logits.shape
        logits = logits.float()
        target = labels.view(n, 1).expand(n, p).reshape(-1)
        loss = F.cross_entropy(logits.reshape(n * p, k) * self.scale, target,
                               label_smoothing=self.label_smoothing)
        info = {"loss": loss.detach()}
        if self.log_accuracy:
            info["accuracy"] = (logits.detach().argmax(-1) == labels.view(n, 1)).float().mean()
        return loss, info


LOSSES: dict[str, type[nn.Module]] = {"TripletLoss": TripletLoss, "CrossEntropyLoss": CrossEntropyLoss}


class LossAggregator(nn.Module):
    """All losses of ``loss_cfg``: total = sum of weight x loss; logged terms ``{prefix}/{name}``."""

    def __init__(self, loss_cfg: Sequence[LossConfig], gather: Gather | None = None,
                 world_size: int = 1) -> None:
        super().__init__()
        losses: list[nn.Module] = []
        for item in loss_cfg:
            if isinstance(item, TripletLossConfig):
                losses.append(TripletLoss(margin=item.margin, loss_term_weight=item.loss_term_weight,
                                          log_prefix=item.log_prefix, gather=gather, world_size=world_size))
            else:
                losses.append(CrossEntropyLoss(scale=item.scale, label_smooth=item.label_smooth, eps=item.eps,
                                               loss_term_weight=item.loss_term_weight,
                                               log_accuracy=item.log_accuracy, log_prefix=item.log_prefix))
        self.losses = nn.ModuleList(losses)

    def forward(self, outputs: Mapping[str, Tensor], labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        total: Tensor | None = None
        logged: dict[str, Tensor] = {}
        for loss_fn in self.losses:
            key = str(loss_fn.input_key)
            if key not in outputs:  # GaitSet / GaitPart: embeddings only, no classifier
                raise ConfigError(
                    f"loss_cfg: {type(loss_fn).__name__} needs the model's {key}, but the model gives only "
                    f"{', '.join(sorted(outputs))} (it has no classifier); remove that loss from loss_cfg"
                )
            value, info = loss_fn(outputs[key], labels)
            weighted = value * loss_fn.loss_term_weight
            total = weighted if total is None else total + weighted
            for name, term in info.items():
                logged[f"{loss_fn.log_prefix}/{name}"] = term
        assert total is not None, "loss_cfg is empty"
        logged["total_loss"] = total.detach()
        return total, logged
