"""Nearest neighbours by a bf16 first pass, a certified shortlist and an fp32 re-rank.

:func:`shortlist_neighbours` has the contract of :func:`~.metrics.nearest_neighbours`: the ``k``
nearest gallery rows of every probe, nearest first, equally distant rows in gallery order.

1. **bf16 pass.** Per tile one batched bf16 product over the parts gives approximate distances
   ``a`` and, per pair, a proven bound ``B`` with ``|a - d| <= B`` for the distance ``d`` that
   the fp32 path computes (whatever order its fp32 sums take), see :func:`bf16_distances`
   (``euc``: both sides centred on the gallery mean first, which leaves the distance unchanged
   and shrinks the bf16 error, proportional to the norms).
2. **Shortlist.** ``U`` = the ``k``-th smallest ``a + B`` of the probe; every row of the fp32
   path's top ``k`` has ``d <= U`` (the ``k``-th smallest ``d`` is at most the ``k``-th smallest
   upper bound), so the shortlist ``{j : a_j - B_j <= U}`` holds all of them.
3. **fp32 re-rank** of the shortlist only, per part with the fp32 path's formula, and a bound
   ``δ`` between two fp32 evaluations of one distance in different summation orders. The fp32
   kernels of torch are not bit-reproducible across tile shapes (a gathered row can differ from
   the same pair inside a full tile in the last bit), so the ranking is accepted only where it is
   *certain*: for every rank ``t <= k`` the interval ``[d_t - δ_t, d_t + δ_t]`` lies strictly
   below the intervals of every later shortlisted row. Then the fp32 path ranks exactly the same
   rows in the same order, and its distances are within ``δ`` of the returned ones.
4. **Fallback.** A probe whose shortlist is longer than ``limit``, whose ranking is not certain
   (exact or near ties, duplicates) or whose distances are not finite is answered by the fp32
   path itself, run on the same probe block with the same tiles as a whole-set call would use.

Rounding model: ``u = 2^-8`` per conversion to bf16 (and for the bf16 result of a bf16 matrix
product), ``u32 = 2^-24`` per fp32 operation, any fp32 summation of ``n`` terms within
``γ_n = n·u32 / (1 - n·u32)`` of the sum of absolute values, fp32 accumulation inside the bf16
product, fp32 products truly in fp32 (``torch.get_float32_matmul_precision() == "highest"``;
otherwise every probe takes the fp32 path), no subnormal feature values (bf16 hardware may
flush them). Not wired into eval; nothing here changes the fp32 path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .metrics import Nearest, check_metric, check_pair, default_tile, nearest_neighbours, part_norms

U_BF16 = 2.0**-8
U_FP32 = 2.0**-24
_SAFETY = 1.0 + 2.0**-10  # covers the few fp32 roundings of the bound's own arithmetic


def gamma(n: int) -> float:
    """``γ_n``: the relative error bound of an fp32 sum of ``n`` terms (Higham)."""
    return n * U_FP32 / (1.0 - n * U_FP32)


def bf16_dot_error(channels: int) -> float:
    """``β``: ``|bf16 dot - x·y| <= β Σ|x_k y_k|`` for a bf16 product of ``channels`` terms:
    both inputs rounded to bf16 (``(1+u)^2``), exact products, fp32 accumulation
    (``1 + γ_c``), the result rounded to bf16 (``1 + u``)."""
    return (1.0 + U_BF16) ** 3 * (1.0 + gamma(channels)) - 1.0


def _cos_bound(beta: float, channels: int, parts: int) -> float:
    """Cosine distances: per part ``|t - t'| <= ((β + γ_c) + 4 u32 (1+β)) ρ²`` with
    ``ρ = max |x|·inv|x| <= 1 + γ_c`` (both paths multiply by the same inverse norms), then the
    two sums over parts, the division and the ``1 -`` on values of at most ``(1+β) ρ²``."""
    rho2 = (1.0 + gamma(channels)) ** 2
    per_part = (beta + gamma(channels) + 4 * U_FP32 * (1.0 + beta)) * rho2
    return (per_part + 2 * gamma(parts + 2) * (1.0 + beta) * rho2 + 8 * U_FP32) * _SAFETY


def _euc_bound(d_parts: torch.Tensor, e: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over ``dim`` (the parts) of the per-part distances ``d_parts`` and its
    bound, given per part a bound ``e`` on the difference of the two squared distances (see
    :func:`_square_error`): ``max(·, 0)`` is 1-Lipschitz and ``|√a - √b| <= min(√E, E/√a)``;
    each ``sqrt`` adds ``u32`` of its value; the mean over parts adds ``γ_{P+1}`` of the
    (bounded) sums on either side."""
    parts = d_parts.shape[dim]
    b = torch.fmin(e.sqrt(), e / d_parts)  # fmin: 0/0 = NaN gives way to sqrt(E) = 0
    b = b.mul_(1.0 + 2 * U_FP32).add_(d_parts, alpha=2 * U_FP32)
    dm = d_parts.sum(dim) / parts
    bm = b.sum(dim) / parts
    return dm, (bm + 2 * gamma(parts + 1) * (dm + bm)) * _SAFETY


