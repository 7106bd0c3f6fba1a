"""Building a model from a whole or partial OpenGait-shaped config, resolved over the packaged
defaults (docs/models.md, "Python API").

This sits in the config layer because it resolves and validates the config; the models layer
below it builds a model from a ``model_cfg`` alone (:func:`gaitcli.models.create_model`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .config import config_from_stored, resolve_config, stored_config
from .config_types import GaitConfig
from .models.base import GaitModel
from .models.build import create_model


def build_model(
    cfg: GaitConfig | Mapping[str, Any] | None = None,
    *,
    source: str = "<config>",
    warn: Callable[[str], None] | None = None,
    resolved: bool = False,
) -> GaitModel:
    """Build the model a config names.

    ``cfg`` is a :class:`GaitConfig` (from :func:`gaitcli.config.load_config`) or a config mapping
    as loaded from YAML; a partial one (just ``model_cfg`` and ``data_cfg.dataset_name``, say) is
    merged over the packaged defaults first. With ``resolved=True`` the mapping is taken as a
    complete stored config (e.g. a checkpoint's): migrated from an older format, validated and
    kept as it is instead of being merged over the defaults. ``model.config`` is the stored form
    (:func:`gaitcli.config.stored_config`). Invalid settings raise :class:`gaitcli.errors.ConfigError`.
    """
    if isinstance(cfg, GaitConfig):
        config = cfg
    elif resolved:
        config = config_from_stored(dict(cfg or {}), source)
    else:
        config = resolve_config(dict(cfg or {}), source, warn=warn)
    model = create_model(config.model.as_mapping(), dataset_name=config.data.dataset_name)
    model.config = stored_config(config)
    return model
