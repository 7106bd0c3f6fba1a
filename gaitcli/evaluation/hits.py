"""Per-probe outcomes of an evaluation: ``gait eval --save-hits FILE.json`` writes them, ``gait
compare`` reads them (docs/compare.md).

For every probe of every probe set and every column of the protocol's table the file records
whether the probe's nearest gallery sequence has its id (a rank-1 *hit*), a *miss*, or n/a:

* single-view protocols (``casia-b``, ``ou-mvlp``, ``generic``): the columns are the gallery
  views; the probe is matched against the gallery sequences of that view only, exactly as a cell
  of the views x views matrix is computed (n/a: no gallery sequence at that view);
* ``cross-view``: one column, ``all``: the probe against the whole gallery with its own id at its
  own view removed (n/a: nothing of its id left in the gallery);
* ``gait3d``: one column, ``all``: each ``PROBE_SET`` probe against every other sequence (its
  first-hit rank from the same whole-ranking kernel as the table); the probes whose id has no
  gallery sequence are left out of the file, as the protocol leaves them out of its rank-1;
* ``grew``: one column, ``all``: each probe of type ``02`` against the gallery of type ``01``
  (the table's fused top-k walk); every probe counts, as in the table;
* ``ccpg``: per setting (CL, UP, DN, BG) against its own gallery, the columns are the cameras and
  the cells those of the setting's views x views matrix, by the single-view engine (n/a: no
  gallery sequence of the setting at that camera). A row's table view is its camera (the view
  name up to its first ``_``); the file keeps the full view name.

The retrieval protocols (gait3d, grew) have no per-view rows: ``views`` is ``["all"]`` and every
probe counts in that one row (:meth:`Hits.row_views`), so the row is the table's rank-1.

A cell of the eval's table (probe set, probe view, column) is the share of hits among its probes,
so the file reproduces every rank-1 number ``gait eval`` prints (before the reference's rounding
to 2 decimals). The file also records the evaluation's identity: protocol, metric, the
checkpoint (path and SHA-256) or feature file and its provenance, the iteration and the training
seed, and a digest of the gallery, so two files can be checked to be evaluations of the same
probes against the same gallery before they are compared.

Format (``format: gaitcli-hits``, ``version: 1``): one JSON object; ``probes`` is a list of
``[probe set, id, type, view, outcomes]`` with one character per column in ``outcomes``
(``1`` hit, ``0`` miss, ``-`` n/a), one probe per line. A file of a newer version is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gaitcli.errors import GaitError, option
from gaitcli.fileio import JSONValue, atomic_write_bytes

from .calibration import Fields, Provenance, provenance_of
from .extract import FeatureSet
from .matching import (
    MatchInputs,
    _cross_view_hits,
    _default_chunk,
    _drop_probes_without_gallery,
    _inputs,
    _single_view_hits,
)
from .metrics import as_features, blockwise_topk_hits, encode_labels, rank_scores
from .protocols import (
    FIELD_PROTOCOLS,
    GAIT3D_SET,
    GREW_SET,
    ProtocolFit,
    ProtocolSpec,
    ccpg_views,
    view_sort_key,
)

FORMAT = "gaitcli-hits"
VERSION = 1
"""The hits-file version this gaitcli writes (and the newest it reads)."""
HIT, MISS, NA = 1, 0, -1
_CHARS = {HIT: "1", MISS: "0", NA: "-"}
_CODES = {"1": HIT, "0": MISS, "-": NA}
ALL_VIEWS = "all"
"""The one column of the cross-view and retrieval protocols (each probe against the whole
gallery), and the one row of the retrieval protocols."""
KINDS = ("single-view", "cross-view", "retrieval", "cloth-change")
"""The protocol kinds whose per-probe outcomes a hits file holds (every kind gaitcli has)."""
SAVE_HITS_COMMAND = f"gait eval CKPT {option('save_hits', 'FILE.json')}"
_REMAKE = f"re-create it with {SAVE_HITS_COMMAND}"


class HitsFileError(GaitError):
    """A hits file that cannot be read as it is."""


@dataclass(frozen=True)
class EvalIdentity:
    """Which evaluation a hits file holds."""

    protocol: str
    """``casia-b``, ``ou-mvlp``, ``cross-view``, ``generic``, ``gait3d``, ``grew`` or ``ccpg``."""
    kind: str
    """``single-view``, ``cross-view``, ``retrieval`` (gait3d, grew) or ``cloth-change`` (ccpg)."""
    metric: str
    """``euc`` or ``cos``."""
    provenance: Provenance
    """The checkpoint (path, SHA-256), model, metric and frame size that made the embeddings."""
    iteration: int | None
    """The checkpoint's training iteration."""
    seed: int | None
    """The training seed (``trainer_cfg.seed``) of the checkpoint; None when unknown (a converted
    reference checkpoint, or features whose checkpoint is not at hand)."""
    features: str | None
    """The feature file evaluated (``gait eval --features``), else None."""
    dataset_name: str | None
    """The test set's name."""

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "protocol": self.protocol,
            "kind": self.kind,
            "metric": self.metric,
            "provenance": self.provenance.to_json(),
            "iteration": self.iteration,
            "seed": self.seed,
            "features": self.features,
            "dataset_name": self.dataset_name,
        }

    def short(self) -> str:
        """A few words naming the run in a table: checkpoint (or features) file name and seed."""
        path = self.provenance.checkpoint or self.features or "(unnamed)"
        seed = "" if self.seed is None else f" seed {self.seed}"
        return f"{Path(path).name}{seed}"


