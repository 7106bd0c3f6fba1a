"""Building a model: :func:`create_model` from a ``model_cfg`` (this layer), and
:func:`build_model` from a whole (partial) OpenGait-shaped config."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
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


def build_model(
    cfg: Mapping[str, Any] | None = None,
    *,
    source: str = "<config>",
    warn: Callable[[str], None] | None = None,
    resolved: bool = False,
) -> GaitModel:
    """Build the model named by ``cfg['model_cfg']['model']``.

    ``cfg`` is a config mapping as loaded from YAML; a partial one (just ``model_cfg`` and
    ``data_cfg.dataset_name``, say) is merged over the packaged defaults first. The resolved config
    is kept as ``model.config``. Invalid settings raise :class:`gaitcli.errors.ConfigError`.
    With ``resolved=True`` the mapping is taken as a complete config (e.g. one stored in a
    checkpoint): it is validated and kept as it is instead of being merged over the defaults.
    """
    # The config layer sits above the models (docs/architecture.md); resolving a whole config
    # here is the one place this package reaches up, pending a move of this function there.
    from ..config import resolve_config, validate_config

    if resolved:
        config = copy.deepcopy(dict(cfg or {}))
        validate_config(config, source)  # a stored config: checked, quietly
    else:
        config = resolve_config(dict(cfg or {}), source, warn=warn)
    model = create_model(config["model_cfg"], dataset_name=config["data_cfg"]["dataset_name"])
    model.config = config
    return model
