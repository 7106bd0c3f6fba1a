"""What makes embeddings comparable: the checkpoint, the distance metric and the frame size.

Feature files, galleries and calibrations record these (docs/deploy.md); anything made with
another checkpoint, metric or frame size is refused with one line. A checkpoint is identified by
the SHA-256 of its file when both sides recorded it, else by its file name.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gaitcli.errors import GaitError


class MismatchError(GaitError):
    """A gallery, probe or calibration made with another checkpoint, metric or frame size."""


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
