"""``gait zoo verify NAME --data DIR``: score a converted zoo checkpoint with ``gait eval``'s own
code and set each number beside the one OpenGait publishes.

The entry's protocol runs on the checkpoint (:func:`~gaitcli.evaluation.plan.plan_checkpoint`,
:func:`~gaitcli.evaluation.api.run_plan`: the path ``gait eval CKPT`` takes). Published numbers of
another protocol (OpenGait's mAP column is its cross-view evaluation) are computed from the same
features, extracted once, through :func:`~gaitcli.evaluation.plan.plan_features`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from gaitcli.errors import GaitError
from gaitcli.evaluation.api import run_plan
from gaitcli.evaluation.plan import EvalOutputs, ModelOptions, plan_checkpoint, plan_features
from gaitcli.evaluation.results import EvalResult
from gaitcli.fileio import JSONValue

from .catalogue import PublishedRow, ZooEntry
from .get import EntryPaths, zoo_home

Warn = Callable[[str], None]
_TABLE_KEYS = {"rank1": "rank1_exclude", "rank5": "rank5_exclude", "map": "map"}


@dataclass(frozen=True)
class VerifyRow:
    """One published number beside the measured one."""

    published: PublishedRow
    """The catalogue's row."""
    protocol: str
    """The protocol that measured it."""
    measured: float | None
    """gaitcli's number (%), None where the evaluation did not produce it."""

    @property
    def difference(self) -> float | None:
        """``measured - published`` in percentage points."""
        return None if self.measured is None else round(self.measured - self.published.value, 2)

    def to_json(self) -> dict[str, JSONValue]:
        return {**self.published.to_json(), "protocol": self.protocol, "measured": self.measured,
                "difference": self.difference}


@dataclass
class VerifyResult:
    """What ``gait zoo verify`` measured."""

    entry: ZooEntry
    """The catalogue entry."""
    checkpoint: Path
    """The converted checkpoint evaluated."""
    data: Path
    """The prepared test data."""
    rows: list[VerifyRow]
    """Every published number, in catalogue order."""
    results: dict[str, EvalResult] = field(default_factory=dict)
    """The full evaluation per protocol run."""

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "name": self.entry.name, "checkpoint": str(self.checkpoint), "data": str(self.data),
            "published_source": self.entry.published_source, "rows": [r.to_json() for r in self.rows],
            "results": {p: r.to_json() for p, r in self.results.items()},
        }


def measured_value(result: Mapping[str, JSONValue], row: PublishedRow) -> float | None:
    """The number of ``result`` (an :class:`EvalResult`'s JSON) that ``row`` publishes: the
    headline rank-1 per probe set; the excluding-identical-view mean of rank-5 and mAP; a
    top-level value of that name; the field protocols' ``retrieval`` scores (Gait3D's mAP and
    mINP). A row without a probe set takes the protocol's only set."""
    metric = row.metric.lower()
    sources: list[JSONValue] = []
    if metric == "rank1":
        sources.append(result.get("rank1"))
    if metric in _TABLE_KEYS:
        sources.append(result.get(_TABLE_KEYS[metric]))
    sources += [v for k, v in result.items() if k.lower() == metric]
    for source in sources:
        found = _pick(source, row.probe_set)
        if found is not None:
            return found
    retrieval = result.get("retrieval")  # the field protocols' scores per probe set
    if isinstance(retrieval, dict) and retrieval:
        name = row.probe_set if row.probe_set is not None else next(iter(retrieval))
        scores = retrieval.get(name) if row.probe_set is not None or len(retrieval) == 1 else None
        if isinstance(scores, dict):
            return _pick(scores.get(metric), None)
    return None


def _pick(source: JSONValue, probe_set: str | None) -> float | None:
    if isinstance(source, (int, float)) and not isinstance(source, bool):
        return float(source) if probe_set is None else None
    if not isinstance(source, dict) or not source:
        return None
    if probe_set is None:
        if len(source) != 1:
            return None
        probe_set = next(iter(source))
    value = source.get(probe_set)
    if isinstance(value, dict):
        value = value.get("mean")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _protocols(entry: ZooEntry) -> list[str]:
    assert entry.protocol is not None
    order = [entry.protocol]
    for row in entry.published:
        if row.protocol and row.protocol not in order:
            order.append(row.protocol)
    return order


def _wants_map(entry: ZooEntry, protocol: str) -> bool:
    return any(r.metric.lower() == "map" and (r.protocol or entry.protocol) == protocol
               for r in entry.published)


def verify_checkpoint(
    entry: ZooEntry,
    data: str | Path,
    *,
    out: str | Path | None = None,
    partition: str | Path | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    console: Console | None = None,
    warn: Warn | None = None,
) -> VerifyResult:
    """Evaluate ``entry``'s converted checkpoint on the prepared tree ``data`` and compare."""
    if entry.protocol is None:
        why = next((n for n in entry.notes if "verify" in n), f"gaitcli has no protocol for {entry.dataset}")
        raise GaitError(f"{entry.name}: cannot score {entry.dataset} here: {why}")
    paths = EntryPaths.of(zoo_home(out), entry.name)
    if not paths.checkpoint.is_file():
        raise GaitError(f"{entry.name}: no converted checkpoint at {paths.checkpoint}; run gait zoo get "
                        f"{entry.name} first (with the same zoo folder)")
    data = Path(data)
    protocols = _protocols(entry)
    features = paths.folder / ".verify-features.npz"
    results: dict[str, EvalResult] = {}
    try:
        first = protocols[0]
        outputs = EvalOutputs(save_features=features if len(protocols) > 1 else None)
        opts = ModelOptions(data=data, partition=partition, protocol=first, batch_size=batch_size,
                            want_map=_wants_map(entry, first), outputs=outputs)
        plan = plan_checkpoint(paths.checkpoint, opts, device=device, warn=warn)
        results[first] = run_plan(plan, console=console, warn=warn)
        for protocol in protocols[1:]:
            plan = plan_features(features, protocol=protocol, want_map=_wants_map(entry, protocol),
                                 device=device, warn=warn)
            results[protocol] = run_plan(plan, console=console, warn=warn)
    finally:
        with contextlib.suppress(OSError):
            features.unlink()
    rows = []
    for row in entry.published:
        protocol = row.protocol or protocols[0]
        rows.append(VerifyRow(row, protocol, measured_value(results[protocol].to_json(), row)))
    return VerifyResult(entry, paths.checkpoint, data, rows, results)
