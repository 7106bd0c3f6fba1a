"""``gait compare``: is the difference in rank-1 between two evaluations of the same probes real?
(docs/compare.md)

The inputs are hits files (``gait eval --save-hits``, :mod:`gaitcli.evaluation.hits`): one or
more runs per side (e.g. one per training seed), every one an evaluation of the same probes
against the same gallery under the same protocol (anything else is refused in one line). For each
cell of the protocol's table (probe set, probe view, column), each probe view's row and each probe
set, :func:`compare_hits` gives

* the rank-1 of each side (%) and the difference A − B (points). A side's outcome for one probe
  and column is its hit rate over the side's runs; a cell is the mean over its probes; a row the
  mean over its cells, identical views left out as in ``gait eval``'s headline; a set the mean
  over its rows (the headline ``rank1`` of ``gait eval``, without the reference's rounding of
  each cell to 2 decimals);
* a paired percentile-bootstrap interval for the difference: *subjects* (probe ids) are drawn
  with replacement, each drawn subject bringing all of its probes in every set, view and column,
  and both sides are recomputed on the same draw; the gallery stays fixed. ``resamples`` draws
  (10,000 by default), seeded by ``seed``, vectorised (one matrix product per block of draws);
  draws in which a cell has no probe leave that cell out of that draw;
* McNemar's exact test: the discordant outcomes (A hit and B miss, A miss and B hit) of the same
  probe and column are counted over the paired runs and ``p = min(1, 2 P(X <= min(b, c)))``,
  ``X ~ Binomial(b + c, 1/2)``. Runs are paired by training seed when both sides have the same
  seeds, else in the order given when both sides have as many runs; otherwise no p-value. The
  test treats every outcome as independent, which outcomes of one subject are not: the
  subject-bootstrap interval is the one that accounts for that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gaitcli.errors import GaitError, option
from gaitcli.evaluation.hits import NA, EvalIdentity, Hits, probe_keys
from gaitcli.fileio import JSONValue

DEFAULT_RESAMPLES = 10_000
_BLOCK_CELLS = 1 << 22  # draws x subjects held at once in one block of the bootstrap


class CompareError(GaitError):
    """Two evaluations that cannot be compared."""


# ----------------------------------------------------------------------------------------------
# the two tests
# ----------------------------------------------------------------------------------------------


def mcnemar_exact(b: int | np.ndarray, c: int | np.ndarray) -> float | np.ndarray:
    """McNemar's exact two-sided p-value for ``b`` and ``c`` discordant pairs:
    ``min(1, 2 P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)`` (1 when nothing is
    discordant). Element-wise for arrays."""
    from scipy.stats import binom

    bb, cc = np.asarray(b, dtype=np.int64), np.asarray(c, dtype=np.int64)
    n = bb + cc
    p = np.minimum(1.0, 2.0 * binom.cdf(np.minimum(bb, cc), np.maximum(n, 1), 0.5))
    p = np.where(n == 0, 1.0, p)
    return float(p) if p.ndim == 0 else p


def mcnemar_exact_small(b: int, c: int) -> float:
    """The same p-value in exact integer arithmetic (``math.comb``), for small counts (tests)."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return float(min(1.0, 2 * tail / 2**n))


def _draw_counts(rng: np.random.Generator, draws: int, subjects: int) -> np.ndarray:
    """``[draws, subjects]``: how often each subject is drawn in each resample (with replacement)."""
    picks = rng.integers(0, subjects, size=(draws, subjects), dtype=np.int64)
    picks += np.arange(draws, dtype=np.int64)[:, None] * subjects
    counts = np.bincount(picks.ravel(), minlength=draws * subjects).reshape(draws, subjects)
    return counts.astype(np.float32)  # small whole numbers: exact in float32


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """One cell, row or probe set: both sides, their difference and the two tests."""

    a: float | None
    """Rank-1 (%) of side A (mean over its runs); None: n/a."""
    b: float | None
    """Rank-1 (%) of side B."""
    diff: float | None
    """A − B in percentage points."""
    low: float | None
    """Lower end of the paired-bootstrap interval of ``diff``."""
    high: float | None
    """Upper end."""
    a_only: int
    """Discordant outcomes where A hits and B misses (summed over the paired runs)."""
    b_only: int
    """Discordant outcomes where B hits and A misses."""
    outcomes: int
    """Outcomes (probe x column) compared per pair of runs."""
    p_value: float | None
    """McNemar's exact p-value; None when the runs are not paired."""

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "a": self.a,
            "b": self.b,
            "diff": self.diff,
            "interval": None if self.low is None or self.high is None else [self.low, self.high],
            "a_only": self.a_only,
            "b_only": self.b_only,
            "outcomes": self.outcomes,
            "p_value": self.p_value,
        }


