"""Building a model from a ``model_cfg`` (:func:`create_model`). Building one from a whole or
partial config, resolved over the defaults, is the config layer's job: :func:`gaitcli.build.build_model`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import GaitModel
from .layers import CHANNELS_LAST
from .registry import default_model_name, get_model_entry


def create_model(model_cfg: Mapping[str, Any], dataset_name: str = "CASIA-B") -> GaitModel:
    """The registered model ``model_cfg['model']`` (default: the default model), built from a
    validated ``model_cfg``; keys it lacks take the defaults of the model's config dataclass."""
    entry = get_model_entry(str(model_cfg.get("model", default_model_name())))
    model: GaitModel = entry.cls(model_cfg, dataset_name=dataset_name)
    if model_cfg.get("channels_last"):
        model.to(memory_format=CHANNELS_LAST)  # type: ignore[call-overload]
    if model_cfg.get("compile"):
        model.enable_compile()
    return model
