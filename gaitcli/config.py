"""Loading, merging, overriding and validating OpenGait-shaped YAML configs.

A user file is merged over the packaged defaults (mappings merge, lists replace), then
``--set section.key=value`` overrides are applied (values are parsed as YAML, so ``1e-4``,
``[4,4]`` and ``true`` have their natural types), then everything is validated against
:mod:`gaitcli.config_schema`. A mistake is one :class:`~gaitcli.errors.ConfigError` line that
names the file, the key and the closest valid key.

OpenGait's configs and the MetaGait authors' config load unchanged: keys those tools use that
gaitcli does not (``wandb``, ``enable_distributed``) are dropped with a warning.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import yaml

from gaitcli.config_schema import (
    FOREIGN_KEYS,
    LOSS_SCHEMAS,
    LOSS_TYPES,
    PATH_KEYS,
    SCHEMA,
    Key,
    check_number,
    copy_mapping,
    copy_tree,
    model_keys,
    schema_defaults,
    section_defaults,
)
from gaitcli.config_types import CONFIG_FORMAT, ConfigValue, GaitConfig, int_at, section_at
from gaitcli.data.transforms import build_transform
from gaitcli.errors import ConfigError
from gaitcli.models.checkpoint import config_text
from gaitcli.models.registry import default_model_name, model_entries
from gaitcli.paths import configs_dir, packaged_partition

Warn = Callable[[str], None]


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names the same key twice (YAML would silently keep the last value)."""

    def __init__(self, key: object, line: int, first_line: int) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key, self.line, self.first_line = key, line, first_line


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-4`` as a string; people (and YAML 1.2) mean a number. A key given
    twice in one mapping is refused rather than silently overwritten."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, object]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Hashable, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: PyYAML's own error follows
                    continue
                if first is not None:
                    raise DuplicateKeyError(key, key_node.start_mark.line + 1, first)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_load(text: str) -> object:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


__all__ = [
    "GaitConfig",
    "Override",
    "config_from_stored",
    "find_config_file",
    "migrate_config",
    "resolve_mapping",
    "stored_config",
    "default_config",
    "resolve_config",
    "load_config",
    "dump_config",
    "parse_override",
    "validate_config",
    "merge",
    "packaged_config_names",
]


# ----------------------------------------------------------------------------- public API
@dataclass(frozen=True)
class Override:
    """One change to one key: ``path`` is the key's dotted path split (``("trainer_cfg",
    "total_iter")``), ``value`` the typed value. Command-line options (``--data``, ``--iters``...)
    arrive as these, never as text; ``--set KEY=VALUE`` text becomes one through
    :func:`parse_override`."""

    path: tuple[str, ...]
    """The key, e.g. ``("data_cfg", "dataset_root")`` or ``("loss_cfg", "0", "margin")``."""
    value: object
    """The new value, as YAML would hold it (paths as strings); from ``--set`` text, whatever
    YAML reads it as (a date, say), which validation then accepts or refuses."""
    source: str = ""
    """How the user gave it, for messages (default: ``KEY=VALUE``)."""
    text: str | None = None
    """``--set`` only: the text after ``=``. String and path keys take it verbatim (a ``#`` or
    ``: `` in a path stays in the path); other keys take ``value``, the text read as YAML."""

    @property
    def label(self) -> str:
        shown = self.text if self.text is not None else self.value
        return self.source or f"{'.'.join(self.path)}={shown}"


def default_config() -> dict[str, object]:
    """A fresh copy of the packaged defaults (the MetaGait CASIA-B recipe), as plain data."""
    return schema_defaults()


def merge(base: Mapping[str, object], override: Mapping[str, object]) -> dict[str, object]:
    """Merge ``override`` into a copy of ``base``: mappings merge recursively, anything else
    (lists included) replaces."""
    out = copy_mapping(base)
    for key, value in override.items():
        current = out.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            out[key] = merge(current, value)
        else:
            out[key] = copy_tree(value)
    return out


def resolve_config(
    partial: Mapping[str, object] | GaitConfig | None = None,
    source: str = "<config>",
    *,
    overrides: Iterable[str | Override] = (),
    base_dir: Path | None = None,
    warn: Warn | None = None,
) -> GaitConfig:
    """Validate ``partial``, merge it over the defaults, apply ``overrides`` and validate the
    result; the typed value of it. Relative data paths are taken from ``base_dir`` (default: the
    working folder)."""
    return GaitConfig.from_dict(
        resolve_mapping(partial, source, overrides=overrides, base_dir=base_dir, warn=warn)
    )


