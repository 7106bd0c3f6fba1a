"""GaitSet at OpenGait parity: an OpenGait GaitSet checkpoint converts unchanged and gives OpenGait's
``inference_feat['embeddings']`` for fixed and variable-length input; OpenGait-shaped configs load;
it trains with the triplet loss alone (no classifier).

The fixtures come from OpenGait's own code run outside the project
(``tests/parity/gaitset_harness.py``, which says how to regenerate them).
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
from gaitcli.models import GaitSet, create_model, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).parent / "fixtures" / "parity"
REPO = Path(__file__).resolve().parents[1]
RTOL, ATOL = 1e-4, 1e-6


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return load_reference(FIXTURES / "gaitset")


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> GaitSet:
    out = tmp_path_factory.mktemp("gaitset") / "gaitset.safetensors"
    model = convert_reference(FIXTURES / "gaitset", out, GaitSet, 40000)
    assert isinstance(model, GaitSet)
    return model




def test_state_dict_loads_unchanged(converted):
    state = torch.load(FIXTURES / "gaitset.pt", weights_only=True)["model"]
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
    concatenated with ``seqL`` (lengths 9, 1, 4, 2, 5) and for each alone."""
    emb = converted.embed(split(ref), batch_size=batch_size)
    torch.testing.assert_close(emb, as_ours(ref["varlen_embeddings"]), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(emb, as_ours(ref["alone_embeddings"]), rtol=RTOL, atol=ATOL)


def test_padded_frames_never_matter(converted, ref):
    seqs = split(ref)
    batch = torch.full((len(seqs), max(len(s) for s in seqs), *seqs[0].shape[1:]), 7.0)  # garbage
    for i, s in enumerate(seqs):
        batch[i, : len(s)] = torch.from_numpy(s).float() / 255.0
    for mode in (False, True):  # no BatchNorm: training mode gives the same
        converted.train(mode)
        with torch.no_grad():
            out = converted(batch, [len(s) for s in seqs])["embeddings"]
        torch.testing.assert_close(out, as_ours(ref["varlen_embeddings"]), rtol=RTOL, atol=ATOL)
    converted.eval()


def test_opengait_shaped_configs_load_and_build():
    cfg = load_config(FIXTURES / "gaitset.yaml")
    assert cfg.model.name == "GaitSet"
    packaged = build_model(load_config(REPO / "configs" / "gaitset.yaml"))
    assert isinstance(packaged, GaitSet)
    assert packaged.num_parameters() == 2_594_592  # OpenGait's GaitSet at configs/gaitset/gaitset.yaml
    assert packaged(torch.rand(1, 3, 64, 44))["embeddings"].shape == (1, 62, 256)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("SeparateFCs", {"parts_num": 31}, r"SeparateFCs.parts_num is 31 but 2 \* sum\(bin_num\) is 62"),
        ("SeparateFCs", {"in_channels": 64}, r"SeparateFCs.in_channels is 64 but in_channels\[3\] is 128"),
        ("in_channels", [1, 32, 64], "in_channels needs 4 entries"),
    ],
)
def test_inconsistent_shapes_are_one_line(key, value, message):
    with pytest.raises(ConfigError, match=message) as err:
        resolve_config({"model_cfg": {"model": "GaitSet", key: value}})
    assert "\n" not in str(err.value)


def test_trains_with_the_triplet_loss_alone(tiny_data, tmp_path):
    from gaitcli.training.trainer import train

    cfg = tiny_config(*tiny_data, total_iter=2, save_iter=2, log_iter=1)
    cfg["model_cfg"] = {"model": "GaitSet", "class_num": 1, "in_channels": [1, 4, 4, 8],
                        "SeparateFCs": {"in_channels": 8, "out_channels": 8}}
    cfg["loss_cfg"] = [{"type": "TripletLoss", "margin": 0.2}]
    summary = train(resolve_config(cfg), output=tmp_path / "run", device="cpu", progress=False)
    assert summary.iteration == 2  # class_num 1 < 4 training ids is fine: no classifier to fit
    model = load_checkpoint(tmp_path / "run" / "checkpoints" / "tiny-00002.safetensors")
    assert isinstance(model, GaitSet)

    cfg["model_cfg"]["class_num"] = 4
    cfg["loss_cfg"] = [{"type": "TripletLoss"}, {"type": "CrossEntropyLoss"}]
    with pytest.raises(ConfigError, match="CrossEntropyLoss needs the model's logits"):
        train(resolve_config(cfg), output=tmp_path / "run2", device="cpu", progress=False)


def test_registered_with_openGait_defaults():
    model = create_model({"model": "GaitSet"})
    assert model.parts_num == 62 and model.out_channels == 256 and model.class_num is None
