"""Evaluation protocols: which sequences form the gallery and the probe sets, and how the
accuracies are averaged (SPEC §10).

* ``casia-b``: gallery ``nm-01..04``; probe sets NM ``nm-05,06``, BG ``bg-01,02``, CL ``cl-01,02``.
  For each probe set, probe view ``v`` and gallery view ``u``: the gallery is restricted to view
  ``u`` and each probe takes its nearest gallery sequence. This gives a views × views matrix per
  probe set whose cells (percentages) are rounded to 2 decimals, as the reference does, before
  any averaging. Per probe view: the mean over the gallery views ``u != v`` (excluding identical
  view) and over all ``u`` (including); overall: the mean over the probe views.
* ``ou-mvlp``: the same with probe seq ``00``, gallery seq ``01`` (14 views).
* ``cross-view``: probes nm-01 / bg-01 / cl-01 (OU-MVLP: 00) against one gallery of nm-02 + bg-02 +
  cl-02 (OU-MVLP: 01) over all views, each probe's own id at its own view removed from its
  gallery; rank-1 and mAP per probe view, rounded to 2 decimals, then averaged.
* ``generic``: the single-view scheme with the gallery types and probe sets of
  ``evaluator_cfg.gallery_types`` / ``evaluator_cfg.probe_sets``.

The views are the ones present in the data. A cell without probes or without gallery sequences
is ``None`` (n/a) and stays out of every average; a mean over nothing is ``None`` too. Where the
reference is defined (every cell present), the numbers are the reference's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gaitcli.errors import GaitError

from .metrics import (
    as_features,
    average_precision,
    check_metric,
    distance_block,
    encode_labels,
    part_norms,
    ranked_matches,
    topk_hits,
)

PROTOCOLS = ("auto", "casia-b", "ou-mvlp", "cross-view", "generic")
Warn = Callable[[str], None]


@dataclass(frozen=True)
class ProtocolSpec:
    """A protocol resolved to type lists. ``kind`` is ``single-view`` (one gallery per view,
    a views × views matrix) or ``cross-view`` (one gallery over all views)."""

    name: str
    kind: str
    gallery_types: tuple[str, ...]
    probe_sets: dict[str, tuple[str, ...]] = field(default_factory=dict)


CASIA_B = ProtocolSpec(
    "casia-b",
    "single-view",
    ("nm-01", "nm-02", "nm-03", "nm-04"),
    {"NM": ("nm-05", "nm-06"), "BG": ("bg-01", "bg-02"), "CL": ("cl-01", "cl-02")},
)
OU_MVLP = ProtocolSpec("ou-mvlp", "single-view", ("01",), {"NM": ("00",)})
CROSS_VIEW = {
    "casia-b": ProtocolSpec(
        "cross-view", "cross-view", ("nm-02", "bg-02", "cl-02"), {"NM": ("nm-01",), "BG": ("bg-01",), "CL": ("cl-01",)}
    ),
    "ou-mvlp": ProtocolSpec("cross-view", "cross-view", ("01",), {"NM": ("00",)}),
}
_CASIA_TYPES = {f"{k}-{i:02d}" for k, n in (("nm", 6), ("bg", 2), ("cl", 2)) for i in range(1, n + 1)}


def dataset_family(name: str | None) -> str | None:
    """``casia-b`` / ``ou-mvlp`` for the data set names the reference knows, else None."""
    if not name:
        return None
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    if key == "casiab":
        return "casia-b"
    if key == "oumvlp":
        return "ou-mvlp"
    return None


def family_from_types(types: Sequence[str] | None) -> str | None:
    """Guess the layout from the sequence types present (used for saved features)."""
    if types is None or len(types) == 0:
        return None
    present = set(np.unique(np.asarray(types).astype(str)).tolist())
    if present <= _CASIA_TYPES:
        return "casia-b"
    if present <= {"00", "01"}:
        return "ou-mvlp"
    return None


def resolve_protocol(
    requested: str | ProtocolSpec | None = "auto",
    *,
    dataset_name: str | None = None,
    evaluator_cfg: Mapping[str, Any] | None = None,
    types: Sequence[str] | None = None,
) -> ProtocolSpec:
    """The protocol to run. ``auto`` takes ``evaluator_cfg.protocol`` when set, else picks from
    the data set name (CASIA-B → casia-b, OUMVLP → ou-mvlp; ``cross_view_gallery: true`` →
    cross-view), else ``generic`` when gallery types and probe sets are configured, else from
    the types present in the data."""
    if isinstance(requested, ProtocolSpec):
        return requested
    ev = dict(evaluator_cfg or {})
    name = requested or "auto"
    if name not in PROTOCOLS:
        raise GaitError(f"unknown protocol {name!r}: use one of {', '.join(PROTOCOLS)}")
    if name == "auto":
        name = ev.get("protocol") or "auto"
    family = dataset_family(dataset_name)
    generic = _generic_sets(ev)
    if name == "auto":
        if family is None and generic is None:
            family = family_from_types(types)
        if family is not None:
            name = "cross-view" if ev.get("cross_view_gallery") else family
        elif generic is not None:
            name = "generic"
        else:
            raise GaitError(
                f"cannot pick an evaluation protocol for data set {dataset_name or '(unnamed)'}: pass --protocol "
                "casia-b, ou-mvlp or cross-view, or --protocol generic with evaluator_cfg.gallery_types and "
                "evaluator_cfg.probe_sets set (--set evaluator_cfg.gallery_types=[...])"
            )
    if name == "casia-b":
        return CASIA_B
    if name == "ou-mvlp":
        return OU_MVLP
    if name == "generic":
        if generic is None:
            raise GaitError(
                "the generic protocol needs evaluator_cfg.gallery_types (a list of types) and "
                "evaluator_cfg.probe_sets ({name: [types]}), e.g. --set evaluator_cfg.gallery_types=[nm-01] "
                "--set 'evaluator_cfg.probe_sets={NM: [nm-02]}'"
            )
        return ProtocolSpec("generic", "single-view", generic[0], generic[1])
    # cross-view
    if generic is not None:
        return ProtocolSpec("cross-view", "cross-view", generic[0], generic[1])
    family = family or family_from_types(types)
    if family is None:
        raise GaitError(
            f"the cross-view protocol knows CASIA-B and OU-MVLP layouts; data set {dataset_name or '(unnamed)'} "
            "needs evaluator_cfg.gallery_types and evaluator_cfg.probe_sets"
        )
    return CROSS_VIEW[family]


def _generic_sets(ev: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]] | None:
    gallery, probes = ev.get("gallery_types"), ev.get("probe_sets")
    if not gallery or not probes:
        return None
    if not isinstance(probes, Mapping):
        raise GaitError("evaluator_cfg.probe_sets must map a probe-set name to a list of types, e.g. {NM: [nm-05, nm-06]}")
    sets = {}
    for key, value in probes.items():
        items = [value] if isinstance(value, str) else list(value or [])
        sets[str(key)] = tuple(str(v) for v in items)
    return tuple(str(g) for g in gallery), sets


# ----------------------------------------------------------------------------------------------
# running a protocol
# ----------------------------------------------------------------------------------------------


def view_sort_key(view: str) -> tuple[int, float, str]:
    """Numeric views in numeric order ("0" < "18" < "180"), anything else after, by name."""
    try:
        return (0, float(view), view)
    except ValueError:
        return (1, 0.0, view)


def _round2(value: float) -> float:
    return float(np.round(value, 2))


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def summarise(matrix: list[list[float | None]], views: Sequence[str], *, exclude_identical: bool) -> dict[str, Any]:
    """``{"views": {probe_view: mean over gallery views}, "mean": mean over probe views}`` of a
    matrix whose rows are probe views and columns gallery views."""
    per_view: dict[str, float | None] = {}
    for i, v in enumerate(views):
        row = [cell for j, cell in enumerate(matrix[i]) if not (exclude_identical and i == j)]
        per_view[v] = _mean(row)
    return {"views": per_view, "mean": _mean(list(per_view.values()))}


def per_view_summary(values: Mapping[str, float | None]) -> dict[str, Any]:
    return {"views": dict(values), "mean": _mean(list(values.values()))}


def check_fit(spec: ProtocolSpec, types: Sequence[str], warn: Warn | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The gallery mask and each probe set's mask over ``types``; one clear error when the data
    has no gallery or no probe at all for ``spec`` (an empty probe set is only a warning)."""
    types = np.asarray(types).astype(str)
    gallery_mask = np.isin(types, spec.gallery_types)
    set_masks = {name: np.isin(types, list(ts)) for name, ts in spec.probe_sets.items()}
    present = ", ".join(sorted(set(types.tolist()))[:12]) or "none"
    if not gallery_mask.any():
        raise GaitError(
            f"features do not match the {spec.name} protocol: no gallery sequences of type "
            f"{', '.join(spec.gallery_types)} (types present: {present}); choose another --protocol"
        )
    if not any(mask.any() for mask in set_masks.values()):
        raise GaitError(
            f"features do not match the {spec.name} protocol: no probe sequences of type "
            f"{', '.join(t for ts in spec.probe_sets.values() for t in ts)} (types present: {present}); "
            "choose another --protocol"
        )
    if warn is not None:
        for name, mask in set_masks.items():
            if not mask.any():
                warn(f"probe set {name}: no sequences of type {', '.join(spec.probe_sets[name])}; shown as n/a")
    return gallery_mask, set_masks