def resolve_mapping(
    partial: Mapping[str, object] | GaitConfig | None = None,
    source: str = "<config>",
    *,
    overrides: Iterable[str | Override] = (),
    base_dir: Path | None = None,
    warn: Warn | None = None,
) -> dict[str, object]:
    """:func:`resolve_config` as plain data (what is stored and printed)."""
    warn = warn or _silent
    if isinstance(partial, GaitConfig):
        partial = partial.to_dict()
    partial = migrate_config(partial or {}, source, warn) if isinstance(partial, Mapping) else partial
    user = _validate_partial(partial or {}, source, warn, lenient=True)
    _resolve_paths(user, base_dir or Path.cwd())
    cfg = _merge_over_defaults(default_config(), user)
    _effective_class_num(cfg, user)
    _resolve_paths(cfg, Path.cwd())  # defaults still relative: from the working folder (idempotent)
    for item in overrides:
        cfg = _apply_override(cfg, parse_override(item) if isinstance(item, str) else item, warn)
    validate_config(cfg, source, warn)
    _apply_packaged_partition(cfg, warn)
    return cfg


def _effective_class_num(cfg: dict[str, object], user: Mapping[str, object]) -> None:
    """OpenGait's GaitBase / DeepGaitV2 configs give the class count as
    ``model_cfg.SeparateBNNecks.class_num``; when the file does not set ``model_cfg.class_num``
    itself, the resolved config shows that count there too (what the model and the trainer use)."""
    model, given = cfg.get("model_cfg"), user.get("model_cfg")
    if not isinstance(model, dict) or (isinstance(given, Mapping) and "class_num" in given):
        return
    necks = model.get("SeparateBNNecks")
    count = necks.get("class_num") if isinstance(necks, Mapping) else None
    if isinstance(count, int) and not isinstance(count, bool) and count >= 1:
        model["class_num"] = count


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str | Override] = (),
    warn: Warn | None = None,
) -> GaitConfig:
    """Load a YAML config (or the defaults when ``path`` is None), apply overrides (``--set``
    text or typed :class:`Override` values), and validate. ``path`` may also name a packaged
    config (``metagait``): see :func:`find_config_file` for the rule."""
    if path is None:
        return resolve_config({}, "<defaults>", overrides=overrides, warn=warn)
    file = find_config_file(str(path))
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config ({exc.strerror or exc})") from None
    try:
        data = _yaml_load(text)
    except DuplicateKeyError as exc:
        raise ConfigError(
            f"{file}: key {exc.key!r} is given twice (lines {exc.first_line} and {exc.line}); keep one"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{file}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, Mapping):
        if data:
            raise ConfigError(f"{file}: the top level must be a mapping of sections, got {_tname(data)}")
        data = {}  # an empty document (or an empty list, 0, ...) is the defaults
    return resolve_config(data, str(file), overrides=overrides, base_dir=file.parent, warn=warn)


def dump_config(cfg: GaitConfig) -> str:
    """The config as YAML text, its ``config_format`` first, then the sections in schema order
    (what ``gait config`` prints and run folders store)."""
    return config_text(stored_config(cfg))


def config_from_stored(stored: Mapping[str, object], source: str) -> GaitConfig:
    """The typed value of a complete config stored by gaitcli (a checkpoint's, a run folder's
    ``config.yaml``): migrated from an older format when needed (:func:`migrate_config`) and
    validated quietly, never completed from the defaults."""
    migrated = migrate_config(stored, source)
    validate_config(migrated, source)
    return GaitConfig.from_dict(migrated)


def packaged_config_names() -> list[str]:
    """Names of the YAML configs shipped with gaitcli (``configs/*.yaml``)."""
    return sorted(p.stem for p in configs_dir().glob("*.yaml"))


def parse_override(text: str, source: str | None = None) -> Override:
    """``section.key=value`` as an :class:`Override`: the key path, the value read as YAML (so
    ``1e-4``, ``[4,4]`` and ``true`` have their natural types) and the raw text (which string and
    path keys take verbatim, docs/config.md)."""
    if "=" not in text:
        raise ConfigError(f"{text}: expected section.key=value, e.g. trainer_cfg.total_iter=1000")
    dotted, raw = text.split("=", 1)
    parts = tuple(p for p in dotted.strip().split("."))
    if len(parts) < 2 or any(not p for p in parts):
        raise ConfigError(f"{text}: expected section.key=value, e.g. trainer_cfg.total_iter=1000")
    try:
        value = _yaml_load(raw) if raw.strip() else None
    except DuplicateKeyError as exc:
        raise ConfigError(f"{text}: key {exc.key!r} is given twice; keep one") from None
    except yaml.YAMLError:
        value = raw
    return Override(parts, value, source=source or text, text=raw)


