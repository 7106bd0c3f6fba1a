"""Training-state files: optimiser, scheduler, scaler, RNG and sampler state, without pickle.

A state file sits next to its weights checkpoint (``NAME-01000.safetensors`` and
``NAME-01000.state.safetensors``). Tensors go into the safetensors body; everything else
(hyper-parameters, step counts, Python/numpy RNG states) is JSON in its metadata. Loading one
therefore cannot run code.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import TypedDict, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

from gaitcli.errors import GaitError
from gaitcli.fileio import JSONValue, atomic_write_bytes

_TENSOR = "__tensor__"

T = TypeVar("T")


class NumpyRngState(TypedDict):
    """numpy's legacy global RNG (``np.random.get_state()``), its key as a tensor."""

    kind: str
    keys: torch.Tensor
    pos: int
    has_gauss: int
    cached: float


class _RngBase(TypedDict):
    torch: torch.Tensor
    numpy: NumpyRngState
    python: list[object]  # [version, internal state (ints), gauss]


class RngState(_RngBase, total=False):
    """Every RNG a training step may touch (``cuda`` only where CUDA is available)."""

    cuda: list[torch.Tensor]


def malformed(what: str) -> GaitError:
    """The one line for a training-state file whose content is not what a save writes."""
    return GaitError(f"training state: {what} is malformed; resume from an earlier checkpoint")


def entry(state: Mapping[str, object], key: str, kind: type[T]) -> T:
    """``state[key]``, which must be a ``kind`` (one line naming ``key`` otherwise)."""
    value = state.get(key)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise malformed(key)
    return value


def number(state: Mapping[str, object], key: str) -> float:
    """``state[key]`` as a float (stored as an int or a float)."""
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise malformed(key)
    return float(value)


def _split(obj: object, prefix: str, tensors: dict[str, torch.Tensor]) -> JSONValue:
    """Replace every tensor inside ``obj`` by a reference and collect it in ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().to("cpu").contiguous().clone()
        return {_TENSOR: prefix}
    if isinstance(obj, Mapping):
        return {"__dict__": [[_key(k), _split(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_split(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        plain: JSONValue = obj.item()  # a numpy scalar's Python value
        return plain
    raise TypeError(f"cannot store a {type(obj).__name__} in a training-state file ({prefix})")


def _key(k: object) -> str | int:
    if isinstance(k, (str, int)) and not isinstance(k, bool):
        return k
    raise TypeError(f"cannot store a dict key of type {type(k).__name__}")


def _join(obj: object, tensors: Mapping[str, torch.Tensor]) -> object:
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if "__dict__" in obj:
            return {k: _join(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_join(v, tensors) for v in obj["__tuple__"])
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


def state_path(weights: str | os.PathLike[str]) -> Path:
    """The training-state file that belongs to a weights checkpoint."""
    weights = Path(weights)
    return weights.with_name(weights.name.replace(".safetensors", ".state.safetensors"))


def save_state(path: str | os.PathLike[str], state: Mapping[str, object]) -> None:
    """Write a nested state (dicts, lists, tensors, plain values) atomically."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(dict(state), "s", tensors)
    if not tensors:  # safetensors needs at least one tensor
        tensors["s.__empty__"] = torch.zeros(0)
    atomic_write_bytes(path, st_save(tensors, metadata={"state": json.dumps(skeleton)}))


def load_state(path: str | os.PathLike[str]) -> dict[str, object]:
    """The state :func:`save_state` wrote (tensors back in place; the caller narrows each entry)."""
    path = Path(path)
    if not path.is_file():
        raise GaitError(f"{path}: no such training-state file")
    try:
        with safe_open(str(path), framework="pt") as handle:  # one read: tensors and header
            skeleton = json.loads(handle.metadata()["state"])
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, ValueError, KeyError, TypeError, OSError) as exc:
        raise GaitError(
            f"{path}: corrupt training-state file ({str(exc).splitlines()[0]}); "
            "resume from an earlier checkpoint"
        ) from None
    joined = _join(skeleton, tensors)
    if not isinstance(joined, dict):
        raise GaitError(f"{path}: corrupt training-state file (no mapping); "
                        "resume from an earlier checkpoint")
    return joined


def rng_state() -> RngState:
    """Every RNG a training step may touch."""
    state: RngState = {
        "torch": torch.get_rng_state(),
        "numpy": _np_state(),
        "python": _py_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: object) -> None:
    """Restore what :func:`rng_state` returned (as read back from a training-state file)."""
    if not isinstance(state, Mapping):
        raise malformed("rng")
    torch.set_rng_state(entry(state, "torch", torch.Tensor))
    np.random.set_state(_np_restore(entry(state, "numpy", dict)))
    random.setstate(_py_restore(entry(state, "python", list)))
    cuda = state.get("cuda")
    if isinstance(cuda, list) and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _np_state() -> NumpyRngState:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "kind": kind,
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _np_restore(state: Mapping[str, object]) -> tuple[str, np.ndarray, int, int, float]:
    keys = entry(state, "keys", torch.Tensor).numpy().astype(np.uint32)
    return (entry(state, "kind", str), keys, entry(state, "pos", int), entry(state, "has_gauss", int),
            number(state, "cached"))


def _py_state() -> list[object]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _py_restore(state: list[object]) -> tuple[object, ...]:
    if len(state) != 3 or not isinstance(state[1], list):
        raise malformed("rng.python")
    return (state[0], tuple(state[1]), state[2])