@dataclass(frozen=True)
class SetComparison:
    """One probe set."""

    name: str
    """Probe set name (NM / BG / CL, ...)."""
    overall: Estimate
    """The set's headline (mean over its probe views)."""
    identical_views: bool
    """Whether identical views count (only when the set has no other, e.g. a single view)."""
    views: dict[str, Estimate]
    """Per probe view: the row mean over its columns."""
    cells: dict[str, dict[str, Estimate]]
    """Probe view → column → cell (cells without probes are left out)."""

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "name": self.name,
            "overall": self.overall.to_json(),
            "identical_views": self.identical_views,
            "views": {v: e.to_json() for v, e in self.views.items()},
            "cells": {v: {c: e.to_json() for c, e in row.items()} for v, row in self.cells.items()},
        }


@dataclass(frozen=True)
class RunSummary:
    """One run (hits file) of a side."""

    source: str
    """The hits file."""
    identity: EvalIdentity
    """Its evaluation (checkpoint, seed, metric, ...)."""
    rank1: dict[str, float | None]
    """Its headline rank-1 per probe set, recomputed from its outcomes."""

    def to_json(self) -> dict[str, JSONValue]:
        return {"source": self.source, "seed": self.identity.seed, "identity": self.identity.to_json(),
                "rank1": dict(self.rank1)}


@dataclass(frozen=True)
class PairSummary:
    """One pair of runs of McNemar's test (A run, B run), and its per-set results."""

    a: int
    """Index of the A run."""
    b: int
    """Index of the B run."""
    seed: int | None
    """The seed both share (pairing by seed), else None."""
    sets: dict[str, Estimate]
    """Per probe set: that pair's rank-1, difference and McNemar test (no interval)."""

    def to_json(self) -> dict[str, JSONValue]:
        sets: dict[str, JSONValue] = {k: v.to_json() for k, v in self.sets.items()}
        return {"a": self.a, "b": self.b, "seed": self.seed, "sets": sets}


@dataclass(frozen=True)
class Comparison:
    """What ``gait compare`` reports (``to_json()`` is its ``--json`` document)."""

    protocol: str
    """The protocol both sides were evaluated under."""
    kind: str
    """``single-view``, ``cross-view``, ``retrieval`` (gait3d, grew: one row, ``all``) or
    ``cloth-change`` (ccpg: its cameras)."""
    views: list[str]
    """The table's probe views."""
    columns: list[str]
    """The table's columns (gallery views, or ``all``)."""
    runs_a: list[RunSummary]
    """Side A's runs."""
    runs_b: list[RunSummary]
    """Side B's runs."""
    pairing: str | None
    """How runs were paired for McNemar's test: ``single``, ``seed``, ``order``, or None (not paired)."""
    pairs: list[PairSummary]
    """The pairs."""
    subjects: int
    """Subjects (probe ids) resampled."""
    probes: int
    """Probe rows (probe-set memberships)."""
    resamples: int
    """Bootstrap draws."""
    seed: int
    """The bootstrap's seed."""
    confidence: float
    """The interval's level."""
    sets: list[SetComparison]
    """Per probe set."""
    notes: list[str] = field(default_factory=list)
    """Things the reader should know (pairing, same evaluation on both sides, ...)."""

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "protocol": self.protocol,
            "kind": self.kind,
            "difference": "A - B, rank-1 percentage points",
            "confidence": self.confidence,
            "bootstrap": {"unit": "subject", "resamples": self.resamples, "seed": self.seed,
                          "method": "paired percentile bootstrap"},
            "test": "McNemar exact (binomial on discordant outcomes)",
            "pairing": self.pairing,
            "subjects": self.subjects,
            "probes": self.probes,
            "views": list(self.views),
            "columns": list(self.columns),
            "a": [r.to_json() for r in self.runs_a],
            "b": [r.to_json() for r in self.runs_b],
            "pairs": [p.to_json() for p in self.pairs],
            "sets": [s.to_json() for s in self.sets],
            "notes": list(self.notes),
        }


