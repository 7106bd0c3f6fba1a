"""``gait eval --verification [--calibrate FAR --calibration-out CAL.json] [--roc FILE.png]``.

Runs after the protocol, on the same features, gallery and probe sets (docs/eval.md): the
verification table is printed, added to ``--json`` (key ``verification``) and ``--csv`` (rows
``table=verification``), the curves drawn with ``--roc``, and ``--calibrate`` stores the threshold
of a FAR, measured on every probe set pooled, for ``gait identify --calibration``.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from gaitcli.errors import GaitError
from gaitcli.evaluation.extract import FeatureSet
from gaitcli.fileio import atomic_write_bytes

from .calibration import calibrate as make_calibration
from .compat import Provenance


@dataclass
class VerificationOutput:
    """What the verification adds to ``gait eval``'s outputs."""

    payload: dict[str, Any] = field(default_factory=dict)
    """Extra ``--json`` keys."""
    csv: str = ""
    """Extra ``--csv`` rows."""

    def write_csv(self, target: str) -> None:
        if not self.csv:
            return
        if target == "-":
            sys.stdout.write(self.csv)
            return
        before = Path(target).read_bytes() if Path(target).exists() else b""
        atomic_write_bytes(target, before + b"\n" + self.csv.encode())


def check_options(
    verification: bool, calibrate: float | None, calibration_out: Path | None, roc: Path | None
) -> None:
    """Fail before a long evaluation on options that cannot work."""
    if not verification and (calibrate is not None or roc is not None or calibration_out is not None):
        raise GaitError("--calibrate, --calibration-out and --roc need --verification")
    if (calibrate is None) != (calibration_out is None):
        raise GaitError("--calibrate FAR and --calibration-out CAL.json go together")
    if calibrate is not None and not 0 < calibrate < 1:
        raise GaitError(f"--calibrate {calibrate}: a FAR lies between 0 and 1, e.g. 1e-3")
    if roc is not None and roc.suffix.lower() != ".png":
        raise GaitError(f"--roc {roc}: write a .png file")


def verification_features(
    verification: bool, features: Path | None, save_features: Path | None
) -> tuple[Path | None, tempfile.TemporaryDirectory[str] | None]:
    """Where the evaluated features will be: ``--features``, ``--save-features``, or a scratch file."""
    if not verification or features is not None or save_features is not None:
        return save_features, None
    scratch = tempfile.TemporaryDirectory(prefix="gait-verify-")
    return Path(scratch.name) / "features.npz", scratch


def verify_results(
    results: Mapping[str, Any],
    features: Path | None,
    scratch: tempfile.TemporaryDirectory[str] | None,
    *,
    calibrate: float | None,
    calibration_out: Path | None,
    roc: Path | None,
    csv_out: str | None,
    note: Callable[[str], None],
    console: Console,
) -> VerificationOutput:
    """Verification of a finished ``gait eval`` (nothing when ``features`` is None)."""
    from gaitcli.evaluation.verification import (
        csv_text,
        render_verification,
        save_roc,
        verification_for_results,
    )

    if features is None:
        return VerificationOutput()
    try:
        feats = FeatureSet.load(features)
    finally:
        if scratch is not None:
            scratch.cleanup()
    report = verification_for_results(
        dict(results),
        feats.embeddings,
        feats.labels,
        feats.types,
        feats.views,
        extra_fars=(calibrate,) if calibrate is not None else (),
    )
    render_verification(report, console)
    out = VerificationOutput({"verification": report.to_json()}, csv_text(report) if csv_out else "")
    if roc is not None:
        save_roc(report, roc)
        note(f"ROC / DET curves written to {roc}")
    if calibrate is not None and calibration_out is not None:
        prov = _provenance(feats, results)
        cal = make_calibration(report, calibrate, dataset=results.get("dataset_name"), provenance=prov)
        cal.save(calibration_out)
        out.payload["calibration"] = cal.to_json()
        note(f"calibration written to {calibration_out}: {cal.meaning()}")
    return out


def _provenance(feats: FeatureSet, results: Mapping[str, Any]) -> Provenance:
    """What the calibration was measured with: the feature file's record, completed from the
    checkpoint file when it is at hand."""
    prov = Provenance.from_meta(feats.meta)
    checkpoint = prov.checkpoint or results.get("checkpoint")
    sha, model, size = prov.checkpoint_sha256, prov.model, prov.frame_size
    if checkpoint and Path(checkpoint).is_file() and sha is None:
        from gaitcli.models import read_checkpoint_metadata

        from .compat import file_sha256

        meta = read_checkpoint_metadata(checkpoint)
        sha = file_sha256(checkpoint)
        variant = meta.get("variant") or ""
        model = model or (f"{meta.get('model')} ({variant})" if variant else str(meta.get("model")))
        size = size or meta.get("frame_size")
    return Provenance(
        str(checkpoint) if checkpoint else None, sha, model, str(results.get("metric") or "euc"), size
    )