def _square_error(rx: torch.Tensor, ry: torch.Tensor, beta: float, channels: int,
                  raw: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Per part, a bound ``E`` on ``|S_a - S_f|``: ``S_a`` the squared distance evaluated from
    ``x``, ``y`` (root norms ``rx``, ``ry``: ``sqrt(fp32 |x|²)(1+γ_c) >= |x|``) with a dot product
    of error ``β Σ|x_k y_k|``, ``S_f`` the fp32 path's on the raw features (root norms ``raw``;
    ``None``: the same features). With ``X = |x|²``, ``A = Σ|x_k y_k| <= |x||y|``, an evaluation
    of ``X + Y - 2x·y`` (norms and product summed in fp32, three fp32 operations) is within
    ``2βA + γ_{c+3}(1+β)(X+Y+2A)`` of the real value, so without centring
    ``E = 2β rx ry + 2γ(1+β)(rx+ry)²`` (``γ = γ_{c+8}``). Centred features ``fl(x - μ)`` move each
    point by at most ``u32 |x - μ|`` and the distance is translation invariant, which changes the
    squared distance by at most ``3 u32 (rx+ry)²``; the fp32 path's own error then counts with the
    raw norms: ``E = 2β rx ry + (γ(1+β) + 3u32)(rx+ry)² + γ(rx'+ry')²``."""
    g = gamma(channels + 8)
    if raw is None:
        return (2 * beta) * rx * ry + (2 * g * (1.0 + beta)) * (rx + ry) ** 2
    return ((2 * beta) * rx * ry + (g * (1.0 + beta) + 3 * U_FP32) * (rx + ry) ** 2
            + g * (raw[0] + raw[1]) ** 2)


def _root_norms(norms: torch.Tensor, channels: int) -> torch.Tensor:
    return norms.sqrt() * (1.0 + gamma(channels))


@dataclass(frozen=True)
class _Operand:
    """One side of the bf16 pass, prepared once: part-major so that a tile is a slice."""

    h: torch.Tensor
    """bf16 ``[parts, n, c]`` (centred for ``euc`` when a centre is given), contiguous."""
    norms: torch.Tensor
    """fp32 ``[parts, n]``: :func:`~.metrics.part_norms` of what ``h`` was rounded from."""
    root: torch.Tensor | None
    """``euc``: ``[parts, n]`` root norms ``sqrt(norms)(1+γ_c)`` (at least the true norms)."""
    raw_root: torch.Tensor | None
    """``euc`` with a centre: the root norms of the uncentred features."""


def _operand(xf: torch.Tensor, norms: torch.Tensor, metric: str, centre: torch.Tensor | None) -> _Operand:
    channels = xf.shape[2]
    if metric == "cos":
        h = xf.transpose(0, 1).to(torch.bfloat16).contiguous()
        return _Operand(h, norms.t().contiguous(), None, None)
    raw_root = None
    if centre is not None:
        raw_root = _root_norms(norms, channels).t().contiguous()
        xf = xf - centre
        norms = part_norms(xf)
    return _Operand(xf.transpose(0, 1).to(torch.bfloat16).contiguous(), norms.t().contiguous(),
                    _root_norms(norms, channels).t().contiguous(), raw_root)


def _slice(op: _Operand, j0: int, j1: int) -> _Operand:
    def cut(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[:, j0:j1]

    return _Operand(op.h[:, j0:j1], op.norms[:, j0:j1], cut(op.root), cut(op.raw_root))


def _approx(xo: _Operand, yo: _Operand, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Approximate distances ``[n, m]`` and their bounds from prepared operands."""
    parts, _, channels = xo.h.shape
    beta = bf16_dot_error(channels)
    g = torch.bmm(xo.h, yo.h.transpose(1, 2)).float()  # [parts, n, m]
    if metric == "cos":
        g.mul_(xo.norms[:, :, None]).mul_(yo.norms[:, None, :])
        approx = torch.sum(g, dim=0).div_(-parts).add_(1.0)
        return approx, torch.full_like(approx, _cos_bound(beta, channels, parts))
    assert xo.root is not None and yo.root is not None
    g.mul_(-2.0).add_(yo.norms[:, None, :]).add_(xo.norms[:, :, None]).clamp_(min=0.0).sqrt_()
    # E per probe and part over the whole tile (the tile's largest gallery norms): the bound then
    # costs four passes over the [parts, n, m] block; min(√E, E/d) = E / max(d, √E)
    raw = None
    if xo.raw_root is not None and yo.raw_root is not None:
        raw = (xo.raw_root[:, :, None], yo.raw_root.amax(dim=1)[:, None, None])
    e = _square_error(xo.root[:, :, None], yo.root.amax(dim=1)[:, None, None], beta, channels, raw)
    dsum = g.sum(dim=0)
    b = torch.maximum(g, e.sqrt(), out=g).clamp_(min=1e-30).reciprocal_().mul_(e)  # g is spent
    bsum = b.sum(dim=0).mul_(1.0 + 2 * U_FP32).add_(dsum, alpha=2 * U_FP32)
    dm, bm = dsum.div_(parts), bsum.div_(parts)
    return dm, (bm + 2 * gamma(parts + 1) * (dm + bm)) * _SAFETY


