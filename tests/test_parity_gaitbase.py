"""GaitBase at OpenGait parity: an OpenGait ``Baseline`` checkpoint converts unchanged and gives
OpenGait's ``inference_feat['embeddings']`` (fixed and variable length) and BN-neck logits.

The fixtures come from OpenGait's own code run outside the project
(``tests/parity/gaitbase_harness.py``, which says how to regenerate them). To check GaitBase's
published size, write its files with the harness's ``--full --out DIR`` and run this file with
``GAITCLI_PARITY_DIR=DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from parity_reference import as_ours, convert_reference, load_reference, split

from gaitcli.config import load_config
from gaitcli.models import GaitBase

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(os.environ.get("GAITCLI_PARITY_DIR") or Path(__file__).parent / "fixtures" / "parity")
RTOL, ATOL = 1e-4, 1e-6


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return load_reference(FIXTURES / "gaitbase")


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> GaitBase:
    out = tmp_path_factory.mktemp("gaitbase") / "gaitbase.safetensors"
    model = convert_reference(FIXTURES / "gaitbase", out, GaitBase, 60000)
    assert isinstance(model, GaitBase)
    return model




def test_state_dict_loads_unchanged(converted):
    state = torch.load(FIXTURES / "gaitbase.pt", weights_only=True)["model"]
    ours = converted.state_dict()
    assert set(ours) == set(state)
    for name, tensor in state.items():
        assert torch.equal(ours[name], tensor), name


def test_fixed_length_embeddings_and_logits(converted, ref):
    sils = torch.from_numpy(ref["fixed"]).float() / 255.0
    with torch.no_grad():
        out = converted(sils)
    torch.testing.assert_close(out["embeddings"], as_ours(ref["fixed_embeddings"]), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(out["logits"], as_ours(ref["fixed_logits"]), rtol=RTOL, atol=ATOL)
    emb = converted.embed(list(ref["fixed"]))
    torch.testing.assert_close(emb, as_ours(ref["fixed_embeddings"]), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_variable_length_embed_matches_the_evaluator(converted, ref, batch_size):
    """``embed`` (sorted, padded, masked batches) gives what OpenGait's evaluator gives for the
    sequences concatenated with ``seqL`` (lengths 7, 1, 4, 2), and what each gives alone."""
    emb = converted.embed(split(ref), batch_size=batch_size)
    torch.testing.assert_close(emb, as_ours(ref["varlen_embeddings"]), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(emb, as_ours(ref["alone_embeddings"]), rtol=RTOL, atol=ATOL)


def padded(ref: dict[str, np.ndarray]) -> tuple[torch.Tensor, list[int]]:
    seqs = split(ref)
    batch = torch.zeros(len(seqs), max(len(s) for s in seqs), *seqs[0].shape[1:])
    for i, s in enumerate(seqs):
        batch[i, : len(s)] = torch.from_numpy(s).float() / 255.0
    batch[1, 1:] = 7.0  # garbage in padded frames must not matter
    return batch, [len(s) for s in seqs]


def test_padded_batch_logits_match(converted, ref):
    batch, lens = padded(ref)
    converted.eval()
    with torch.no_grad():
        out = converted(batch, lens)
    torch.testing.assert_close(out["logits"], as_ours(ref["varlen_logits"]), rtol=RTOL, atol=ATOL)


def test_training_mode_batchnorm_sees_only_real_frames(converted, ref):
    """In training mode BatchNorm normalises with the batch's statistics: a padded batch must use
    those of its real frames, as OpenGait's concatenated batch does."""
    batch, lens = padded(ref)
    state = {k: v.clone() for k, v in converted.state_dict().items()}
    try:
        converted.train()
        with torch.no_grad():
            out = converted(batch, lens)
    finally:
        converted.load_state_dict(state)
        converted.eval()
    torch.testing.assert_close(out["embeddings"], as_ours(ref["train_embeddings"]), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(out["logits"], as_ours(ref["train_logits"]), rtol=RTOL, atol=ATOL)


def test_opengait_configs_load_unchanged():
    cfg = load_config(FIXTURES / "gaitbase.yaml")
    raw = yaml.safe_load((FIXTURES / "gaitbase.yaml").read_text())
    classes = raw["model_cfg"]["SeparateBNNecks"]["class_num"]
    assert cfg.model.name == "Baseline" and cfg.model.settings.class_num == classes
