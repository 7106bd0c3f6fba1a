"""Running a protocol on features: probes against galleries, tile by tile, into the tables.

* single-view protocols (``casia-b``, ``ou-mvlp``, ``generic``): for each probe set, probe view
  ``v`` and gallery view ``u`` the gallery is restricted to view ``u``; a cell is the share of
  probes whose nearest gallery sequence has their id, in %, rounded to 2 decimals as the
  reference does before any averaging.
* ``cross-view``: one gallery over all views, each probe's own id at its own view removed.

The rules, the n/a cells and the averaging are stated in docs/eval.md ("What it computes").
:func:`run_protocol` checks its inputs; :func:`match` is what an :class:`~.plan.EvalPlan`
calls once everything has been checked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import torch

from gaitcli.errors import GaitError

from .metrics import (
    as_features,
    average_precision,
    blockwise_topk_hits,
    check_metric,
    distance_block,
    encode_labels,
    part_norms,
    ranked_matches,
    topk_hits,
)
from .protocols import ProtocolFit, ProtocolSpec, check_fit, view_sort_key
from .results import Cell, Matrix, ProtocolResult, SetSummary, Tables
from .tiles import TileSetting, choose_tiles

Warn = Callable[[str], None]
Progress = Callable[[int, int], None]


@dataclass
class MatchInputs:
    """Everything a matching engine needs, already checked."""

    feats: torch.Tensor
    """Embeddings ``[N, parts, channels]`` on the matching device."""
    codes: torch.Tensor
    """Integer label code per sequence, on the device."""
    view_ids: np.ndarray
    """Index into ``views`` per sequence (-1: a view outside the protocol)."""
    probe_rows: np.ndarray
    """Rows of the probes of every probe set."""
    gallery_rows: np.ndarray
    """Rows of the gallery."""
    set_masks: dict[str, np.ndarray]
    """Probe set name → boolean mask over all rows."""
    views: list[str]
    """The views, numerically ordered."""
    metric: str
    """``euc`` or ``cos``."""
    chunk: int
    """Probes per distance block."""
    want_map: bool
    """Compute mAP for single-view protocols."""
    progress: Progress | None
    """Called with ``(done, total)`` steps."""
    tiles: TileSetting | None = None
    """The fused walk's tile and parts per group, tuned to this CPU (:mod:`~.tiles`); None: defaults."""


# ----------------------------------------------------------------------------------------------
# the tables
# ----------------------------------------------------------------------------------------------


def _round2(value: float) -> float:
    return float(np.round(value, 2))


def _mean(values: Sequence[Cell]) -> Cell:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def summarise(matrix: Matrix, views: Sequence[str], *, exclude_identical: bool) -> SetSummary:
    """Per probe view the mean over the gallery views (rows: probe views, columns: gallery
    views), and the mean over the probe views."""
    per_view: dict[str, Cell] = {}
    for i, v in enumerate(views):
        per_view[v] = _mean([cell for j, cell in enumerate(matrix[i]) if not (exclude_identical and i == j)])
    return SetSummary(per_view, _mean(list(per_view.values())))


def per_view_summary(values: dict[str, Cell]) -> SetSummary:
    return SetSummary(dict(values), _mean(list(values.values())))


def _percent_or_none(hits: np.ndarray) -> Cell:
    return _round2(float(np.mean(hits)) * 100) if hits.size else None


