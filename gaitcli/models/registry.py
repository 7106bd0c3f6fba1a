"""The one list of models: ``model_cfg.model`` names an entry registered here.

A leaf module in the shape of timm's registry: model files import it and register themselves
with :func:`register_model`; it imports no model. The built-in families register when
``gaitcli.models`` is imported; a model in another installed package is found through the
entry-point group ``gaitcli.models`` (each entry point is imported once, on first use, and
its import registers the model). Each entry carries a dataclass of its ``model_cfg`` keys
(type, default and one-line help as field metadata), from which the configuration schema,
validation and docs/config.md are derived, so a model's defaults live in one place
(docs/models.md, "Adding a model").
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, overload

from ..errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

ENTRY_POINT_GROUP = "gaitcli.models"
T = TypeVar("T", bound=type)
_V = TypeVar("_V")
_C = TypeVar("_C", bound="DataclassInstance")


@dataclass(frozen=True)
class Range:
    """The allowed values of a number (or of every number of a list)."""

    low: float | None = None
    """Smallest allowed value; None: no lower bound."""
    high: float | None = None
    """Largest allowed value; None: no upper bound."""
    low_open: bool = False
    """True when ``low`` itself is not allowed."""
    high_open: bool = False
    """True when ``high`` itself is not allowed."""

    def contains(self, value: float) -> bool:
        """Whether ``value`` (finite) lies in the range."""
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def describe(self) -> str:
        """``> 0``, ``>= 1``, ``in (0, 1]``."""
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return "any number"


POSITIVE = Range(0, None, low_open=True)
AT_LEAST_ONE = Range(1)
NON_NEGATIVE = Range(0)


@overload
def option(
    default: _V,
    help: str,
    *,
    kind: str,
    choices: tuple[object, ...] | None = None,
    range: Range | None = None,
    nullable: bool = False,
    children: None = None,
) -> _V: ...


@overload
def option(
    default: None,
    help: str,
    *,
    kind: str,
    choices: tuple[object, ...] | None = None,
    range: Range | None = None,
    nullable: bool = False,
    children: type[_C],
) -> _C: ...


def option(
    default: object,
    help: str,
    *,
    kind: str,
    choices: tuple[object, ...] | None = None,
    range: Range | None = None,
    nullable: bool = False,
    children: type | None = None,
) -> object:
    """A field of a model's config dataclass: its default and, as metadata, its schema type
    (``kind``, a type name of docs/config.md), one-line help, choices and range. A nested
    section (``kind="section"``) names its own dataclass as ``children``; its default is that
    dataclass's defaults. Like :func:`dataclasses.field`, it is typed as returning the field's
    value (what the class attribute's annotation names)."""
    meta = {
        "kind": kind,
        "help": help,
        "choices": choices,
        "range": range,
        "nullable": nullable,
        "children": children,
    }
    if children is not None:
        return dataclasses.field(default_factory=children, metadata=meta)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: _copy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _copy(value: object) -> object:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


INIT_CHOICES = ("reference", "torch", "kaiming")


@dataclass
class ModelConfig:
    """The ``model_cfg`` keys every model takes; a model's own dataclass extends it."""

    class_num: int = option(
        74, "Number of training identities (classifier width).", kind="int", range=AT_LEAST_ONE
    )
    """Number of training identities."""
    init: str = option(
        "reference",
        "Weight initialisation: reference (xavier, as the reference code), torch (PyTorch's layer "
        "defaults) or kaiming (He-normal convolutions and linears).",
        kind="str",
        choices=INIT_CHOICES,
    )
    """Weight initialisation scheme."""
    channels_last: bool = option(
        False, "Channels-last 3-D memory format: faster convolutions with cuDNN and, at narrow widths, "
        "with oneDNN on the CPU (docs/recipes.md, table 5).", kind="bool")
    """Channels-last memory format."""
    compile: bool = option(False, "Wrap the model in torch.compile.", kind="bool")
    """torch.compile the network function."""


@dataclass(frozen=True)
class ModelEntry:
    """One registered model."""

    name: str
    """The ``model_cfg.model`` value that selects it."""
    cls: type
    """The model class, called as ``cls(model_cfg, dataset_name=...)``."""
    config: type[ModelConfig]
    """The dataclass of its ``model_cfg`` keys (a :class:`ModelConfig` subclass)."""

    def defaults(self) -> dict[str, object]:
        """The complete default ``model_cfg`` of this model (``model`` first)."""
        instance = dataclasses.asdict(self.config())
        return {"model": self.name, **{item.name: instance[item.name] for item in self.fields()}}

    def fields(self) -> list[dataclasses.Field[object]]:
        """The config dataclass's fields: the model's own keys in declaration order, then the
        keys every model takes (:class:`ModelConfig`)."""
        common = {item.name for item in dataclasses.fields(ModelConfig)}
        every = list(dataclasses.fields(self.config))
        return [f for f in every if f.name not in common] + [f for f in every if f.name in common]


_MODELS: dict[str, ModelEntry] = {}
_DEFAULT: list[str] = [""]
_plugins_loaded = False


def register_model(
    name: str, config: type[ModelConfig] = ModelConfig, *, default: bool = False
) -> Callable[[T], T]:
    """Class decorator: make ``name`` usable as ``model_cfg.model``, with ``config`` (a
    :class:`ModelConfig` dataclass subclass) describing its ``model_cfg`` keys. The one entry
    registered with ``default=True`` is the model of the packaged default configuration."""
    if not (dataclasses.is_dataclass(config) and issubclass(config, ModelConfig)):
        raise TypeError(f"register_model({name!r}): config must be a dataclass subclass of ModelConfig")

    def deco(cls: T) -> T:
        known = _MODELS.get(name)
        if known is not None and known.cls is not cls:
            raise ValueError(f"model name {name!r} is already registered by {known.cls.__qualname__}")
        _MODELS[name] = ModelEntry(name, cls, config)
        if default:
            _DEFAULT[0] = name
        return cls

    return deco


def unregister_model(name: str) -> None:
    """Remove ``name`` (tests that register a toy model clean up with this)."""
    _MODELS.pop(name, None)


def _load_plugins() -> None:
    """Import every entry point of the ``gaitcli.models`` group once (its import registers)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            point.load()
        except Exception as exc:  # a broken plug-in is named, not a traceback
            _plugins_loaded = False
            raise ConfigError(
                f"model plug-in {point.name!r} ({point.value}, entry point group {ENTRY_POINT_GROUP}) "
                f"cannot be imported: {exc}"
            ) from None


def reload_plugins() -> None:
    """Look at the entry points again (after installing a package, or in tests)."""
    global _plugins_loaded
    _plugins_loaded = False
    _load_plugins()


def model_entries() -> dict[str, ModelEntry]:
    """Every registered model by name, plug-ins included."""
    _load_plugins()
    return dict(_MODELS)


def model_names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(model_entries())


def get_model_entry(name: str) -> ModelEntry:
    """The entry registered as ``name``; a :class:`ConfigError` naming the choices otherwise."""
    entries = model_entries()
    if isinstance(name, str) and name in entries:
        return entries[name]
    close = difflib.get_close_matches(str(name), list(entries), n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(
        f"model_cfg.model: unknown model {name!r}{hint}; available: {', '.join(sorted(entries))}"
    )


def get_model_class(name: str) -> type:
    """The class registered as ``name``; a :class:`ConfigError` naming the choices otherwise."""
    return get_model_entry(name).cls


def default_model_name() -> str:
    """The model of the packaged default configuration."""
    if not _DEFAULT[0]:
        raise RuntimeError("no default model registered (import gaitcli.models first)")
    return _DEFAULT[0]


def parse_model_config(config: type[_C], model_cfg: Mapping[str, object]) -> _C:
    """An instance of the config dataclass ``config`` from a ``model_cfg`` mapping: absent keys
    take the dataclass's defaults, keys it does not declare (``model``) are left out."""
    values: dict[str, object] = {}

    for item in dataclasses.fields(config):
        if item.name not in model_cfg:
            continue
        value = model_cfg[item.name]
        child = item.metadata.get("children")
        if child is not None and isinstance(value, Mapping):
            value = parse_model_config(child, value)
        values[item.name] = _copy(value)
    return config(**values)
