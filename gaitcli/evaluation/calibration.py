"""Calibrated thresholds: ``gait eval --verification --calibrate FAR`` writes one, ``gait identify
--calibration`` reads it (docs/deploy.md), and the :class:`Provenance` both record.

The JSON holds the distance threshold, the FAR it was calibrated at (and the TAR reached), and
the data it was measured on: data set, split, probe sets, checkpoint (path and SHA-256), model,
metric and frame size. It is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gaitcli.errors import GaitError
from gaitcli.fileio import atomic_write_bytes

FORMAT = "gaitcli-calibration-1"


@dataclass(frozen=True)
class Provenance:
    """Where embeddings came from."""

    checkpoint: str | None
    """The checkpoint path as given."""
    checkpoint_sha256: str | None
    """SHA-256 of the checkpoint file."""
    model: str | None
    """Model name, e.g. ``GaitGL`` or ``MetaGait (paper)``."""
    metric: str | None
    """Distance metric of evaluation (``euc`` or ``cos``)."""
    frame_size: str | None
    """Frame size ``HxW`` the network was fed before the width cut."""

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Provenance:
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


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Calibration:
    """A distance threshold and what it means."""

    threshold: float
    """Accept a match when its distance is at most this."""
    far: float
    """The false accept rate it was calibrated at."""
    tar: float | None
    """The true accept rate measured at it."""
    achieved_far: float | None
    """The false accept rate measured at it (at most ``far``)."""
    dataset: str | None
    """The data set it was measured on."""
    split: str
    """Its split (``test``)."""
    probe_sets: str
    """The probe sets pooled (e.g. ``ALL`` or ``NM``)."""
    genuine_pairs: int
    """Genuine pairs measured."""
    impostor_pairs: int
    """Impostor pairs measured."""
    checkpoint: str | None
    """The checkpoint."""
    checkpoint_sha256: str | None
    """SHA-256 of the checkpoint file."""
    model: str | None
    """Model name."""
    metric: str | None
    """Distance metric."""
    frame_size: str | None
    """Frame size ``HxW``."""

    @property
    def provenance(self) -> Provenance:
        return Provenance(self.checkpoint, self.checkpoint_sha256, self.model, self.metric, self.frame_size)

    def meaning(self) -> str:
        where = f"{self.dataset or 'unnamed data'} {self.split} split, {self.probe_sets}"
        return (
            f"threshold {self.threshold:.4g} = FAR {self.far:g} calibrated on {where} "
            f"({self.impostor_pairs} impostor pairs; TAR {_pct(self.tar)} there)"
        )

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_bytes(path, (json.dumps(self.to_json(), indent=2) + "\n").encode())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Calibration:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GaitError(
                f"{path}: no such calibration file (write one with gait eval --verification "
                "--calibrate FAR FILE.json)"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise GaitError(f"{path}: not a readable calibration JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise GaitError(f"{path}: not a gaitcli calibration file (format {FORMAT} expected)")
        data.pop("format")
        try:
            cal = cls(**data)
            float(cal.threshold)
        except (TypeError, ValueError) as exc:
            raise GaitError(f"{path}: damaged calibration file ({exc})") from None
        return cal


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def calibrate(
    report: Any, far: float, *, dataset: str | None, provenance: Provenance, probe_set: str | None = None
) -> Calibration:
    """The threshold for ``far`` on the pooled probe sets of a verification report (or on
    ``probe_set``); a FAR the data cannot resolve is a one-line error."""
    if not 0 < far < 1:
        raise GaitError(f"--calibrate {far}: a FAR lies between 0 and 1, e.g. 1e-3")
    names = [r.probe_set for r in report.results]
    name = probe_set or ("ALL" if "ALL" in names else names[0])
    result = report.get(name)
    if result is None:
        raise GaitError(f"no verification results for probe set {name} (have {', '.join(names)})")
    n_imp = result.impostor.count
    if n_imp * far < 1:
        raise GaitError(
            f"--calibrate {far:g}: only {n_imp} impostor pairs in {name}; at least "
            f"{int(1 / far + 0.5)} are needed to resolve that FAR (use a larger FAR or more data)"
        )
    point = next((p for p in result.points if abs(p.far - far) <= 1e-12), None)
    if point is None:
        raise GaitError(f"--calibrate {far:g}: the verification was not computed at that FAR")
    if point.threshold is None:
        raise GaitError(f"--calibrate {far:g}: no distance threshold reaches that FAR on {name}")
    return Calibration(
        float(point.threshold),
        far,
        point.tar,
        point.achieved_far,
        dataset,
        "test",
        name,
        result.genuine.count,
        n_imp,
        provenance.checkpoint,
        provenance.checkpoint_sha256,
        provenance.model,
        provenance.metric,
        provenance.frame_size,
    )


def provenance_of(meta: Mapping[str, Any], checkpoint: str | None, metric: str) -> Provenance:
    """What a calibration was measured with: the features' record (``meta``), completed from the
    checkpoint file when it is at hand."""
    prov = Provenance.from_meta(meta)
    ckpt = prov.checkpoint or checkpoint
    sha, model, size = prov.checkpoint_sha256, prov.model, prov.frame_size
    if ckpt and Path(ckpt).is_file() and sha is None:
        from gaitcli.models import read_checkpoint_metadata

        stored = read_checkpoint_metadata(ckpt)
        sha = file_sha256(ckpt)
        variant = stored.get("variant") or ""
        model = model or (f"{stored.get('model')} ({variant})" if variant else str(stored.get("model")))
        size = size or stored.get("frame_size")
    return Provenance(str(ckpt) if ckpt else None, sha, model, metric, size)
