"""What makes embeddings comparable: the checkpoint, the distance metric and the frame size.

Feature files, galleries and calibrations record these (docs/deploy.md); anything made with
another checkpoint, metric or frame size is refused with one line. A checkpoint is identified by
the SHA-256 of its file when both sides recorded it, else by its file name.
"""

from __future__ import annotations

from pathlib import Path

from gaitcli.errors import GaitError
from gaitcli.evaluation.calibration import Provenance


class MismatchError(GaitError):
    """A gallery, probe or calibration made with another checkpoint, metric or frame size."""


def _same_checkpoint(a: Provenance, b: Provenance) -> bool:
    if a.checkpoint_sha256 and b.checkpoint_sha256:
        return a.checkpoint_sha256 == b.checkpoint_sha256
    if a.checkpoint and b.checkpoint:
        return Path(a.checkpoint).name == Path(b.checkpoint).name
    return True


def check_compatible(a: Provenance, what_a: str, b: Provenance, what_b: str) -> None:
    """Raise :class:`MismatchError` (one line) when ``a`` and ``b`` cannot be compared."""
    if not _same_checkpoint(a, b):
        raise MismatchError(
            f"{what_b} was made with checkpoint {b.checkpoint} but {what_a} with {a.checkpoint}; "
            "embed both with the same checkpoint"
        )
    for field_name, label in (("metric", "metric"), ("frame_size", "frame size"), ("model", "model")):
        va, vb = getattr(a, field_name), getattr(b, field_name)
        if va is not None and vb is not None and va != vb:
            raise MismatchError(f"{what_b} has {label} {vb} but {what_a} has {va}; they must agree")
