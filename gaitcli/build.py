"""Building a model from a whole or partial OpenGait-shaped config, resolved over the packaged
defaults (docs/models.md, "Python API").

This sits in the config layer because it resolves and validates the config; the models layer
below it builds a model from a ``model_cfg`` alone (:func:`gaitcli.models.create_model`)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from .config import resolve_config, validate_config
from .models.base import GaitModel
from .models.build import create_model


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
    if resolved:
        config = copy.deepcopy(dict(cfg or {}))
        validate_config(config, source)  # a stored config: checked, quietly
    else:
        config = resolve_config(dict(cfg or {}), source, warn=warn)
    model = create_model(config["model_cfg"], dataset_name=config["data_cfg"]["dataset_name"])
    model.config = config
    return model
