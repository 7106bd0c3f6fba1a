"""DeepGaitV2 at OpenGait parity, in its p3d, 3d and 2d modes: an OpenGait checkpoint converts
unchanged and gives OpenGait's ``inference_feat['embeddings']`` (fixed length, and variable length
as each sequence gives alone) and BNNeck logits, in eval and training mode.

The fixtures come from OpenGait's own code run outside the project
(``tests/parity/deepgaitv2_harness.py``, which says how to regenerate them). Setting
``DEEPGAITV2_PARITY_DIR`` to a folder the harness wrote with ``--full`` runs the same checks at
the published sizes.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from parity_reference import convert_reference, load_reference, split

from gaitcli.config import load_config, resolve_config
from gaitcli.errors import ConfigError
from gaitcli.models import DeepGaitV2, create_model, load_checkpoint
from gaitcli.training.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(os.environ.get("DEEPGAITV2_PARITY_DIR") or Path(__file__).parent / "fixtures" / "parity")
MODES = sorted(p.stem.removeprefix("deepgaitv2_") for p in FIXTURES.glob("deepgaitv2_*.npz"))
RTOL = 1e-4


def close(ours: torch.Tensor, reference: np.ndarray, floor: float = 1e-6) -> None:
    """Within 1e-4 relative; the absolute floor is ``floor`` times the tensor's largest value
    (elements near zero carry only float rounding)."""
    expected = torch.from_numpy(reference).permute(0, 2, 1)  # OpenGait [n, c, p] -> [n, p, c]
    atol = floor * float(expected.abs().max())
    torch.testing.assert_close(ours, expected, rtol=RTOL, atol=atol)


@pytest.fixture(scope="module", params=MODES)
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    mode = request.param
    stem = FIXTURES / f"deepgaitv2_{mode}"
    out = tmp_path_factory.mktemp(f"deepgaitv2_{mode}") / "model.safetensors"
    model = convert_reference(stem, out, DeepGaitV2, 60000)
    return stem, model, load_reference(stem)


def test_fixtures_cover_both_modes():
    assert {"p3d", "3d"} <= {m.split("-")[0] for m in MODES}


def test_state_dict_loads_unchanged(case):
    stem, model, _ = case
    state = torch.load(f"{stem}.pt", weights_only=True)["model"]
    ours = model.state_dict()
    assert list(ours) == list(state)
    for name, tensor in state.items():
        assert torch.equal(ours[name], tensor), name


def test_fixed_length_embeddings_and_logits(case):
    _, model, ref = case
    with torch.no_grad():
        out = model(torch.from_numpy(ref["fixed"]).float() / 255.0)
    close(out["embeddings"], ref["fixed_embeddings"])
    close(out["logits"], ref["fixed_logits"])
    close(model.embed(list(ref["fixed"])), ref["fixed_embeddings"])


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_variable_length_embed_equals_each_sequence_alone(case, batch_size):
    """``embed`` (sorted, padded, masked batches; lengths 1 and 2 included, nothing repeated)
    gives what OpenGait gives for each sequence run alone."""
    _, model, ref = case
    close(model.embed(split(ref), batch_size=batch_size), ref["alone_embeddings"])


def test_padded_batch_ignores_what_the_padding_holds(case):
    """One padded batch with garbage in the padded frames: each sequence's embedding and logits
    are still its own (the temporal convolutions see zeros past its end)."""
    _, model, ref = case
    seqs = split(ref)
    lens = [len(s) for s in seqs]
    batch = torch.full((len(seqs), max(lens) + 3, *seqs[0].shape[1:]), 0.7)
    for row, seq in enumerate(seqs):
        batch[row, : len(seq)] = torch.from_numpy(seq).float() / 255.0
    with torch.no_grad():
        out = model.eval()(batch, lens)
    close(out["embeddings"], ref["alone_embeddings"])
    close(out["logits"], ref["alone_logits"])


def test_training_mode_batch_statistics(case):
    """Training mode (BatchNorm on the batch's statistics) on the fixed batch: OpenGait's
    triplet embeddings (the FCs' output) and logits. The BNNeck standardises each feature over
    a batch of two here, which amplifies rounding (measured up to 2.3e-5 of the largest logit at
    the published sizes), so the logits get an absolute floor of 1e-4 of the largest."""
    _, model, ref = case
    net = copy.deepcopy(model).train()
    with torch.no_grad():
        out = net(torch.from_numpy(ref["fixed"]).float() / 255.0)
    close(out["embeddings"], ref["train_embeddings"])
    close(out["logits"], ref["train_logits"], floor=1e-4)


def test_training_on_a_padded_batch_uses_real_frames_only(case):
    """A padded training batch: BatchNorm statistics come from real frames only, so padding the
    same sequences further (with garbage) changes nothing, and gradients reach the weights."""
    _, model, ref = case
    seqs = [torch.from_numpy(s).float() / 255.0 for s in split(ref)]
    lens = [len(s) for s in seqs]

    def padded(extra: int, fill: float) -> torch.Tensor:
        batch = torch.full((len(seqs), max(lens) + extra, *seqs[0].shape[1:]), fill)
        for row, seq in enumerate(seqs):
            batch[row, : len(seq)] = seq
        return batch

    net = copy.deepcopy(model).train()
    first = net(padded(0, 0.0), lens)
    second = copy.deepcopy(model).train()(padded(4, 0.9), lens)
    torch.testing.assert_close(first["embeddings"], second["embeddings"], rtol=1e-4, atol=1e-5)
    (first["embeddings"].sum() + first["logits"].sum()).backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and bool(torch.isfinite(param.grad).all()), name


def test_opengait_config_keys_load(tmp_path):
    """OpenGait's model_cfg shape: ``SeparateBNNecks.class_num`` is the class count."""
    config = tmp_path / "dgv2.yaml"
    config.write_text(
        "model_cfg:\n  model: DeepGaitV2\n  Backbone:\n    mode: 3d\n    in_channels: 1\n"
        "    layers: [1, 4, 4, 1]\n    channels: [64, 128, 256, 512]\n"
        "  SeparateBNNecks:\n    class_num: 3000\n"
    )
    cfg = load_config(config)
    assert cfg.model.name == "DeepGaitV2"
    assert cfg.model.settings.class_num == 3000
    with pytest.raises(ConfigError, match="Backbone.mode"):
        config.write_text("model_cfg:\n  model: DeepGaitV2\n  Backbone: {mode: 4d}\n")
        load_config(config)
    with pytest.raises(ConfigError, match="Backbone.layers must be 4 numbers"):
        config.write_text("model_cfg:\n  model: DeepGaitV2\n  Backbone: {layers: [1, 4, 4]}\n")
        load_config(config)


def test_packaged_config_builds_the_published_network():
    cfg = load_config("deepgaitv2")
    assert cfg.model.name == "DeepGaitV2"
    model = create_model(cfg.model.as_mapping(), cfg.data.dataset_name)
    assert model.mode == "p3d" and model.class_num == 74 and model.parts_num == 16
    assert model.out_channels == 256
    assert 7_000_000 < model.num_parameters() < 9_000_000


@pytest.mark.parametrize("bad", [
    {"Backbone": {"channels": [8, 8, 16]}},
    {"Backbone": {"layers": [1, 1, 1, 1, 1]}},
    {"channels_last": True},
])
def test_bad_settings_are_one_line(bad):
    with pytest.raises(ConfigError) as info:
        create_model({"model": "DeepGaitV2", **bad})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("mode", ["p3d", "3d"])
def test_trains_two_iterations_with_opengait_keys(mode, tiny_data, tmp_path):
    """OpenGait's model_cfg shape trains end to end (padded, variable-length clips; cosine
    logits with cross-entropy scale 16) and the checkpoint loads back."""
    cfg = tiny_config(*tiny_data, total_iter=2, save_iter=2, log_iter=1)
    cfg["trainer_cfg"]["sampler"].update(
        {"sample_type": "unfixed_ordered", "frames_num_min": 3, "frames_num_max": 7}
    )
    cfg["model_cfg"] = {"model": "DeepGaitV2", "SeparateBNNecks": {"class_num": 4},
                        "Backbone": {"mode": mode, "layers": [1, 1, 1, 1], "channels": [4, 4, 8, 8]}}
    cfg["loss_cfg"] = [{"type": "TripletLoss", "margin": 0.2},
                       {"type": "CrossEntropyLoss", "scale": 16, "log_accuracy": True}]
    summary = train(resolve_config(cfg), output=tmp_path / "run", device="cpu", progress=False)
    assert summary.iteration == 2
    model = load_checkpoint(tmp_path / "run" / "checkpoints" / "tiny-00002.safetensors")
    assert isinstance(model, DeepGaitV2) and model.class_num == 4 and model.mode == mode