def _bounded_chunk(chunk: int, columns: int, bytes_per_cell: int, budget: int = 512 << 20) -> int:
    return int(max(16, min(chunk, budget // max(1, columns * bytes_per_cell))))


# ----------------------------------------------------------------------------------------------
# single-view protocols
# ----------------------------------------------------------------------------------------------


@dataclass
class _ViewHits:
    """Per probe and gallery view: rank-1 / rank-5 hits and average precision."""

    hit1: np.ndarray
    hit5: np.ndarray
    ap: np.ndarray | None
    has_gallery: list[bool]


def _single_view_hits(inp: MatchInputs) -> _ViewHits:
    nv = len(inp.views)
    by_view = [inp.gallery_rows[inp.view_ids[inp.gallery_rows] == u] for u in range(nv)]
    n_probe = len(inp.probe_rows)
    out = _ViewHits(
        np.zeros((n_probe, nv), bool),
        np.zeros((n_probe, nv), bool),
        np.full((n_probe, nv), np.nan) if inp.want_map else None,
        [len(g) > 0 for g in by_view],
    )
    if inp.want_map:
        _ranked_view_hits(inp, by_view, out)
    else:
        _fused_view_hits(inp, by_view, out)
    return out


def _fused_view_hits(inp: MatchInputs, by_view: list[np.ndarray], out: _ViewHits) -> None:
    """Rank-1 / rank-5 without mAP: one gallery view at a time (gathered once), every probe
    chunk through the fused tile-by-tile top-k walk (docs/eval.md, "Speed and memory"): no
    distance block is built, memory is one view's gallery plus one probe chunk."""
    dev, nv, n_probe = inp.feats.device, len(inp.views), len(inp.probe_rows)
    chunk = max(1, inp.chunk)
    steps, done = -(-n_probe // chunk) * nv, 0
    tile = (inp.tiles.rows, inp.tiles.cols) if inp.tiles is not None else None
    group = inp.tiles.group if inp.tiles is not None else None
    probe_norms = torch.cat([
        part_norms(inp.feats[torch.from_numpy(inp.probe_rows[c0 : c0 + chunk]).to(dev)], inp.metric)
        for c0 in range(0, n_probe, chunk)
    ]) if n_probe else inp.feats.new_zeros(0, inp.feats.shape[1])
    for u, g in enumerate(by_view):
        gt = torch.from_numpy(g).to(dev)
        gallery, gallery_codes = inp.feats[gt], inp.codes[gt]
        gallery_norms = part_norms(gallery, inp.metric) if len(g) else None
        for c0 in range(0, n_probe, chunk):
            c1 = min(n_probe, c0 + chunk)
            done += 1
            if len(g):
                rows = torch.from_numpy(inp.probe_rows[c0:c1]).to(dev)
                hits = blockwise_topk_hits(inp.feats[rows], gallery, inp.codes[rows], gallery_codes, (1, 5),
                                           inp.metric, x_norms=probe_norms[c0:c1], y_norms=gallery_norms,
                                           tile=tile, group=group)
                out.hit1[c0:c1, u] = hits[1].cpu().numpy()
                out.hit5[c0:c1, u] = hits[5].cpu().numpy()
            if inp.progress is not None:
                inp.progress(done, steps)


def _ranked_view_hits(inp: MatchInputs, by_view: list[np.ndarray], out: _ViewHits) -> None:
    """With mAP every probe needs its whole ranking: distance blocks of one probe chunk × one
    gallery view (and their sort), bounded to about 512 MB."""
    nv, n_probe = len(inp.views), len(inp.probe_rows)
    chunk = _bounded_chunk(inp.chunk, max(len(g) for g in by_view), 24)
    dev = inp.feats.device
    steps, done = -(-n_probe // chunk) * nv, 0
    assert out.ap is not None
    for c0 in range(0, n_probe, chunk):
        rows = torch.from_numpy(inp.probe_rows[c0 : c0 + chunk]).to(dev)
        x, c1 = inp.feats[rows], c0 + len(rows)
        xn, pl = part_norms(x, inp.metric), inp.codes[rows]
        for u, g in enumerate(by_view):
            done += 1
            if len(g):
                gt = torch.from_numpy(g).to(dev)
                d = distance_block(x, inp.feats[gt], inp.metric, x_norms=xn)
                hits = topk_hits(d, pl, inp.codes[gt], (1, 5))
                out.hit1[c0:c1, u] = hits[1].cpu().numpy()
                out.hit5[c0:c1, u] = hits[5].cpu().numpy()
                out.ap[c0:c1, u] = average_precision(ranked_matches(d, pl, inp.codes[gt])[0])
                del d
            if inp.progress is not None:
                inp.progress(done, steps)


def _cell(hits: _ViewHits, r: np.ndarray, u: int) -> tuple[Cell, Cell, Cell]:
    """The reference's cell: hits * 100 / probes, rounded to 2 decimals (rank-1, rank-5, mAP)."""
    if len(r) == 0 or not hits.has_gallery[u]:
        return None, None, None
    r1 = _round2(int(hits.hit1[r, u].sum()) * 100 / len(r))
    r5 = _round2(int(hits.hit5[r, u].sum()) * 100 / len(r))
    ap: Cell = None
    if hits.ap is not None:
        a = hits.ap[r, u]
        a = a[~np.isnan(a)]
        ap = _round2(float(np.mean(a)) * 100) if a.size else None
    return r1, r5, ap


def _set_matrices(inp: MatchInputs, hits: _ViewHits, mask: np.ndarray) -> tuple[Matrix, Matrix, Matrix]:
    in_set, probe_views = mask[inp.probe_rows], inp.view_ids[inp.probe_rows]
    m1: Matrix = []
    m5: Matrix = []
    mm: Matrix = []
    for v in range(len(inp.views)):
        r = np.flatnonzero(in_set & (probe_views == v))
        cells = [_cell(hits, r, u) for u in range(len(inp.views))]
        m1.append([c[0] for c in cells])
        m5.append([c[1] for c in cells])
        mm.append([c[2] for c in cells])
    return m1, m5, mm


def single_view_tables(inp: MatchInputs) -> Tables:
    """The views x views matrices per probe set and their summaries."""
    hits = _single_view_hits(inp)
    tables = Tables({}, {}, {}, {} if inp.want_map else None, {"rank1": {}, "rank5": {}})
    assert tables.matrix is not None
    if inp.want_map:
        tables.matrix["map"] = {}
    for name, mask in inp.set_masks.items():
        m1, m5, mm = _set_matrices(inp, hits, mask)
        tables.matrix["rank1"][name], tables.matrix["rank5"][name] = m1, m5
        tables.rank1_exclude[name] = summarise(m1, inp.views, exclude_identical=True)
        tables.rank1_include[name] = summarise(m1, inp.views, exclude_identical=False)
        tables.rank5_exclude[name] = summarise(m5, inp.views, exclude_identical=True)
        if tables.map is not None:
            tables.matrix["map"][name] = mm
            tables.map[name] = summarise(mm, inp.views, exclude_identical=True)
    return tables


# ----------------------------------------------------------------------------------------------
# the cross-view protocol
# ----------------------------------------------------------------------------------------------


@dataclass
class _CrossHits:
    """Per probe: rank-1 with nothing removed, rank-1 / rank-5 / AP with its id at its view removed,
    and whether any relevant gallery item is left."""

    inc1: np.ndarray
    exc1: np.ndarray
    exc5: np.ndarray
    valid: np.ndarray
    ap: np.ndarray


def _cross_view_hits(inp: MatchInputs) -> _CrossHits:
    dev, n_probe = inp.feats.device, len(inp.probe_rows)
    chunk = _bounded_chunk(inp.chunk, len(inp.gallery_rows), 24)
    g_idx = torch.from_numpy(inp.gallery_rows).to(dev)
    vids = torch.from_numpy(inp.view_ids).to(dev)
    gl, gv = inp.codes[g_idx], vids[g_idx]
    out = _CrossHits(
        np.zeros(n_probe, bool),
        np.zeros(n_probe, bool),
        np.zeros(n_probe, bool),
        np.zeros(n_probe, bool),
        np.full(n_probe, np.nan),
    )
    # the gallery is gathered once when it is small enough, else per probe chunk
    small = len(inp.gallery_rows) * inp.feats.shape[1] * inp.feats.shape[2] * 4 <= (1 << 30)
    gallery = inp.feats[g_idx] if small else None
    gallery_norms = part_norms(gallery, inp.metric) if gallery is not None else None
    steps = -(-n_probe // chunk)
    for step, c0 in enumerate(range(0, n_probe, chunk), start=1):
        rows = torch.from_numpy(inp.probe_rows[c0 : c0 + chunk]).to(dev)
        c1 = c0 + len(rows)
        y = gallery if gallery is not None else inp.feats[g_idx]
        d = distance_block(inp.feats[rows], y, inp.metric, y_norms=gallery_norms)
        pl, pv = inp.codes[rows], vids[rows]
        out.inc1[c0:c1] = topk_hits(d, pl, gl, (1,))[1].cpu().numpy()
        excluded = (gl.unsqueeze(0) == pl.unsqueeze(1)) & (gv.unsqueeze(0) == pv.unsqueeze(1))
        matches, ok = ranked_matches(d, pl, gl, excluded)
        out.exc1[c0:c1] = matches[:, 0].cpu().numpy() if matches.shape[1] else False
        out.exc5[c0:c1] = matches[:, :5].any(dim=1).cpu().numpy()
        out.valid[c0:c1] = ok.cpu().numpy()
        out.ap[c0:c1] = average_precision(matches)
        del d, matches, excluded
        if inp.progress is not None:
            inp.progress(step, steps)
    return out


def cross_view_tables(inp: MatchInputs) -> Tables:
    """Rank-1 / rank-5 / mAP per probe view, rounded to 2 decimals, then averaged."""
    hits = _cross_view_hits(inp)
    probe_views = inp.view_ids[inp.probe_rows]
    tables = Tables({}, {}, {}, {}, None)
    assert tables.map is not None
    for name, mask in inp.set_masks.items():
        in_set = mask[inp.probe_rows]
        r1: dict[str, Cell] = {}
        ri: dict[str, Cell] = {}
        r5: dict[str, Cell] = {}
        mp: dict[str, Cell] = {}
        for v, view in enumerate(inp.views):
            at_view = in_set & (probe_views == v)
            r = np.flatnonzero(at_view & hits.valid)
            r1[view], r5[view] = _percent_or_none(hits.exc1[r]), _percent_or_none(hits.exc5[r])
            ri[view] = _percent_or_none(hits.inc1[np.flatnonzero(at_view)])
            a = hits.ap[r]
            mp[view] = _percent_or_none(a[~np.isnan(a)])
        tables.rank1_exclude[name], tables.rank1_include[name] = per_view_summary(r1), per_view_summary(ri)
        tables.rank5_exclude[name], tables.map[name] = per_view_summary(r5), per_view_summary(mp)
    return tables


# ----------------------------------------------------------------------------------------------
# running a protocol
# ----------------------------------------------------------------------------------------------


def _drop_probes_without_gallery(fit: ProtocolFit, codes: np.ndarray, warn: Warn) -> ProtocolFit:
    has_gallery = np.isin(codes, codes[fit.gallery])
    probes = np.zeros(len(codes), dtype=bool)
    for mask in fit.probe_sets.values():
        probes |= mask
    dropped = int((probes & ~has_gallery).sum())
    if dropped:
        warn(f"{dropped} probe sequences whose id has no gallery sequence are left out (remove_no_gallery)")
    return replace(fit, probe_sets={name: mask & has_gallery for name, mask in fit.probe_sets.items()})


def _default_chunk(feats: torch.Tensor) -> int:
    per_row = feats.shape[1] * feats.shape[2] * 4
    return int(max(64, min(8192 if feats.device.type == "cuda" else 4096, (256 << 20) // max(per_row, 1))))


def _headline(spec: ProtocolSpec, tables: Tables) -> dict[str, float]:
    headline: dict[str, float] = {}
    for name in spec.probe_sets:
        value = tables.rank1_exclude[name].mean
        if value is None:
            value = tables.rank1_include[name].mean
        if value is not None:
            headline[name] = value
    return headline


def _inputs(
    feats: torch.Tensor,
    labels: np.ndarray,
    views: np.ndarray,
    fit: ProtocolFit,
    metric: str,
    *,
    chunk: int,
    want_map: bool,
    progress: Progress | None,
) -> MatchInputs:
    probe_mask = np.zeros(len(labels), dtype=bool)
    for mask in fit.probe_sets.values():
        probe_mask |= mask
    view_list = sorted(set(views[fit.gallery | probe_mask].tolist()), key=view_sort_key)
    position = {v: i for i, v in enumerate(view_list)}
    view_ids = np.array([position.get(v, -1) for v in views.tolist()], dtype=np.int64)
    codes = torch.from_numpy(encode_labels(labels)[1][0]).to(feats.device)
    return MatchInputs(
        feats,
        codes,
        view_ids,
        np.flatnonzero(probe_mask),
        np.flatnonzero(fit.gallery),
        dict(fit.probe_sets),
        view_list,
        metric,
        chunk=chunk,
        want_map=want_map,
        progress=progress,
    )


def match(
    embeddings: torch.Tensor | npt.ArrayLike,
    labels: np.ndarray,
    views: np.ndarray,
    spec: ProtocolSpec,
    fit: ProtocolFit,
    metric: str,
    *,
    want_map: bool = False,
    remove_no_gallery: bool = False,
    device: torch.device | str | None = None,
    chunk: int | None = None,
    progress: Progress | None = None,
    warn: Warn | None = None,
) -> ProtocolResult:
    """Run ``spec`` on checked features (``fit`` from :func:`~.protocols.check_fit`)."""
    warn = warn or (lambda _msg: None)
    feats = as_features(embeddings, torch.device(device) if device is not None else torch.device("cpu"))
    if remove_no_gallery:
        fit = _drop_probes_without_gallery(fit, encode_labels(labels)[1][0], warn)
    inp = _inputs(
        feats,
        labels,
        views,
        fit,
        metric,
        chunk=chunk or _default_chunk(feats),
        want_map=want_map,
        progress=progress,
    )
    if spec.kind == "single-view" and not want_map:  # the fused walk: tiles tuned to this CPU
        pairs = len(inp.probe_rows) * len(inp.gallery_rows)
        inp.tiles = choose_tiles(feats.shape[1], feats.shape[2], feats.device, pairs)
    tables = single_view_tables(inp) if spec.kind == "single-view" else cross_view_tables(inp)
    gallery = fit.gallery
    return ProtocolResult(
        protocol=spec.name,
        kind=spec.kind,
        metric=metric,
        gallery_types=list(spec.gallery_types),
        probe_sets={k: list(v) for k, v in spec.probe_sets.items()},
        views=inp.views,
        num_probes=len(inp.probe_rows),
        num_gallery=len(inp.gallery_rows),
        gallery_counts={v: int((gallery & (inp.view_ids == i)).sum()) for i, v in enumerate(inp.views)},
        probe_counts={
            name: {v: int((mask & (inp.view_ids == i)).sum()) for i, v in enumerate(inp.views)}
            for name, mask in inp.set_masks.items()
        },
        tables=tables,
        rank1=_headline(spec, tables),
    )


def run_protocol(
    embeddings: torch.Tensor | np.ndarray,
    labels: Sequence[str] | np.ndarray,
    types: Sequence[str] | np.ndarray,
    views: Sequence[str] | np.ndarray,
    spec: ProtocolSpec,
    metric: str = "euc",
    *,
    want_map: bool = False,
    remove_no_gallery: bool = False,
    device: torch.device | str | None = None,
    chunk: int | None = None,
    progress: Progress | None = None,
    warn: Warn | None = None,
) -> ProtocolResult:
    """Check and run ``spec`` on features ``[N, parts, channels]`` with per-sequence labels,
    types and views (the Python API; ``gait eval`` checks once in its plan and calls :func:`match`)."""
    check_metric(metric)
    labels_a, types_a, views_a = (np.asarray(a).astype(str) for a in (labels, types, views))
    n = len(labels_a)
    if not (len(types_a) == len(views_a) == n):
        raise GaitError(
            f"features: {n} labels, {len(types_a)} types and {len(views_a)} views; they must agree"
        )
    rows = embeddings.shape[0] if hasattr(embeddings, "shape") else len(embeddings)
    if rows != n:
        raise GaitError(f"features: {rows} embeddings but {n} labels")
    fit = check_fit(spec, types_a, warn)
    return match(
        embeddings,
        labels_a,
        views_a,
        spec,
        fit,
        metric,
        want_map=want_map,
        remove_no_gallery=remove_no_gallery,
        device=device,
        chunk=chunk,
        progress=progress,
        warn=warn,
    )