# ----------------------------------------------------------------------------------------------
# checking and aligning the inputs
# ----------------------------------------------------------------------------------------------


def _key_text(key: tuple[str, str, str, str]) -> str:
    return f"{key[0]} {key[1]}/{key[2]}/{key[3]}"


def _order(hits: Hits) -> np.ndarray:
    """Rows sorted by (probe set, id, type, view); a repeated key is one line."""
    order = np.lexsort((hits.probe_views, hits.types, hits.labels, hits.sets))
    keys = np.stack([hits.sets[order], hits.labels[order], hits.types[order], hits.probe_views[order]], 1)
    same = (keys[1:] == keys[:-1]).all(axis=1) if len(keys) > 1 else np.zeros(0, bool)
    if same.any():
        first = tuple(str(x) for x in keys[int(np.flatnonzero(same)[0])])
        raise CompareError(
            f"{hits.where()}: probe {_key_text((first[0], first[1], first[2], first[3]))} appears twice "
            "(features holding a sequence twice?); evaluate a split with each sequence once"
        )
    return order


def _same_probes(ref: Hits, other: Hits) -> None:
    """One line when ``other`` is not an evaluation of ``ref``'s probes against ``ref``'s gallery."""
    a, b = ref.where(), other.where()
    ia, ib = ref.identity, other.identity
    if (ia.protocol, ia.kind) != (ib.protocol, ib.kind):
        raise CompareError(
            f"{a} ({ia.protocol}) and {b} ({ib.protocol}) are evaluations under different protocols; "
            "compare evaluations of the same probes (one test split, one protocol)"
        )
    if ref.probe_sets != other.probe_sets or ref.columns != other.columns:
        raise CompareError(
            f"{a} and {b} have different probe sets or views ({', '.join(ref.probe_sets)} over "
            f"{len(ref.columns)} columns vs {', '.join(other.probe_sets)} over {len(other.columns)}); "
            "compare evaluations of the same probes"
        )
    ka, kb = set(probe_keys(ref)), set(probe_keys(other))
    if ka != kb:
        missing, extra = sorted(ka - kb), sorted(kb - ka)
        where = (f"{len(extra)} probes of {b} are not in {a} (first: {_key_text(extra[0])})" if extra
                 else f"{len(missing)} probes of {a} are not in {b} (first: {_key_text(missing[0])})")
        raise CompareError(
            f"{a} and {b} are not evaluations of the same probes: {where}; evaluate both on one test split "
            "with one protocol"
        )
    if ref.gallery_digest != other.gallery_digest:
        raise CompareError(
            f"{a} and {b} score the same probes against different galleries ({ref.gallery_size} vs "
            f"{other.gallery_size} sequences); evaluate both on one test split"
        )


def _same_run_twice(runs: Sequence[Hits], side: str) -> None:
    seen: dict[tuple[str, str], str] = {}
    for h in runs:
        sha = h.identity.provenance.checkpoint_sha256
        if sha is None:
            continue
        key = (sha, h.identity.metric)
        if key in seen:
            raise CompareError(
                f"{seen[key]} and {h.where()} are the same evaluation (checkpoint {sha[:12]}, metric "
                f"{h.identity.metric}) given twice for side {side}; give each run once"
            )
        seen[key] = h.where()


def _pairing(a: Sequence[Hits], b: Sequence[Hits], notes: list[str]
             ) -> tuple[str | None, list[tuple[int, int]]]:
    """Which A run is tested against which B run."""
    if len(a) == 1 and len(b) == 1:
        return "single", [(0, 0)]
    sa, sb = [h.identity.seed for h in a], [h.identity.seed for h in b]
    known = None not in sa and None not in sb
    if known and len(set(sa)) == len(sa) and len(set(sb)) == len(sb) and set(sa) == set(sb):
        where = {s: i for i, s in enumerate(sb)}
        return "seed", sorted(((i, where[s]) for i, s in enumerate(sa)), key=lambda p: sa[p[0]] or 0)
    if len(a) == len(b):
        notes.append("runs paired for McNemar's test in the order given (the two sides do not have the "
                     "same known training seeds)")
        return "order", [(i, i) for i in range(len(a))]
    notes.append("no McNemar p-values: its runs must be paired (give both sides the same training seeds, "
                 "or as many runs)")
    return None, []


