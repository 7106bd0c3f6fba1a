"""``build_model(cfg)``: a model from a (partial) OpenGait-shaped config."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .base import GaitModel
from .layers import CHANNELS_LAST
from .registry import get_model_class


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
    import copy

    from ..config import resolve_config, validate_config

    if resolved:
        config = copy.deepcopy(dict(cfg or {}))
        validate_config(config, source)
    else:
        config = resolve_config(dict(cfg or {}), source, warn=warn)
    resolved_cfg = config
    model_cfg = resolved_cfg["model_cfg"]
    cls = get_model_class(model_cfg["model"])
    model: GaitModel = cls(model_cfg, dataset_name=resolved_cfg["data_cfg"]["dataset_name"])
    model.config = resolved_cfg
    if model_cfg.get("channels_last"):
        model.to(memory_format=CHANNELS_LAST)  # type: ignore[call-overload]
    if model_cfg.get("compile"):
        model.enable_compile()
    return model
