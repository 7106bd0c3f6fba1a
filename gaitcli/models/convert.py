"""``gait convert``: an OpenGait / MetaGait ``.pt`` checkpoint → a gaitcli safetensors checkpoint.

The source is read with ``torch.load(weights_only=True)``: only tensors and plain containers are
rebuilt, so a pickle that would run code is refused before anything runs. Accepted layouts: the
reference's ``{model, optimizer, scheduler, iteration}`` dict, ``{state_dict: ...}``, a bare state
dict, or a safetensors file of bare weights. ``module.`` prefixes (DataParallel / DDP) are dropped.
"""

from __future__ import annotations

import copy
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import GaitError
from .checkpoint import load_state_dict_checked, looks_like_torch_pickle, save_checkpoint

Warn = Callable[[str], None]


class ConvertError(GaitError):
    """A source checkpoint that cannot be converted."""


# ----------------------------------------------------------------------------------------------
# reading the source safely
# ----------------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def safe_torch_load(src: Path) -> Any:
    """``torch.load(src, weights_only=True)`` with one-line errors."""
    try:
        with open(src, "rb") as fh:
            head = fh.read(9)
    except OSError as exc:
        raise ConvertError(f"{src}: cannot read ({exc.strerror or exc})") from None
    if not head:
        raise ConvertError(f"{src}: the file is empty")
    if not looks_like_torch_pickle(head) and head[8:9] == b"{":
        # Not a zip or pickle stream: maybe a safetensors file of bare weights.
        try:
            from safetensors.torch import load_file

            return load_file(str(src), device="cpu")
        except Exception:
            pass
    try:
        return torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"(?:unsupported GLOBAL|Unsupported global:)\s*(?:GLOBAL\s*)?([\w.]+)", text)
        what = f" (it asks for {found.group(1)})" if found else ""
        raise ConvertError(
            f"{src}: refused: the pickle holds objects other than tensors and plain containers{what}, "
            "and loading it could run code; only weights are accepted"
        ) from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as exc:
        raise ConvertError(
            f"{src}: not a readable PyTorch checkpoint (truncated or corrupt: {_first_line(exc)})"
        ) from None


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def extract_state_dict(obj: Any, src: Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """``(state dict without module. prefixes, iteration or None)``."""
    iteration = None
    state: Any = None
    if _is_state_dict(obj):
        state = obj
    elif isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state_dict", "net"):
            if key in obj and _is_state_dict(obj[key]):
                state = obj[key]
                break
        it = obj.get("iteration")
        if isinstance(it, (int, float)) and not isinstance(it, bool):
            iteration = int(it)
        elif isinstance(it, torch.Tensor) and it.numel() == 1:
            iteration = int(it.item())
    if state is None:
        found = ", ".join(map(str, list(obj)[:6])) if isinstance(obj, Mapping) else type(obj).__name__
        raise ConvertError(
            f"{src}: no model weights found (expected a state dict or a dict with 'model'; found {found})"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key
        while name.startswith("module."):
            name = name[len("module.") :]
        if name in out:
            raise ConvertError(f"{src}: weight {name} appears twice (with and without a module. prefix)")
        out[name] = value
    return out, iteration


# ----------------------------------------------------------------------------------------------
# recognising the model
# ----------------------------------------------------------------------------------------------


def weights_model(state: Mapping[str, torch.Tensor]) -> tuple[str, str]:
    """``(model, variant)`` the weights belong to: MetaGait (reference) when they hold ``eca.`` /
    ``se.`` keys, MetaGait (paper) with ``mta.`` / ``mtp.``, else GaitGL."""
    if any(k.startswith(("mta.", "mtp.")) for k in state):
        return "MetaGait", "paper"
    if any(k.startswith(("eca.", "se.")) for k in state):
        return "MetaGait", "reference"
    return "GaitGL", "reference"


def _out_channels(state: Mapping[str, torch.Tensor], key: str, src: Path) -> int:
    if key not in state:
        raise ConvertError(
            f"{src}: cannot infer the architecture: weight {key} is missing; pass the training config with --config"
        )
    return int(state[key].shape[0])


def infer_model_cfg(state: Mapping[str, torch.Tensor], src: Path) -> tuple[dict[str, Any], str]:
    """``(model_cfg, dataset_name)`` read off the weights' names and shapes."""
    model, variant = weights_model(state)
    large = "conv3d.2.conv3d.weight" in state
    if large:
        channels = [
            _out_channels(state, "conv3d.0.conv3d.weight", src),
            _out_channels(state, "GLConvA0.0.global_conv3d.conv3d.weight", src),
            _out_channels(state, "GLConvA1.0.global_conv3d.conv3d.weight", src),
            _out_channels(state, "GLConvB2.0.global_conv3d.conv3d.weight", src),
        ]
    else:
        channels = [
            _out_channels(state, "conv3d.0.conv3d.weight", src),
            _out_channels(state, "GLConvA0.global_conv3d.conv3d.weight", src),
            _out_channels(state, "GLConvA1.global_conv3d.conv3d.weight", src),
        ]
    if "Head1.fc_bin" not in state:
        raise ConvertError(
            f"{src}: cannot infer the class count: weight Head1.fc_bin is missing; pass the training config with --config"
        )
    parts, _, class_num = (int(d) for d in state["Head1.fc_bin"].shape)
    model_cfg: dict[str, Any] = {
        "model": model,
        "channels": channels,
        "class_num": class_num,
        "bin_num": None if parts == 64 else [parts],
    }
    if model == "MetaGait":
        model_cfg["variant"] = variant
        if variant == "paper":
            model_cfg["mta"] = {
                b: any(k.startswith(f"mta.{b}_kernels.") for k in state)
                for b in ("channel", "spatial", "temporal")
            }
            model_cfg["mtp"] = any(k.startswith("mtp.") for k in state)
    return model_cfg, ("OUMVLP" if large else "CASIA-B")


# ----------------------------------------------------------------------------------------------
# conversion
# ----------------------------------------------------------------------------------------------


def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    config_path: str | Path | None = None,
    overwrite: bool = False,
    warn: Warn | None = None,
) -> dict[str, Any]:
    """Convert ``src`` (OpenGait / MetaGait ``.pt``) to a gaitcli checkpoint at ``dst``.

    The config comes from ``config_path`` (the authors' YAML works; weights with ``eca.`` / ``se.``
    keys switch ``model: GaitGL`` to MetaGait with a warning) or, without one, is inferred from the
    weights. Returns a summary: ``src``, ``dst``, ``model``, ``variant``, ``dataset_name``,
    ``channels``, ``class_num``, ``parts``, ``iteration``, ``tensors``, ``parameters``,
    ``config_source`` and ``warnings`` (the messages also sent to ``warn``).
    """
    from ..config import load_config, resolve_config, validate_config
    from .build import build_model

    src, dst = Path(src), Path(dst)
    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        if warn is not None:
            warn(msg)

    if not src.exists():
        raise ConvertError(f"{src}: no such file")
    if src.is_dir():
        raise ConvertError(f"{src}: is a folder; give the checkpoint file")
    if dst.exists() and not overwrite:
        raise ConvertError(f"{dst} already exists; pass --overwrite to replace it")
    if dst.exists() and dst.resolve() == src.resolve():
        raise ConvertError(f"{dst}: the output would replace the source; choose another name")

    state, iteration = extract_state_dict(safe_torch_load(src), src)
    found_model, found_variant = weights_model(state)

    if config_path is not None:
        cfg = copy.deepcopy(load_config(config_path, warn=note))
        config_source = str(config_path)
        mcfg = cfg["model_cfg"]
        if mcfg["model"] != found_model:
            keys = {"MetaGait": "eca./se. keys", "GaitGL": "no attention keys"}[found_model]
            note(
                f"{config_path}: model_cfg.model is {mcfg['model']} but the weights are {found_model} "
                f"({keys}); converting as {found_model}"
            )
            mcfg["model"] = found_model
        if found_model == "MetaGait" and mcfg.get("variant", "reference") != found_variant:
            note(
                f"{config_path}: model_cfg.variant is {mcfg.get('variant')} but the weights are the {found_variant} variant; converting as {found_variant}"
            )
            mcfg["variant"] = found_variant
        validate_config(cfg, config_source)
    else:
        model_cfg, dataset_name = infer_model_cfg(state, src)
        config_source = "inferred from the weights"
        note(
            f"no --config given: inferred {model_cfg['model']} channels {model_cfg['channels']} "
            f"class_num {model_cfg['class_num']} from the weights; every other setting is the packaged default"
        )
        cfg = resolve_config({"model_cfg": model_cfg, "data_cfg": {"dataset_name": dataset_name}}, str(src))

    model = build_model(cfg, source=config_source, resolved=True)
    load_state_dict_checked(model, state, source=f"{src} (converting with config: {config_source})")
    if iteration is None:
        note(f"{src}: no iteration recorded; storing 0")
        iteration = 0
    save_checkpoint(
        dst,
        model,
        cfg,
        iteration=iteration,
        labels=[],
        converted_from=src.name,
        config_source=config_source,
    )
    mcfg = cfg["model_cfg"]
    return {
        "src": str(src),
        "dst": str(dst),
        "model": mcfg["model"],
        "variant": getattr(model, "variant", None),
        "dataset_name": cfg["data_cfg"]["dataset_name"],
        "channels": list(mcfg["channels"]),
        "class_num": int(mcfg["class_num"]),
        "parts": int(model.parts_num),
        "iteration": int(iteration),
        "tensors": len(state),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "config_source": config_source,
        "warnings": notes,
    }