# ----------------------------------------------------------------------------------------------
# the comparison
# ----------------------------------------------------------------------------------------------


@dataclass
class _Layout:
    """Units (probe x column outcomes that exist), their cells, rows and sets."""

    unit_rows: np.ndarray
    unit_cols: np.ndarray
    unit_cell: np.ndarray
    unit_subject: np.ndarray
    cells: list[tuple[str, str, str]]  # (set, view, column) per cell index
    rows: list[tuple[str, str]]  # (set, view) per row index
    set_names: list[str]
    cell_row: np.ndarray  # [K, G] float: cell counts in that row's mean
    row_set: np.ndarray  # [G, S] float
    identical: dict[str, bool]
    subjects: int


def _layout(ref: Hits, outcome: np.ndarray) -> _Layout:
    sets, views, cols = list(ref.probe_sets), list(ref.views), list(ref.columns)
    valid = outcome != NA
    excluded = ref.excluded()
    r, c = np.nonzero(valid)
    set_idx = np.array([sets.index(s) for s in ref.sets.tolist()], dtype=np.int64)
    view_idx = np.array([views.index(v) for v in ref.row_views().tolist()], dtype=np.int64)
    full = (set_idx[r] * len(views) + view_idx[r]) * len(cols) + c
    used, unit_cell = np.unique(full, return_inverse=True)
    cells = [(sets[int(k) // (len(views) * len(cols))], views[(int(k) // len(cols)) % len(views)],
              cols[int(k) % len(cols)]) for k in used]
    cell_excluded = np.zeros(len(used), dtype=bool)
    cell_excluded[unit_cell] = excluded[r, c]
    # a set with nothing but identical-view cells (a single view) keeps them, as the eval's headline does
    identical = {s: not any(cs == s and not cell_excluded[k] for k, (cs, _, _) in enumerate(cells))
                 for s in sets}
    rows = sorted({(s, v) for s, v, _ in cells}, key=lambda sv: (sets.index(sv[0]), views.index(sv[1])))
    cell_row = np.zeros((len(cells), len(rows)))
    for k, (s, v, _) in enumerate(cells):
        if identical[s] or not cell_excluded[k]:
            cell_row[k, rows.index((s, v))] = 1.0
    row_set = np.zeros((len(rows), len(sets)))
    for g, (s, _) in enumerate(rows):
        row_set[g, sets.index(s)] = 1.0
    _, subject = np.unique(ref.labels, return_inverse=True)
    return _Layout(r, c, unit_cell, subject[r], cells, rows, sets, cell_row, row_set, identical,
                   int(subject.max()) + 1 if len(subject) else 0)


def _nan_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean of ``values [..., K]`` over the members of each column of ``weights [K, G]``, NaN left out."""
    ok = ~np.isnan(values)
    total = np.where(ok, values, 0.0) @ weights
    count = ok.astype(np.float64) @ weights
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1e-300), np.nan)


def _levels(cell_values: np.ndarray, lay: _Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells, rows and sets from cell values ``[..., K]``."""
    rows = _nan_mean(cell_values, lay.cell_row)
    return cell_values, rows, _nan_mean(rows, lay.row_set)


def _cell_rates(unit_values: np.ndarray, lay: _Layout) -> np.ndarray:
    k = len(lay.cells)
    total = np.bincount(lay.unit_cell, weights=unit_values, minlength=k)
    count = np.bincount(lay.unit_cell, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan) * 100


def _bootstrap(diff_units: np.ndarray, lay: _Layout, resamples: int, seed: int, confidence: float
               ) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(low, high) per cell, row and set of the paired subject bootstrap of the difference."""
    s, k = lay.subjects, len(lay.cells)
    flat = lay.unit_subject * k + lay.unit_cell
    diff = np.bincount(flat, weights=diff_units, minlength=s * k).reshape(s, k)
    count = np.bincount(flat, minlength=s * k).reshape(s, k)
    # one float32 product per block for numerator and denominator (3x faster than float64; the
    # sums are of small numbers, far inside float32's precision at the 1e-4 points shown)
    per_subject = np.concatenate([diff, count], axis=1).astype(np.float32)
    rng = np.random.default_rng(seed)
    block = max(1, min(resamples, _BLOCK_CELLS // max(s, 1)))
    draws: list[list[np.ndarray]] = [[], [], []]
    done = 0
    while done < resamples:
        n = min(block, resamples - done)
        both = (_draw_counts(rng, n, s) @ per_subject).astype(np.float64)
        num, den = both[:, :k], both[:, k:]
        with np.errstate(invalid="ignore", divide="ignore"):
            cells = np.where(den > 0.5, num / np.maximum(den, 1.0), np.nan) * 100
        for level, values in zip(draws, _levels(cells, lay), strict=True):
            level.append(values)
        done += n
    tail = (1 - confidence) / 2 * 100
    return tuple(_percentiles(np.concatenate(level), (tail, 100 - tail)) for level in draws)


def _percentiles(values: np.ndarray, q: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the ``q`` percentiles of the draws with a value (a column without any: NaN)."""
    low, high = np.full(values.shape[1], np.nan), np.full(values.shape[1], np.nan)
    full = ~np.isnan(values).any(axis=0)
    if full.any():  # one vectorised call for the columns every draw has
        low[full], high[full] = np.percentile(values[:, full], q, axis=0)
    for col in np.flatnonzero(~full):
        present = values[:, col][~np.isnan(values[:, col])]
        if present.size:
            low[col], high[col] = np.percentile(present, q)
    return low, high


def _number(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def _discordant(a_runs: np.ndarray, b_runs: np.ndarray, pairs: list[tuple[int, int]], lay: _Layout
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per unit: A-only and B-only hits summed over the pairs."""
    a_only = np.zeros(len(lay.unit_rows), dtype=np.int64)
    b_only = np.zeros(len(lay.unit_rows), dtype=np.int64)
    for i, j in pairs:
        a_only += (a_runs[i] == 1) & (b_runs[j] == 0)
        b_only += (a_runs[i] == 0) & (b_runs[j] == 1)
    return a_only, b_only


def _counts(per_unit: np.ndarray, lay: _Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per unit counts summed to cells, rows (the row's cells) and sets."""
    cells = np.bincount(lay.unit_cell, weights=per_unit, minlength=len(lay.cells))
    rows = cells @ lay.cell_row
    return cells, rows, rows @ lay.row_set


def _estimates(
    lay: _Layout,
    a_units: np.ndarray,
    b_units: np.ndarray,
    intervals: tuple[tuple[np.ndarray, np.ndarray], ...] | None,
    discordant: tuple[np.ndarray, np.ndarray] | None,
    pairs: int,
) -> list[list[Estimate]]:
    """Estimates per cell, row and set."""
    a_levels = _levels(_cell_rates(a_units, lay), lay)
    b_levels = _levels(_cell_rates(b_units, lay), lay)
    units = _counts(np.ones(len(lay.unit_rows)), lay)
    disc_a = _counts(discordant[0].astype(np.float64), lay) if discordant is not None else None
    disc_b = _counts(discordant[1].astype(np.float64), lay) if discordant is not None else None
    out: list[list[Estimate]] = []
    for level in range(3):
        a, b = a_levels[level], b_levels[level]
        if disc_a is not None and disc_b is not None:
            ca, cb = np.rint(disc_a[level]).astype(np.int64), np.rint(disc_b[level]).astype(np.int64)
            pv = np.atleast_1d(mcnemar_exact(ca, cb))
        else:
            ca = cb = np.zeros(len(a), dtype=np.int64)
            pv = None
        est = []
        for i in range(len(a)):
            d = a[i] - b[i]
            low = high = None
            if intervals is not None and np.isfinite(d):
                low, high = _number(intervals[level][0][i]), _number(intervals[level][1][i])
            est.append(Estimate(
                _number(a[i]), _number(b[i]), _number(d), low, high, int(ca[i]), int(cb[i]),
                int(round(units[level][i])), None if pv is None else float(pv[i]),
            ))
        out.append(est)
    return out


def compare_hits(
    a: Sequence[Hits],
    b: Sequence[Hits],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> Comparison:
    """Compare side ``a`` with side ``b`` (one or more runs each, e.g. one per training seed): the
    difference in rank-1 per cell, probe view and probe set, with its paired subject-bootstrap
    interval and McNemar's exact p-value (module docstring; docs/compare.md)."""
    if not a or not b:
        raise CompareError("gait compare needs at least one hits file per side")
    if resamples < 1:
        raise CompareError(f"{option('resamples', resamples)}: at least 1 bootstrap draw (10000 is usual)")
    if not 0 < confidence < 1:
        raise CompareError(f"{option('confidence', confidence)}: a level between 0 and 1, e.g. 0.95")
    ref = a[0]
    for other in [*a[1:], *b]:
        _same_probes(ref, other)
    _same_run_twice(a, "A")
    _same_run_twice(b, "B")
    notes: list[str] = []
    if len(a) == len(b) == 1 and a[0].identity == b[0].identity and a[0].identity.provenance.verified:
        notes.append("both sides are the same evaluation (same checkpoint and metric)")
    order = _order(ref)
    ref_sorted = _reorder(ref, order)
    aligned = [_reorder(h, _order(h)) for h in [*a, *b]]
    outcome = ref_sorted.outcome
    for h in aligned:
        if not np.array_equal(h.outcome == NA, outcome == NA):
            raise CompareError(
                f"{ref.where()} and {h.where()} score the same probes against different galleries (n/a "
                "cells differ); evaluate both on one test split"
            )
    lay = _layout(ref_sorted, outcome)
    a_runs = np.stack([h.outcome[lay.unit_rows, lay.unit_cols] for h in aligned[: len(a)]]).astype(np.float64)
    b_runs = np.stack([h.outcome[lay.unit_rows, lay.unit_cols] for h in aligned[len(a):]]).astype(np.float64)
    pairing, pairs = _pairing(a, b, notes)
    a_mean, b_mean = a_runs.mean(axis=0), b_runs.mean(axis=0)
    intervals = _bootstrap(a_mean - b_mean, lay, resamples, seed, confidence)
    discordant = _discordant(a_runs, b_runs, pairs, lay) if pairs else None
    cells, rows, sets = _estimates(lay, a_mean, b_mean, intervals, discordant, len(pairs))
    return Comparison(
        protocol=ref.identity.protocol,
        kind=ref.identity.kind,
        views=list(ref.views),
        columns=list(ref.columns),
        runs_a=[_run_summary(h, a_runs[i], lay) for i, h in enumerate(a)],
        runs_b=[_run_summary(h, b_runs[i], lay) for i, h in enumerate(b)],
        pairing=pairing,
        pairs=[_pair_summary(i, j, a_runs, b_runs, lay, a[i].identity.seed if pairing == "seed" else None)
               for i, j in pairs],
        subjects=lay.subjects,
        probes=len(ref),
        resamples=resamples,
        seed=seed,
        confidence=confidence,
        sets=_set_comparisons(lay, cells, rows, sets),
        notes=notes,
    )


def _reorder(hits: Hits, order: np.ndarray) -> Hits:
    from dataclasses import replace

    return replace(hits, sets=hits.sets[order], labels=hits.labels[order], types=hits.types[order],
                   probe_views=hits.probe_views[order], outcome=hits.outcome[order])


def _run_summary(hits: Hits, units: np.ndarray, lay: _Layout) -> RunSummary:
    sets = _levels(_cell_rates(units, lay), lay)[2]
    return RunSummary(hits.where(), hits.identity, {s: _number(sets[i]) for i, s in enumerate(lay.set_names)})


def _pair_summary(i: int, j: int, a_runs: np.ndarray, b_runs: np.ndarray, lay: _Layout, seed: int | None
                  ) -> PairSummary:
    disc = _discordant(a_runs, b_runs, [(i, j)], lay)
    sets = _estimates(lay, a_runs[i], b_runs[j], None, disc, 1)[2]
    return PairSummary(i, j, seed, {s: sets[n] for n, s in enumerate(lay.set_names)})


def _set_comparisons(lay: _Layout, cells: list[Estimate], rows: list[Estimate], sets: list[Estimate]
                     ) -> list[SetComparison]:
    out = []
    for n, name in enumerate(lay.set_names):
        views = {v: rows[g] for g, (s, v) in enumerate(lay.rows) if s == name}
        table: dict[str, dict[str, Estimate]] = {}
        for k, (s, v, c) in enumerate(lay.cells):
            if s == name:
                table.setdefault(v, {})[c] = cells[k]
        out.append(SetComparison(name, sets[n], lay.identical[name], views, table))
    return out