def bf16_distances(x: torch.Tensor, y: torch.Tensor, metric: str = "euc", *,
                   x_norms: torch.Tensor | None = None, y_norms: torch.Tensor | None = None,
                   centre: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Approximate distances ``[n, m]`` of ``x`` ``[n, parts, c]`` × ``y`` ``[m, parts, c]`` from
    one batched bf16 product over the parts, and per pair a bound ``[n, m]`` on their distance
    from the fp32 path's (:func:`~.metrics.distance_block`). ``x_norms`` / ``y_norms``: the fp32
    :func:`~.metrics.part_norms` (computed when not given). ``centre`` ``[parts, c]`` (``euc``
    only): subtracted from both sides before the bf16 product, which shrinks the bf16 error
    (proportional to the norms) for features far from the origin."""
    check_metric(metric)
    xf, yf = x.float(), y.float()
    xn = part_norms(xf, metric) if x_norms is None else x_norms
    yn = part_norms(yf, metric) if y_norms is None else y_norms
    return _approx(_operand(xf, xn, metric, centre), _operand(yf, yn, metric, centre), metric)


def _fp32_rerank(xf: torch.Tensor, yf: torch.Tensor, xn: torch.Tensor, yn: torch.Tensor,
                 cand: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 distances ``[q, L]`` of probes ``xf`` ``[q, parts, c]`` to their candidates ``cand``
    ``[q, L]`` (gallery rows), with the fp32 path's formula, and ``δ``: the bound between two
    fp32 evaluations of one distance (``β = 0``)."""
    channels, parts = xf.shape[2], xf.shape[1]
    dot = torch.linalg.vecdot(yf[cand], xf[:, None])  # [q, L, parts]: fp32 sums over c
    ync = yn[cand]  # [q, L, parts]
    if metric == "cos":
        t = dot * xn[:, None, :] * ync
        d = 1.0 - t.sum(-1) / parts
        return d, torch.full_like(d, _cos_bound(0.0, channels, parts))
    s = (ync - 2.0 * dot) + xn[:, None, :]
    d_parts = s.clamp_(min=0.0).sqrt_()
    rx = _root_norms(xn, channels)[:, None, :]
    return _euc_bound(d_parts, _square_error(rx, _root_norms(ync, channels), 0.0, channels))


def _certain(d: torch.Tensor, delta: torch.Tensor, k: int) -> torch.Tensor:
    """``[q]``: for sorted ``d`` ``[q, L]`` with bounds ``delta``, whether every rank ``t < k``
    sits strictly below all later ranks whatever the fp32 rounding (``d_t + δ_t <`` the smallest
    ``d_s - δ_s`` over ``s > t``)."""
    lower = d - delta
    after = torch.flip(torch.cummin(torch.flip(lower, [1]), dim=1).values, [1])  # min over s >= t
    later = torch.cat([after[:, 1:], torch.full_like(after[:, :1], float("inf"))], dim=1)
    return ((d + delta)[:, :k] < later[:, :k]).all(dim=1)


def shortlist_neighbours(x: torch.Tensor, y: torch.Tensor, k: int, metric: str = "euc", *,
                         x_norms: torch.Tensor | None = None, y_norms: torch.Tensor | None = None,
                         tile: tuple[int, int] | None = None, limit: int | None = None,
                         stats: dict[str, float] | None = None) -> Nearest:
    """The ``k`` nearest rows of ``y`` for every row of ``x`` (both ``[n, parts, channels]``):
    the rows and order of :func:`~.metrics.nearest_neighbours` with the same ``tile``, proven
    (see the module doc). Distances are the fp32 re-rank's, within the certified ``δ`` of the fp32
    path's (bit-identical for the probes that fell back). ``limit``: the longest shortlist
    re-ranked (default ``max(64 k, 256)``); longer ones fall back to the fp32 path. ``stats``, if
    given, receives ``probes``, ``fallback`` and ``mean_shortlist``."""
    check_metric(metric)
    check_pair(x, y)
    n, parts, channels = x.shape
    m = y.shape[0]
    k = max(0, min(k, m))
    dist = torch.empty(n, k, dtype=torch.float32, device=x.device)
    index = torch.empty(n, k, dtype=torch.int64, device=x.device)
    if n == 0 or k == 0:
        return Nearest(distances=dist, indices=index)
    limit = max(k, limit if limit is not None else max(64 * k, 256))
    xf, yf = x.float(), y.float()
    xn = part_norms(xf, metric) if x_norms is None else x_norms
    yn = part_norms(yf, metric) if y_norms is None else y_norms
    if torch.get_float32_matmul_precision() != "highest":  # fp32 products may run in bf16/tf32:
        fallback = torch.ones(n, dtype=torch.bool, device=x.device)  # the fp32 error model is void
        _fp32_fallback(xf, yf, k, metric, xn, yn, tile, fallback, dist, index)
        if stats is not None:
            stats.update(probes=float(n), fallback=float(n), mean_shortlist=float(m))
        return Nearest(distances=dist, indices=index)
    centre = yf.mean(dim=0) if metric == "euc" else None
    fallback = torch.zeros(n, dtype=torch.bool, device=x.device)
    xo = _operand(xf, xn, metric, centre)
    yo = _operand(yf, yn, metric, centre)
    rows = max(1, min(n, (1 << 22) // max(1, m)))  # the [rows, m] bound arrays stay ~16 MB each
    cols = max(1, min(m, (1 << 22) // max(1, parts * rows)))
    total = 0
    for i0 in range(0, n, rows):
        i1 = min(n, i0 + rows)
        lower = torch.empty(i1 - i0, m, device=x.device)
        upper = torch.empty(i1 - i0, m, device=x.device)
        for j0 in range(0, m, cols):
            j1 = min(m, j0 + cols)
            a, b = _approx(_slice(xo, i0, i1), _slice(yo, j0, j1), metric)
            torch.sub(a, b, out=lower[:, j0:j1])
            torch.add(a, b, out=upper[:, j0:j1])
        bad = ~torch.isfinite(upper).all(dim=1)
        u_k = torch.topk(upper.nan_to_num(float("inf")), k, dim=1, largest=False).values.amax(dim=1)
        mask = lower <= u_k[:, None]
        counts = mask.sum(dim=1)
        total += int(counts.sum())
        bad |= counts > limit
        ok = (~bad).nonzero().squeeze(1)
        fallback[i0:i1] = bad
        if ok.numel() == 0:
            continue
        ok = ok[torch.argsort(counts[ok], stable=True)]  # chunks of similar shortlist lengths
        c0 = 0
        while c0 < ok.numel():
            # as many probes as fit ~4 M gathered floats at the longest shortlist among them
            per, budget = parts * channels, 1 << 22
            chunk = max(1, budget // (int(counts[ok[c0]]) * per))
            while chunk > 1 and int(counts[ok[min(ok.numel(), c0 + chunk) - 1]]) * chunk * per > budget:
                chunk //= 2
            sel = ok[c0 : c0 + chunk]
            c0 += chunk
            cnt = counts[sel]
            width = int(cnt.max())
            r, c = mask[sel].nonzero(as_tuple=True)  # row-major: gallery order within a row
            slot = torch.arange(r.numel(), device=x.device) - (cnt.cumsum(0) - cnt)[r]
            cand = torch.zeros(sel.numel(), width, dtype=torch.int64, device=x.device)
            cand[r, slot] = c
            pad = torch.arange(width, device=x.device)[None, :] >= cnt[:, None]
            d, delta = _fp32_rerank(xf[i0 + sel], yf, xn[i0 + sel], yn, cand, metric)
            d = d.masked_fill(pad, float("inf"))
            delta = delta.masked_fill(pad, 0.0)
            order = torch.sort(d, dim=1, stable=True).indices  # ties keep gallery order
            d, delta, cand = d.gather(1, order), delta.gather(1, order), cand.gather(1, order)
            sure = _certain(d, delta, k) & torch.isfinite(d[:, :k]).all(dim=1)
            fallback[i0 + sel[~sure]] = True
            done = i0 + sel[sure]
            dist[done] = d[sure, :k]
            index[done] = cand[sure, :k]
    _fp32_fallback(xf, yf, k, metric, xn, yn, tile, fallback, dist, index)
    if stats is not None:
        stats.update(probes=float(n), fallback=float(fallback.sum()), mean_shortlist=total / n)
    return Nearest(distances=dist, indices=index)


def _fp32_fallback(xf: torch.Tensor, yf: torch.Tensor, k: int, metric: str, xn: torch.Tensor,
                   yn: torch.Tensor, tile: tuple[int, int] | None, fallback: torch.Tensor,
                   dist: torch.Tensor, index: torch.Tensor) -> None:
    """The fp32 path for the ``fallback`` probes: each probe block of the whole-set tiling that
    holds one runs whole, with the whole-set tile, so its tiles are the ones a whole-set
    :func:`~.metrics.nearest_neighbours` call computes."""
    if not bool(fallback.any()):
        return
    n, parts, _ = xf.shape
    rows, cols = tile or default_tile(xf.device, parts, n, yf.shape[0])
    rows = max(1, min(rows, n))
    for b0 in range(0, n, rows):
        b1 = min(n, b0 + rows)
        need = fallback[b0:b1]
        if not bool(need.any()):
            continue
        near = nearest_neighbours(xf[b0:b1], yf, k, metric, x_norms=xn[b0:b1], y_norms=yn, tile=(rows, cols))
        dist[b0:b1][need] = near.distances[need]
        index[b0:b1][need] = near.indices[need]


__all__ = ["bf16_distances", "bf16_dot_error", "gamma", "shortlist_neighbours"]