def run_protocol(
    embeddings: Any,
    labels: Sequence[str],
    types: Sequence[str],
    views: Sequence[str],
    spec: ProtocolSpec,
    metric: str = "euc",
    *,
    want_map: bool = False,
    remove_no_gallery: bool = False,
    device: torch.device | str | None = None,
    chunk: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    warn: Warn | None = None,
) -> dict[str, Any]:
    """Run ``spec`` on features ``[N, parts, channels]`` with per-sequence labels, types and views.

    Returns a JSON-ready dict: ``rank1_exclude`` / ``rank1_include`` / ``rank5_exclude`` / ``map``
    (``{set: {"views": {view: value}, "mean": value}}``, values in % or None), ``matrix`` (per
    probe set, rows = probe views, columns = gallery views; single-view protocols only),
    ``views``, counts, and ``rank1`` (per probe set, the headline number).
    """
    check_metric(metric)
    warn = warn or (lambda _msg: None)
    labels = np.asarray(labels).astype(str)
    types = np.asarray(types).astype(str)
    views = np.asarray(views).astype(str)
    n = len(labels)
    if not (len(types) == len(views) == n):
        raise GaitError(f"features: {n} labels, {len(types)} types and {len(views)} views; they must agree")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    feats = as_features(embeddings, dev)
    if feats.shape[0] != n:
        raise GaitError(f"features: {feats.shape[0]} embeddings but {n} labels")

    gallery_mask, set_masks = check_fit(spec, types, warn)
    probe_mask = np.zeros(n, dtype=bool)
    for mask in set_masks.values():
        probe_mask |= mask
    codes_np = encode_labels(labels)[1][0]
    if remove_no_gallery:
        has_gallery = np.isin(codes_np, codes_np[gallery_mask])
        dropped = int((probe_mask & ~has_gallery).sum())
        if dropped:
            warn(f"{dropped} probe sequences whose id has no gallery sequence are left out (remove_no_gallery)")
        probe_mask &= has_gallery
        for name in set_masks:
            set_masks[name] &= has_gallery
    view_list = sorted(set(views[gallery_mask | probe_mask].tolist()), key=view_sort_key)
    position = {v: i for i, v in enumerate(view_list)}
    view_ids = np.array([position.get(v, -1) for v in views.tolist()], dtype=np.int64)
    probe_rows = np.flatnonzero(probe_mask)
    gallery_rows = np.flatnonzero(gallery_mask)
    codes = torch.from_numpy(codes_np).to(dev)
    vids = torch.from_numpy(view_ids).to(dev)
    if chunk is None:
        per_row = feats.shape[1] * feats.shape[2] * 4
        chunk = int(max(64, min(8192 if dev.type == "cuda" else 4096, (256 << 20) // max(per_row, 1))))

    out: dict[str, Any] = {
        "protocol": spec.name,
        "kind": spec.kind,
        "metric": metric,
        "gallery_types": list(spec.gallery_types),
        "probe_sets": {k: list(v) for k, v in spec.probe_sets.items()},
        "views": view_list,
        "num_probes": int(len(probe_rows)),
        "num_gallery": int(len(gallery_rows)),
        "gallery_counts": {v: int((gallery_mask & (view_ids == i)).sum()) for i, v in enumerate(view_list)},
        "probe_counts": {
            name: {v: int((mask & (view_ids == i)).sum()) for i, v in enumerate(view_list)}
            for name, mask in set_masks.items()
        },
    }
    engine = _single_view if spec.kind == "single-view" else _cross_view
    out.update(
        engine(feats, codes, vids, view_ids, probe_rows, gallery_rows, set_masks, view_list, metric,
               want_map=want_map, chunk=chunk, progress=progress)
    )
    headline = {}
    for name in spec.probe_sets:
        value = out["rank1_exclude"][name]["mean"]
        if value is None:
            value = out["rank1_include"][name]["mean"]
        if value is not None:
            headline[name] = value
    out["rank1"] = headline
    return out


def _bounded_chunk(chunk: int, columns: int, bytes_per_cell: int, budget: int = 512 << 20) -> int:
    return int(max(16, min(chunk, budget // max(1, columns * bytes_per_cell))))


def _single_view(feats, codes, vids, view_ids, probe_rows, gallery_rows, set_masks, view_list, metric, *,
                 want_map, chunk, progress):
    nv = len(view_list)
    gallery_by_view = [gallery_rows[view_ids[gallery_rows] == u] for u in range(nv)]
    n_probe = len(probe_rows)
    widest = max(len(g) for g in gallery_by_view)
    # a distance block [chunk, gallery of one view] (and its sort for mAP) stays within ~512 MB
    chunk = _bounded_chunk(chunk, widest, 24 if want_map else 4)
    hit1 = np.zeros((n_probe, nv), dtype=bool)
    hit5 = np.zeros((n_probe, nv), dtype=bool)
    ap = np.full((n_probe, nv), np.nan) if want_map else None
    dev = feats.device
    steps = -(-n_probe // chunk) * nv
    done = 0
    for c0 in range(0, n_probe, chunk):
        rows = torch.from_numpy(probe_rows[c0 : c0 + chunk]).to(dev)
        x = feats[rows]
        xn = part_norms(x, metric)
        pl = codes[rows]
        c1 = c0 + len(rows)
        for u, g in enumerate(gallery_by_view):
            done += 1
            if len(g):
                gt = torch.from_numpy(g).to(dev)
                d = distance_block(x, feats[gt], metric, x_norms=xn)
                gl = codes[gt]
                hits = topk_hits(d, pl, gl, (1, 5))
                hit1[c0:c1, u] = hits[1].cpu().numpy()
                hit5[c0:c1, u] = hits[5].cpu().numpy()
                if ap is not None:
                    matches, _ = ranked_matches(d, pl, gl)
                    ap[c0:c1, u] = average_precision(matches)
                del d
            if progress is not None:
                progress(done, steps)

    has_gallery = [len(g) > 0 for g in gallery_by_view]
    probe_views = view_ids[probe_rows]
    result: dict[str, Any] = {"rank1_exclude": {}, "rank1_include": {}, "rank5_exclude": {},
                              "map": {} if want_map else None, "matrix": {"rank1": {}, "rank5": {}}}
    if want_map:
        result["matrix"]["map"] = {}
    for name, mask in set_masks.items():
        in_set = mask[probe_rows]
        m1, m5, mm = [], [], []
        for v in range(nv):
            r = np.flatnonzero(in_set & (probe_views == v))
            row1, row5, rowm = [], [], []
            for u in range(nv):
                if len(r) == 0 or not has_gallery[u]:
                    row1.append(None)
                    row5.append(None)
                    rowm.append(None)
                    continue
                # the reference's cell: hits * 100 / probes, rounded to 2 decimals
                row1.append(_round2(int(hit1[r, u].sum()) * 100 / len(r)))
                row5.append(_round2(int(hit5[r, u].sum()) * 100 / len(r)))
                if ap is not None:
                    a = ap[r, u]
                    a = a[~np.isnan(a)]
                    rowm.append(_round2(np.mean(a) * 100) if a.size else None)
            m1.append(row1)
            m5.append(row5)
            mm.append(rowm)
        result["matrix"]["rank1"][name] = m1
        result["matrix"]["rank5"][name] = m5
        result["rank1_exclude"][name] = summarise(m1, view_list, exclude_identical=True)
        result["rank1_include"][name] = summarise(m1, view_list, exclude_identical=False)
        result["rank5_exclude"][name] = summarise(m5, view_list, exclude_identical=True)
        if want_map:
            result["matrix"]["map"][name] = mm
            result["map"][name] = summarise(mm, view_list, exclude_identical=True)
    return result


def _cross_view(feats, codes, vids, view_ids, probe_rows, gallery_rows, set_masks, view_list, metric, *,
                want_map, chunk, progress):
    del want_map  # this protocol exists for its mAP: always computed
    nv = len(view_list)
    dev = feats.device
    n_probe = len(probe_rows)
    chunk = _bounded_chunk(chunk, len(gallery_rows), 24)
    g_idx = torch.from_numpy(gallery_rows).to(dev)
    gl, gv = codes[g_idx], vids[g_idx]
    gallery_norms = None
    inc1 = np.zeros(n_probe, dtype=bool)
    exc1 = np.zeros(n_probe, dtype=bool)
    exc5 = np.zeros(n_probe, dtype=bool)
    valid = np.zeros(n_probe, dtype=bool)
    ap = np.full(n_probe, np.nan)
    steps = -(-n_probe // chunk)
    # the gallery is gathered once when it is small enough, else per probe chunk
    gallery = feats[g_idx] if len(gallery_rows) * feats.shape[1] * feats.shape[2] * 4 <= (1 << 30) else None
    if gallery is not None:
        gallery_norms = part_norms(gallery, metric)
    for step, c0 in enumerate(range(0, n_probe, chunk), start=1):
        rows = torch.from_numpy(probe_rows[c0 : c0 + chunk]).to(dev)
        c1 = c0 + len(rows)
        x = feats[rows]
        if gallery is not None:
            d = distance_block(x, gallery, metric, y_norms=gallery_norms)
        else:
            d = distance_block(x, feats[g_idx], metric)
        pl, pv = codes[rows], vids[rows]
        inc1[c0:c1] = topk_hits(d, pl, gl, (1,))[1].cpu().numpy()
        excluded = (gl.unsqueeze(0) == pl.unsqueeze(1)) & (gv.unsqueeze(0) == pv.unsqueeze(1))
        matches, ok = ranked_matches(d, pl, gl, excluded)
        exc1[c0:c1] = matches[:, 0].cpu().numpy() if matches.shape[1] else False
        exc5[c0:c1] = matches[:, :5].any(dim=1).cpu().numpy()
        valid[c0:c1] = ok.cpu().numpy()
        ap[c0:c1] = average_precision(matches)
        del d, matches, excluded
        if progress is not None:
            progress(step, steps)

    probe_views = view_ids[probe_rows]
    result: dict[str, Any] = {"rank1_exclude": {}, "rank1_include": {}, "rank5_exclude": {}, "map": {}, "matrix": None}
    for name, mask in set_masks.items():
        in_set = mask[probe_rows]
        r1, ri, r5, mp = {}, {}, {}, {}
        for v in range(nv):
            view = view_list[v]
            at_view = in_set & (probe_views == v)
            r = np.flatnonzero(at_view & valid)
            ra = np.flatnonzero(at_view)
            r1[view] = _round2(np.mean(exc1[r]) * 100) if len(r) else None
            r5[view] = _round2(np.mean(exc5[r]) * 100) if len(r) else None
            ri[view] = _round2(np.mean(inc1[ra]) * 100) if len(ra) else None
            a = ap[r]
            a = a[~np.isnan(a)]
            mp[view] = _round2(np.mean(a) * 100) if a.size else None
        result["rank1_exclude"][name] = per_view_summary(r1)
        result["rank1_include"][name] = per_view_summary(ri)
        result["rank5_exclude"][name] = per_view_summary(r5)
        result["map"][name] = per_view_summary(mp)
    return result
