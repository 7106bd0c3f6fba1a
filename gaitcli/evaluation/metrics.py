"""Distances between gait embeddings, rank-k hits and average precision (SPEC §10).

An embedding is ``[parts, channels]``. The distance between two sequences is computed for each
part separately and averaged over the parts:

* ``euc``: mean over parts of the Euclidean distance ``sqrt(max(|x|² + |y|² - 2 x·y, 0))``;
* ``cos``: ``1 - mean over parts of the cosine similarity`` (each part L2-normalised).

Everything is computed as matrix products over tiles of the probe × gallery matrix: per tile one
batched product over the parts into a ``[parts, rows, cols]`` buffer of a few million floats, then
``sqrt`` and the mean over parts. A ``[n, m, parts]`` array is never built, so an OU-MVLP-sized
set (133,780 sequences × 64 parts × 128 channels) needs the features (4.4 GB) plus a few hundred
MB.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

METRICS = ("euc", "cos")
_COS_EPS = 1e-12  # the eps of torch.nn.functional.normalize


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        from gaitcli.errors import ConfigError

        raise ConfigError(f"unknown metric {metric!r}: use euc (per-part Euclidean) or cos")
    return metric


def as_features(x: Any, device: torch.device | str | None = None) -> torch.Tensor:
    """``x`` as a float32 tensor ``[n, parts, channels]`` on ``device`` (no copy when it already is)."""
    t = torch.from_numpy(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if t.dim() == 2:
        t = t.unsqueeze(1)
    if t.dim() != 3:
        raise ValueError(f"embeddings must be [n, parts, channels], got shape {list(t.shape)}")
    if device is not None:
        t = t.to(device)
    return t.float()


def part_norms(x: torch.Tensor, metric: str = "euc") -> torch.Tensor:
    """Per-part helper ``[n, parts]``: squared norms (``euc``) or inverse norms (``cos``)."""
    sq = torch.einsum("npc,npc->np", x, x)
    if metric == "cos":
        return sq.sqrt_().clamp_(min=_COS_EPS).reciprocal_()
    return sq


def default_tile(device: torch.device, parts: int, n: int, m: int) -> tuple[int, int]:
    """Rows × columns of one tile, so that the ``[parts, rows, cols]`` block holds about 4 M
    floats on a CPU (16 MB: few, large operations) and 64 M on a GPU; a short side gives its
    share to the other."""
    budget = (1 << 26) if device.type == "cuda" else (1 << 22)
    per_part = max(1, budget // max(parts, 1))
    side = max(8, math.isqrt(per_part))
    rows, cols = side, side
    if m < cols:
        rows = max(rows, per_part // max(m, 1))
    if n < rows:
        cols = max(cols, per_part // max(n, 1))
    return max(1, min(rows, n)), max(1, min(cols, m))


def distance_block(
    x: torch.Tensor,
    y: torch.Tensor,
    metric: str = "euc",
    *,
    x_norms: torch.Tensor | None = None,
    y_norms: torch.Tensor | None = None,
    tile: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Distances ``[n, m]`` (float32) between ``x`` ``[n, parts, channels]`` and ``y`` ``[m, parts,
    channels]``, both on the same device. ``x_norms`` / ``y_norms`` may pass precomputed
    :func:`part_norms`.

    Each tile is one batched matrix product over the parts (``[parts, rows, cols]``), then
    ``sqrt`` and the sum over parts as whole-tile operations: a handful of large operations per
    tile rather than several per part. That matters on a busy machine, where every parallel
    operation waits for the slowest thread.
    """
    check_metric(metric)
    if x.dim() != 3 or y.dim() != 3 or x.shape[1:] != y.shape[1:]:
        raise ValueError(f"embeddings must agree on [parts, channels]: {list(x.shape)} vs {list(y.shape)}")
    n, parts, _ = x.shape
    m = y.shape[0]
    out = torch.empty(n, m, dtype=torch.float32, device=x.device)
    if n == 0 or m == 0:
        return out
    x = x.float()
    y = y.float()
    xn = (part_norms(x, metric) if x_norms is None else x_norms).t()  # [parts, n]
    yn = (part_norms(y, metric) if y_norms is None else y_norms).t()  # [parts, m]
    xp = x.transpose(0, 1)  # [parts, n, channels], a view
    yp = y.transpose(0, 1)
    rows, cols = tile or default_tile(x.device, parts, n, m)
    rows, cols = max(1, min(rows, n)), max(1, min(cols, m))
    buf = torch.empty(parts * rows * cols, dtype=torch.float32, device=x.device)
    for i0 in range(0, n, rows):
        i1 = min(n, i0 + rows)
        for j0 in range(0, m, cols):
            j1 = min(m, j0 + cols)
            g = buf[: parts * (i1 - i0) * (j1 - j0)].view(parts, i1 - i0, j1 - j0)
            if metric == "euc":
                # |x|^2 + |y|^2 - 2 x.y, per part, clamped at 0 against rounding
                torch.baddbmm(yn[:, None, j0:j1], xp[:, i0:i1], yp[:, j0:j1].transpose(1, 2), alpha=-2.0, out=g)
                g.add_(xn[:, i0:i1, None]).clamp_(min=0.0).sqrt_()
                out[i0:i1, j0:j1] = g.sum(dim=0).div_(parts)
            else:
                torch.bmm(xp[:, i0:i1], yp[:, j0:j1].transpose(1, 2), out=g)
                g.mul_(xn[:, i0:i1, None]).mul_(yn[:, None, j0:j1])
                out[i0:i1, j0:j1] = g.sum(dim=0).div_(-parts).add_(1.0)
    return out