@dataclass(frozen=True, eq=False)
class Hits:
    """The per-probe outcomes of one evaluation (rows: probe-set memberships, in data-set order)."""

    identity: EvalIdentity
    """Which evaluation."""
    gallery_types: tuple[str, ...]
    """The protocol's gallery types."""
    probe_sets: dict[str, tuple[str, ...]]
    """Probe set name → its types."""
    views: tuple[str, ...]
    """The table's probe views, numerically ordered (ccpg: cameras; retrieval: ``("all",)``)."""
    columns: tuple[str, ...]
    """The table's columns: the gallery views (single-view, ccpg), or ``("all",)`` (cross-view,
    retrieval)."""
    gallery_size: int
    """Gallery sequences."""
    gallery_digest: str
    """SHA-256 of the sorted ``id/type/view`` keys of the gallery."""
    sets: np.ndarray
    """Probe set name per row (str ``[R]``)."""
    labels: np.ndarray
    """Probe id per row."""
    types: np.ndarray
    """Probe type per row."""
    probe_views: np.ndarray
    """Probe view per row (the sequence's full view name: with id and type, the probe's key)."""
    outcome: np.ndarray
    """int8 ``[R, columns]``: 1 hit, 0 miss, -1 n/a."""
    rank1: dict[str, float] = field(default_factory=dict)
    """The headline rank-1 per probe set as ``gait eval`` reported it (for reference)."""
    source: str = ""
    """The file it was read from ("" when made in memory)."""

    def __len__(self) -> int:
        return len(self.sets)

    def where(self) -> str:
        return self.source or "hits"

    def row_views(self) -> np.ndarray:
        """The table's probe view of each row (an entry of ``views``): the probe's view, its
        camera for ccpg, ``all`` for the retrieval protocols (one row)."""
        if self.identity.kind == "retrieval":
            return np.full(len(self.sets), ALL_VIEWS)
        if self.identity.kind == "cloth-change":
            return ccpg_views(self.probe_views)
        return self.probe_views

    def excluded(self) -> np.ndarray:
        """bool ``[R, columns]``: the column is the probe's own view (single-view protocols, ccpg)."""
        if self.identity.kind not in ("single-view", "cloth-change"):
            return np.zeros(self.outcome.shape, dtype=bool)
        same: np.ndarray = np.equal(self.row_views()[:, None], np.asarray(self.columns)[None, :])
        return same

    def to_json(self) -> dict[str, JSONValue]:
        from gaitcli import __version__

        probes: list[JSONValue] = [
            [str(s), str(i), str(t), str(v), "".join(_CHARS[int(x)] for x in row)]
            for s, i, t, v, row in zip(
                self.sets.tolist(), self.labels.tolist(), self.types.tolist(), self.probe_views.tolist(),
                self.outcome, strict=True,
            )
        ]
        return {
            "format": FORMAT,
            "version": VERSION,
            "gaitcli_version": __version__,
            "identity": self.identity.to_json(),
            "gallery_types": list(self.gallery_types),
            "probe_sets": {k: list(v) for k, v in self.probe_sets.items()},
            "views": list(self.views),
            "columns": list(self.columns),
            "gallery_size": self.gallery_size,
            "gallery_digest": self.gallery_digest,
            "rank1": dict(self.rank1),
            "probes": probes,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the file atomically: the header indented, then one probe per line."""
        body = self.to_json()
        probes = body.pop("probes")
        assert isinstance(probes, list)
        head = json.dumps(body, indent=2)[:-2]  # drop the closing "\n}"
        rows = ",\n".join("    " + json.dumps(p) for p in probes)
        text = f'{head},\n  "probes": [\n{rows}\n  ]\n}}\n'
        atomic_write_bytes(path, text.encode())
        return Path(path)


# ----------------------------------------------------------------------------------------------
# making them
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcomes:
    """What an engine gives: the outcome rows, the sequence and probe set of each, the table's
    probe views and columns."""

    seq: np.ndarray
    """Sequence (feature row) of each outcome row."""
    names: list[str]
    """Probe set of each outcome row."""
    outcome: np.ndarray
    """int8 ``[rows, columns]``."""
    views: tuple[str, ...]
    columns: tuple[str, ...]


def _by_set(spec: ProtocolSpec, fit: ProtocolFit, probe_rows: np.ndarray, outcome: np.ndarray,
            views: tuple[str, ...], columns: tuple[str, ...]) -> _Outcomes:
    """One outcome row per probe-set membership of the probes ``probe_rows`` (rows of ``outcome``)."""
    rows, names = [], []
    for name in spec.probe_sets:
        idx = np.flatnonzero(fit.probe_sets[name][probe_rows])
        rows.append(idx)
        names.extend([name] * len(idx))
    take = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    return _Outcomes(probe_rows[take], names, outcome[take], views, columns)


def _hit_or_miss(hit: np.ndarray) -> np.ndarray:
    return np.where(hit, HIT, MISS).astype(np.int8)


def _single_view_outcome(inp: MatchInputs) -> np.ndarray:
    vh = _single_view_hits(inp)
    out = _hit_or_miss(vh.hit1)
    out[:, ~np.asarray(vh.has_gallery, dtype=bool)] = NA
    return out


def _matching(tensor: torch.Tensor, labels: np.ndarray, views: np.ndarray, spec: ProtocolSpec,
              fit: ProtocolFit, metric: str) -> _Outcomes:
    """casia-b, ou-mvlp, generic (single-view) and cross-view, by :mod:`.matching`'s engines."""
    inp = _inputs(tensor, labels, views, fit, metric, chunk=_default_chunk(tensor), want_map=False,
                  progress=None)
    if spec.kind == "single-view":
        outcome, columns = _single_view_outcome(inp), tuple(inp.views)
    else:
        ch = _cross_view_hits(inp)
        outcome = _hit_or_miss(ch.exc1)
        outcome[~ch.valid] = NA
        outcome, columns = outcome[:, None], (ALL_VIEWS,)
    return _by_set(spec, fit, inp.probe_rows, outcome, tuple(inp.views), columns)


def _index(mask: np.ndarray, dev: torch.device) -> tuple[np.ndarray, torch.Tensor]:
    rows = np.flatnonzero(mask)
    return rows, torch.from_numpy(rows).to(dev)


def _gait3d(tensor: torch.Tensor, codes: torch.Tensor, fit: ProtocolFit, metric: str) -> _Outcomes:
    """Rank-1 of each ``PROBE_SET`` probe against every other sequence, by the table's kernel
    (:func:`~.metrics.rank_scores`); the probes without a relevant gallery item are left out."""
    p, pt = _index(fit.probe_sets[GAIT3D_SET], tensor.device)
    _, gt = _index(fit.gallery, tensor.device)
    rs = rank_scores(tensor[pt], tensor[gt], codes[pt], codes[gt], metric)
    valid = rs.valid
    return _Outcomes(p[valid], [GAIT3D_SET] * int(valid.sum()), _hit_or_miss(rs.first[valid] == 0)[:, None],
                     (ALL_VIEWS,), (ALL_VIEWS,))


def _grew(tensor: torch.Tensor, codes: torch.Tensor, fit: ProtocolFit, metric: str) -> _Outcomes:
    """Rank-1 of each probe of type 02 against the gallery of type 01, by the table's fused top-k
    walk (:func:`~.metrics.blockwise_topk_hits`); every probe counts."""
    p, pt = _index(fit.probe_sets[GREW_SET], tensor.device)
    _, gt = _index(fit.gallery, tensor.device)
    if len(p) == 0 or len(gt) == 0:
        raise GaitError(
            f"{option('save_hits')}: the grew protocol has no local rank-1 table here (no probes of type 02 "
            f"or no gallery of type 01; only the competition file); drop {option('save_hits')}"
        )
    hit = blockwise_topk_hits(tensor[pt], tensor[gt], codes[pt], codes[gt], (1,), metric)[1]
    return _Outcomes(p, [GREW_SET] * len(p), _hit_or_miss(hit.cpu().numpy())[:, None], (ALL_VIEWS,),
                     (ALL_VIEWS,))


def _ccpg(tensor: torch.Tensor, codes: torch.Tensor, views: np.ndarray, spec: ProtocolSpec,
          fit: ProtocolFit, metric: str) -> _Outcomes:
    """Per setting against its own gallery, the cells of its views x views matrix (cameras), by the
    single-view engine, as :func:`~.retrieval.match_field` builds the table."""
    camera = ccpg_views(views)
    used = fit.gallery.copy()
    for name, mask in fit.probe_sets.items():
        used |= mask | fit.gallery_of(name)
    view_list = sorted(set(camera[used].tolist()), key=view_sort_key)
    position = {v: i for i, v in enumerate(view_list)}
    view_ids = np.array([position.get(v, -1) for v in camera.tolist()], dtype=np.int64)
    parts = []
    for name in spec.probe_sets:  # one engine run per setting (four), each over all its probes
        mask = fit.probe_sets[name]
        inp = MatchInputs(tensor, codes, view_ids, np.flatnonzero(mask), np.flatnonzero(fit.gallery_of(name)),
                          {name: mask}, view_list, metric, chunk=_default_chunk(tensor), want_map=False,
                          progress=None)
        parts.append((inp.probe_rows, [name] * len(inp.probe_rows), _single_view_outcome(inp)))
    views_t = tuple(view_list)
    return _Outcomes(
        np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64),
        [n for p in parts for n in p[1]],
        np.concatenate([p[2] for p in parts]) if parts else np.zeros((0, len(views_t)), dtype=np.int8),
        views_t, views_t,
    )


