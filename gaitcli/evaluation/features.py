"""The feature file: embeddings, each sequence's label / type / view / frames digest, and the
provenance of the model that made them (docs/eval.md, "Saved features"; docs/deploy.md).

Version 2 (what gaitcli writes), a plain ``.npz`` — nothing in it is pickled:

* ``embeddings`` float32 ``[N, parts, channels]``; ``labels``, ``types``, ``views`` strings ``[N]``;
* ``digests`` strings ``[N]``: SHA-256 of each walk's frames as embedded (``""`` when unknown, e.g.
  for sequences that ``gait eval`` extracted);
* ``header``: one JSON object (a 0-d string array) with ``format`` (``gaitcli-features``),
  ``version``, ``provenance`` (``checkpoint``, ``checkpoint_sha256``, ``model``, ``metric``,
  ``frame_size``), ``iteration``, ``dataset_name`` and ``gaitcli_version``.

Version 1 (gaitcli before the header) is any ``.npz`` with the four arrays, plus optional loose
text arrays (``dataset_name``, ``checkpoint``, ``metric``, ``model``, ``frame_size``,
``checkpoint_sha256``, ``iteration``). Loading goes through one migration step per version
(:data:`MIGRATIONS`); a file of a newer version is refused. A file whose provenance lacks the
checkpoint's SHA-256 is *unverified*: it can be matched with other unverified files, never with a
checkpoint or a verified file (:mod:`gaitcli.deploy.compat`).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gaitcli.errors import GaitError, option
from gaitcli.fileio import JSONValue, atomic_writer

from .calibration import Fields, Provenance, provenance_of

FORMAT = "gaitcli-features"
VERSION = 2
"""The feature-file version this gaitcli writes (and the newest it reads)."""
FEATURE_KEYS = ("embeddings", "labels", "types", "views")
#: loose text arrays of a version-1 file (older files lack the later ones; they load as absent)
V1_TEXT_KEYS = ("dataset_name", "checkpoint", "metric", "model", "frame_size", "checkpoint_sha256")
_PROVENANCE_KEYS = ("checkpoint", "checkpoint_sha256", "model", "metric", "frame_size")
EMBED_COMMAND = (
    f"gait embed CKPT INPUT... {option('out', 'FILE')} (or gait eval CKPT {option('save_features', 'FILE')})"
)
"""How a feature file is made (options marked with :func:`gaitcli.errors.option`)."""
_REMAKE = f"re-create it with {EMBED_COMMAND}"
_ROW_BLOCK = 4096  # rows checked for NaN at once (a boolean copy of OU-MVLP would be another GB)


class FeatureFileError(GaitError):
    """A feature file that cannot be read as it is."""


def frames_digest(arrays: Sequence[np.ndarray]) -> str:
    """SHA-256 of a walk's frames (each array's dtype, shape and bytes, in order)."""
    digest = hashlib.sha256()
    for array in arrays:
        a = np.ascontiguousarray(array)
        digest.update(f"{a.dtype.str}{list(a.shape)}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


@dataclass
class FeatureSet:
    """Embeddings ``[N, parts, channels]`` (float32) with each sequence's label, type, view and
    frames digest; ``meta`` holds the provenance (``checkpoint``, ``checkpoint_sha256``, ``model``,
    ``metric``, ``frame_size``), ``iteration`` and ``dataset_name``."""

    embeddings: np.ndarray
    labels: np.ndarray
    types: np.ndarray
    views: np.ndarray
    # Any: evaluation.api updates it by keyword, which a TypedDict does not allow
    meta: dict[str, Any] = field(default_factory=dict)
    digests: np.ndarray | None = None
    """SHA-256 of each sequence's frames, ``""`` when unknown (None: all unknown)."""

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels).astype(str)
        self.types = np.asarray(self.types).astype(str)
        self.views = np.asarray(self.views).astype(str)
        emb = self.embeddings
        if emb.ndim == 2:
            emb = emb[:, None, :]
        if emb.ndim != 3:
            raise GaitError(f"embeddings must be [N, parts, channels], got shape {list(emb.shape)}")
        self.embeddings = emb
        n = emb.shape[0]
        if not (len(self.labels) == len(self.types) == len(self.views) == n):
            raise GaitError(
                f"features: {n} embeddings but {len(self.labels)} labels, {len(self.types)} types, "
                f"{len(self.views)} views; they must agree"
            )
        digests = [""] * n if self.digests is None else np.asarray(self.digests).astype(str).tolist()
        if len(digests) != n:
            raise GaitError(f"features: {n} embeddings but {len(digests)} digests; they must agree")
        self.digests = np.array(digests, dtype="<U64")

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def provenance(self) -> Provenance:
        """Checkpoint, model, metric and frame size of these embeddings."""
        return Provenance.from_meta(self.meta)

    @property
    def digest_list(self) -> list[str]:
        return [] if self.digests is None else [str(d) for d in self.digests.tolist()]

    def keys(self) -> list[tuple[str, str, str]]:
        """``(label, type, view)`` per row."""
        return [(str(a), str(b), str(c)) for a, b, c in
                zip(self.labels.tolist(), self.types.tolist(), self.views.tolist(), strict=True)]

    def name(self, row: int) -> str:
        """``label/type/view`` of one row (for messages)."""
        return "/".join(str(x) for x in (self.labels[row], self.types[row], self.views[row]) if str(x))

    def subset(self, rows: np.ndarray) -> FeatureSet:
        return FeatureSet(self.embeddings[rows], self.labels[rows], self.types[rows], self.views[rows],
                          meta=dict(self.meta), digests=None if self.digests is None else self.digests[rows])

    def nonfinite_rows(self) -> np.ndarray:
        """Indices of the rows holding a NaN or infinite value."""
        flat = self.embeddings.reshape(len(self), -1)
        bad = [np.flatnonzero(~np.isfinite(flat[i : i + _ROW_BLOCK]).all(axis=1)) + i
               for i in range(0, len(flat), _ROW_BLOCK)]
        return np.concatenate(bad) if bad else np.zeros(0, dtype=np.int64)

    def header(self) -> dict[str, JSONValue]:
        """The version-2 header of this set (provenance completed from the checkpoint file when
        only its path is known, e.g. what ``gait eval --save-features`` extracted)."""
        prov = self.provenance
        if prov.checkpoint is not None and not prov.verified and Path(prov.checkpoint).is_file():
            prov = provenance_of(self.meta, None, prov.metric)
            self.meta.update(prov.to_meta())
        iteration = self.meta.get("iteration")
        dataset = self.meta.get("dataset_name")
        from gaitcli import __version__

        return {
            "format": FORMAT,
            "version": VERSION,
            "provenance": prov.to_json(),
            "iteration": None if iteration is None else int(iteration),
            "dataset_name": None if dataset in (None, "") else str(dataset),
            "gaitcli_version": __version__,
            "precision": _precision_of(self.meta),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the version-2 ``.npz`` atomically."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {
            "embeddings": np.ascontiguousarray(self.embeddings, dtype=np.float32),
            "labels": self.labels,
            "types": self.types,
            "views": self.views,
            "digests": np.array(self.digest_list, dtype="<U64"),
            "header": np.array(json.dumps(self.header())),
        }
        with atomic_writer(path) as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub wants str arrays as ArrayLike
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureSet:
        """Read a feature file of any known version (or any ``.npz`` with the four arrays).
        Nothing is unpickled; a malformed file is one line naming what is wrong."""
        path = Path(path)
        if not path.is_file():
            what = "is a folder, not a feature file" if path.exists() else "no such feature file"
            raise FeatureFileError(f"{path}: {what}")
        arrays = _read_arrays(path)
        version, header = _version_of(arrays, path)
        while version < VERSION:
            arrays, header = MIGRATIONS[version](arrays, header, path)
            version += 1
        return _from_v2(arrays, header, path)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise FeatureFileError(f"{path}: not a feature file: one numpy array, not an .npz of arrays")
        with data:
            missing = [k for k in FEATURE_KEYS if k not in data.files]
            if missing:
                raise FeatureFileError(
                    f"{path}: not a feature file: it lacks {', '.join(missing)} "
                    f"(expected arrays {', '.join(FEATURE_KEYS)})"
                )
            return {key: data[key] for key in data.files}
    except ValueError as exc:  # object arrays (pickles), or a file that is not numpy's at all
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FeatureFileError(
            f"{path}: cannot read as a feature file without unpickling ({detail})"
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise FeatureFileError(
            f"{path}: not a readable .npz feature file ({type(exc).__name__}: {exc})"
        ) from None


def _version_of(arrays: dict[str, np.ndarray], path: Path) -> tuple[int, dict[str, JSONValue]]:
    if "header" not in arrays:
        return 1, {}
    raw = arrays["header"]
    try:
        header = json.loads(str(raw.item())) if raw.ndim == 0 else None
    except (json.JSONDecodeError, ValueError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise FeatureFileError(
            f"{path}: damaged feature file: its header is not a {FORMAT} JSON object; {_REMAKE}"
        )
    version = header.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 2:
        raise FeatureFileError(f"{path}: damaged feature file: header version {version!r}; {_REMAKE}")
    if version > VERSION:
        raise FeatureFileError(
            f"{path}: written by a newer gaitcli (feature format {version}; this gaitcli reads up to "
            f"{VERSION}); upgrade gaitcli (pip install -U gaitcli)"
        )
    return version, header


def _v1_to_v2(
    arrays: dict[str, np.ndarray], old_header: dict[str, JSONValue], path: Path
) -> tuple[dict[str, np.ndarray], dict[str, JSONValue]]:
    """Version 1: loose text arrays → the header; no digests (all unknown)."""
    del old_header  # version 1 has none

    def text(key: str) -> str | None:
        if key not in arrays:
            return None
        value = arrays[key]
        if value.ndim != 0 or value.dtype.kind not in "US":
            raise FeatureFileError(f"{path}: damaged feature file: {key} is not one string; {_REMAKE}")
        out = str(value.item())
        return out or None

    iteration: int | None = None
    if "iteration" in arrays:
        value = arrays["iteration"]
        if value.ndim != 0 or value.dtype.kind not in "iu":
            raise FeatureFileError(f"{path}: damaged feature file: iteration is not one integer; {_REMAKE}")
        iteration = int(value.item())
    provenance: dict[str, JSONValue] = {k: text(k) for k in _PROVENANCE_KEYS}
    header: dict[str, JSONValue] = {
        "format": FORMAT,
        "version": 2,
        "provenance": provenance,
        "iteration": iteration,
        "dataset_name": text("dataset_name"),
        "gaitcli_version": None,
    }
    kept = {k: v for k, v in arrays.items() if k in FEATURE_KEYS}
    kept["digests"] = np.array([""] * len(np.atleast_1d(arrays["labels"])), dtype="<U64")
    return kept, header


Migration = Callable[
    [dict[str, np.ndarray], dict[str, JSONValue], Path], tuple[dict[str, np.ndarray], dict[str, JSONValue]]
]
MIGRATIONS: dict[int, Migration] = {1: _v1_to_v2}
"""``version -> step`` turning a file of that version into the next one."""


def _from_v2(arrays: dict[str, np.ndarray], header: dict[str, JSONValue], path: Path) -> FeatureSet:
    fields = Fields(header, str(path), _REMAKE, error=FeatureFileError)
    fields.text("format")
    fields.count("version")
    prov = fields.provenance("provenance")
    iteration = fields.count("iteration", optional=True)
    dataset = fields.text("dataset_name", optional=True)
    fields.text("gaitcli_version", optional=True)
    # written since the precision option; version-2 files of earlier gaitcli versions have no such field
    precision = (fields.text("precision", optional=True, choices=PRECISION_NAMES)
                 if "precision" in header else None)
    fields.no_others()
    extra = sorted(set(arrays) - {*FEATURE_KEYS, "digests", "header"})
    if extra:
        raise FeatureFileError(f"{path}: unknown array {extra[0]} in a version-2 feature file; {_REMAKE}")
    emb = arrays["embeddings"]
    if not np.issubdtype(emb.dtype, np.floating):
        raise FeatureFileError(f"{path}: embeddings must be floating point, got {emb.dtype}")
    for key in ("labels", "types", "views", "digests"):
        if key not in arrays or arrays[key].ndim != 1:
            raise FeatureFileError(f"{path}: damaged feature file: {key} is not a list of strings; {_REMAKE}")
    meta: dict[str, str | int] = {**prov.to_meta()}
    if iteration is not None:
        meta["iteration"] = iteration
    if dataset is not None:
        meta["dataset_name"] = dataset
    if precision in PRECISION_NAMES:
        meta["precision"] = precision
    try:
        return FeatureSet(emb.astype(np.float32, copy=False), arrays["labels"], arrays["types"],
                          arrays["views"], meta=meta, digests=arrays["digests"])
    except GaitError as exc:
        raise FeatureFileError(f"{path}: {exc}") from None


def concat_features(base: FeatureSet, extra: FeatureSet) -> FeatureSet:
    """``base`` followed by ``extra`` (the caller checked they are comparable); ``base``'s meta is
    kept (``extra``'s when ``base`` is empty)."""
    if len(base) and len(extra) and base.embeddings.shape[1:] != extra.embeddings.shape[1:]:
        raise GaitError(
            f"embeddings of shape {list(extra.embeddings.shape[1:])} cannot join a gallery of "
            f"{list(base.embeddings.shape[1:])}"
        )
    parts = [f for f in (base, extra) if len(f)]
    if not parts:
        return base
    return FeatureSet(
        np.concatenate([f.embeddings for f in parts]),
        np.concatenate([f.labels for f in parts]),
        np.concatenate([f.types for f in parts]),
        np.concatenate([f.views for f in parts]),
        meta=_joined_meta(base, extra),
        digests=np.array([d for f in parts for d in f.digest_list], dtype="<U64"),
    )


PRECISION_NAMES = ("fp32", "bf16", "fp32+bf16")
"""What a feature file's ``precision`` says: the arithmetic its embeddings were extracted in
(``fp32+bf16``: a gallery extended in the other one)."""


def _precision_of(meta: Mapping[str, object]) -> str | None:
    value = meta.get("precision")
    return value if isinstance(value, str) and value in PRECISION_NAMES else None


def _joined_meta(base: FeatureSet, extra: FeatureSet) -> dict[str, Any]:
    meta = dict(base.meta) if len(base) else dict(extra.meta)
    a, b = _precision_of(base.meta), _precision_of(extra.meta)
    if len(base) and len(extra) and a is not None and b is not None and a != b:
        meta["precision"] = "fp32+bf16"
    return meta


def require_finite(feats: FeatureSet, source: str, remedy: str) -> FeatureSet:
    """One line when any embedding holds NaN or infinite values, naming ``source`` and the first
    such entry: distances to it mean nothing (a silent wrong answer)."""
    bad = feats.nonfinite_rows()
    if len(bad):
        first = int(bad[0])
        raise GaitError(
            f"{source}: entry {first} ({feats.name(first) or 'unnamed'}) holds NaN or infinite values "
            f"({len(bad)} of {len(feats)} entries do); {remedy}"
        )
    return feats
