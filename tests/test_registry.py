"""The model registry: the one list of models, third-party models by config alone, plug-ins
found through the ``gaitcli.models`` entry-point group, and the schema derived from it."""

from __future__ import annotations

import importlib.metadata
import sys
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import tiny_config
from torch import nn

from gaitcli.build import build_model
from gaitcli.config import load_config, resolve_config
from gaitcli.config_doc import render_reference
from gaitcli.config_schema import model_keys
from gaitcli.errors import ConfigError
from gaitcli.models import GaitModel, load_checkpoint, read_checkpoint, registry
from gaitcli.models.layers import init_weights, mask_frames
from gaitcli.models.registry import (
    AT_LEAST_ONE,
    ModelConfig,
    get_model_entry,
    model_names,
    option,
    parse_model_config,
    register_model,
    unregister_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- a toy third model
@dataclass
class ToyConfig(ModelConfig):
    """The toy's model_cfg keys."""

    width: int = option(6, "Channels of the toy's one convolution.", kind="int", range=AT_LEAST_ONE)
    parts: int = option(2, "Horizontal parts of the toy's pooling.", kind="int", range=AT_LEAST_ONE)


class ToyGait(GaitModel):
    """One 3-D convolution, temporal max, horizontal mean parts, a BN neck and a classifier."""

    name = "ToyGait"

    def __init__(self, model_cfg: Any, dataset_name: str = "CASIA-B") -> None:
        super().__init__(model_cfg, dataset_name)
        cfg = parse_model_config(ToyConfig, model_cfg)
        self.parts_num, self.out_channels = cfg.parts, cfg.width
        self.conv = nn.Conv3d(1, cfg.width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm1d(cfg.width)
        self.fc = nn.Linear(cfg.width, cfg.class_num, bias=False)
        init_weights(self, cfg.init)

    def backbone(self, x, masks):
        return F.leaky_relu(self.conv(x)), masks[-1]

    def pool_time(self, x, mask):
        return mask_frames(x, mask).max(2).values  # [n, c, h, w]

    def heads(self, feat):
        n, c = feat.shape[:2]
        parts = feat.reshape(n, c, self.parts_num, -1).mean(-1)  # [n, c, p]
        emb = self.bn(parts)
        return {
            "embeddings": emb.transpose(1, 2).float().contiguous(),
            "logits": self.fc(emb.transpose(1, 2)).float(),
        }


@pytest.fixture
def toy():
    register_model("ToyGait", ToyConfig)(ToyGait)
    yield get_model_entry("ToyGait")
    unregister_model("ToyGait")


def test_registry_is_a_leaf_and_lists_the_builtins():
    source = (registry.__file__ and open(registry.__file__).read()) or ""
    assert "from ." not in source.replace("from ..errors", "")  # imports no model
    assert {"GaitGL", "MetaGait"} <= set(model_names())
    assert not hasattr(registry, "_ensure_builtin")


def test_a_third_model_is_in_schema_validation_and_docs(toy):
    keys = model_keys("ToyGait")
    assert list(keys) == ["model", "width", "parts", "class_num", "init", "channels_last", "compile"]
    assert keys["width"].default == 6
    assert "ToyGait" in keys["model"].choices
    cfg = load_config(None, ["model_cfg.model=ToyGait", "model_cfg.width=3"]).to_dict()
    assert cfg["model_cfg"] == {
        "model": "ToyGait",
        "class_num": 74,
        "init": "reference",
        "channels_last": False,
        "compile": False,
        "width": 3,
        "parts": 2,
    }
    with pytest.raises(ConfigError, match="model_cfg.width must be >= 1"):
        load_config(None, ["model_cfg.model=ToyGait", "model_cfg.width=0"])
    with pytest.raises(ConfigError, match="unknown key 'model_cfg.channls'"):
        resolve_config({"model_cfg": {"model": "ToyGait", "channls": [4]}})
    assert (
        "`model: ToyGait`" in render_reference()
        and "Channels of the toy's one convolution." in render_reference()
    )


def test_a_third_model_trains_two_iterations_by_config_alone(toy, tiny_data, tmp_path):
    from gaitcli.training.trainer import train

    cfg = tiny_config(*tiny_data, total_iter=2, save_iter=2, log_iter=1)
    cfg["model_cfg"] = {"model": "ToyGait", "width": 4, "class_num": 4}
    summary = train(resolve_config(cfg), output=tmp_path / "run", device="cpu", progress=False)
    assert summary.iteration == 2
    tensors, meta = read_checkpoint(tmp_path / "run" / "checkpoints" / "tiny-00002.safetensors")
    assert tensors["conv.weight"].shape == (4, 1, 3, 3, 3)
    assert yaml.safe_load(meta["config"])["model_cfg"]["model"] == "ToyGait"
    loaded = load_checkpoint(tmp_path / "run" / "checkpoints" / "tiny-00002.safetensors")
    assert isinstance(loaded, ToyGait) and loaded.model_cfg["width"] == 4


def test_switching_model_starts_from_that_models_defaults():
    cfg = resolve_config({"model_cfg": {"model": "GaitGL", "channels": [4, 8, 8]}}).to_dict()
    assert set(cfg["model_cfg"]) == {
        "model",
        "class_num",
        "init",
        "channels_last",
        "compile",
        "channels",
        "bin_num",
    }
    notes: list[str] = []
    back = load_config("gaitgl", ["model_cfg.model=MetaGait"], warn=notes.append).to_dict()
    assert back["model_cfg"]["variant"] == "reference" and back["model_cfg"]["channels"] == [32, 64, 128]
    # keys another model takes (older GaitGL checkpoints carry MetaGait's) are ignored, not fatal
    old = resolve_config({"model_cfg": {"model": "GaitGL", "variant": "reference"}}, warn=notes.append)
    assert "variant" not in old.model.values and any("GaitGL does not take it" in n for n in notes)


# ----------------------------------------------------------------------------- entry points
class _Point:
    def __init__(self, name: str, value: str) -> None:
        self.name, self.value, self.group = name, value, registry.ENTRY_POINT_GROUP

    def load(self) -> Any:
        return importlib.import_module(self.value)


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    (tmp_path / "gaitcli_test_plugin.py").write_text(
        "from dataclasses import dataclass\n"
        "from gaitcli.models.gaitgl import GaitGL, GaitGLConfig\n"
        "from gaitcli.models.registry import register_model\n\n"
        "@register_model('PluginGait', GaitGLConfig)\n"
        "class PluginGait(GaitGL):\n"
        "    name = 'PluginGait'\n"
    )
    (tmp_path / "gaitcli_broken_plugin.py").write_text("raise ImportError('needs a missing library')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    unregister_model("PluginGait")
    for name in ("gaitcli_test_plugin", "gaitcli_broken_plugin"):
        sys.modules.pop(name, None)
    monkeypatch.undo()
    registry.reload_plugins()


def test_a_model_in_another_package_is_found_by_entry_point(plugin_module, monkeypatch):
    def entry_points(group: str):
        assert group == "gaitcli.models"
        return [_Point("plugin", "gaitcli_test_plugin")]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    registry.reload_plugins()
    assert "PluginGait" in model_names()
    model = build_model({"model_cfg": {"model": "PluginGait", "channels": [4, 8, 8], "class_num": 3}})
    assert type(model).__name__ == "PluginGait"


def test_a_broken_plugin_is_one_line(plugin_module, monkeypatch):
    monkeypatch.setattr(
        importlib.metadata, "entry_points", lambda group: [_Point("broken", "gaitcli_broken_plugin")]
    )
    with pytest.raises(
        ConfigError, match="model plug-in 'broken'.*cannot be imported: needs a missing library"
    ):
        registry.reload_plugins()


# ----------------------------------------------------------------------------- init lever
@pytest.mark.parametrize("name", ["GaitGL", "MetaGait"])
def test_init_lever(name):
    def build(init: str, seed: int = 0) -> GaitModel:
        torch.manual_seed(seed)
        return build_model(
            {"model_cfg": {"model": name, "channels": [4, 8, 8], "class_num": 3, "init": init}}
        )

    reference, torch_init, kaiming = build("reference"), build("torch"), build("kaiming")
    bn = dict(reference.named_modules())["Bn"]
    assert not torch.equal(bn.weight, torch.ones_like(bn.weight))  # reference: BN weight ~ N(1, 0.02)
    assert torch.equal(dict(torch_init.named_modules())["Bn"].weight, torch.ones(8))  # PyTorch's default
    conv = "conv3d.0.conv3d.weight"
    ref_w, torch_w = reference.state_dict()[conv], torch_init.state_dict()[conv]
    # xavier-uniform bound sqrt(6 / (fan_in + fan_out)) vs PyTorch's kaiming-uniform(a=sqrt 5) 1/sqrt(fan_in)
    assert float(ref_w.abs().max()) <= (6 / (27 + 4 * 27)) ** 0.5 + 1e-6
    assert float(torch_w.abs().max()) <= 1 / 27**0.5 + 1e-6
    kaiming_w = kaiming.state_dict()[conv]  # He-normal: unbounded, std sqrt(2 / (1 + 0.01^2) / 27)
    assert float(kaiming_w.abs().max()) > 1 / 27**0.5 and not torch.equal(kaiming_w, ref_w)
    assert torch.equal(dict(kaiming.named_modules())["Bn"].weight, torch.ones(8))
    assert reference.state_dict().keys() == torch_init.state_dict().keys()
    with pytest.raises(ConfigError, match="model_cfg.init"):
        resolve_config({"model_cfg": {"model": name, "init": "xavier"}})


def test_a_models_defaults_live_in_its_config_dataclass():
    for name in ("GaitGL", "MetaGait"):
        entry = get_model_entry(name)
        resolved = resolve_config({"model_cfg": {"model": name}}).to_dict()["model_cfg"]
        assert resolved == entry.defaults()
        model = build_model({"model_cfg": {"model": name}})  # the constructor reads the same defaults
        assert model.channels == resolved["channels"] and model.class_num == resolved["class_num"]
