"""Running the field protocols (``gait3d``, ``grew``, ``ccpg``) on features: OpenGait's
``evaluate_Gait3D``, ``evaluate_real_scene`` / ``GREW_submission`` and ``evaluate_CCPG``
(docs/eval-field-protocols.md). Which sequences play which part is :mod:`.protocols`; the
kernels are :mod:`.metrics` (distance tiles, the fused top-k walk, whole-ranking scores).

* ``gait3d``: each probe of the ``PROBE_SET`` ranks every other sequence; over the probes whose
  id is in the gallery (the others are left out, as the reference does): rank-1, rank-5 and
  rank-10 (share of probes whose first relevant item is within the first k), mAP and mINP, in %,
  not rounded.
* ``grew``: probes of type ``02`` against the gallery of type ``01``: rank-1, 5, 10 and 20, in %
  rounded to 2 decimals as the reference rounds them; ``--submission``: the 20 nearest gallery
  ids (types ``01`` + ``02``) of every probe of type ``03``.
* ``ccpg``: per setting (CL, UP, DN, BG) with its own gallery, the views × views rank-1 / rank-5
  matrix of the single-view protocols (cells rounded to 2 decimals, means over the gallery views
  excluding and including the identical one), and the re-identification table: each probe against
  the setting's whole gallery without the sequences of its id at its camera, rank-1, mAP and mINP
  over the probes with a relevant item left.

Ties: equally distant gallery sequences rank in gallery order (the reference's sorts leave that
order unspecified; only exact ties could differ).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch

from gaitcli.errors import GaitError

from .matching import MatchInputs, Progress, single_view_tables
from .metrics import as_features, blockwise_topk_hits, encode_labels, nearest_neighbours, rank_scores
from .protocols import (
    FIELD_PROTOCOLS,
    GAIT3D_SET,
    GREW_SET,
    GREW_SUBMISSION_RANKS,
    ProtocolFit,
    ProtocolSpec,
    ccpg_views,
    view_sort_key,
)
from .results import Cell, ProtocolResult, RetrievalScores, Submission, Tables

Warn = Callable[[str], None]
GAIT3D_RANKS = (1, 5, 10)
GREW_RANKS = (1, 5, 10, 20)


def _percent(count: int, total: int) -> float:
    return count * 100 / total


def _round2(value: float) -> float:
    return float(np.round(value, 2))


def _mean_percent(values: np.ndarray) -> Cell:
    return float(np.mean(values)) * 100 if values.size else None


def _rows(mask: np.ndarray, dev: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.flatnonzero(mask)).to(dev)


# ----------------------------------------------------------------------------------------------
# the scores
# ----------------------------------------------------------------------------------------------


def ranking_row(
    feats: torch.Tensor,
    codes: torch.Tensor,
    probes: np.ndarray,
    gallery: np.ndarray,
    metric: str,
    ranks: tuple[int, ...],
    *,
    groups: torch.Tensor | None = None,
) -> RetrievalScores | None:
    """Rank-k for ``ranks``, mAP and mINP (%) of the probes (mask) against the gallery (mask),
    over the probes with a relevant gallery item (OpenGait's ``evaluate_rank`` /
    ``evaluate_many``); with ``groups``, a probe's own id in its own group leaves its gallery.
    None when no probe has a relevant item."""
    dev = feats.device
    p, g = _rows(probes, dev), _rows(gallery, dev)
    if len(p) == 0 or len(g) == 0:
        return None
    pg = groups[p] if groups is not None else None
    gg = groups[g] if groups is not None else None
    rs = rank_scores(feats[p], feats[g], codes[p], codes[g], metric, probe_groups=pg, gallery_groups=gg)
    valid = rs.valid
    n = int(valid.sum())
    if n == 0:
        return None
    first = rs.first[valid]
    scores: dict[str, Cell] = {f"rank{k}": _percent(int((first < k).sum()), n) for k in ranks}
    scores["map"] = _mean_percent(rs.ap[valid])
    scores["minp"] = _mean_percent(rs.inp[valid])
    return RetrievalScores(scores, probes=n, left_out=len(p) - n)


def topk_row(feats: torch.Tensor, codes: torch.Tensor, probes: np.ndarray, gallery: np.ndarray, metric: str,
             ranks: tuple[int, ...]) -> RetrievalScores | None:
    """Rank-k (%) rounded to 2 decimals over every probe (OpenGait's ``evaluate_real_scene``),
    through the fused top-k walk (no distance matrix)."""
    dev = feats.device
    p, g = _rows(probes, dev), _rows(gallery, dev)
    if len(p) == 0 or len(g) == 0:
        return None
    hits = blockwise_topk_hits(feats[p], feats[g], codes[p], codes[g], ranks, metric)
    scores: dict[str, Cell] = {f"rank{k}": _round2(_percent(int(hits[k].sum()), len(p))) for k in ranks}
    return RetrievalScores(scores, probes=len(p))


def grew_submission(feats: torch.Tensor, labels: np.ndarray, views: np.ndarray, fit: ProtocolFit,
                    metric: str) -> Submission | None:
    """The competition answer: for each probe of type 03 (in feature order) its video id and the
    ids of its 20 nearest gallery sequences of types 01 + 02, nearest first."""
    sub = fit.submission
    if sub is None:
        return None
    dev = feats.device
    p, g = _rows(sub.probes, dev), _rows(sub.gallery, dev)
    nearest = nearest_neighbours(feats[p], feats[g], GREW_SUBMISSION_RANKS, metric)
    gallery_ids = labels[sub.gallery]
    ranked = gallery_ids[nearest.indices.cpu().numpy()]
    return Submission(views[sub.probes].tolist(), ranked.tolist())


# ----------------------------------------------------------------------------------------------
# the protocols
# ----------------------------------------------------------------------------------------------


def _empty_tables() -> Tables:
    return Tables({}, {}, {}, None, None)


def _gait3d(
    feats: torch.Tensor, codes: torch.Tensor, fit: ProtocolFit, metric: str
) -> dict[str, RetrievalScores]:
    probes = fit.probe_sets[GAIT3D_SET]
    row = ranking_row(feats, codes, probes, fit.gallery, metric, GAIT3D_RANKS)
    if row is None:
        raise GaitError(
            f"gait3d: none of the {int(probes.sum())} probes has a gallery sequence of its id, so there "
            "is nothing to score (the reference stops here too); evaluate Gait3D's whole test set"
        )
    return {GAIT3D_SET: row}


def _grew(
    feats: torch.Tensor, codes: torch.Tensor, fit: ProtocolFit, metric: str
) -> dict[str, RetrievalScores]:
    row = topk_row(feats, codes, fit.probe_sets[GREW_SET], fit.gallery, metric, GREW_RANKS)
    return {} if row is None else {GREW_SET: row}


def _merge(into: Tables, part: Tables) -> None:
    """Add the probe sets of ``part`` (one setting) to ``into``."""
    into.rank1_exclude.update(part.rank1_exclude)
    into.rank1_include.update(part.rank1_include)
    into.rank5_exclude.update(part.rank5_exclude)
    if into.map is not None and part.map is not None:
        into.map.update(part.map)
    if into.matrix is not None and part.matrix is not None:
        for key, sets in part.matrix.items():
            into.matrix.setdefault(key, {}).update(sets)


def _ccpg(
    feats: torch.Tensor, codes: torch.Tensor, view_ids: np.ndarray, views: list[str], fit: ProtocolFit,
    metric: str, want_map: bool, chunk: int,
) -> tuple[Tables, dict[str, RetrievalScores]]:
    """Per setting: the views × views tables (its own gallery) and the re-identification row."""
    tables = Tables({}, {}, {}, {} if want_map else None, {"rank1": {}, "rank5": {}})
    groups = torch.from_numpy(view_ids).to(feats.device)
    reid: dict[str, RetrievalScores] = {}
    for name, mask in fit.probe_sets.items():
        gallery = fit.gallery_of(name)
        inp = MatchInputs(feats, codes, view_ids, np.flatnonzero(mask), np.flatnonzero(gallery),
                          {name: mask}, views, metric, chunk=chunk, want_map=want_map, progress=None)
        _merge(tables, single_view_tables(inp))
        row = ranking_row(feats, codes, mask, gallery, metric, (1,), groups=groups)
        if row is not None:
            reid[name] = row
    return tables, reid


def _headline(tables: Tables, reid: dict[str, RetrievalScores], names: list[str]) -> dict[str, float]:
    """rank-1 per probe set: the excluding mean of the views × views table where there is one, else
    the retrieval table's rank-1."""
    out: dict[str, float] = {}
    for name in names:
        row = tables.rank1_exclude.get(name)
        value = row.mean if row is not None else None
        if value is None and row is not None:
            value = tables.rank1_include[name].mean
        if value is None and name in reid:
            value = reid[name].scores.get("rank1")
        if value is not None:
            out[name] = value
    return out


def match_field(
    embeddings: torch.Tensor | npt.ArrayLike,
    labels: np.ndarray,
    views: np.ndarray,
    spec: ProtocolSpec,
    fit: ProtocolFit,
    metric: str,
    *,
    want_map: bool = False,
    device: torch.device | str | None = None,
    chunk: int = 4096,
    progress: Progress | None = None,
    warn: Warn | None = None,
) -> ProtocolResult:
    """Run a field protocol (``spec.name`` in :data:`~.protocols.FIELD_PROTOCOLS`) on checked
    features (``fit`` from :func:`~.protocols.fit_protocol`)."""
    if spec.name not in FIELD_PROTOCOLS:
        raise ValueError(f"{spec.name} is not a field protocol; run it with matching.match")
    del progress, warn
    feats = as_features(embeddings, torch.device(device) if device is not None else torch.device("cpu"))
    labels = np.asarray(labels).astype(str)
    views = np.asarray(views).astype(str)
    codes = torch.from_numpy(encode_labels(labels)[1][0]).to(feats.device)
    probe_mask = np.zeros(len(labels), dtype=bool)
    gallery_mask = fit.gallery.copy()
    for name, mask in fit.probe_sets.items():
        probe_mask |= mask
        gallery_mask |= fit.gallery_of(name)
    tables, view_list = _empty_tables(), []
    view_of = views
    if spec.name == "ccpg":
        view_of = ccpg_views(views)
        view_list = sorted(set(view_of[gallery_mask | probe_mask].tolist()), key=view_sort_key)
        position = {v: i for i, v in enumerate(view_list)}
        view_ids = np.array([position.get(v, -1) for v in view_of.tolist()], dtype=np.int64)
        tables, retrieval = _ccpg(feats, codes, view_ids, view_list, fit, metric, want_map, chunk)
    elif spec.name == "gait3d":
        retrieval = _gait3d(feats, codes, fit, metric)
    else:
        retrieval = _grew(feats, codes, fit, metric)
    submission = grew_submission(feats, labels, views, fit, metric) if spec.name == "grew" else None
    return ProtocolResult(
        protocol=spec.name,
        kind=spec.kind,
        metric=metric,
        gallery_types=list(spec.gallery_types),
        probe_sets={k: list(v) for k, v in spec.probe_sets.items()},
        views=view_list,
        num_probes=int(probe_mask.sum()),
        num_gallery=int(gallery_mask.sum()),
        gallery_counts={v: int((gallery_mask & (view_of == v)).sum()) for v in view_list},
        probe_counts={name: {v: int((mask & (view_of == v)).sum()) for v in view_list}
                      for name, mask in fit.probe_sets.items()},
        tables=tables,
        rank1=_headline(tables, retrieval, list(spec.probe_sets)),
        retrieval=retrieval,
        set_galleries={k: list(v) for k, v in spec.set_galleries.items()},
        submission=submission,
    )

