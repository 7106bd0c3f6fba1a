"""Verification ("same person or not?") on top of the distances of evaluation (docs/eval.md).

For every probe set, each probe × gallery pair whose views differ (identical views are excluded,
as in the rank-1 tables) is *genuine* (same id) or *impostor*. A pair is accepted when its
distance is at most the threshold: FAR = accepted impostors / impostors, TAR = accepted genuine /
genuine, FRR = 1 - TAR.

* EER: over every candidate threshold (every observed distance, and -inf), the one where
  ``|FAR - FRR|`` is smallest (the lowest such threshold on ties); EER = ``(FAR + FRR) / 2`` there.
* TAR@FAR=f: the largest candidate threshold whose FAR is at most ``f``; "n/a" when there are
  fewer than ``1/f`` impostor pairs (that FAR cannot be resolved).
* Memory stays bounded: distances are kept exactly while a class has at most
  :data:`EXACT_LIMIT` pairs; beyond that they go into a histogram of :data:`HIST_BINS` bins
  over ``[0, hi)``, ``hi`` doubling (neighbouring bins merged) whenever a larger distance arrives.
  Thresholds are then bin edges and a pair is accepted below the edge; curves are exact to one bin.

Open-set identification (what ``gait identify`` decides, reported as ISO/IEC 19795-1 and NIST's
FRVT 1:N do) is measured on the same distances: every probe is a *mated* search against the whole
gallery (its mate found when the best sequence of its own identity is strictly nearer than every
other identity's) and a *non-mated* search against the gallery with its own identity held out
(leave-one-identity-out), over all gallery views. A search is accepted when its best distance is
at most the threshold: FPIR = accepted non-mated searches / non-mated searches, FNIR = mated
searches whose mate is not returned at rank 1 within the threshold / mated searches. Only one
distance per probe and kind is kept, so these are always exact.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
from rich.console import Console

from gaitcli.errors import GaitError
from gaitcli.fileio import JSONValue

from .metrics import as_features, distance_block, encode_labels, part_norms

FARS = (1e-2, 1e-3, 1e-4)
EXACT_LIMIT = 1 << 24  # distances per class kept exactly (64 MB of float32)
HIST_BINS = 1 << 20
_CURVE_POINTS = 200
_DIST_BINS = 40
POOLED = "ALL"


class DistanceTally:
    """The distances of one class of pairs: exact while small, then a fine histogram."""

    def __init__(self, exact_limit: int = EXACT_LIMIT, bins: int = HIST_BINS) -> None:
        self.exact_limit = exact_limit
        self.bins = bins
        self.parts: list[np.ndarray] = []
        self.count = 0
        self.hist: np.ndarray | None = None
        self.hi = 1.0
        self.total = 0.0
        self.total_sq = 0.0
        self.lo_seen = math.inf
        self.hi_seen = -math.inf
        self._sorted: np.ndarray | None = None

    @property
    def exact(self) -> bool:
        return self.hist is None

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size == 0:
            return
        self.count += int(values.size)
        self.total += float(values.sum())
        self.total_sq += float(np.square(values).sum())
        self.lo_seen = min(self.lo_seen, float(values.min()))
        self.hi_seen = max(self.hi_seen, float(values.max()))
        self._sorted = None
        if self.hist is None:
            self.parts.append(values.astype(np.float32))
            if self.count > self.exact_limit:
                self._to_histogram()
        else:
            self._bin(values)

    def _to_histogram(self) -> None:
        self.hist = np.zeros(self.bins, dtype=np.int64)
        kept, self.parts = self.parts, []
        for part in kept:
            self._bin(part.astype(np.float64))

    def _bin(self, values: np.ndarray) -> None:
        assert self.hist is not None
        values = np.maximum(values, 0.0)
        while float(values.max()) >= self.hi:
            self.hist = self.hist.reshape(-1, 2).sum(axis=1)
            self.hist = np.concatenate([self.hist, np.zeros(self.bins - len(self.hist), dtype=np.int64)])
            self.hi *= 2.0
        index = np.minimum((values * (self.bins / self.hi)).astype(np.int64), self.bins - 1)
        self.hist += np.bincount(index, minlength=self.bins)

    def values(self) -> np.ndarray:
        """The sorted exact distances (exact mode only)."""
        if self._sorted is None:
            self._sorted = np.sort(np.concatenate(self.parts)) if self.parts else np.empty(0, np.float32)
        return self._sorted

    def candidates(self) -> np.ndarray:
        """Thresholds at which this class's counts change."""
        if self.hist is None:
            return np.unique(self.values()).astype(np.float64)
        return np.arange(self.bins + 1, dtype=np.float64) * (self.hi / self.bins)

    def accepted(self, thresholds: np.ndarray) -> np.ndarray:
        """How many distances are accepted at each threshold (``<= t`` exact, ``< t`` binned)."""
        if self.hist is None:
            found: np.ndarray = np.searchsorted(self.values(), thresholds.astype(np.float32), side="right")
            return found.astype(np.int64)
        cum: np.ndarray = np.concatenate([[0], np.cumsum(self.hist)])
        t = np.clip(np.nan_to_num(thresholds, posinf=self.hi, neginf=0.0), 0.0, self.hi)
        edge = np.clip(np.floor(t * (self.bins / self.hi)).astype(np.int64), 0, self.bins)
        counts: np.ndarray = cum[edge]
        return counts

    def distribution(self, lo: float, hi: float) -> Distribution:
        edges = np.linspace(lo, hi, _DIST_BINS + 1)
        counts = np.diff(np.concatenate([[0], self.accepted(edges[1:])]))
        mean = self.total / self.count if self.count else None
        var = max(self.total_sq / self.count - (mean or 0.0) ** 2, 0.0) if self.count else None
        return Distribution(
            self.count,
            mean,
            math.sqrt(var) if var is not None else None,
            self.lo_seen if self.count else None,
            self.hi_seen if self.count else None,
            edges.tolist(),
            counts.astype(int).tolist(),
        )