def _field(tensor: torch.Tensor, labels: np.ndarray, views: np.ndarray, spec: ProtocolSpec,
           fit: ProtocolFit, metric: str) -> _Outcomes:
    """gait3d, grew and ccpg, by the kernels :mod:`.retrieval` runs them with."""
    codes = torch.from_numpy(encode_labels(labels)[1][0]).to(tensor.device)
    if spec.name == "gait3d":
        return _gait3d(tensor, codes, fit, metric)
    if spec.name == "grew":
        return _grew(tensor, codes, fit, metric)
    return _ccpg(tensor, codes, views, spec, fit, metric)


def check_hits_supported(spec: ProtocolSpec) -> None:
    """One line, before extraction, for a protocol whose per-probe outcomes cannot be saved."""
    if spec.kind not in KINDS:
        raise GaitError(
            f"{option('save_hits')}: the {spec.name} protocol has no per-probe rank-1 table to save yet "
            f"(casia-b, ou-mvlp, generic, cross-view, gait3d, grew and ccpg have); drop {option('save_hits')}"
        )


def gallery_digest(labels: np.ndarray, types: np.ndarray, views: np.ndarray) -> str:
    """SHA-256 of the sorted ``id/type/view`` keys (the same gallery gives the same digest in any
    order)."""
    keys = sorted(f"{i}/{t}/{v}" for i, t, v in zip(labels.tolist(), types.tolist(), views.tolist(),
                                                      strict=True))
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


