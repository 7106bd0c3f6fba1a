"""Distances between gait embeddings, rank-k hits and average precision (docs/eval.md).

An embedding is ``[parts, channels]``. The distance between two sequences is computed for each
part separately and averaged over the parts:

* ``euc``: mean over parts of the Euclidean distance ``sqrt(max(|x|² + |y|² - 2 x·y, 0))``;
* ``cos``: ``1 - mean over parts of the cosine similarity`` (each part L2-normalised).

Everything is computed as matrix products over tiles of the probe × gallery matrix: per tile one
batched product over the parts into a ``[parts, rows, cols]`` buffer of a few million floats, then
``sqrt`` and the mean over parts. A ``[n, m, parts]`` array is never built, so an OU-MVLP-sized
set (133,780 sequences × 64 parts × 128 channels) needs the features (4.4 GB) plus a few hundred
MB. :func:`nearest_neighbours` goes one step further for rank-k: it keeps only the ``k`` nearest
per probe while it walks the tiles, so not even one probe chunk × gallery block is built.

Ties: the nearest items are ordered by distance, then by gallery index (the first of two equally
distant items ranks first), in every function here, so rank-k never depends on a sort's whims.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

METRICS = ("euc", "cos")
_COS_EPS = 1e-12  # the eps of torch.nn.functional.normalize


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        from gaitcli.errors import ConfigError

        raise ConfigError(f"unknown metric {metric!r}: use euc (per-part Euclidean) or cos")
    return metric


def as_features(x: torch.Tensor | npt.ArrayLike, device: torch.device | str | None = None) -> torch.Tensor:
    """``x`` as a float32 tensor ``[n, parts, channels]`` on ``device`` (no copy when it already is)."""
    t = torch.from_numpy(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if t.dim() == 2:
        t = t.unsqueeze(1)
    if t.dim() != 3:
        raise ValueError(f"embeddings must be [n, parts, channels], got shape {list(t.shape)}")
    if device is not None:
        t = t.to(device)
    return t.float()


def check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    """Two embedding sets ``[n, parts, channels]`` that can be compared (else ``ValueError``)."""
    if x.dim() != 3 or y.dim() != 3 or x.shape[1:] != y.shape[1:]:
        raise ValueError(f"embeddings must agree on [parts, channels]: {list(x.shape)} vs {list(y.shape)}")


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
    group: int | None = None,
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
    check_pair(x, y)
    n, parts, _ = x.shape
    m = y.shape[0]
    out = torch.empty(n, m, dtype=torch.float32, device=x.device)
    if n == 0 or m == 0:
        return out
    x = x.float()
    y = y.float()
    kernel = _TileKernel(x, y, metric, x_norms, y_norms, group)
    rows, cols = tile or default_tile(x.device, parts, n, m)
    for i0, i1, j0, j1 in _tiles(n, m, rows, cols):
        kernel.distances(i0, i1, j0, j1, out=out[i0:i1, j0:j1])
    return out


def _tiles(n: int, m: int, rows: int, cols: int) -> Iterator[tuple[int, int, int, int]]:
    """Row-major walk over ``[n, m]`` in ``rows`` × ``cols`` tiles: ``(i0, i1, j0, j1)``."""
    rows, cols = max(1, min(rows, n)), max(1, min(cols, m))
    for i0 in range(0, n, rows):
        for j0 in range(0, m, cols):
            yield i0, min(n, i0 + rows), j0, min(m, j0 + cols)


class _TileKernel:
    """Distances of one tile of ``x`` × ``y`` with one reused ``[group, rows, cols]`` buffer:
    ``group`` parts at a time (all of them by default), so that a tuned group keeps the buffer
    in the CPU's cache (:mod:`~.tiles`)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, metric: str, x_norms: torch.Tensor | None,
                 y_norms: torch.Tensor | None, group: int | None = None) -> None:
        self.metric = metric
        self.parts = x.shape[1]
        self.group = max(1, min(group or self.parts, self.parts))
        self.xn = (part_norms(x, metric) if x_norms is None else x_norms).t()  # [parts, n]
        self.yn = (part_norms(y, metric) if y_norms is None else y_norms).t()  # [parts, m]
        self.xp = x.transpose(0, 1)  # [parts, n, channels], a view
        self.yp = y.transpose(0, 1)
        self.buf = torch.empty(0, dtype=torch.float32, device=x.device)

    def distances(self, i0: int, i1: int, j0: int, j1: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """``[i1 - i0, j1 - j0]`` float32: per group of parts one batched product, then ``sqrt``
        (or the cosine scaling) and the sum over the group's parts as whole-group, in-place
        operations; the groups' sums added in part order, then the mean."""
        rows, cols = i1 - i0, j1 - j0
        if out is None:
            out = torch.empty(rows, cols, dtype=torch.float32, device=self.buf.device)
        size = min(self.group, self.parts) * rows * cols
        if self.buf.numel() < size:
            self.buf = torch.empty(size, dtype=torch.float32, device=self.buf.device)
        for p0 in range(0, self.parts, self.group):
            p1 = min(self.parts, p0 + self.group)
            g = self.buf[: (p1 - p0) * rows * cols].view(p1 - p0, rows, cols)
            xs, ys = self.xp[p0:p1, i0:i1], self.yp[p0:p1, j0:j1].transpose(1, 2)
            if self.metric == "euc":
                # |x|^2 + |y|^2 - 2 x.y, per part, clamped at 0 against rounding
                torch.baddbmm(self.yn[p0:p1, None, j0:j1], xs, ys, alpha=-2.0, out=g)
                g.add_(self.xn[p0:p1, i0:i1, None]).clamp_(min=0.0).sqrt_()
            else:
                torch.bmm(xs, ys, out=g)
                g.mul_(self.xn[p0:p1, i0:i1, None]).mul_(self.yn[p0:p1, None, j0:j1])
            if p0 == 0:
                torch.sum(g, dim=0, out=out)
            else:
                out.add_(g.sum(dim=0))
        if self.metric == "euc":
            return out.div_(self.parts)
        return out.div_(-self.parts).add_(1.0)


@dataclass
class Nearest:
    """The ``k`` nearest gallery items of each probe, nearest first; equally distant items in
    gallery order."""

    distances: torch.Tensor
    """``[n, k]`` float32 distances (``k`` at most the gallery size)."""
    indices: torch.Tensor
    """``[n, k]`` int64 gallery row indices."""

    def to_json(self) -> dict[str, list[list[float]] | list[list[int]]]:
        return {"distances": self.distances.cpu().tolist(), "indices": self.indices.cpu().tolist()}


_LOW32 = 0xFFFFFFFF
_FLIP = 0x7FFFFFFF


def _keys(values: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """int64 keys that sort like ``(value, col)`` (elementwise; ``cols`` broadcasts)."""
    bits = (values.float() + 0.0).contiguous().view(torch.int32)  # + 0.0 turns -0.0 into +0.0
    mono = torch.where(bits < 0, bits ^ _FLIP, bits).to(torch.int64)
    return (mono << 32) | cols


def order_keys(dist: torch.Tensor, col0: int = 0) -> torch.Tensor:
    """int64 keys ``[n, m]`` that sort like ``(distance, column)``: the float32 bits made
    monotonic in the high half, the column ``col0 + j`` in the low half (unique, so ``topk``
    on them is exact and deterministic)."""
    return _keys(dist, torch.arange(col0, col0 + dist.shape[1], dtype=torch.int64, device=dist.device))


def decode_keys(keys: torch.Tensor) -> Nearest:
    """The distances and columns of :func:`order_keys` keys."""
    mono = (keys >> 32).to(torch.int32)
    bits = torch.where(mono < 0, mono ^ _FLIP, mono)
    return Nearest(distances=bits.view(torch.float32), indices=keys & _LOW32)


_NO_KEY = torch.iinfo(torch.int64).max  # an empty slot of a running top list


def _merge_tile(best: torch.Tensor, worst: torch.Tensor, d: torch.Tensor, j0: int) -> torch.Tensor:
    """Merge tile ``d`` ``[r, c]`` (columns from ``j0``) into the running top lists ``best``
    ``[r, k]`` (sorted keys), whose ``k``-th distances are ``worst`` ``[r]`` (``inf`` while a
    list is not full). Only the entries that can still enter a list (``d <= worst``: after the
    first tiles a handful per row) are keyed and merged, so a tile costs one comparison pass."""
    rows, cols = (~(d > worst.unsqueeze(1))).nonzero(as_tuple=True)  # NaN stays a candidate
    if rows.numel() == 0:
        return best
    counts = torch.bincount(rows, minlength=d.shape[0])
    slot = torch.arange(rows.numel(), device=d.device) - (counts.cumsum(0) - counts)[rows]
    pad = torch.full((d.shape[0], int(counts.max())), _NO_KEY, dtype=torch.int64, device=d.device)
    pad[rows, slot] = _keys(d[rows, cols], cols + j0)
    merged = torch.cat([best, pad], dim=1)
    return torch.topk(merged, best.shape[1], dim=1, largest=False, sorted=True).values


def _admission_bound(best: torch.Tensor, d: torch.Tensor, first: bool) -> torch.Tensor:
    """``[r]``: the largest distance of tile ``d`` that can still enter each running list: its
    ``k``-th distance, or while the lists are still empty (a row block's first tile) the tile's
    own ``k``-th smallest value (``first``), so that a first tile keys a handful of entries per row instead
    of all of them (NaN compares as unknown and stays a candidate)."""
    last = best[:, -1]
    worst = decode_keys(last).distances.masked_fill(last == _NO_KEY, float("inf"))
    k = best.shape[1]
    if first and k <= d.shape[1]:
        worst = torch.minimum(worst, torch.topk(d, k, dim=1, largest=False, sorted=False).values.amax(dim=1))
    return worst


def nearest_neighbours(x: torch.Tensor, y: torch.Tensor, k: int, metric: str = "euc", *,
                       x_norms: torch.Tensor | None = None, y_norms: torch.Tensor | None = None,
                       tile: tuple[int, int] | None = None, group: int | None = None) -> Nearest:
    """The ``k`` nearest rows of ``y`` for every row of ``x`` (both ``[n, parts, channels]``),
    fused with the distance tiles: per tile only a running ``[rows, k]`` top list survives, so
    memory is the features plus one tile whatever ``n`` × ``m``. Same distances as
    :func:`distance_block`."""
    check_metric(metric)
    check_pair(x, y)
    n, parts, _ = x.shape
    m = y.shape[0]
    k = max(0, min(k, m))
    keys = torch.empty(n, k, dtype=torch.int64, device=x.device)
    if n == 0 or k == 0:
        return decode_keys(keys)
    kernel = _TileKernel(x.float(), y.float(), metric, x_norms, y_norms, group)
    rows, cols = tile or default_tile(x.device, parts, n, m)
    best = keys[:0]
    for i0, i1, j0, j1 in _tiles(n, m, rows, cols):
        if j0 == 0:
            best = torch.full((i1 - i0, k), _NO_KEY, dtype=torch.int64, device=x.device)
        d = kernel.distances(i0, i1, j0, j1)
        best = _merge_tile(best, _admission_bound(best, d, j0 == 0), d, j0)
        if j1 == m:
            keys[i0:i1] = best
    return decode_keys(keys)


def blockwise_topk_hits(x: torch.Tensor, y: torch.Tensor, probe_labels: torch.Tensor,
                        gallery_labels: torch.Tensor, ks: Sequence[int] = (1, 5), metric: str = "euc", *,
                        x_norms: torch.Tensor | None = None, y_norms: torch.Tensor | None = None,
                        tile: tuple[int, int] | None = None, group: int | None = None
                        ) -> dict[int, torch.Tensor]:
    """:func:`topk_hits` of the distances of ``x`` × ``y``, computed with
    :func:`nearest_neighbours` (no distance matrix is built): the same hits."""
    if y.shape[0] == 0:
        return {k: torch.zeros(x.shape[0], dtype=torch.bool, device=x.device) for k in ks}
    nearest = nearest_neighbours(x, y, max(ks), metric, x_norms=x_norms, y_norms=y_norms, tile=tile,
                                 group=group)
    same = gallery_labels[nearest.indices] == probe_labels.unsqueeze(1)
    return {k: same[:, : min(k, y.shape[0])].any(dim=1) for k in ks}


def pairwise_distances(
    x: torch.Tensor | npt.ArrayLike,
    y: torch.Tensor | npt.ArrayLike,
    metric: str = "euc",
    *,
    device: torch.device | str | None = None,
    chunk: int = 4096,
) -> np.ndarray:
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
    (``k`` larger than the gallery means the whole gallery; of equally distant items the first in
    gallery order ranks first). Bool tensors ``[n]``."""
    n, m = dist.shape
    if m == 0:
        return {k: torch.zeros(n, dtype=torch.bool, device=dist.device) for k in ks}
    kmax = min(max(ks), m)
    if kmax == 1:
        nearest = dist.argmin(dim=1, keepdim=True)  # the first of equal minima
    else:  # ties in gallery order, as argmin
        nearest = torch.topk(order_keys(dist), kmax, dim=1, largest=False, sorted=True).values & _LOW32
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
    ap_t = (cum / ranks * hits).sum(dim=1) / relevant.clamp(min=1)
    ap: np.ndarray = ap_t.cpu().numpy()
    ap[relevant.cpu().numpy() == 0] = np.nan
    return ap


@dataclass
class RankScores:
    """Per probe, what its whole ranking of a gallery gives (nearest first, equally distant items
    in gallery order): the retrieval scores of the gait3d and ccpg protocols."""

    first: np.ndarray
    """int64 ``[n]``: the 0-based rank of the first relevant gallery item (-1: none), so rank-k
    is ``0 <= first < k``."""
    ap: np.ndarray
    """float64 ``[n]``: average precision (NaN: no relevant item)."""
    inp: np.ndarray
    """float64 ``[n]``: inverse negative penalty, relevant items / rank of the last one (NaN: no
    relevant item)."""

    @property
    def valid(self) -> np.ndarray:
        """Probes with at least one relevant gallery item."""
        return self.first >= 0


def rank_scores(x: torch.Tensor, y: torch.Tensor, probe_labels: torch.Tensor, gallery_labels: torch.Tensor,
                metric: str = "euc", *, probe_groups: torch.Tensor | None = None,
                gallery_groups: torch.Tensor | None = None, budget: int = 256 << 20) -> RankScores:
    """:class:`RankScores` of every row of ``x`` against ``y`` (both ``[n, parts, channels]``).
    With ``probe_groups`` / ``gallery_groups`` (e.g. view codes), the gallery items of the
    probe's label *and* group leave its ranking (OpenGait's ``evaluate_many``: same id at the same
    camera). Whole probe blocks at a time: distances, one stable sort per row, then the scores as
    tensor operations, blocks bounded to about ``budget`` bytes."""
    n, m = x.shape[0], y.shape[0]
    out = RankScores(np.full(n, -1, dtype=np.int64), np.full(n, np.nan), np.full(n, np.nan))
    if n == 0 or m == 0:
        return out
    y_norms = part_norms(y.float(), metric)
    rows = max(1, min(n, budget // (m * 24)))
    for c0 in range(0, n, rows):
        c1 = min(n, c0 + rows)
        d = distance_block(x[c0:c1], y, metric, y_norms=y_norms)
        pl = probe_labels[c0:c1]
        excluded = None
        if probe_groups is not None and gallery_groups is not None:
            excluded = (gallery_labels.unsqueeze(0) == pl.unsqueeze(1)) & (
                gallery_groups.unsqueeze(0) == probe_groups[c0:c1].unsqueeze(1)
            )
        matches, _ = ranked_matches(d, pl, gallery_labels, excluded)
        del d, excluded
        hits = matches.to(torch.uint8)
        relevant = hits.sum(dim=1)
        has = relevant > 0
        first = torch.where(has, hits.argmax(dim=1), -1)
        last = m - 1 - hits.flip(1).argmax(dim=1)
        out.first[c0:c1] = first.cpu().numpy()
        out.ap[c0:c1] = average_precision(matches)
        inp = relevant.to(torch.float64) / (last + 1).to(torch.float64)
        out.inp[c0:c1] = torch.where(has, inp, torch.nan).cpu().numpy()
    return out


def rank_k_accuracy(
    dist: npt.ArrayLike, probe_labels: npt.ArrayLike, gallery_labels: npt.ArrayLike, k: int = 1
) -> float:
    """Share (in %) of probes with a correct match among their ``k`` nearest gallery items."""
    d = torch.as_tensor(np.asarray(dist))
    codes, (pl, gl) = encode_labels(probe_labels, gallery_labels)
    del codes
    hit = topk_hits(d, torch.from_numpy(pl), torch.from_numpy(gl), (k,))[k]
    return float(hit.double().mean() * 100) if len(hit) else float("nan")


def mean_average_precision(
    dist: npt.ArrayLike, probe_labels: npt.ArrayLike, gallery_labels: npt.ArrayLike
) -> float:
    """mAP (in %) over the probes with at least one relevant gallery item."""
    d = torch.as_tensor(np.asarray(dist))
    _, (pl, gl) = encode_labels(probe_labels, gallery_labels)
    matches, _ = ranked_matches(d, torch.from_numpy(pl), torch.from_numpy(gl))
    ap = average_precision(matches)
    ap = ap[~np.isnan(ap)]
    return float(np.mean(ap) * 100) if ap.size else float("nan")


def encode_labels(*arrays: npt.ArrayLike) -> tuple[np.ndarray, list[np.ndarray]]:
    """Map string (or any) labels of several arrays onto shared int64 codes."""
    flat = [np.asarray(a).astype(str) for a in arrays]
    uniq, inverse = np.unique(np.concatenate(flat) if flat else np.array([], dtype=str), return_inverse=True)
    out, start = [], 0
    for a in flat:
        out.append(inverse[start : start + len(a)].astype(np.int64))
        start += len(a)
    return uniq, out