def pairwise_distances(x: Any, y: Any, metric: str = "euc", *, device: torch.device | str | None = None,
                       chunk: int = 4096) -> np.ndarray:
    """The full distance matrix ``[n, m]`` as numpy float32 (for small sets and tests; the
    protocols work on blocks instead)."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    xt = as_features(x, dev)
    yt = as_features(y, dev)
    yn = part_norms(yt, metric)
    out = np.empty((xt.shape[0], yt.shape[0]), dtype=np.float32)
    for s in range(0, xt.shape[0], chunk):
        out[s : s + chunk] = distance_block(xt[s : s + chunk], yt, metric, y_norms=yn).cpu().numpy()
    return out


def topk_hits(dist: torch.Tensor, probe_labels: torch.Tensor, gallery_labels: torch.Tensor,
              ks: Sequence[int] = (1, 5)) -> dict[int, torch.Tensor]:
    """For each ``k``: whether a gallery item with the probe's label is among its ``k`` nearest
    (``k`` larger than the gallery means the whole gallery). Bool tensors ``[n]``."""
    n, m = dist.shape
    if m == 0:
        return {k: torch.zeros(n, dtype=torch.bool, device=dist.device) for k in ks}
    kmax = min(max(ks), m)
    if kmax == 1:
        nearest = dist.argmin(dim=1, keepdim=True)
    else:
        nearest = torch.topk(dist, kmax, dim=1, largest=False, sorted=True).indices
    same = gallery_labels[nearest] == probe_labels.unsqueeze(1)
    return {k: same[:, : min(k, m)].any(dim=1) for k in ks}


def ranked_matches(dist: torch.Tensor, probe_labels: torch.Tensor, gallery_labels: torch.Tensor,
                   excluded: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by distance; returns ``(matches, valid)``: ``matches [n, m]`` bool in rank
    order (an excluded gallery item is never a match and sorts last) and ``valid [n]``, whether
    any gallery item is left for the row."""
    same = gallery_labels.unsqueeze(0) == probe_labels.unsqueeze(1)
    if excluded is not None:
        dist = dist.masked_fill(excluded, float("inf"))
        same = same & ~excluded
        valid = (~excluded).any(dim=1)
    else:
        valid = torch.ones(dist.shape[0], dtype=torch.bool, device=dist.device)
    order = torch.sort(dist, dim=1, stable=True).indices
    return same.gather(1, order), valid


def average_precision(matches: torch.Tensor) -> np.ndarray:
    """AP per row of rank-ordered ``matches`` (float64; NaN for a row without any match): the
    mean over the relevant items of the precision at their rank."""
    if matches.shape[1] == 0:
        return np.full(matches.shape[0], np.nan)
    hits = matches.to(torch.float64)
    cum = hits.cumsum(dim=1)
    ranks = torch.arange(1, matches.shape[1] + 1, dtype=torch.float64, device=matches.device)
    relevant = hits.sum(dim=1)
    ap = (cum / ranks * hits).sum(dim=1) / relevant.clamp(min=1)
    ap = ap.cpu().numpy()
    ap[relevant.cpu().numpy() == 0] = np.nan
    return ap


def rank_k_accuracy(dist: Any, probe_labels: Any, gallery_labels: Any, k: int = 1) -> float:
    """Share (in %) of probes with a correct match among their ``k`` nearest gallery items."""
    d = torch.as_tensor(np.asarray(dist))
    codes, (pl, gl) = encode_labels(probe_labels, gallery_labels)
    del codes
    hit = topk_hits(d, torch.from_numpy(pl), torch.from_numpy(gl), (k,))[k]
    return float(hit.double().mean() * 100) if len(hit) else float("nan")


def mean_average_precision(dist: Any, probe_labels: Any, gallery_labels: Any) -> float:
    """mAP (in %) over the probes with at least one relevant gallery item."""
    d = torch.as_tensor(np.asarray(dist))
    _, (pl, gl) = encode_labels(probe_labels, gallery_labels)
    matches, _ = ranked_matches(d, torch.from_numpy(pl), torch.from_numpy(gl))
    ap = average_precision(matches)
    ap = ap[~np.isnan(ap)]
    return float(np.mean(ap) * 100) if ap.size else float("nan")


def encode_labels(*arrays: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    """Map string (or any) labels of several arrays onto shared int64 codes."""
    flat = [np.asarray(a).astype(str) for a in arrays]
    uniq, inverse = np.unique(np.concatenate(flat) if flat else np.array([], dtype=str), return_inverse=True)
    out, start = [], 0
    for a in flat:
        out.append(inverse[start : start + len(a)].astype(np.int64))
        start += len(a)
    return uniq, out