def validate_config(cfg: Mapping[str, object], source: str = "<config>", warn: Warn | None = None) -> None:
    """Check a complete, merged config (every section present) and its cross-key rules, then
    build its optimiser and scheduler on a dummy parameter (:func:`gaitcli.schedule.check_optimisation`,
    the check ``gait train`` runs too); harmless oddities it finds go to ``warn``."""
    from gaitcli.schedule import check_optimisation

    _validate_partial(cfg, source, _silent, allow_foreign=False)
    missing = [name for name in SCHEMA if name not in cfg]
    if missing:
        raise ConfigError(f"{source}: missing section '{missing[0]}'")
    trainer = section_at(cfg, "trainer_cfg")
    sampler = section_at(trainer, "sampler")
    batch = sampler["batch_size"]
    assert isinstance(batch, list), batch  # validated: a list of integers
    if len(batch) != 2 or any(b < 1 for b in batch):
        raise ConfigError(
            f"{source}: trainer_cfg.sampler.batch_size must be [P, K] with P, K >= 1, got {batch}"
        )
    if int_at(sampler, "frames_num_min") > int_at(sampler, "frames_num_max"):
        raise ConfigError(f"{source}: trainer_cfg.sampler.frames_num_min is larger than frames_num_max")
    for name in ("log_iter", "save_iter"):
        if int_at(trainer, name) < 1:
            raise ConfigError(f"{source}: trainer_cfg.{name} must be at least 1")
    total = int_at(trainer, "total_iter")
    if total < 0:
        raise ConfigError(f"{source}: trainer_cfg.total_iter must not be negative")
    model = section_at(cfg, "model_cfg")
    if "channels" in model and not model["channels"]:
        raise ConfigError(f"{source}: model_cfg.channels must be a non-empty list of positive widths")
    for section, name_key in (("optimizer_cfg", "solver"), ("scheduler_cfg", "scheduler")):
        body = section_at(cfg, section)
        named = body.get(name_key)
        if named is None:
            raise ConfigError(f"{source}: {section}.{name_key} is required")
        required = _required_params(section, str(named))  # validated: a string
        absent = [p for p in required if p not in body]
        if absent:
            raise ConfigError(
                f"{source}: {section}: {named} needs {', '.join(absent)} "
                f"(e.g. {section}.{absent[0]}=...)"
            )
    if not cfg["loss_cfg"]:
        raise ConfigError(f"{source}: loss_cfg must name at least one loss")
    optimizer, scheduler = section_at(cfg, "optimizer_cfg"), section_at(cfg, "scheduler_cfg")
    for note in check_optimisation(optimizer, scheduler, total, source).notes:
        (warn or _silent)(note)


