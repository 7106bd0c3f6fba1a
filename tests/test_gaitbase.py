"""GaitBase (OpenGait's ``Baseline``) beyond parity: config keys and their one-line refusals, the
backbone variants OpenGait's ResNet9 takes, padded batches, and training by config alone."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import tiny_config

from gaitcli.config import load_config, resolve_config
from gaitcli.errors import ConfigError
from gaitcli.models import GaitBase, create_model, load_checkpoint, read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def small(**changes: object) -> dict:
    cfg: dict = {
        "model": "Baseline",
        "backbone_cfg": {"channels": [4, 8, 8, 8]},
        "SeparateFCs": {"in_channels": 8, "out_channels": 6},
        "SeparateBNNecks": {"in_channels": 6},
        "class_num": 5,
    }
    cfg.update(changes)
    return cfg


def test_both_names_build_the_same_network_with_opengaits_names():
    a, b = create_model(small()), create_model({**small(), "model": "GaitBase"})
    assert isinstance(a, GaitBase) and isinstance(b, GaitBase)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    names = set(a.state_dict())
    assert {"Backbone.forward_block.conv1.conv.weight", "Backbone.forward_block.layer2.0.downsample.0.weight",
            "Backbone.forward_block.layer2.0.downsample.1.running_var", "FCs.fc_bin", "BNNecks.fc_bin",
            "BNNecks.bn1d.weight"} <= names
    assert "Backbone.forward_block.layer1.0.downsample.0.weight" not in names  # stride 1, same width


def test_defaults_are_gaitbase_da_casiab():
    cfg = load_config(None, ["model_cfg.model=Baseline"])
    model = create_model(cfg.model.as_mapping())
    assert model.num_parameters() == 7_305_408  # what OpenGait's Baseline has with that config
    out = model(torch.rand(2, 3, 64, 44))
    assert out["embeddings"].shape == (2, 16, 256) and out["logits"].shape == (2, 16, 74)


def test_class_num_is_separate_bnnecks_class_num_when_set():
    necks = {"in_channels": 6, "class_num": 9}
    cfg = resolve_config({"model_cfg": small(class_num=74, SeparateBNNecks=necks)})
    assert cfg.model.settings.class_num == 9
    assert create_model(cfg.model.as_mapping()).BNNecks.fc_bin.shape == (16, 6, 9)
    with pytest.raises(ConfigError, match="class_num 5 and model_cfg.SeparateBNNecks.class_num 9 both set"):
        resolve_config({"model_cfg": small(SeparateBNNecks={"in_channels": 6, "class_num": 9})})


@pytest.mark.parametrize(("change", "message"), [
    ({"SeparateFCs": {"in_channels": 16, "out_channels": 6}},
     r"SeparateFCs.in_channels is 16 but the backbone's output width is 8; set it to 8"),
    ({"SeparateBNNecks": {"in_channels": 7}},
     r"SeparateBNNecks.in_channels is 7 but SeparateFCs.out_channels is 6"),
    ({"bin_num": [8]}, r"SeparateFCs.parts_num is 16 but sum\(bin_num\) is 8; set it to 8"),
    ({"backbone_cfg": {"channels": [4, 8, 8]}}, r"backbone_cfg.channels needs 4 entries"),
    ({"channels_last": True}, r"channels_last: GaitBase's convolutions are 2-D"),
    ({"backbone_cfg": {"type": "Plain"}}, r"model_cfg.backbone_cfg.type = 'Plain' is not one of ResNet9"),
])
def test_inconsistent_configs_are_one_line(change, message):
    with pytest.raises(ConfigError, match=message) as info:
        resolve_config({"model_cfg": small(**change)})
    assert "\n" not in str(info.value)


def test_backbone_variants():
    """Bottleneck blocks (4x wider output), the stem max pool and empty stages, as in ResNet9."""
    cfg = small(backbone_cfg={"block": "Bottleneck", "channels": [4, 8, 8, 4], "layers": [1, 2, 0, 1],
                              "maxpool": True},
                SeparateFCs={"in_channels": 16, "out_channels": 6}, bin_num=[4, 2], )
    cfg["SeparateFCs"]["parts_num"] = 6
    cfg["SeparateBNNecks"] = {"in_channels": 6, "parts_num": 6}
    model = create_model(resolve_config({"model_cfg": cfg}).model.as_mapping())
    names = set(model.state_dict())
    assert "Backbone.forward_block.layer2.1.conv3.weight" in names
    assert not any(".layer3." in n for n in names)
    out = model(torch.rand(2, 4, 64, 44))
    assert out["embeddings"].shape == (2, 6, 6)


def test_padded_frames_do_not_matter_in_training_mode():
    """Only real frames reach the backbone: BatchNorm's batch statistics and the result of each
    sequence are those of the batch without padding (garbage in padded frames included)."""
    torch.manual_seed(0)
    model = create_model(small()).train()
    seqs = [torch.rand(5, 64, 44), torch.rand(1, 64, 44), torch.rand(3, 64, 44)]
    batch = torch.full((3, 5, 64, 44), 9.0)
    for i, s in enumerate(seqs):
        batch[i, : len(s)] = s
    before = {k: v.clone() for k, v in model.state_dict().items()}
    padded = model(batch, [5, 1, 3])["embeddings"]
    model.load_state_dict(before)
    frames = model.Backbone.forward_block(torch.cat(seqs).unsqueeze(1))  # the real frames, packed
    bounds = torch.tensor([0, 5, 6, 9])
    pooled = torch.stack([frames[bounds[i] : bounds[i + 1]].amax(0) for i in range(3)])
    expected = model.heads(pooled)["embeddings"]
    torch.testing.assert_close(padded, expected, rtol=1e-5, atol=1e-6)


def test_trains_two_iterations_by_config_alone(tiny_data, tmp_path):
    from gaitcli.training.trainer import train

    cfg = tiny_config(*tiny_data, total_iter=2, save_iter=2, log_iter=1)
    cfg["model_cfg"] = small(class_num=4, bin_num=[16])  # 32x32 frames -> 8x8 maps, 4 values per bin
    cfg["loss_cfg"] = [{"type": "TripletLoss", "margin": 0.2},
                       {"type": "CrossEntropyLoss", "scale": 16, "log_accuracy": True}]
    summary = train(resolve_config(cfg), output=tmp_path / "run", device="cpu", progress=False)
    assert summary.iteration == 2
    path = tmp_path / "run" / "checkpoints" / "tiny-00002.safetensors"
    tensors, meta = read_checkpoint(path)
    assert tensors["BNNecks.fc_bin"].shape == (16, 6, 4)
    assert yaml.safe_load(meta["config"])["model_cfg"]["model"] == "Baseline"
    assert isinstance(load_checkpoint(path), GaitBase)
