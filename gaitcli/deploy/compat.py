"""What makes embeddings comparable: the checkpoint, the distance metric and the frame size.

Feature files, galleries, calibrations and a loaded checkpoint each carry a
:class:`~gaitcli.evaluation.calibration.Provenance`. Two of them can be used together when:

* both record the checkpoint's SHA-256 and it is the same (*verified*); or
* neither records it (*unverified*: a feature file of an older gaitcli, or from a model in
  memory): they can only be used with each other, and when both name a checkpoint file its
  name must agree. An unverified file never matches a checkpoint or a verified file: the line
  says how to re-create it;
* and, wherever both sides record it, the metric, the frame size and the model agree.

Anything else is one line (docs/deploy.md, "Which files go together").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gaitcli.errors import GaitError
from gaitcli.evaluation.calibration import CALIBRATE_COMMAND, Provenance
from gaitcli.evaluation.features import EMBED_COMMAND


class MismatchError(GaitError):
    """A gallery, probe or calibration made with another checkpoint, metric or frame size."""


@dataclass(frozen=True)
class Source:
    """One side of a comparison: its provenance, how to name it, how to re-create it."""

    provenance: Provenance
    """What made it."""
    what: str
    """E.g. ``gallery G.npz`` or ``checkpoint run.safetensors``."""
    remake: str = ""
    """How to re-create it with a checkpoint (for an unverified file)."""


def feature_file(provenance: Provenance, what: str) -> Source:
    return Source(provenance, what, EMBED_COMMAND)


def calibration_file(provenance: Provenance, what: str) -> Source:
    return Source(provenance, what, CALIBRATE_COMMAND)


def _short(sha: str | None) -> str:
    return f"SHA-256 {sha[:12]}..." if sha else "no SHA-256"


def check_compatible(a: Source, b: Source) -> None:
    """Raise :class:`MismatchError` (one line) when ``a`` and ``b`` cannot be compared."""
    pa, pb = a.provenance, b.provenance
    if pa.verified and pb.verified:
        if pa.checkpoint_sha256 != pb.checkpoint_sha256:
            raise MismatchError(
                f"{b.what} was made with checkpoint {pb.checkpoint} ({_short(pb.checkpoint_sha256)}) but "
                f"{a.what} with {pa.checkpoint} ({_short(pa.checkpoint_sha256)}); use one checkpoint for both"
            )
    elif pa.verified or pb.verified:
        bare, sure = (a, b) if pb.verified else (b, a)
        remake = f": re-create it with {bare.remake}" if bare.remake else ""
        raise MismatchError(
            f"{bare.what} does not record its checkpoint's SHA-256 (an older gaitcli, or a model in memory, "
            f"wrote it), so it cannot be shown to come from the checkpoint of {sure.what} "
            f"({sure.provenance.checkpoint}){remake}, using checkpoint {sure.provenance.checkpoint}"
        )
    elif pa.checkpoint and pb.checkpoint and Path(pa.checkpoint).name != Path(pb.checkpoint).name:
        raise MismatchError(
            f"{b.what} was made with checkpoint {pb.checkpoint} but {a.what} with {pa.checkpoint}; "
            "use one checkpoint for both"
        )
    for field_name, label in (("metric", "metric"), ("frame_size", "frame size"), ("model", "model")):
        va, vb = getattr(pa, field_name), getattr(pb, field_name)
        if va is not None and vb is not None and va != vb:
            raise MismatchError(f"{b.what} has {label} {vb} but {a.what} has {va}; they must agree")