@dataclass
class Distribution:
    """Genuine or impostor distances of one probe set."""

    count: int
    """Pairs."""
    mean: float | None
    """Mean distance."""
    std: float | None
    """Standard deviation."""
    min: float | None
    """Smallest distance."""
    max: float | None
    """Largest distance."""
    edges: list[float]
    """Histogram bin edges (shared by the genuine and impostor histograms of a probe set)."""
    counts: list[int]
    """Pairs per bin."""

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "count": self.count,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "edges": list(self.edges),
            "counts": list(self.counts),
        }


@dataclass
class OperatingPoint:
    """TAR at a target FAR."""

    far: float
    """The target false accept rate."""
    tar: float | None
    """True accept rate at the threshold (None: n/a)."""
    threshold: float | None
    """The distance threshold (accept when distance <= it)."""
    achieved_far: float | None
    """The FAR actually reached at that threshold."""
    note: str | None = None
    """Why it is n/a."""

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "far": self.far,
            "tar": self.tar,
            "threshold": self.threshold,
            "achieved_far": self.achieved_far,
            "note": self.note,
        }


@dataclass
class VerificationResult:
    """Verification of one probe set against its gallery."""

    probe_set: str
    """Probe set name (``ALL``: every probe set pooled)."""
    genuine: Distribution
    """Same-id pairs."""
    impostor: Distribution
    """Different-id pairs."""
    eer: float | None
    """Equal error rate (fraction, None without both classes)."""
    eer_threshold: float | None
    """The threshold at the EER."""
    points: list[OperatingPoint]
    """TAR at FAR = 1e-2, 1e-3, 1e-4."""
    roc: dict[str, list[float | None]]
    """``far``, ``tar``, ``threshold`` (None: infinite): sampled ROC curve (DET: FRR = 1 - TAR)."""
    exact: bool
    """True when computed from every distance, False when from fine histograms."""

    def point(self, far: float) -> OperatingPoint | None:
        return next((p for p in self.points if math.isclose(p.far, far)), None)

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "probe_set": self.probe_set,
            "eer": self.eer,
            "eer_threshold": self.eer_threshold,
            "tar_at_far": [p.to_json() for p in self.points],
            "exact": self.exact,
            "genuine": self.genuine.to_json(),
            "impostor": self.impostor.to_json(),
            "roc": {key: list(values) for key, values in self.roc.items()},
        }


