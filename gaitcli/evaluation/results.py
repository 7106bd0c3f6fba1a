"""Evaluation results as typed records: a protocol's tables (:class:`ProtocolResult`) and a whole
``gait eval`` run (:class:`EvalResult`). ``to_json()`` gives the ``--json`` document that
docs/eval.md describes (the documented keys first, then the details); n/a is ``None``."""

from __future__ import annotations

from dataclasses import dataclass, field

from gaitcli.fileio import JSONValue

from .calibration import Calibration
from .verification import VerificationReport

Cell = float | None
Matrix = list[list[Cell]]
"""Rows: probe views, columns: gallery views, in the order of ``views``."""


@dataclass
class SetSummary:
    """One probe set's row of a table."""

    views: dict[str, Cell]
    """Per probe view: the value in %, None where it does not exist."""
    mean: Cell
    """The mean over the probe views that have a value (None when none has)."""

    def to_json(self) -> dict[str, JSONValue]:
        return {"views": dict(self.views), "mean": self.mean}


Table = dict[str, SetSummary]
"""Probe set name (NM / BG / CL, ...) → its row."""


def table_json(table: Table | None) -> dict[str, JSONValue] | None:
    return None if table is None else {name: row.to_json() for name, row in table.items()}


def matrix_json(matrix: dict[str, dict[str, Matrix]] | None) -> dict[str, JSONValue] | None:
    """:attr:`Tables.matrix` as JSON (the same nesting, lists copied)."""
    if matrix is None:
        return None
    return {kind: {name: [list(row) for row in rows] for name, rows in sets.items()}
            for kind, sets in matrix.items()}


@dataclass
class Tables:
    """What a matching engine computes."""

    rank1_exclude: Table
    """Rank-1 %, identical views excluded (cross-view: the probe's id at its own view removed)."""
    rank1_include: Table
    """Rank-1 %, identical views included (cross-view: nothing removed)."""
    rank5_exclude: Table
    """Rank-5 %, excluded as ``rank1_exclude``."""
    map: Table | None
    """mAP %, excluded as ``rank1_exclude``; None when not asked for (single-view protocols)."""
    matrix: dict[str, dict[str, Matrix]] | None
    """``{"rank1" | "rank5" | "map": {probe set: views x views}}``; None for cross-view."""


@dataclass
class RetrievalScores:
    """One probe set of a retrieval table (gait3d, grew, ccpg's re-identification table)."""

    scores: dict[str, Cell]
    """Score name (``rank1``, ``rank5``, ``rank10``, ``rank20``, ``map``, ``minp``) → %."""
    probes: int
    """Probes scored."""
    left_out: int = 0
    """Probes left out because no gallery sequence has their id (gait3d, ccpg; as the reference)."""

    def to_json(self) -> dict[str, JSONValue]:
        return {**self.scores, "probes": self.probes, "left_out": self.left_out}


@dataclass
class Submission:
    """GREW's competition answer: per probe its video id and the ids of its nearest gallery
    sequences, nearest first (written by :func:`gaitcli.evaluation.submission.write_submission`)."""

    video_ids: list[str]
    """The probes' video ids (their view names), in feature order."""
    ranked: list[list[str]]
    """Per probe the gallery ids of its 20 nearest gallery sequences."""

    def to_json(self) -> dict[str, JSONValue]:
        return {"probes": len(self.video_ids), "ranks": len(self.ranked[0]) if self.ranked else 0}


