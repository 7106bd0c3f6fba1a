"""Model registry: ``model_cfg.model`` names a class registered here (``GaitGL``, ``MetaGait``)."""

from __future__ import annotations

import difflib
from collections.abc import Callable

from ..errors import ConfigError

_MODELS: dict[str, type] = {}


def register_model(name: str) -> Callable[[type], type]:
    """Class decorator: make ``name`` usable as ``model_cfg.model``."""

    def deco(cls: type) -> type:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered by {_MODELS[name].__qualname__}")
        _MODELS[name] = cls
        return cls

    return deco


def model_names() -> list[str]:
    """Registered model names, sorted."""
    _ensure_builtin()
    return sorted(_MODELS)


def get_model_class(name: str) -> type:
    """The class registered as ``name``; a :class:`ConfigError` naming the choices otherwise."""
    _ensure_builtin()
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(_MODELS), n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"model_cfg.model: unknown model {name!r}{hint}; available: {', '.join(sorted(_MODELS))}"
        ) from None


def _ensure_builtin() -> None:
    from . import gaitgl, metagait  # noqa: F401  (registration happens at import)
