"""Checkpoints as safetensors: weights plus string metadata, never pickle.

Metadata keys (all values are strings):

* ``format``: ``gaitcli-safetensors-1``
* ``gaitcli_version``: the version that wrote the file
* ``model``: ``GaitGL`` or ``MetaGait``; ``variant``: ``reference`` / ``paper`` (empty for GaitGL)
* ``config``: the full resolved config as YAML text (the model is rebuilt from it)
* ``iteration``: training iteration (decimal)
* ``labels``: JSON list of the training label set (the classifier's class order)
* any other keyword given to :func:`save_checkpoint` (strings kept, anything else as JSON)

Files are written atomically (temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import SupportsIndex, SupportsInt, TypedDict, cast

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save as st_save

from .. import __version__
from ..errors import ConfigError, GaitError
from ..fileio import atomic_write_bytes
from .base import GaitModel
from .build import create_model

FORMAT = "gaitcli-safetensors-1"
RESERVED = ("format", "gaitcli_version", "model", "variant", "config", "iteration", "labels")
_OPTIONAL_STATE = ("num_batches_tracked",)  # BN counters: absent from some old checkpoints
_SHOW = 4


class CheckpointError(GaitError):
    """A checkpoint that cannot be read, or is not a gaitcli checkpoint."""


class CheckpointMismatchError(CheckpointError):
    """Weights whose names or shapes differ from the model's."""


class _TextMetadata(TypedDict, total=False):
    """The string metadata gaitcli writes besides ``config``, ``iteration`` and ``labels`` (any
    other keyword of :func:`save_checkpoint` is kept too, as text)."""

    format: str
    gaitcli_version: str
    model: str
    variant: str
    frame_size: str
    converted_from: str
    config_source: str
    seed: str
    """The run's ``trainer_cfg.seed`` (``gait train`` writes it; a converted checkpoint has none)."""


class CheckpointMetadata(_TextMetadata):
    """:func:`parse_metadata`: the metadata with ``config``, ``iteration`` and ``labels`` parsed."""

    config: Mapping[str, object]
    """The stored config (empty when the file carries none)."""
    iteration: int
    """The training iteration."""
    labels: list[object]
    """The training label set (the classifier's class order)."""


# ----------------------------------------------------------------------------------------------
# name / shape checks
# ----------------------------------------------------------------------------------------------


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    more = len(items) - _SHOW
    return f"{shown}, ... (+{more} more)" if more > 0 else shown


def _shape(shape: Iterable[int]) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