@dataclass
class ProtocolResult:
    """A protocol run on one feature set."""

    protocol: str
    """``casia-b``, ``ou-mvlp``, ``cross-view``, ``generic``, ``gait3d``, ``grew`` or ``ccpg``."""
    kind: str
    """``single-view`` (a views x views matrix), ``cross-view`` (one gallery over all views),
    ``retrieval`` (gait3d, grew) or ``cloth-change`` (ccpg)."""
    metric: str
    """``euc`` or ``cos``."""
    gallery_types: list[str]
    """The sequence types forming the gallery."""
    probe_sets: dict[str, list[str]]
    """Probe set name → its sequence types."""
    views: list[str]
    """The views present in the gallery or the probes, in numeric order."""
    num_probes: int
    """Probe sequences matched."""
    num_gallery: int
    """Gallery sequences."""
    gallery_counts: dict[str, int]
    """Gallery sequences per view."""
    probe_counts: dict[str, dict[str, int]]
    """Probe sequences per probe set and view."""
    tables: Tables
    """The accuracies."""
    rank1: dict[str, float] = field(default_factory=dict)
    """The headline number per probe set: the excluding mean (the including one when a set has no
    excluding value, e.g. a single view); sets without any number are left out."""
    retrieval: dict[str, RetrievalScores] | None = None
    """Retrieval scores per probe set (gait3d, grew, ccpg); None for the other protocols."""
    set_galleries: dict[str, list[str]] = field(default_factory=dict)
    """Probe set → its own gallery types (ccpg)."""
    submission: Submission | None = None
    """GREW's competition answer (``--submission``)."""

    def field_json(self) -> dict[str, JSONValue]:
        """The keys only the field protocols have (docs/eval-field-protocols.md)."""
        out: dict[str, JSONValue] = {}
        if self.retrieval is not None:
            out["retrieval"] = {name: row.to_json() for name, row in self.retrieval.items()}
        if self.set_galleries:
            out["set_galleries"] = {k: list(v) for k, v in self.set_galleries.items()}
        if self.submission is not None:
            out["submission"] = self.submission.to_json()
        return out

    def to_json(self) -> dict[str, JSONValue]:
        t = self.tables
        return {
            "protocol": self.protocol,
            "kind": self.kind,
            "metric": self.metric,
            "gallery_types": list(self.gallery_types),
            "probe_sets": {k: list(v) for k, v in self.probe_sets.items()},
            "views": list(self.views),
            "num_probes": self.num_probes,
            "num_gallery": self.num_gallery,
            "gallery_counts": dict(self.gallery_counts),
            "probe_counts": {k: dict(v) for k, v in self.probe_counts.items()},
            "rank1_exclude": table_json(t.rank1_exclude),
            "rank1_include": table_json(t.rank1_include),
            "rank5_exclude": table_json(t.rank5_exclude),
            "map": table_json(t.map),
            "matrix": matrix_json(t.matrix),
            "rank1": dict(self.rank1),
            **self.field_json(),
        }


@dataclass
class Seconds:
    """Where the time went."""

    protocol: float
    """Matching and tables."""
    extract: float | None = None
    """Feature extraction (None when features were given)."""
    total: float | None = None
    """Everything from the plan to the tables (None when features were given)."""
    sequences_per_second: float | None = None
    """Extraction speed."""

    def to_json(self) -> dict[str, JSONValue]:
        if self.extract is None:
            return {"protocol": self.protocol}
        return {
            "extract": self.extract,
            "protocol": self.protocol,
            "total": self.total,
            "sequences_per_second": self.sequences_per_second,
        }


JSON_KEYS = (
    "protocol",
    "metric",
    "checkpoint",
    "iteration",
    "num_probes",
    "num_gallery",
    "rank1_exclude",
    "rank1_include",
    "rank5_exclude",
    "map",
    "seconds",
)
EXTRA_KEYS = (
    "dataset_name",
    "features",
    "views",
    "gallery_types",
    "probe_sets",
    "gallery_counts",
    "probe_counts",
    "rank1",
    "matrix",
    "kind",
    "seed",
)


@dataclass
class EvalResult:
    """One evaluation: the protocol's tables plus where the features came from."""

    result: ProtocolResult
    """The tables."""
    seconds: Seconds
    """Timings."""
    dataset_name: str | None = None
    """The test set's name (it picked the protocol under ``auto``)."""
    checkpoint: str | None = None
    """The checkpoint evaluated (or the one a feature file names)."""
    iteration: int | None = None
    """Its training iteration."""
    features: str | None = None
    """The feature file evaluated (``--features``)."""
    verification: VerificationReport | None = None
    """Genuine / impostor curves per probe set (``--verification``)."""
    calibration: Calibration | None = None
    """The threshold stored for ``--calibrate FAR``."""
    seed: int | None = None
    """The training seed of the checkpoint (``trainer_cfg.seed``); None when unknown (a converted
    checkpoint, features whose checkpoint is not at hand)."""

    @property
    def rank1(self) -> dict[str, float]:
        """The headline rank-1 per probe set (what the trainer logs)."""
        return self.result.rank1

    def to_json(self) -> dict[str, JSONValue]:
        """The ``--json`` document: the eleven documented keys in order, then the details."""
        body = self.result.to_json()
        body.update(
            checkpoint=self.checkpoint,
            iteration=self.iteration,
            seconds=self.seconds.to_json(),
            dataset_name=self.dataset_name,
            features=self.features,
            seed=self.seed,
        )
        out = {key: body.get(key) for key in JSON_KEYS}
        for key in EXTRA_KEYS:
            if key != "features" or self.features is not None:
                out[key] = body[key]
        out.update(self.result.field_json())
        if self.verification is not None:
            out["verification"] = self.verification.to_json()
        if self.calibration is not None:
            out["calibration"] = self.calibration.to_json()
        return out