def probe_hits(
    feats: FeatureSet,
    spec: ProtocolSpec,
    fit: ProtocolFit,
    metric: str,
    *,
    remove_no_gallery: bool = False,
    device: torch.device | str | None = None,
    checkpoint: str | None = None,
    iteration: int | None = None,
    seed: int | None = None,
    features_path: str | None = None,
    dataset_name: str | None = None,
    rank1: Mapping[str, float] | None = None,
) -> Hits:
    """The per-probe rank-1 outcomes of ``spec`` on ``feats`` (``fit`` built on these rows, as an
    :class:`~.plan.EvalPlan` holds it), computed by the same engine as the eval's tables; the other
    arguments are the evaluation's identity."""
    check_hits_supported(spec)
    labels = np.asarray(feats.labels).astype(str)
    types = np.asarray(feats.types).astype(str)
    views = np.asarray(feats.views).astype(str)
    tensor = as_features(feats.embeddings, device if device is not None else "cpu")
    if spec.name in FIELD_PROTOCOLS:  # their tables ignore remove_no_gallery (gait3d leaves such probes out)
        out = _field(tensor, labels, views, spec, fit, metric)
    else:
        if remove_no_gallery:
            fit = _drop_probes_without_gallery(fit, encode_labels(labels)[1][0], lambda _m: None)
        out = _matching(tensor, labels, views, spec, fit, metric)
    seq = out.seq
    gal = fit.gallery
    identity = EvalIdentity(
        protocol=spec.name,
        kind=spec.kind,
        metric=metric,
        provenance=provenance_of(feats.meta, checkpoint, metric),
        iteration=iteration,
        seed=seed,
        features=features_path,
        dataset_name=dataset_name or None,
    )
    return Hits(
        identity=identity,
        gallery_types=tuple(spec.gallery_types),
        probe_sets={k: tuple(v) for k, v in spec.probe_sets.items()},
        views=out.views,
        columns=out.columns,
        gallery_size=int(gal.sum()),
        gallery_digest=gallery_digest(labels[gal], types[gal], views[gal]),
        sets=np.array(out.names, dtype=str),
        labels=labels[seq],
        types=types[seq],
        probe_views=views[seq],
        outcome=out.outcome,
        rank1=dict(rank1 or {}),
    )