@dataclass
class OpenSetPoint:
    """The open-set threshold at a target FPIR, and FNIR there."""

    fpir: float
    """The target false positive identification rate."""
    threshold: float | None
    """Accept a search when its best distance is at most this (None: n/a)."""
    achieved_fpir: float | None
    """The FPIR measured at the threshold (at most ``fpir``)."""
    fnir: float | None
    """Mated searches whose mate is not at rank 1 within the threshold."""
    note: str | None = None
    """Why it is n/a."""

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "fpir": self.fpir,
            "threshold": self.threshold,
            "achieved_fpir": self.achieved_fpir,
            "fnir": self.fnir,
            "note": self.note,
        }


@dataclass
class OpenSetResult:
    """Open-set identification of one probe set: its mated and non-mated searches."""

    probe_set: str
    """Probe set name (``ALL``: every probe set pooled)."""
    gallery_identities: int
    """Identities in the gallery (a non-mated search sees one fewer when its own is there)."""
    non_mated_best: np.ndarray = field(repr=False)
    """Per non-mated search, the best distance to the other identities, sorted (inf: none)."""
    mated_best: np.ndarray = field(repr=False)
    """Per mated search, the mate's distance when it is the rank-1 identity, else inf; sorted."""
    fpirs: tuple[float, ...] = FARS
    """The FPIRs reported in tables and JSON."""

    @property
    def non_mated(self) -> int:
        return int(len(self.non_mated_best))

    @property
    def mated(self) -> int:
        return int(len(self.mated_best))

    @property
    def rank1(self) -> float | None:
        """Mated searches whose mate is the rank-1 identity (FNIR at an infinite threshold is 1 - this)."""
        return float(np.isfinite(self.mated_best).mean()) if self.mated else None

    def at(self, fpir: float) -> OpenSetPoint:
        """The largest threshold whose FPIR is at most ``fpir``; n/a with fewer than 1/fpir non-mated
        searches."""
        n = self.non_mated
        if n * fpir < 1:
            need = math.ceil(1 / fpir - 1e-9)
            return OpenSetPoint(fpir, None, None, None,
                                f"n/a: {n} non-mated searches, at least {need} needed to resolve this FPIR")
        cands = np.unique(np.concatenate([[-np.inf], self.non_mated_best, self.mated_best]))
        cands = cands[np.isfinite(cands) | (cands < 0)]
        rates = np.searchsorted(self.non_mated_best, cands, side="right") / n
        index = int(np.flatnonzero(rates <= fpir + 1e-15)[-1])
        threshold = float(cands[index])
        if not math.isfinite(threshold):
            return OpenSetPoint(fpir, None, None, None, "n/a: no distance threshold reaches this FPIR")
        hits = np.searchsorted(self.mated_best, threshold, side="right")
        fnir = 1.0 - hits / self.mated if self.mated else None
        return OpenSetPoint(fpir, threshold, float(rates[index]), fnir)

    @property
    def points(self) -> list[OpenSetPoint]:
        return [self.at(f) for f in self.fpirs]

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "probe_set": self.probe_set,
            "mated_searches": self.mated,
            "non_mated_searches": self.non_mated,
            "gallery_identities": self.gallery_identities,
            "rank1": self.rank1,
            "fnir_at_fpir": [p.to_json() for p in self.points],
        }


class SearchTally:
    """The best distances of open-set searches, filled a probe chunk at a time."""

    def __init__(self) -> None:
        self.non_mated: list[np.ndarray] = []
        self.mated: list[np.ndarray] = []

    def add(self, dist: np.ndarray, same: np.ndarray) -> None:
        """``dist`` ``[probes, gallery]`` over the whole gallery; ``same``: same identity."""
        if dist.shape[0] == 0:
            return
        other = np.where(same, np.inf, dist).min(axis=1) if dist.shape[1] else np.full(len(dist), np.inf)
        mate = np.where(same, dist, np.inf).min(axis=1) if dist.shape[1] else np.full(len(dist), np.inf)
        self.non_mated.append(other.astype(np.float64))
        has_mate = same.any(axis=1)
        self.mated.append(np.where(mate < other, mate, np.inf)[has_mate].astype(np.float64))

    def extend(self, other: SearchTally) -> None:
        self.non_mated.extend(other.non_mated)
        self.mated.extend(other.mated)

    def result(self, name: str, identities: int, fpirs: Sequence[float] = FARS) -> OpenSetResult:
        def joined(parts: list[np.ndarray]) -> np.ndarray:
            return np.sort(np.concatenate(parts)) if parts else np.empty(0, np.float64)

        return OpenSetResult(name, identities, joined(self.non_mated), joined(self.mated), tuple(fpirs))


