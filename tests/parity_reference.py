"""What the parity tests of the OpenGait models share (tests/test_parity_*.py): reading a
reference fixture written by ``tests/parity/<name>_harness.py``, converting its OpenGait
checkpoint through ``gait convert --config`` and comparing layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.models import load_checkpoint
from gaitcli.models.base import GaitModel


def load_reference(stem: Path) -> dict[str, np.ndarray]:
    """The arrays of ``stem.npz`` (inputs, lengths and OpenGait's outputs)."""
    with np.load(f"{stem}.npz") as data:
        return {k: data[k] for k in data.files}


def convert_reference(stem: Path, out: Path, model_class: type[GaitModel], iteration: int) -> GaitModel:
    """``gait convert stem.pt OUT --config stem.yaml``, loaded; the class and iteration checked."""
    result = CliRunner().invoke(app, ["convert", f"{stem}.pt", str(out), "--config", f"{stem}.yaml"])
    assert result.exit_code == 0, result.output
    model = load_checkpoint(out)
    assert isinstance(model, model_class)
    assert model.checkpoint_meta["iteration"] == iteration
    return model


def as_ours(reference: np.ndarray) -> torch.Tensor:
    """OpenGait's ``[n, c, p]`` as gaitcli's ``[n, p, c]``."""
    return torch.from_numpy(reference).permute(0, 2, 1)


def split(ref: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The variable-length input cut into its sequences."""
    return np.split(ref["varlen"], np.cumsum(ref["lengths"])[:-1])