# ----------------------------------------------------------------------------------------------
# reading them
# ----------------------------------------------------------------------------------------------


def _value(fields: Fields, key: str) -> JSONValue:
    """The raw value of ``key`` (marked as read; one line when it is missing)."""
    fields.used.add(key)
    if key not in fields.data:
        raise fields.error(f"{fields.where}: field {key} is missing; {fields.remake}")
    return fields.data[key]


def _strings(fields: Fields, key: str) -> tuple[str, ...]:
    value = _value(fields, key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fields.fail(key, "a list of strings")
    return tuple(str(v) for v in value)


def _identity(fields: Fields) -> EvalIdentity:
    value = _value(fields, "identity")
    if not isinstance(value, dict):
        raise fields.fail("identity", "an object")
    inner = Fields(value, fields.where, fields.remake, fields.error)
    protocol = inner.text("protocol")
    kind = inner.text("kind", choices=KINDS)
    metric = inner.text("metric", choices=("euc", "cos"))
    assert protocol is not None and kind is not None and metric is not None
    identity = EvalIdentity(
        protocol=protocol,
        kind=kind,
        metric=metric,
        provenance=inner.provenance("provenance"),
        iteration=inner.count("iteration", optional=True),
        seed=inner.count("seed", optional=True),
        features=inner.text("features", optional=True),
        dataset_name=inner.text("dataset_name", optional=True),
    )
    inner.no_others("identity.")
    return identity


def _probe_sets(fields: Fields) -> dict[str, tuple[str, ...]]:
    value = _value(fields, "probe_sets")
    if not isinstance(value, dict) or not value:
        raise fields.fail("probe_sets", "an object mapping each probe set to its types")
    out = {}
    for name, types in value.items():
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise fields.fail("probe_sets", "an object mapping each probe set to a list of types")
        out[str(name)] = tuple(str(t) for t in types)
    return out


def _rank1(fields: Fields) -> dict[str, float]:
    value = _value(fields, "rank1")
    if not isinstance(value, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()
    ):
        raise fields.fail("rank1", "an object of numbers")
    return {str(k): float(v) for k, v in value.items() if isinstance(v, (int, float))}


def _rows(fields: Fields, sets: Mapping[str, object], columns: int
          ) -> tuple[list[str], list[str], list[str], list[str], np.ndarray]:
    value = _value(fields, "probes")
    if not isinstance(value, list):
        raise fields.fail("probes", "a list of [probe set, id, type, view, outcomes]")
    cols: tuple[list[str], list[str], list[str], list[str]] = ([], [], [], [])
    outcome = np.empty((len(value), columns), dtype=np.int8)
    for n, row in enumerate(value):
        good = isinstance(row, list) and len(row) == 5 and all(isinstance(x, str) for x in row)
        text = row[4] if good and isinstance(row, list) else ""
        if not good or not isinstance(text, str) or len(text) != columns or set(text) - set(_CODES):
            raise fields.error(
                f"{fields.where}: probes[{n}] must be [probe set, id, type, view, outcomes] with "
                f"{columns} characters of 1 / 0 / - in outcomes, got {json.dumps(row)[:60]}; {fields.remake}"
            )
        assert isinstance(row, list)
        if row[0] not in sets:
            raise fields.error(f"{fields.where}: probes[{n}] names probe set {row[0]!r}, which probe_sets "
                               f"does not list; {fields.remake}")
        for target, item in zip(cols, row[:4], strict=True):
            target.append(str(item))
        outcome[n] = [_CODES[c] for c in text]
    return (*cols, outcome)


def load_hits(path: str | os.PathLike[str]) -> Hits:
    """Read and check a hits file (one line naming the field when something is wrong)."""
    p = Path(path)
    if not p.is_file():
        raise HitsFileError(f"{p}: no such hits file; make one with {SAVE_HITS_COMMAND}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HitsFileError(f"{p}: not a JSON hits file ({str(exc).splitlines()[0]}); {_REMAKE}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise HitsFileError(f"{p}: not a gaitcli hits file (format {got!r}); {_REMAKE}")
    version = data.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise HitsFileError(
            f"{p}: hits file version {version} was written by a newer gaitcli (this one reads up to "
            f"{VERSION}); upgrade gaitcli"
        )
    fields = Fields(data, str(p), _REMAKE, HitsFileError)
    fields.count("version", 1)
    fields.text("format")
    _value(fields, "gaitcli_version")
    identity = _identity(fields)
    columns = _strings(fields, "columns")
    if not columns:
        raise fields.fail("columns", "a non-empty list of strings")
    probe_sets = _probe_sets(fields)
    sets, labels, types, views, outcome = _rows(fields, probe_sets, len(columns))
    digest = fields.text("gallery_digest")
    hits = Hits(
        identity=identity,
        gallery_types=_strings(fields, "gallery_types"),
        probe_sets=probe_sets,
        views=_strings(fields, "views"),
        columns=columns,
        gallery_size=int(fields.count("gallery_size") or 0),
        gallery_digest=str(digest),
        sets=np.array(sets, dtype=str),
        labels=np.array(labels, dtype=str),
        types=np.array(types, dtype=str),
        probe_views=np.array(views, dtype=str),
        outcome=outcome,
        rank1=_rank1(fields),
        source=str(p),
    )
    fields.no_others()
    return hits


def save_hits(hits: Hits, path: str | os.PathLike[str]) -> Path:
    """Write ``hits`` to ``path`` (atomically)."""
    return hits.save(path)


def cell_rank1(hits: Hits, name: str, view: str, column: str) -> float | None:
    """Rank-1 (%) of one cell of the eval's table, unrounded (None: n/a)."""
    col = hits.columns.index(column)
    rows = (hits.sets == name) & (hits.row_views() == view)
    values = hits.outcome[rows, col]
    values = values[values != NA]
    return float(values.mean() * 100) if values.size else None


def probe_keys(hits: Hits) -> list[tuple[str, str, str, str]]:
    """``(probe set, id, type, view)`` per row."""
    return list(zip(hits.sets.tolist(), hits.labels.tolist(), hits.types.tolist(), hits.probe_views.tolist(),
                    strict=True))