OPEN_SET_RULE = (
    "each probe searched against the whole gallery (mated) and with its own identity held out "
    "(non-mated), all gallery views"
)


@dataclass
class VerificationReport:
    """Verification of every probe set of a protocol, and its open-set identification."""

    metric: str
    """Distance metric."""
    rule: str
    """Which pairs were counted."""
    results: list[VerificationResult] = field(default_factory=list)
    """Per probe set, then ``ALL`` (pooled) when there are several."""
    open_set: list[OpenSetResult] = field(default_factory=list)
    """Open-set identification per probe set, then ``ALL`` (pooled) when there are several."""

    def get(self, name: str) -> VerificationResult | None:
        return next((r for r in self.results if r.probe_set == name), None)

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "metric": self.metric,
            "pairs": self.rule,
            "sets": [r.to_json() for r in self.results],
            "open_set": {"searches": OPEN_SET_RULE, "sets": [r.to_json() for r in self.open_set]},
        }


class PairAccumulator:
    """Genuine and impostor tallies, filled block by block."""

    def __init__(self, exact_limit: int = EXACT_LIMIT) -> None:
        self.genuine = DistanceTally(exact_limit)
        self.impostor = DistanceTally(exact_limit)

    def add(self, dist: np.ndarray, same: np.ndarray, keep: np.ndarray | None = None) -> None:
        """``dist``, ``same`` (same id) and ``keep`` (pair counted) are ``[rows, cols]``."""
        keep = np.ones_like(same, dtype=bool) if keep is None else keep
        self.genuine.add(dist[same & keep])
        self.impostor.add(dist[~same & keep])

    def result(self, name: str, fars: Sequence[float] = FARS) -> VerificationResult:
        return summarise(name, self.genuine, self.impostor, fars)


def _rates(gen: DistanceTally, imp: DistanceTally) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cands = np.unique(np.concatenate([[-np.inf], gen.candidates(), imp.candidates()]))
    far = imp.accepted(cands) / max(imp.count, 1)
    tar = gen.accepted(cands) / max(gen.count, 1)
    return cands, far, tar


def _operating_point(
    cands: np.ndarray, far: np.ndarray, tar: np.ndarray, imp: int, target: float
) -> OperatingPoint:
    if imp * target < 1:
        return OperatingPoint(
            target,
            None,
            None,
            None,
            f"n/a: {imp} impostor pairs, at least {math.ceil(1 / target)} needed to resolve this FAR",
        )
    index = int(np.flatnonzero(far <= target + 1e-15)[-1])  # far is non-decreasing; -inf gives 0
    threshold = float(cands[index])
    return OperatingPoint(
        target, float(tar[index]), threshold if math.isfinite(threshold) else None, float(far[index])
    )


