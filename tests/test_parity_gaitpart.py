"""GaitPart at OpenGait parity: an OpenGait GaitPart checkpoint (``Plain`` backbone, per-part TFA)
converts unchanged and gives OpenGait's ``inference_feat['embeddings']`` for fixed and
variable-length input (sequences shorter than the TFA's windows included); configs load; it trains
with the triplet loss alone, and padded batches give finite gradients.

The fixtures come from OpenGait's own code run outside the project
(``tests/parity/gaitpart_harness.py``, which says how to regenerate them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from parity_reference import as_ours, convert_reference, load_reference, split

from gaitcli.build import build_model
from gaitcli.config import load_config, resolve_config
from gaitcli.errors import ConfigError
from gaitcli.models import GaitPart, create_model, load_checkpoint
from gaitcli.models.set_layers import FocalConv2d

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).parent / "fixtures" / "parity"
REPO = Path(__file__).resolve().parents[1]
RTOL, ATOL = 1e-4, 1e-6
SMALL = {"model": "GaitPart", "backbone_cfg": {"layers_cfg": ["BC-4", "M", "FC-8-1"]},
         "SeparateFCs": {"in_channels": 8, "out_channels": 4}}


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return load_reference(FIXTURES / "gaitpart")


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> GaitPart:
    out = tmp_path_factory.mktemp("gaitpart") / "gaitpart.safetensors"
    model = convert_reference(FIXTURES / "gaitpart", out, GaitPart, 120000)
    assert isinstance(model, GaitPart)
    return model




def padded(seqs: list[np.ndarray]) -> tuple[torch.Tensor, list[int]]:
    batch = torch.full((len(seqs), max(len(s) for s in seqs), *seqs[0].shape[1:]), 7.0)  # garbage
    for i, s in enumerate(seqs):
        batch[i, : len(s)] = torch.from_numpy(s).float() / 255.0
    return batch, [len(s) for s in seqs]


def test_state_dict_loads_unchanged(converted):
    state = torch.load(FIXTURES / "gaitpart.pt", weights_only=True)["model"]
    ours = converted.state_dict()
    assert set(ours) == set(state)
    for name, tensor in state.items():
        assert torch.equal(ours[name], tensor), name


def test_fixed_length_embeddings(converted, ref):
    sils = torch.from_numpy(ref["fixed"]).float() / 255.0
    with torch.no_grad():
        out = converted(sils)
    assert set(out) == {"embeddings"}  # no classifier
    want = as_ours(ref["fixed_embeddings"])
    torch.testing.assert_close(out["embeddings"], want, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(converted.embed(list(ref["fixed"])), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_variable_length_embed_matches_the_evaluator(converted, ref, batch_size):
    """``embed`` (sorted, padded, masked batches) gives what OpenGait gives for the sequences
    concatenated with ``seqL`` (lengths 9, 1, 4, 2, 5) and for each alone: the TFA's convolutions
    and pools see each sequence's own ends."""
    emb = converted.embed(split(ref), batch_size=batch_size)
    torch.testing.assert_close(emb, as_ours(ref["varlen_embeddings"]), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(emb, as_ours(ref["alone_embeddings"]), rtol=RTOL, atol=ATOL)


def test_padded_frames_never_matter(converted, ref):
    batch, lens = padded(split(ref))
    with torch.no_grad():
        out = converted(batch, lens)["embeddings"]
    torch.testing.assert_close(out, as_ours(ref["varlen_embeddings"]), rtol=RTOL, atol=ATOL)


def test_padded_training_batch_has_finite_gradients_equal_to_each_alone(ref):
    """The TFA's max pools see -inf at padded frames; no inf·0 may reach the gradients, and a
    padded batch's gradient is the sum of its sequences' own gradients."""
    model = create_model(SMALL).train()
    seqs = [s[:, ::2, ::2] for s in split(ref)]  # 32x22 frames: fast
    batch, lens = padded(seqs)
    model(batch, lens)["embeddings"].pow(2).sum().backward()
    together = {k: p.grad.clone() for k, p in model.named_parameters()}
    assert all(torch.isfinite(g).all() for g in together.values())
    model.zero_grad()
    for s in seqs:
        model(torch.from_numpy(s).float()[None] / 255.0)["embeddings"].pow(2).sum().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(together[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_focal_convolution_of_an_uneven_height_splits_as_the_reference():
    torch.manual_seed(0)
    conv = FocalConv2d(2, 3, 3, halving=2, padding=1)
    x = torch.randn(2, 2, 10, 5)  # 10 rows, 4 strips of 10 // 4 = 2 rows -> 5 pieces
    want = torch.cat([conv.conv(x[:, :, i : i + 2]) for i in range(0, 10, 2)], 2)
    torch.testing.assert_close(conv(x), want)
    even = torch.randn(2, 2, 8, 5)
    torch.testing.assert_close(conv(even), torch.cat([conv.conv(p) for p in even.split(2, 2)], 2))


def test_opengait_shaped_configs_load_and_build():
    cfg = load_config(FIXTURES / "gaitpart.yaml")
    assert cfg.model.name == "GaitPart"
    packaged = build_model(load_config(REPO / "configs" / "gaitpart.yaml"))
    assert isinstance(packaged, GaitPart)
    assert packaged.num_parameters() == 1_204_000  # OpenGait's GaitPart at configs/gaitpart/gaitpart.yaml
    assert packaged(torch.rand(1, 3, 64, 44))["embeddings"].shape == (1, 16, 128)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"SeparateFCs": {"in_channels": 64}}, "in_channels is 64 but the backbone's output width"),
        ({"bin_num": [8]}, r"SeparateFCs.parts_num is 16 but sum\(bin_num\) is 8"),
        ({"backbone_cfg": {"layers_cfg": ["BC-32", "XC-64"]}}, r"layers_cfg\[1\] is 'XC-64'; use BC-"),
        ({"backbone_cfg": {"layers_cfg": ["M", "BC-128"]}}, "must start with a convolution"),
    ],
)
def test_inconsistent_shapes_are_one_line(changes, message):
    with pytest.raises(ConfigError, match=message) as err:
        resolve_config({"model_cfg": {"model": "GaitPart", **changes}})
    assert "\n" not in str(err.value)


def test_trains_with_the_triplet_loss_alone(tiny_data, tmp_path):
    from gaitcli.training.trainer import train

    cfg = tiny_config(*tiny_data, total_iter=2, save_iter=2, log_iter=1)
    cfg["model_cfg"] = {**SMALL, "class_num": 1}
    cfg["loss_cfg"] = [{"type": "TripletLoss", "margin": 0.2}]
    summary = train(resolve_config(cfg), output=tmp_path / "run", device="cpu", progress=False)
    assert summary.iteration == 2
    model = load_checkpoint(tmp_path / "run" / "checkpoints" / "tiny-00002.safetensors")
    assert isinstance(model, GaitPart)
    assert all(torch.isfinite(p).all() for p in model.parameters())
