"""Calibrated thresholds: ``gait eval --verification --calibrate FPIR`` writes one, ``gait identify
--calibration`` reads it (docs/deploy.md), and the :class:`Provenance` they and feature files
record.

The threshold is calibrated for the decision ``gait identify`` makes: **open-set
identification** (ISO/IEC 19795-1; NIST FRVT 1:N). A probe is searched against a gallery and
accepted when its best distance is at most the threshold. On the evaluation's split:

* a *non-mated* search is a probe searched against the gallery with its own identity held out
  (leave-one-identity-out: every identity is held apart in turn); FPIR(t) = the fraction of
  non-mated searches whose best distance is at most ``t``;
* a *mated* search is a probe whose identity is in the gallery; FNIR(t) = the fraction of mated
  searches whose mate is not returned at rank 1 within ``t``.

The stored threshold is the largest one whose FPIR is at most the requested rate. The file also
records FNIR there, the search counts, the gallery's identity count (FPIR grows with the gallery)
and the data and model it came from. Files are versioned (``version``); an older file goes
through one migration step per version (:data:`MIGRATIONS`), a newer one is refused. Version 1
files hold a *pairwise* verification threshold (a false accept rate over probe x gallery pairs);
they load as such and say so wherever they are used. Every field is checked on loading: a hand
edit that breaks one is one line naming it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from gaitcli.errors import GaitError, option
from gaitcli.fileio import JSONValue, atomic_write_bytes

if TYPE_CHECKING:
    from .verification import VerificationReport

FORMAT = "gaitcli-calibration"
VERSION = 2
"""The calibration file version this gaitcli writes (and the newest it reads)."""
FORMAT_V1 = "gaitcli-calibration-1"
Decision = Literal["open-set identification", "pairwise verification"]
OPEN_SET: Decision = "open-set identification"
PAIRWISE: Decision = "pairwise verification"
METHOD = (
    "leave-one-identity-out on the evaluation's gallery and probe sets: each probe is a mated "
    "search against the whole gallery and a non-mated search against the gallery without its own "
    "identity; all gallery views"
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FRAME_SIZE = re.compile(r"^\d+x\d+$")
_METRICS = ("euc", "cos")
CALIBRATE_COMMAND = (
    f"gait eval CKPT {option('verification')} {option('calibrate', 'FPIR')} "
    f"{option('calibration_out', 'FILE')}"
)
"""How a calibration file is made (options marked with :func:`gaitcli.errors.option`)."""
_REMAKE = f"re-create it with {CALIBRATE_COMMAND}"


class CalibrationError(GaitError):
    """A calibration file that cannot be used as it is."""


@dataclass(frozen=True)
class Provenance:
    """Where embeddings came from."""

    checkpoint: str | None
    """The checkpoint path as given."""
    checkpoint_sha256: str | None
    """SHA-256 of the checkpoint file (None: not recorded, e.g. an older feature file)."""
    model: str | None
    """Model name, e.g. ``GaitGL`` or ``MetaGait (paper)``."""
    metric: str | None
    """Distance metric of evaluation (``euc`` or ``cos``)."""
    frame_size: str | None
    """Frame size ``HxW`` the network was fed before the width cut."""

    @classmethod
    def from_meta(cls, meta: Mapping[str, object]) -> Provenance:
        def text(key: str) -> str | None:
            value = meta.get(key)
            return None if value in (None, "") else str(value)

        return cls(
            text("checkpoint"), text("checkpoint_sha256"), text("model"), text("metric"), text("frame_size")
        )

    def to_meta(self) -> dict[str, str]:
        items = {
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "model": self.model,
            "metric": self.metric,
            "frame_size": self.frame_size,
        }
        return {k: v for k, v in items.items() if v is not None}

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "model": self.model,
            "metric": self.metric,
            "frame_size": self.frame_size,
        }

    @property
    def verified(self) -> bool:
        """Whether the checkpoint is identified by its SHA-256 (not just a path)."""
        return self.checkpoint_sha256 is not None


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# field checks shared by the calibration file and the feature-file header
# ----------------------------------------------------------------------------------------------


class Fields:
    """Reads the fields of one JSON object, each checked; a bad one is one line naming it."""

    def __init__(
        self,
        data: Mapping[str, JSONValue],
        where: str,
        remake: str,
        error: Callable[[str], GaitError] = CalibrationError,
    ) -> None:
        self.data = data
        self.where = where
        self.remake = remake
        self.error = error
        self.used: set[str] = set()

    def fail(self, key: str, expected: str) -> GaitError:
        got = json.dumps(self.data.get(key))
        return self.error(f"{self.where}: field {key} must be {expected}, got {got[:60]}; {self.remake}")

    def _get(self, key: str) -> JSONValue:
        self.used.add(key)
        if key not in self.data:
            raise self.error(f"{self.where}: field {key} is missing; {self.remake}")
        return self.data[key]

    def number(self, key: str, expected: str, ok: Callable[[float], bool], *, optional: bool = False
               ) -> float | None:
        """A finite number for which ``ok`` holds (``expected`` says which, for the message)."""
        value = self._get(key)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, expected + (" or null" if optional else ""))
        if not ok(float(value)):
            raise self.fail(key, expected + (" or null" if optional else ""))
        return float(value)

    def count(self, key: str, lo: int = 0, *, optional: bool = False) -> int | None:
        value = self._get(key)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise self.fail(key, f"a whole number >= {lo}" + (" or null" if optional else ""))
        return value

    def text(self, key: str, *, optional: bool = False, pattern: re.Pattern[str] | None = None,
             choices: tuple[str, ...] = (), expected: str = "a non-empty string") -> str | None:
        value = self._get(key)
        if value is None and optional:
            return None
        if choices:
            expected = " or ".join(choices)
        good = isinstance(value, str) and bool(value)
        good = good and (pattern is None or bool(pattern.match(str(value))))
        good = good and (not choices or value in choices)
        if not good or not isinstance(value, str):
            raise self.fail(key, expected + (" or null" if optional else ""))
        return value

    def provenance(self, key: str) -> Provenance:
        value = self._get(key)
        if not isinstance(value, dict):
            raise self.fail(key, "an object with checkpoint, checkpoint_sha256, model, metric, frame_size")
        inner = Fields(value, self.where, self.remake, self.error)
        prov = Provenance(
            inner.text("checkpoint", optional=True),
            inner.text("checkpoint_sha256", optional=True, pattern=_SHA256, expected="64 hex digits"),
            inner.text("model", optional=True),
            inner.text("metric", optional=True, choices=_METRICS),
            inner.text("frame_size", optional=True, pattern=_FRAME_SIZE, expected="HxW such as 64x64"),
        )
        inner.no_others(f"{key}.")
        return prov

    def no_others(self, prefix: str = "") -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            raise self.error(
                f"{self.where}: unknown field {prefix}{extra[0]} (a hand edit or a newer gaitcli?); "
                f"{self.remake}"
            )


# ----------------------------------------------------------------------------------------------
# the calibration
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """A distance threshold and what it means."""

    threshold: float
    """Accept a match when its distance is at most this."""
    decision: Decision
    """What the rates describe: ``open-set identification`` (FPIR / FNIR of searches, what
    ``gait identify`` decides), or ``pairwise verification`` (FAR / FRR of probe x gallery pairs;
    only in version-1 files)."""
    rate: float
    """The false-positive rate asked for: FPIR (open set) or the pairwise FAR."""
    achieved_rate: float | None
    """That rate measured at the threshold (at most ``rate``)."""
    miss_rate: float | None
    """FNIR at the threshold (open set) or the pairwise FRR = 1 - TAR."""
    negatives: int
    """Non-mated searches (open set) or impostor pairs measured."""
    positives: int
    """Mated searches (open set) or genuine pairs measured."""
    gallery_identities: int | None
    """Identities in the gallery of the calibration's searches (FPIR grows with this)."""
    dataset: str | None
    """The data set it was measured on."""
    split: str
    """Its split (``test``)."""
    probe_sets: str
    """The probe sets pooled (e.g. ``ALL`` or ``NM``)."""
    provenance: Provenance
    """Checkpoint, model, metric and frame size of the embeddings it was measured on."""

    @property
    def open_set(self) -> bool:
        return self.decision == OPEN_SET

    def meaning(self) -> str:
        where = f"{self.dataset or 'unnamed data'} {self.split} split, {self.probe_sets}"
        if self.open_set:
            gallery = f", gallery of {self.gallery_identities} identities" if self.gallery_identities else ""
            return (
                f"threshold {self.threshold:.4g} = FPIR {self.rate:g} for open-set identification "
                f"(leave-one-identity-out on {where}: {self.negatives} non-mated searches{gallery}; "
                f"FNIR {_pct(self.miss_rate)} there)"
            )
        tar = None if self.miss_rate is None else 1.0 - self.miss_rate
        return (
            f"threshold {self.threshold:.4g} = pairwise FAR {self.rate:g} on verification pairs of {where} "
            f"({self.negatives} impostor pairs; TAR {_pct(tar)} there)"
        )

    def caveat(self) -> str | None:
        """Why the threshold may not mean what a user expects here (None: it does)."""
        if self.open_set:
            return None
        return (
            "this calibration (an older gaitcli's) holds a pairwise FAR, not an open-set rate: against a "
            f"gallery many more impostor probes are accepted than {self.rate:g}; recalibrate with "
            f"{CALIBRATE_COMMAND}"
        )

    def to_json(self) -> dict[str, JSONValue]:
        head: dict[str, JSONValue] = {"format": FORMAT, "version": VERSION, "decision": self.decision}
        if self.open_set:
            body: dict[str, JSONValue] = {
                "method": METHOD,
                "threshold": self.threshold,
                "fpir": self.rate,
                "achieved_fpir": self.achieved_rate,
                "fnir": self.miss_rate,
                "non_mated_searches": self.negatives,
                "mated_searches": self.positives,
                "gallery_identities": self.gallery_identities,
            }
        else:
            body = {
                "threshold": self.threshold,
                "far": self.rate,
                "achieved_far": self.achieved_rate,
                "tar": None if self.miss_rate is None else 1.0 - self.miss_rate,
                "impostor_pairs": self.negatives,
                "genuine_pairs": self.positives,
            }
        tail: dict[str, JSONValue] = {
            "dataset": self.dataset,
            "split": self.split,
            "probe_sets": self.probe_sets,
            "provenance": self.provenance.to_json(),
        }
        return {**head, **body, **tail}

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_bytes(path, (json.dumps(self.to_json(), indent=2) + "\n").encode())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Calibration:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CalibrationError(
                f"{path}: no such calibration file (write one with {CALIBRATE_COMMAND})"
            ) from None
        except IsADirectoryError:
            raise CalibrationError(f"{path}: is a folder, not a calibration file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CalibrationError(f"{path}: not a readable calibration JSON ({exc})") from None
        return from_json(data, str(path))


def _version_of(data: dict[str, JSONValue], where: str) -> int:
    if data.get("format") == FORMAT_V1:
        return 1
    if data.get("format") != FORMAT:
        raise CalibrationError(f"{where}: not a gaitcli calibration file (format {FORMAT} expected)")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 2:
        raise CalibrationError(f"{where}: field version must be a whole number >= 2; {_REMAKE}")
    if version > VERSION:
        raise CalibrationError(
            f"{where}: written by a newer gaitcli (calibration version {version}; this gaitcli reads up to "
            f"{VERSION}); upgrade gaitcli (pip install -U gaitcli)"
        )
    return version


def _v1_to_v2(data: dict[str, JSONValue]) -> dict[str, JSONValue]:
    """Version 1 (``format: gaitcli-calibration-1``): a pairwise FAR threshold, provenance fields at
    the top level. Version 2 nests the provenance and names the decision."""
    prov_keys = ("checkpoint", "checkpoint_sha256", "model", "metric", "frame_size")
    out: dict[str, JSONValue] = {"format": FORMAT, "version": 2, "decision": PAIRWISE}
    out.update({k: v for k, v in data.items() if k != "format" and k not in prov_keys})
    out["provenance"] = {k: data[k] for k in prov_keys if k in data}
    return out


MIGRATIONS: dict[int, Callable[[dict[str, JSONValue]], dict[str, JSONValue]]] = {1: _v1_to_v2}
"""``version -> step`` turning a file of that version into the next one."""


def from_json(data: JSONValue, where: str) -> Calibration:
    """A :class:`Calibration` from a parsed calibration file of any known version, every field
    checked (one line naming the first bad one)."""
    if not isinstance(data, dict):
        raise CalibrationError(f"{where}: not a gaitcli calibration file (format {FORMAT} expected)")
    version = _version_of(data, where)
    while version < VERSION:
        data = MIGRATIONS[version](data)
        version += 1
    fields = Fields(data, where, _REMAKE)
    fields.text("format")
    fields.count("version")
    decision = fields.text("decision", choices=(OPEN_SET, PAIRWISE))
    threshold = fields.number("threshold", "a distance >= 0", _at_least_zero)
    assert threshold is not None and decision is not None
    if decision == OPEN_SET:
        fields.text("method")
        rate = fields.number("fpir", _OPEN, _open_unit)
        achieved = fields.number("achieved_fpir", _CLOSED, _unit, optional=True)
        miss = fields.number("fnir", _CLOSED, _unit, optional=True)
        negatives = fields.count("non_mated_searches", 1)
        positives = fields.count("mated_searches", 0)
        identities = fields.count("gallery_identities", 1, optional=True)
    else:
        rate = fields.number("far", _OPEN, _open_unit)
        achieved = fields.number("achieved_far", _CLOSED, _unit, optional=True)
        tar = fields.number("tar", _CLOSED, _unit, optional=True)
        miss = None if tar is None else 1.0 - tar
        negatives = fields.count("impostor_pairs", 1)
        positives = fields.count("genuine_pairs", 0)
        identities = None
    dataset = fields.text("dataset", optional=True)
    split = fields.text("split")
    probe_sets = fields.text("probe_sets")
    provenance = fields.provenance("provenance")
    fields.no_others()
    assert rate is not None and negatives is not None and positives is not None
    assert split is not None and probe_sets is not None
    kind: Decision = OPEN_SET if decision == OPEN_SET else PAIRWISE
    return Calibration(
        threshold, kind, rate, achieved, miss, negatives, positives, identities, dataset, split, probe_sets,
        provenance,
    )


_OPEN = "a rate between 0 and 1 (exclusive)"
_CLOSED = "a rate in [0, 1]"


def _at_least_zero(x: float) -> bool:
    return x >= 0


def _open_unit(x: float) -> bool:
    return 0 < x < 1


def _unit(x: float) -> bool:
    return 0 <= x <= 1


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def calibrate(
    report: VerificationReport,
    fpir: float,
    *,
    dataset: str | None,
    provenance: Provenance,
    probe_set: str | None = None,
) -> Calibration:
    """The open-set threshold for ``fpir`` from the searches of a verification report, on the
    pooled probe sets (or on ``probe_set``); a rate the data cannot resolve is a one-line error."""
    if not 0 < fpir < 1:
        raise GaitError(f"{option('calibrate', fpir)}: an FPIR lies between 0 and 1, e.g. 1e-2")
    searches = report.open_set
    names = [s.probe_set for s in searches]
    if not names:
        raise GaitError("no open-set searches in the verification report (no probe sets?)")
    name = probe_set or ("ALL" if "ALL" in names else names[0])
    result = next((s for s in searches if s.probe_set == name), None)
    if result is None:
        raise GaitError(f"no open-set searches for probe set {name} (have {', '.join(names)})")
    asked = option("calibrate", format(fpir, "g"))
    if result.non_mated * fpir < 1:
        raise GaitError(
            f"{asked}: only {result.non_mated} non-mated searches in {name}; at least "
            f"{math.ceil(1 / fpir - 1e-9)} are needed to resolve that FPIR (use a larger FPIR or more data)"
        )
    point = result.at(fpir)
    if point.threshold is None:
        raise GaitError(f"{asked}: no distance threshold reaches that FPIR on {name}")
    return Calibration(
        float(point.threshold),
        OPEN_SET,
        fpir,
        point.achieved_fpir,
        point.fnir,
        result.non_mated,
        result.mated,
        result.gallery_identities,
        dataset,
        "test",
        name,
        provenance,
    )


def provenance_of(meta: Mapping[str, object], checkpoint: str | None, metric: str | None) -> Provenance:
    """What a set of embeddings was made with: the features' record (``meta``), completed from the
    checkpoint file (SHA-256, model, recorded frame size) when it is at hand."""
    prov = Provenance.from_meta(meta)
    ckpt = prov.checkpoint or checkpoint
    sha, model, size = prov.checkpoint_sha256, prov.model, prov.frame_size
    if ckpt and Path(ckpt).is_file() and sha is None:
        from gaitcli.models import read_checkpoint_metadata

        stored = read_checkpoint_metadata(ckpt)
        sha = file_sha256(ckpt)
        variant = stored.get("variant") or ""
        model = model or (f"{stored.get('model')} ({variant})" if variant else str(stored.get("model")))
        recorded = stored.get("frame_size")
        size = size or (str(recorded) if recorded else None)
    return Provenance(str(ckpt) if ckpt else None, sha, model, metric or prov.metric, size)