# ----------------------------------------------------------------------------- validation
def _validate_partial(
    cfg: object, source: str, warn: Warn, *, allow_foreign: bool = True, lenient: bool = False
) -> dict[str, object]:
    """Validate the sections present in ``cfg``; return a normalised copy. ``lenient`` (a config
    file, not an option the user typed): an argument of another optimiser or scheduler is dropped
    with a warning, as OpenGait drops it."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {_tname(cfg)}")
    out: dict[str, object] = {}
    for section, body in cfg.items():
        if section not in SCHEMA:
            raise ConfigError(_unknown(source, str(section), SCHEMA.keys()))
        if section == "loss_cfg":
            out[section] = _validate_losses(body, source)
        elif section == "optimizer_cfg":
            out[section] = _validate_callable_section(body, source, section, "solver", _optimizer_params,
                                                      warn if lenient else None)
        elif section == "scheduler_cfg":
            out[section] = _validate_callable_section(body, source, section, "scheduler", _scheduler_params,
                                                      warn if lenient else None)
        elif section == "model_cfg":
            out[section] = _validate_model_section(body, source, warn, allow_foreign)
        else:
            out[section] = _validate_keys(body, SCHEMA[section], source, section, warn, allow_foreign)
    return out


def _validate_model_section(body: object, source: str, warn: Warn, allow_foreign: bool) -> dict[str, object]:
    """model_cfg: the keys of the model it names (the registry's config dataclass). Keys that
    only another registered model takes (a GaitGL config carrying MetaGait's ``variant``, as
    older checkpoints do) are ignored with a warning."""
    if body is None:
        return {}
    if not isinstance(body, Mapping):
        raise ConfigError(f"{source}: model_cfg must be a mapping, got {_tname(body)}")
    name = body.get("model", default_model_name())
    if not isinstance(name, str):
        raise ConfigError(f"{source}: model_cfg.model must be a string, got {name!r}")
    try:
        keys = model_keys(name)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    others = {k for entry in model_entries().values() for k in entry.defaults()}
    kept: dict[str, object] = {}
    for key, value in body.items():
        if key not in keys and key in others:
            warn(f"{source}: ignoring model_cfg.{key} ({name} does not take it)")
        else:
            kept[key] = value
    return _validate_keys(kept, keys, source, "model_cfg", warn, allow_foreign)


def _validate_keys(
    body: object, keys: Mapping[str, Key], source: str, prefix: str, warn: Warn, allow_foreign: bool
) -> dict[str, object]:
    if body is None:
        return {}
    if not isinstance(body, Mapping):
        raise ConfigError(f"{source}: {prefix} must be a mapping, got {_tname(body)}")
    out: dict[str, object] = {}
    section = prefix.split(".")[0]
    for name, value in body.items():
        dotted = f"{prefix}.{name}"
        if name not in keys:
            reason = FOREIGN_KEYS.get((section, str(name))) if "." not in prefix else None
            if reason and allow_foreign:
                warn(f"{source}: ignoring {dotted} ({reason})")
                continue
            raise ConfigError(_unknown(source, dotted, [f"{prefix}.{k}" for k in keys]))
        key = keys[name]
        if key.type == "section":
            out[name] = _validate_keys(value, key.children or {}, source, dotted, warn, allow_foreign)
        else:
            out[name] = _check_value(key, value, source, dotted)
    return out


def _check_value(key: Key, value: object, source: str, dotted: str) -> object:
    if value is None:
        if key.nullable:
            return None
        raise ConfigError(f"{source}: {dotted} must be {_describe(key.type)}, got null")
    checked = _coerce(key.type, value)
    if checked is _INVALID:
        raise ConfigError(
            f"{source}: {dotted} must be {_describe(key.type)}, got {value!r} ({_tname(value)})"
        )
    _check_numbers(key, checked, source, dotted)
    if key.choices is not None and checked not in key.choices:
        close = difflib.get_close_matches(str(checked), [str(c) for c in key.choices], n=1, cutoff=0.4)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        options = ", ".join(str(c) for c in key.choices)
        raise ConfigError(f"{source}: {dotted} = {checked!r} is not one of {options}{hint}")
    if key.type == "list[mapping]" and dotted.endswith("transform"):
        build_transform(checked, training=not dotted.startswith("evaluator"), section=f"{source}: {dotted}")
    return checked


_INVALID = object()


def _check_numbers(key: Key, value: object, source: str, dotted: str) -> None:
    for item in value if isinstance(value, list) else [value]:
        check_number(item, source, dotted, key.range)


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _coerce(kind: str, value: object) -> object:
    """Return ``value`` normalised to ``kind``, or ``_INVALID``."""
    if kind == "int":
        return value if _is_int(value) else _INVALID
    if kind == "float":
        return float(value) if (_is_int(value) or isinstance(value, float)) else _INVALID
    if kind == "bool":
        return value if isinstance(value, bool) else _INVALID
    if kind in ("str", "path"):
        return value if isinstance(value, str) and (kind == "str" or value) else _INVALID
    if kind == "int|str":
        return value if (_is_int(value) or isinstance(value, str)) else _INVALID
    if kind == "list[int]":
        if isinstance(value, list) and all(_is_int(v) for v in value):
            return list(value)
        return _INVALID
    if kind == "list[str]":
        if isinstance(value, list) and all(
            isinstance(v, (str, int)) and not isinstance(v, bool) for v in value
        ):
            return [str(v) for v in value]
        return _INVALID
    if kind == "list[bool]":
        if isinstance(value, list) and all(isinstance(v, bool) for v in value):
            return list(value)
        return _INVALID
    if kind == "mapping":
        return copy_tree(value) if isinstance(value, Mapping) else _INVALID
    if kind == "list[mapping]":
        if isinstance(value, Mapping):  # OpenGait allows a single transform mapping
            value = [value]
        ok = isinstance(value, list) and all(isinstance(v, Mapping) and "type" in v for v in value)
        return copy_tree(value) if ok else _INVALID
    raise AssertionError(f"unknown schema type {kind}")


def _describe(kind: str) -> str:
    return {
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "str": "a string",
        "path": "a path (non-empty string)",
        "int|str": "an integer or a string",
        "list[int]": "a list of integers",
        "list[str]": "a list of strings",
        "list[bool]": "a list of true/false",
        "mapping": "a mapping",
        "list[mapping]": "a list of {type: ...} mappings",
    }[kind]


def _validate_losses(body: object, source: str) -> list[dict[str, object]]:
    items = [body] if isinstance(body, Mapping) else body
    if not isinstance(items, list):
        raise ConfigError(f"{source}: loss_cfg must be a list of losses, got {_tname(body)}")
    out = []
    for index, item in enumerate(items):
        out.append(_validate_loss(item, source, f"loss_cfg[{index}]"))
    return out


def _validate_loss(item: object, source: str, where: str) -> dict[str, object]:
    if not isinstance(item, Mapping):
        raise ConfigError(f"{source}: {where} must be a mapping with a 'type', got {_tname(item)}")
    kind = item.get("type")
    if kind not in LOSS_TYPES:
        close = difflib.get_close_matches(str(kind), LOSS_TYPES, n=1, cutoff=0.4)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (one of {', '.join(LOSS_TYPES)})"
        raise ConfigError(f"{source}: {where}.type: unknown loss {kind!r}{hint}")
    keys = LOSS_SCHEMAS[kind]
    out: dict[str, object] = {name: key.default for name, key in keys.items()}
    for name, value in item.items():
        dotted = f"{where}.{name}"
        if name not in keys:
            raise ConfigError(_unknown(source, dotted, [f"{where}.{k}" for k in keys]))
        out[name] = _check_value(keys[name], value, source, dotted)
    return out


def _validate_callable_section(
    body: object,
    source: str,
    section: str,
    name_key: str,
    params_of: Callable[[str, str], set[str]],
    warn: Warn | None = None,
) -> dict[str, object]:
    """optimizer_cfg / scheduler_cfg: keys are checked against the named torch class.

    With ``warn`` (a config file), a key the named class does not take but another optimiser
    (scheduler) of torch does is dropped with a warning, as OpenGait drops it (its configs carry
    e.g. ``momentum`` with ``solver: Adam``); any other key is an error (a typo)."""
    if body is None:
        return {}
    if not isinstance(body, Mapping):
        raise ConfigError(f"{source}: {section} must be a mapping, got {_tname(body)}")
    keys = SCHEMA[section]
    name = body.get(name_key, keys[name_key].default)
    if not isinstance(name, str):
        raise ConfigError(f"{source}: {section}.{name_key} must be a string, got {name!r}")
    allowed = params_of(name, source)
    out: dict[str, object] = {}
    for key, value in body.items():
        dotted = f"{section}.{key}"
        if key == name_key:
            out[key] = value
            continue
        if key not in allowed and warn is not None and key in _all_params(section):
            warn(f"{source}: ignoring {dotted} ({name} does not take it; OpenGait ignores "
                              "it too)")
            continue
        if key not in allowed:
            message = _unknown(source, dotted, [f"{section}.{k}" for k in sorted(allowed)])
            raise ConfigError(f"{message}; {name} takes: {', '.join(sorted(allowed)) or 'no arguments'}")
        out[key] = _check_value(keys[key], value, source, dotted) if key in keys else value
    return out


def _all_params(section: str) -> set[str]:
    """Every argument some torch optimiser (scheduler, with the warm-up's own) takes."""
    import torch

    owner = torch.optim if section == "optimizer_cfg" else torch.optim.lr_scheduler
    base = torch.optim.Optimizer if section == "optimizer_cfg" else torch.optim.lr_scheduler.LRScheduler
    out: set[str] = set() if section == "optimizer_cfg" else _scheduler_params("warmup", "")
    for attr in dir(owner):
        cls = getattr(owner, attr)
        if isinstance(cls, type) and issubclass(cls, base) and cls is not base:
            out.update(inspect.signature(cls).parameters)
    return out - {"self", "params", "optimizer", "last_epoch", "verbose"}


def _optimizer_params(name: str, source: str) -> set[str]:
    import torch

    cls = getattr(torch.optim, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        names = [
            n
            for n in dir(torch.optim)
            if isinstance(getattr(torch.optim, n), type)
            and issubclass(getattr(torch.optim, n), torch.optim.Optimizer)
            and n != "Optimizer"
        ]
        raise ConfigError(_unknown(source, f"optimizer_cfg.solver = {name!r}", names, what="optimiser"))
    return {p for p in inspect.signature(cls).parameters if p not in ("params", "self")}


def _scheduler_params(name: str, source: str) -> set[str]:
    if name == "warmup":
        return {k for k in SCHEMA["scheduler_cfg"] if k != "scheduler"}
    import torch

    lrs = torch.optim.lr_scheduler
    cls = getattr(lrs, name, None)
    if not (isinstance(cls, type) and issubclass(cls, lrs.LRScheduler)):
        names = ["warmup"] + [
            n
            for n in dir(lrs)
            if isinstance(getattr(lrs, n), type)
            and issubclass(getattr(lrs, n), lrs.LRScheduler)
            and not n.startswith("_")
            and n not in ("LRScheduler", "_LRScheduler")
        ]
        raise ConfigError(_unknown(source, f"scheduler_cfg.scheduler = {name!r}", names, what="scheduler"))
    return {
        p
        for p in inspect.signature(cls).parameters
        if p not in ("optimizer", "last_epoch", "verbose", "self")
    }


def _required_params(section: str, name: str) -> list[str]:
    """Arguments of the named torch class that have no default."""
    import torch

    if section == "scheduler_cfg" and name == "warmup":
        return []
    owner = torch.optim if section == "optimizer_cfg" else torch.optim.lr_scheduler
    skip = {"self", "params", "optimizer"}
    signature = inspect.signature(getattr(owner, name))
    return [
        p.name
        for p in signature.parameters.values()
        if p.name not in skip
        and p.default is inspect.Parameter.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _unknown(source: str, dotted: str, candidates: Iterable[str], what: str = "key") -> str:
    candidates = list(candidates)
    target = dotted.split(" = ")[-1].strip("'") if " = " in dotted else dotted
    close = [c for c in candidates if c.lower() == target.lower()]
    close = close or difflib.get_close_matches(target, candidates, n=1, cutoff=0.5)
    if not close:  # compare the last component only: 'trainer_cfg.totl' vs 'total_iter'
        last = {c.rsplit(".", 1)[-1]: c for c in candidates}
        hit = difflib.get_close_matches(target.rsplit(".", 1)[-1], list(last), n=1, cutoff=0.5)
        close = [last[hit[0]]] if hit else []
    if close:
        hint = f" (did you mean '{close[0]}'?)"
    else:
        shown = ", ".join(candidates[:8]) + (", ..." if len(candidates) > 8 else "")
        hint = f" (valid: {shown})"
    if " = " in dotted:  # a value, already quoted: "optimizer_cfg.solver = 'Sgd'"
        return f"{source}: unknown {what} {dotted}{hint}"
    label = "section" if "." not in dotted and what == "key" else what
    return f"{source}: unknown {label} '{dotted}'{hint}"


# ----------------------------------------------------------------------------- merging
def _merge_over_defaults(defaults: dict[str, object], user: Mapping[str, object]) -> dict[str, object]:
    """Mappings merge and lists replace, except that naming a different optimiser or scheduler
    replaces that section wholesale (Adam's defaults mean nothing to SGD)."""
    user = dict(user)
    for section, name_key in (("optimizer_cfg", "solver"), ("scheduler_cfg", "scheduler")):
        body = user.get(section)  # validated: a mapping when present
        if (
            isinstance(body, Mapping)
            and body
            and name_key in body
            and body[name_key] != section_at(defaults, section)[name_key]
        ):
            defaults[section] = {}
    model = user.get("model_cfg") or {}
    assert isinstance(model, Mapping)  # validated
    if "model" in model and model["model"] != section_at(defaults, "model_cfg")["model"]:
        defaults["model_cfg"] = section_defaults(model_keys(model["model"]))  # that model's own defaults
    return merge(defaults, user)


def _key_at(cfg: Mapping[str, object], parts: tuple[str, ...]) -> Key | None:
    """The schema key an override path names (None: a free-form or unknown key)."""
    section = parts[0]
    if section == "loss_cfg":
        losses = cfg.get("loss_cfg") or []
        index = parts[1] if len(parts) == 3 else ""
        if not isinstance(losses, list) or not index.isdigit() or int(index) >= len(losses):
            return None
        return LOSS_SCHEMAS.get(str(losses[int(index)].get("type")), {}).get(parts[2])
    if section == "model_cfg":
        try:
            name = section_at(cfg, "model_cfg").get("model", default_model_name())
            keys: Mapping[str, Key] = model_keys(str(name))
        except ConfigError:
            return None
    else:
        keys = SCHEMA.get(section, {})
    key: Key | None = None
    for part in parts[1:]:
        key = keys.get(part)
        if key is None:
            return None
        keys = key.children or {}
    return key


_NULL_TEXT = ("", "null", "~", "Null", "NULL")


def _override_value(cfg: Mapping[str, object], item: Override) -> object:
    """The value an override sets: string and path keys take ``--set`` text verbatim (``null``
    clears a nullable one); everything else the value read as YAML."""
    if item.text is None:
        return item.value
    key = _key_at(cfg, item.path)
    if key is not None and key.type in ("str", "path"):
        if key.nullable and item.text.strip() in _NULL_TEXT:
            return None
        return item.text
    return item.value


def _apply_override(cfg: dict[str, object], item: Override, warn: Warn) -> dict[str, object]:
    parts = list(item.path)
    if len(parts) < 2 or any(not p for p in parts):
        raise ConfigError(f"{item.label}: expected section.key=value, e.g. trainer_cfg.total_iter=1000")
    value = _override_value(cfg, item)
    source = item.label
    section = parts[0]
    if section not in SCHEMA:
        raise ConfigError(_unknown(source, section, SCHEMA.keys()))
    if section == "loss_cfg":
        return _apply_loss_override(cfg, parts, value, source)
    nested: dict[str, object] = {parts[-1]: value}
    for part in reversed(parts[1:-1]):
        nested = {part: nested}
    if section == "model_cfg":
        return _apply_model_override(cfg, parts, nested, value, source, warn)
    name_key = {"optimizer_cfg": "solver", "scheduler_cfg": "scheduler"}.get(section)
    if name_key:
        # checked against the optimiser / scheduler the section names after this override;
        # naming a different one starts from an empty section, as in a file
        base = section_at(cfg, section)
        changed = parts[1] == name_key and value != base.get(name_key)
        if changed and isinstance(value, str):
            params_of = _optimizer_params if section == "optimizer_cfg" else _scheduler_params
            accepted = params_of(value, source)
            dropped = sorted(k for k in base if k != name_key and k not in accepted)
            if dropped:
                warn(f"{source}: dropping {', '.join(dropped)} ({value} does not take them)")
            base = {k: v for k, v in base.items() if k in accepted}
        checked = _validate_partial({section: merge(base, nested)}, source, warn)
        return {**copy_mapping(cfg), section: checked[section]}
    checked = _validate_partial({section: nested}, source, warn)
    _resolve_paths(checked, Path.cwd())
    return merge(cfg, checked)


def _apply_model_override(
    cfg: dict[str, object],
    parts: list[str],
    nested: dict[str, object],
    value: object,
    source: str,
    warn: Warn,
) -> dict[str, object]:
    """model_cfg overrides are checked against the model the section names after them; naming
    another model keeps the keys it takes and completes the rest from its defaults."""
    base = copy_mapping(section_at(cfg, "model_cfg"))
    if parts[1] == "model" and len(parts) == 2 and value != base.get("model"):
        checked = _validate_partial({"model_cfg": {"model": value}}, source, warn)
        checked_name = str(section_at(checked, "model_cfg")["model"])  # validated: a model's name
        fresh = section_defaults(model_keys(checked_name))
        dropped = sorted(k for k in base if k not in fresh)
        if dropped:
            warn(f"{source}: dropping model_cfg {', '.join(dropped)} ({checked_name} does not take them)")
        base = {**fresh, **{k: v for k, v in base.items() if k in fresh and k != "model"}}
    checked = _validate_partial({"model_cfg": merge(base, nested)}, source, warn)
    return {**copy_mapping(cfg), "model_cfg": checked["model_cfg"]}


def _apply_loss_override(
    cfg: dict[str, object], parts: list[str], value: object, source: str
) -> dict[str, object]:
    losses = cfg["loss_cfg"]
    assert isinstance(losses, list)  # validated
    if len(parts) < 3:
        raise ConfigError(f"{source}: use loss_cfg.INDEX.key=value (INDEX 0..{len(losses) - 1})")
    index = parts[1]
    if not index.isdigit() or int(index) >= len(losses):
        raise ConfigError(f"{source}: no loss at index {index!r}; loss_cfg has entries 0..{len(losses) - 1}")
    if len(parts) != 3:
        raise ConfigError(f"{source}: loss settings are one level deep (loss_cfg.{index}.key=value)")
    item = dict(losses[int(index)])
    item[parts[2]] = value
    out = copy_mapping(cfg)
    copied = out["loss_cfg"]
    assert isinstance(copied, list)
    copied[int(index)] = _validate_loss(item, source, f"loss_cfg[{index}]")
    return out


# ----------------------------------------------------------------------------- paths
def _resolve_paths(user: dict[str, object], base_dir: Path) -> None:
    """Make relative data paths absolute: relative to the config file's folder, or to the
    working folder when only that one exists (OpenGait configs are written cwd-relative)."""
    for section, key in PATH_KEYS:
        body = user.get(section, {})
        assert isinstance(body, dict), section  # validated
        value = body.get(key)
        if not isinstance(value, str):
            continue
        path = Path(value).expanduser()
        if not path.is_absolute():
            from_config = (base_dir / path).resolve()
            from_cwd = (Path.cwd() / path).resolve()
            path = from_cwd if (not from_config.exists() and from_cwd.exists()) else from_config
        body[key] = str(path)


def _apply_packaged_partition(cfg: dict[str, object], warn: Warn) -> None:
    data = cfg["data_cfg"]
    assert isinstance(data, dict)  # validated
    value = data["dataset_partition"]
    assert isinstance(value, str), value  # validated: a path
    path = Path(value)
    if path.exists():
        return
    packaged = packaged_partition(path.name)
    if packaged is None:
        return  # checked by the commands that read data
    from gaitcli.data.partition import load_partition

    data["dataset_partition"] = str(packaged)
    split = load_partition(packaged)
    warn(
        f"partition {value} not found; using the packaged {packaged.name} "
        f"({len(split.train)} train / {len(split.test)} test ids)"
    )


def find_config_file(text: str) -> Path:
    """The file a ``--config`` value names (docs/config.md, "Naming a config"): an existing
    file is that file; otherwise a value with a folder separator or a ``.yaml`` / ``.yml``
    suffix is a path; a bare word is a packaged config's name, even when a folder of that name
    is in the working folder (``gait train -c demo`` beside ``./demo/``)."""
    path = Path(text)
    if path.is_file():
        return path
    bare = len(path.parts) == 1 and "/" not in text and "\\" not in text
    if bare:
        name = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
        packaged = configs_dir() / name
        if packaged.is_file():
            return packaged
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; pass a YAML config file")
    names = ", ".join(packaged_config_names())
    raise ConfigError(f"config file not found: {path} (packaged configs: {names})")


# ----------------------------------------------------------------------------- stored configs
def migrate_config(stored: Mapping[str, object], source: str, warn: Warn | None = None) -> dict[str, object]:
    """A config (a user's file or one gaitcli stored) brought to the current shape
    (:data:`CONFIG_FORMAT`), one step per version; ``config_format`` is taken off. Version 1
    (no ``config_format`` key; every file before gaitcli 0.6 and OpenGait's own): a ``model_cfg``
    may carry keys of another registered model (older GaitGL checkpoints stored MetaGait's
    ``variant``), which are dropped with a warning. A config newer than this gaitcli is refused."""
    out = copy_mapping(stored)
    version = out.pop("config_format", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"{source}: config_format must be a positive integer, got {version!r}")
    if version > CONFIG_FORMAT:
        raise ConfigError(
            f"{source}: written by a newer gaitcli (config format {version}, this one reads up to "
            f"{CONFIG_FORMAT}); upgrade gaitcli to read it"
        )
    while version < CONFIG_FORMAT:
        out = _MIGRATIONS[version](out, source, warn or _silent)
        version += 1
    return out


def _migrate_1_to_2(cfg: dict[str, object], source: str, warn: Warn) -> dict[str, object]:
    model = cfg.get("model_cfg")
    if isinstance(model, dict):
        name = model.get("model", default_model_name())
        try:
            keys = model_keys(str(name))
        except ConfigError:
            return cfg  # validation names the unknown model
        others = {k for entry in model_entries().values() for k in entry.defaults()}
        for key in [k for k in model if k not in keys and k in others]:
            warn(f"{source}: ignoring model_cfg.{key} ({name} does not take it)")
            del model[key]
    return cfg


def _migrate_2_to_3(cfg: dict[str, object], source: str, warn: Warn) -> dict[str, object]:
    """Format 3 added ``trainer_cfg.kernel_choice``: a run stored before it trained with its
    ``enable_bfloat16`` and ``channels_last`` as written, which is ``config``."""
    trainer = cfg.get("trainer_cfg")
    if isinstance(trainer, dict):
        trainer.setdefault("kernel_choice", "config")
    return cfg


_MIGRATIONS: dict[int, Callable[[dict[str, object], str, Warn], dict[str, object]]] = {
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
}


def stored_config(cfg: GaitConfig) -> dict[str, ConfigValue]:
    """What checkpoints and run folders store: the plain mapping with its ``config_format``."""
    return {"config_format": CONFIG_FORMAT, **cfg.to_dict()}


# ----------------------------------------------------------------------------- helpers
def _silent(_: str) -> None:
    return None


def _tname(value: object) -> str:

    return {
        dict: "mapping",
        list: "list",
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        type(None): "null",
    }.get(type(value), type(value).__name__)