def _sample_curve(cands: np.ndarray, far: np.ndarray, tar: np.ndarray) -> dict[str, list[float | None]]:
    if len(cands) <= _CURVE_POINTS:
        index = np.arange(len(cands))
    else:
        lin = np.linspace(0, len(cands) - 1, _CURVE_POINTS // 2).astype(np.int64)
        geo = np.searchsorted(
            far, np.geomspace(max(far[far > 0].min(initial=1.0), 1e-12), 1.0, _CURVE_POINTS // 2)
        )
        index = np.unique(np.clip(np.concatenate([lin, geo]), 0, len(cands) - 1))
    finite = np.isfinite(cands[index])
    return {
        "far": far[index].tolist(),
        "tar": tar[index].tolist(),
        "threshold": [float(c) if f else None for c, f in zip(cands[index], finite, strict=True)],
    }


def summarise(
    name: str, gen: DistanceTally, imp: DistanceTally, fars: Sequence[float] = FARS
) -> VerificationResult:
    """EER, TAR@FAR, the sampled ROC and both distributions from two tallies."""
    lo = min(gen.lo_seen, imp.lo_seen)
    hi = max(gen.hi_seen, imp.hi_seen)
    lo, hi = (0.0, 1.0) if not math.isfinite(lo) else (lo, hi if hi > lo else lo + 1.0)
    genuine, impostor = gen.distribution(lo, hi), imp.distribution(lo, hi)
    exact = gen.exact and imp.exact
    if gen.count == 0 or imp.count == 0:
        points = [OperatingPoint(f, None, None, None, "n/a: no genuine or no impostor pairs") for f in fars]
        return VerificationResult(
            name, genuine, impostor, None, None, points, {"far": [], "tar": [], "threshold": []}, exact
        )
    cands, far, tar = _rates(gen, imp)
    gap = np.abs(far - (1.0 - tar))
    best = int(np.argmin(gap))
    eer = float((far[best] + 1.0 - tar[best]) / 2)
    eer_t = float(cands[best]) if math.isfinite(cands[best]) else None
    points = [_operating_point(cands, far, tar, imp.count, f) for f in fars]
    return VerificationResult(
        name, genuine, impostor, eer, eer_t, points, _sample_curve(cands, far, tar), exact
    )


def verify_distances(
    dist: npt.ArrayLike,
    probe_labels: npt.ArrayLike,
    gallery_labels: npt.ArrayLike,
    *,
    probe_views: npt.ArrayLike | None = None,
    gallery_views: npt.ArrayLike | None = None,
    exclude_same_view: bool = True,
    name: str = "probe",
    fars: Sequence[float] = FARS,
    exact_limit: int = EXACT_LIMIT,
) -> VerificationResult:
    """Verification from a full distance matrix ``[probes, gallery]`` (small sets, tests)."""
    d = np.asarray(dist, dtype=np.float32)
    _, (pl, gl) = encode_labels(probe_labels, gallery_labels)
    same = pl[:, None] == gl[None, :]
    keep = None
    if exclude_same_view and probe_views is not None and gallery_views is not None:
        keep = np.asarray(probe_views).astype(str)[:, None] != np.asarray(gallery_views).astype(str)[None, :]
    acc = PairAccumulator(exact_limit)
    acc.add(d, same, keep)
    return acc.result(name, fars)


def search_distances(
    dist: npt.ArrayLike,
    probe_labels: npt.ArrayLike,
    gallery_labels: npt.ArrayLike,
    *,
    name: str = "probe",
    fpirs: Sequence[float] = FARS,
) -> OpenSetResult:
    """Open-set identification from a full distance matrix ``[probes, gallery]`` (small sets, tests)."""
    d = np.asarray(dist, dtype=np.float32)
    _, (pl, gl) = encode_labels(probe_labels, gallery_labels)
    tally = SearchTally()
    tally.add(d, pl[:, None] == gl[None, :])
    return tally.result(name, len(np.unique(gl)), fpirs)


PAIR_RULE = "probe x gallery pairs of the protocol, identical views excluded"


def verify_protocol(
    embeddings: np.ndarray | torch.Tensor,
    labels: npt.ArrayLike,
    types: npt.ArrayLike,
    views: npt.ArrayLike,
    gallery_types: Iterable[str],
    probe_sets: dict[str, Sequence[str]],
    metric: str = "euc",
    *,
    device: torch.device | str | None = None,
    chunk: int = 1024,
    fars: Sequence[float] = FARS,
    progress: Callable[[int, int], None] | None = None,
) -> VerificationReport:
    """Verification for every probe set of a protocol (its gallery types and probe sets), memory
    bounded: the probe × gallery distances are made ``chunk`` probes at a time."""
    feats = as_features(embeddings, device or "cpu")
    labels_np = encode_labels(labels)[1][0]
    types_np = np.asarray(types).astype(str)
    views_np = np.asarray(views).astype(str)
    g_rows = np.flatnonzero(np.isin(types_np, list(gallery_types)))
    if len(g_rows) == 0:
        raise GaitError("verification: no gallery sequences of type " + ", ".join(gallery_types))
    gallery = feats[torch.from_numpy(g_rows)]
    g_norms = part_norms(gallery, metric)
    identities = len(np.unique(labels_np[g_rows]))
    pooled, pooled_searches = PairAccumulator(), SearchTally()
    report = VerificationReport(metric, PAIR_RULE)
    sets = {k: np.flatnonzero(np.isin(types_np, list(v))) for k, v in probe_sets.items()}
    steps, done = sum(-(-len(r) // chunk) for r in sets.values()), 0
    for name, rows in sets.items():
        acc, searches = PairAccumulator(), SearchTally()
        for c0 in range(0, len(rows), chunk):
            r = rows[c0 : c0 + chunk]
            d = distance_block(feats[torch.from_numpy(r)], gallery, metric, y_norms=g_norms).cpu().numpy()
            same = labels_np[r][:, None] == labels_np[g_rows][None, :]
            keep = views_np[r][:, None] != views_np[g_rows][None, :]
            acc.add(d, same, keep)
            pooled.add(d, same, keep)
            searches.add(d, same)
            done += 1
            if progress is not None:
                progress(done, steps)
        report.results.append(acc.result(name, fars))
        report.open_set.append(searches.result(name, identities, fars))
        pooled_searches.extend(searches)
    if len(sets) > 1:
        report.results.append(pooled.result(POOLED, fars))
        report.open_set.append(pooled_searches.result(POOLED, identities, fars))
    return report


# ----------------------------------------------------------------------------------------------
# tables, CSV and the ROC / DET picture
# ----------------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}"


def table_rows(report: VerificationReport) -> list[list[str]]:
    """``probe set, genuine, impostor, EER %, TAR@FAR=1e-2 %, 1e-3, 1e-4, exact`` per set."""
    rows = []
    for r in report.results:
        row = [r.probe_set, str(r.genuine.count), str(r.impostor.count), _pct(r.eer)]
        for far in FARS:
            point = r.point(far)
            row.append(_pct(point.tar if point is not None else None))
        rows.append(row + ["exact" if r.exact else "histogram"])
    return rows


def open_set_fpirs(report: VerificationReport) -> list[float]:
    """The FPIRs of the open-set table: 1e-2, 1e-3, 1e-4 and any asked for (``--calibrate``),
    largest first."""
    asked = {f for r in report.open_set for f in r.fpirs} | set(FARS)
    return sorted(asked, reverse=True)


def _short(rate: float) -> str:
    """``0.05`` → ``5e-2``."""
    mantissa, exponent = f"{rate:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def open_set_header(fpirs: Sequence[float]) -> list[str]:
    rates = [("FNIR" if i == 0 else "") + f"@{_short(f)} %" for i, f in enumerate(fpirs)]
    return ["probe set", "mated", "non-mated", "rank-1 %", *rates]


def open_set_rows(report: VerificationReport, fpirs: Sequence[float] = FARS) -> list[list[str]]:
    """``probe set, mated, non-mated, rank-1 %, FNIR (%) at each of fpirs`` per set."""
    rows = []
    for r in report.open_set:
        row = [r.probe_set, str(r.mated), str(r.non_mated), _pct(r.rank1)]
        row += [_pct(r.at(f).fnir) for f in fpirs]
        rows.append(row)
    return rows


TABLE_HEADER = [
    "probe set",
    "genuine",
    "impostor",
    "EER %",
    "TAR@1e-2 %",
    "TAR@1e-3 %",
    "TAR@1e-4 %",
    "curves",
]


def csv_text(report: VerificationReport) -> str:
    """CSV rows ``table=verification`` with the columns of :data:`TABLE_HEADER` (n/a = empty)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        [
            "table",
            "probe_set",
            "genuine_pairs",
            "impostor_pairs",
            "eer",
            "tar_far_1e-2",
            "tar_far_1e-3",
            "tar_far_1e-4",
            "curves",
        ]
    )
    for row in table_rows(report):
        writer.writerow(["verification", *[("" if c == "n/a" else c) for c in row]])
    if report.open_set:
        writer.writerow([])
        writer.writerow(
            [
                "table",
                "probe_set",
                "mated_searches",
                "non_mated_searches",
                "rank1",
                "fnir_fpir_1e-2",
                "fnir_fpir_1e-3",
                "fnir_fpir_1e-4",
            ]
        )
        for row in open_set_rows(report, FARS):
            writer.writerow(["open_set", *[("" if c == "n/a" else c) for c in row]])
    return buf.getvalue()


def save_roc(report: VerificationReport, path: str | os.PathLike[str]) -> None:
    """ROC (FAR vs TAR, log FAR) and DET (FAR vs FRR, log-log) per probe set into one image."""
    from gaitcli.imaging import figure_class, save_figure

    fig = figure_class("roc")(figsize=(10, 4.2))
    roc, det = fig.subplots(1, 2)
    for r in report.results:
        far = np.asarray(r.roc["far"], dtype=float)
        tar = np.asarray(r.roc["tar"], dtype=float)
        ok = far > 0
        label = f"{r.probe_set} (EER {_pct(r.eer)}%)"
        roc.plot(far[ok], tar[ok], label=label)
        det.plot(far[ok], np.maximum(1 - tar[ok], 1e-6), label=label)
    roc.set(xscale="log", xlabel="false accept rate", ylabel="true accept rate", title="ROC", ylim=(0, 1.01))
    det.set(xscale="log", yscale="log", xlabel="false accept rate", ylabel="false reject rate", title="DET")
    for ax in (roc, det):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, "roc", dpi=110)


def verification_for_results(
    results: Mapping[str, object],
    embeddings: np.ndarray | torch.Tensor,
    labels: npt.ArrayLike,
    types: npt.ArrayLike,
    views: npt.ArrayLike,
    *,
    device: torch.device | str | None = None,
    extra_fars: Sequence[float] = (),
) -> VerificationReport:
    """Verification on the gallery and probe sets of a finished protocol run (``results``: its
    :meth:`~gaitcli.evaluation.results.ProtocolResult.to_json`)."""
    gallery_types, probe_sets = results["gallery_types"], results["probe_sets"]
    if not isinstance(gallery_types, (list, tuple)) or not isinstance(probe_sets, Mapping):
        raise TypeError("results: gallery_types must be a list and probe_sets a mapping of lists")
    return verify_protocol(
        embeddings,
        labels,
        types,
        views,
        [str(t) for t in gallery_types],
        {str(name): [str(t) for t in kinds] for name, kinds in probe_sets.items()},
        str(results.get("metric") or "euc"),
        device=device,
        fars=tuple(FARS) + tuple(f for f in extra_fars if f not in FARS),
    )


def render_verification(report: VerificationReport, console: Console) -> None:
    """The verification table (rates in %, n/a where a FAR cannot be resolved)."""
    from rich.table import Table

    table = Table(title=f"Verification ({report.rule})", title_justify="left", box=None, pad_edge=False)
    for name in TABLE_HEADER:
        table.add_column(name, justify="left" if name in ("probe set", "curves") else "right")
    for row in table_rows(report):
        table.add_row(*row)
    console.print(table)
    for far in FARS:
        missing = [r for r in report.results if (p := r.point(far)) is not None and p.tar is None]
        if missing:
            pairs = ", ".join(f"{r.probe_set} {r.impostor.count}" for r in missing)
            console.print(
                f"  TAR@FAR={far:g} n/a: at least {round(1 / far)} impostor pairs needed (have {pairs})",
                highlight=False,
            )
    if not report.open_set:
        return
    fpirs = open_set_fpirs(report)
    table = Table(
        title="Open-set identification (what gait identify decides; leave-one-identity-out)",
        title_justify="left",
        box=None,
        pad_edge=False,
    )
    for name in open_set_header(fpirs):
        table.add_column(name, justify="left" if name == "probe set" else "right")
    for row in open_set_rows(report, fpirs):
        table.add_row(*row)
    console.print(table)
    console.print(
        "  FNIR@f: mated searches whose mate is not rank 1 within the threshold that accepts at most "
        "a share f of the non-mated searches (FPIR = f; n/a with fewer than 1/f of them)",
        highlight=False,
    )