def state_dict_differences(
    model_state: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """``(missing, unexpected, shape mismatches)``: names the model has and the weights lack,
    names the weights have and the model lacks, and ``name (weights [..] vs model [..])``."""
    missing = [k for k in model_state if k not in state and not k.endswith(_OPTIONAL_STATE)]
    unexpected = [k for k in state if k not in model_state]
    shapes = [
        f"{k} (weights {_shape(state[k].shape)} vs model {_shape(v.shape)})"
        for k, v in model_state.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    return missing, unexpected, shapes


def mismatch_message(missing: list[str], unexpected: list[str], shapes: list[str]) -> str:
    parts = []
    if missing:
        parts.append(f"missing {len(missing)}: {_names(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)}: {_names(unexpected)}")
    if shapes:
        parts.append(f"shape mismatch {len(shapes)}: {_names(shapes)}")
    return "; ".join(parts)


def load_state_dict_checked(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str = "the weights"
) -> None:
    """Load ``state`` into ``model`` after checking every name and shape; on any difference raise
    :class:`CheckpointMismatchError` with one line listing the offending names."""
    model_state = model.state_dict()
    missing, unexpected, shapes = state_dict_differences(model_state, state)
    if missing or unexpected or shapes:
        what = getattr(model, "name", type(model).__name__)
        raise CheckpointMismatchError(
            f"{source} does not match the {what} model: {mismatch_message(missing, unexpected, shapes)}"
        )
    full = dict(state)
    for k, v in model_state.items():
        if k not in full:  # an optional BN counter
            full[k] = v
    model.load_state_dict(full, strict=True)


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------


def _meta_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    return json.dumps(value)


def _label_list(labels: object) -> list[object]:
    if labels is None:
        return []
    if isinstance(labels, str):
        parsed: list[object] = json.loads(labels)
        return parsed
    if not isinstance(labels, Iterable):
        raise TypeError(f"labels must be a list, got {type(labels).__name__}")
    return [x if isinstance(x, (str, int, float)) else str(x) for x in labels]


def _plain(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_text(cfg: Mapping[str, object]) -> str:
    """The config as YAML text in its own key order (a resolved config is in schema order), the
    same text ``gait config`` prints."""
    return yaml.safe_dump(_plain(cfg), sort_keys=False, default_flow_style=None)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    cfg: Mapping[str, object] | None = None,
    **meta: object,
) -> Path:
    """Save ``model``'s weights and metadata to ``path`` (safetensors, atomic).

    ``cfg`` is the full resolved config (default: ``model.config``, which
    :func:`gaitcli.build.build_model` sets); ``iteration`` and ``labels`` are recognised
    keywords, any other keyword is stored as extra metadata."""
    path = Path(path)
    if cfg is None:
        cfg = getattr(model, "config", None)
    if not isinstance(cfg, Mapping):
        raise ValueError("save_checkpoint needs the resolved config: pass cfg, or a model from build_model")
    raw_iteration = meta.pop("iteration", 0) or 0
    if not isinstance(raw_iteration, (str, bytes, SupportsInt, SupportsIndex)):
        raise TypeError(f"iteration must be a whole number, got {type(raw_iteration).__name__}")
    iteration = int(raw_iteration)
    labels = _label_list(meta.pop("labels", None))
    clash = [k for k in meta if k in RESERVED]
    if clash:
        raise ValueError(f"metadata keys {clash} are reserved")
    model_cfg = cfg["model_cfg"]
    if not isinstance(model_cfg, Mapping):
        raise TypeError(f"cfg['model_cfg'] must be a mapping, got {type(model_cfg).__name__}")
    metadata = {
        "format": FORMAT,
        "gaitcli_version": __version__,
        "model": str(model_cfg["model"]),
        "variant": str(getattr(model, "variant", "")),
        "config": config_text(cfg),
        "iteration": str(iteration),
        "labels": json.dumps(labels),
    }
    metadata.update({str(k): _meta_text(v) for k, v in meta.items()})
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, st_save(tensors, metadata=metadata))
    return path


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------


def looks_like_torch_pickle(head: bytes) -> bool:
    """True for the first bytes of a ``torch.save`` file (zip archive or bare pickle) that are
    not the start of a safetensors file (8-byte header length, then ``{``)."""
    if head[8:9] == b"{":
        return False
    return head[:4] == b"PK\x03\x04" or (
        head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    )


def _sniff(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None
    if looks_like_torch_pickle(head):
        raise CheckpointError(
            f"{path}: this is a PyTorch pickle (.pt), not a gaitcli safetensors checkpoint; "
            f"convert it first with gait convert {path} OUT.safetensors (giving its training config if the "
            "file holds none)"
        )


def _corrupt(path: Path, exc: Exception) -> CheckpointError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CheckpointError(
        f"{path}: not a readable safetensors checkpoint (truncated or corrupt: {detail}); "
        "copy it again or re-save it"
    )


def read_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The raw ``(state_dict, metadata)`` of a safetensors checkpoint."""
    path = Path(path)
    _sniff(path)
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            metadata = dict(fh.metadata() or {})
            state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own error type, OSError, ValueError...
        raise _corrupt(path, exc) from None
    return state, metadata


def weights_beside(path: Path | str) -> Path:
    """The weights checkpoint a training-state file belongs to (``X-00010.state.safetensors``
    → ``X-00010.safetensors``), the naming docs/train.md describes."""
    path = Path(path)
    name = path.name
    for suffix in (".state.safetensors", ".state"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".safetensors")
    return path.with_name(path.stem + ".safetensors")


def is_training_state(metadata: Mapping[str, str]) -> bool:
    """True for the metadata of a trainer's ``.state.safetensors`` file (optimiser, scheduler and
    RNG state as JSON under ``state``; no gaitcli checkpoint format)."""
    return "state" in metadata and "format" not in metadata


def state_file_error(path: Path | str) -> CheckpointError:
    """The one message for a training-state file given where model weights are expected."""
    return CheckpointError(
        f"{path}: a training-state file (optimiser, scheduler and RNG state for resuming a run), not model "
        f"weights; use the weights file beside it: {weights_beside(path)}"
    )


def parse_metadata(path: Path | str, metadata: Mapping[str, str]) -> CheckpointMetadata:
    """Metadata with ``config`` as a mapping, ``iteration`` as int and ``labels`` as a list."""
    if is_training_state(metadata):
        raise state_file_error(path)
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise CheckpointError(
            f"{path}: a safetensors file without gaitcli metadata (format {metadata.get('format')!r}); "
            "convert foreign weights with gait convert, giving their training config"
        )
    try:
        config = yaml.safe_load(metadata["config"]) or {}
        iteration = int(metadata.get("iteration", "0") or 0)
        labels = json.loads(metadata.get("labels", "[]") or "[]")
    except (yaml.YAMLError, ValueError) as exc:
        raise CheckpointError(f"{path}: damaged metadata ({str(exc).splitlines()[0]})") from None
    if not isinstance(config, Mapping):
        raise _no_sections(path)
    if not isinstance(labels, list):
        raise CheckpointError(f"{path}: damaged metadata (labels is not a JSON list)")
    # the text entries as they are, in their order; the three parsed ones replace theirs
    parsed = {**metadata, "config": config, "iteration": iteration, "labels": labels}
    return cast(CheckpointMetadata, parsed)


def read_checkpoint_metadata(path: str | os.PathLike[str]) -> CheckpointMetadata:
    """Only the parsed metadata (no weights are read)."""
    path = Path(path)
    _sniff(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = dict(fh.metadata() or {})
    except Exception as exc:
        raise _corrupt(path, exc) from None
    return parse_metadata(path, metadata)


def check_finite_weights(state: Mapping[str, torch.Tensor], path: Path | str) -> None:
    """One line when any floating-point weight or buffer is NaN or infinite (a run that diverged
    before it was saved): such a model embeds every sequence as NaN."""
    bad = [name for name, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} of its {len(state)} tensors hold NaN or infinite values ({_names(bad)}); "
            "the run diverged before this save: use an earlier checkpoint"
        )


def _no_sections(path: Path | str) -> CheckpointError:
    return CheckpointError(
        f"{path}: its stored config has no model_cfg / data_cfg section; "
        "re-save it with gait convert, giving its training config"
    )


def _model_from_config(path: Path, config: Mapping[str, object]) -> GaitModel:
    """The model a stored (already resolved) config names, built with :func:`create_model`; a
    config of the wrong shape or naming an unknown model is one :class:`CheckpointError` line."""
    model_cfg = config.get("model_cfg")
    data_cfg = config.get("data_cfg")
    if not isinstance(model_cfg, Mapping) or not isinstance(data_cfg, Mapping):
        raise _no_sections(path)
    try:
        model = create_model(model_cfg, dataset_name=str(data_cfg.get("dataset_name", "CASIA-B")))
    except (ConfigError, TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: its stored config is not valid here: {exc}") from None
    model.config = dict(config)
    return model


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
) -> GaitModel:
    """Rebuild the model from the config stored in ``path``, load its weights (names and shapes
    checked) and return it in eval mode on ``map_location``. ``model.config`` is the stored config
    and ``model.checkpoint_meta`` the parsed metadata (iteration, labels, ...)."""
    path = Path(path)
    state, raw = read_checkpoint(path)
    meta = parse_metadata(path, raw)
    if not meta["config"]:
        raise CheckpointError(
            f"{path}: the checkpoint carries no config, so its model, data set and protocol are unknown "
            "(gaitcli never fills them in with defaults); "
            "re-save it with gait convert, giving its training config"
        )
    model = _model_from_config(path, meta["config"])
    check_finite_weights(state, path)
    load_state_dict_checked(model, state, source=str(path))
    model.checkpoint_meta = {k: v for k, v in meta.items() if k != "config"}
    model.to(map_location)
    model.eval()
    return model
