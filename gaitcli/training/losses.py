"""The training losses of SPEC §7, vectorised over parts, anchors, positives and negatives.

Batch-all triplet loss per part: every (anchor, positive, negative) triple of the batch
contributes ``relu(d(a, p) - d(a, q) + margin)``; per part the sum is divided by the number of
non-zero terms (+1e-9), and the parts are averaged. ``loss_num`` (non-zero terms) is the signal to
watch: it falls toward 0 as the embedding separates identities, while the averaged loss itself
can stay flat ("my loss does not converge" is usually this).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
        same = labels.unsqueeze(0) == labels.unsqueeze(1)  # [n, n], anchor x other
        # terms[p, a, i, j] = d(a, i) - d(a, j) + margin for positive i and negative j of anchor a
        valid = (same.unsqueeze(2) & ~same.unsqueeze(1)).unsqueeze(0)  # [1, n, n, n]
        terms = F.relu(dist.unsqueeze(3) - dist.unsqueeze(2) + self.margin) * valid
        terms = terms.flatten(1)  # [p, n*n*n]
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
                 loss_term_weight: float = 1.0, log_accuracy: bool = False, log_prefix: str = "softmax") -> None:
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
        loss = F.cross_entropy(logits.reshape(n * p, k) * self.scale, target, label_smoothing=self.label_smoothing)
        info = {"loss": loss.detach()}
        if self.log_accuracy:
            info["accuracy"] = (logits.detach().argmax(-1) == labels.view(n, 1)).float().mean()
        return loss, info


LOSSES: dict[str, type[nn.Module]] = {"TripletLoss": TripletLoss, "CrossEntropyLoss": CrossEntropyLoss}


class LossAggregator(nn.Module):
    """All losses of ``loss_cfg``: total = sum of weight x loss; logged terms ``{prefix}/{name}``."""

    def __init__(self, loss_cfg: Sequence[Mapping[str, Any]], gather: Gather | None = None, world_size: int = 1) -> None:
        super().__init__()
        losses = []
        for item in loss_cfg:
            kwargs = {k: v for k, v in item.items() if k != "type"}
            if item["type"] == "TripletLoss":
                kwargs.update(gather=gather, world_size=world_size)
            losses.append(LOSSES[item["type"]](**kwargs))
        self.losses = nn.ModuleList(losses)

    def forward(self, outputs: Mapping[str, Tensor], labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        total: Tensor | None = None
        logged: dict[str, Tensor] = {}
        for loss_fn in self.losses:
            value, info = loss_fn(outputs[loss_fn.input_key], labels)
            weighted = value * loss_fn.loss_term_weight
            total = weighted if total is None else total + weighted
            for name, term in info.items():
                logged[f"{loss_fn.log_prefix}/{name}"] = term
        assert total is not None, "loss_cfg is empty"
        logged["total_loss"] = total.detach()
        return total, logged
