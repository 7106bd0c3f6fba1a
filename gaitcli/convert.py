"""``gait convert``: an OpenGait / MetaGait ``.pt`` checkpoint → a gaitcli safetensors checkpoint.

The source is read with ``torch.load(weights_only=True)``: only tensors and plain containers are
rebuilt, so a pickle that would run code is refused before anything runs. Accepted layouts: the
reference's ``{model, optimizer, scheduler, iteration}`` dict, ``{state_dict: ...}``, a bare state
dict, a safetensors file of bare weights, or a gaitcli checkpoint (its embedded config, iteration
and labels are kept). ``module.`` prefixes (DataParallel / DDP) are dropped. Every refusal is one
line (docs/models.md, "Converting"): never torch's own advice to load with ``weights_only=False``.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeGuard

import torch
from safetensors import safe_open

from .build import build_model
from .config import config_from_stored, load_config, resolve_config, stored_config
from .config_types import GaitConfig
from .errors import GaitError, option
from .fileio import JSONValue
from .models.checkpoint import (
    FORMAT,
    is_training_state,
    load_state_dict_checked,
    looks_like_torch_pickle,
    parse_metadata,
    save_checkpoint,
    state_file_error,
)

Warn = Callable[[str], None]


class ConvertError(GaitError):
    """A source checkpoint that cannot be converted."""


# ----------------------------------------------------------------------------------------------
# reading the source safely
# ----------------------------------------------------------------------------------------------

# torch's own advice and boilerplate, never shown to a gaitcli user (it suggests weights_only=False)
_TORCH_NOISE = (
    "Could this error message be improved",
    "Weights only load failed",
    "Please file an issue",
    "Check the documentation",
    "Re-running `torch.load`",
    "In PyTorch 2.6",
)


@dataclass
class SourceWeights:
    """What a source checkpoint holds."""

    state: dict[str, torch.Tensor]
    """The model weights, ``module.`` prefixes dropped."""
    iteration: int | None
    """The training iteration it records, None when it records none."""
    config: dict[str, object] | None = None
    """The resolved config a gaitcli checkpoint embeds (None for foreign weights)."""
    labels: list[object] = field(default_factory=list)
    """A gaitcli checkpoint's training label set (the classifier's class order)."""


def torch_detail(exc: BaseException) -> str:
    """The informative part of a torch error: its first line that is not torch's boilerplate."""
    for raw in str(exc).splitlines():
        line = re.sub(r"^\[enforce fail at [^\]]*\]\s*[.:]?\s*", "", raw.strip())
        if line and not any(noise in line for noise in _TORCH_NOISE):
            return line.split(". This is an internal")[0].rstrip(".")
    return type(exc).__name__


def _read_head(src: Path) -> bytes:
    """The first bytes of ``src`` (enough to tell a pickle from safetensors); an empty or
    unreadable file is one :class:`ConvertError` line."""
    try:
        with open(src, "rb") as fh:
            head = fh.read(9)
    except OSError as exc:
        raise ConvertError(f"{src}: cannot read ({exc.strerror or exc})") from None
    if not head:
        raise ConvertError(f"{src}: the file is empty")
    return head


def _not_torch(src: Path, head: bytes) -> ConvertError:
    if head[:4] == b"PK\x05\x06":
        what = "an empty zip archive"
    else:
        what = f"neither a zip archive nor a pickle (it starts with {head[:4].hex(' ')})"
    return ConvertError(f"{src}: not a torch checkpoint: {what}; give the .pt file torch.save wrote")


def _torch_load(src: Path) -> object:
    """``torch.load(src, weights_only=True)``: tensors and plain containers only, one-line errors."""
    try:
        return torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"(?:unsupported GLOBAL|Unsupported global:)\s*(?:GLOBAL\s*)?([\w.]+)", str(exc))
        if found is None:
            detail = torch_detail(exc)
            raise ConvertError(
                f"{src}: not a torch checkpoint: not a valid pickle stream ({detail})"
            ) from None
        raise ConvertError(
            f"{src}: refused: the pickle holds objects other than tensors and plain containers (it asks for "
            f"{found.group(1)}), and loading it could run code; only weights are accepted"
        ) from None
    except (IndexError, KeyError, TypeError) as exc:
        # a malformed stream trips the weights-only unpickler's own bookkeeping (TUPLE1 on an
        # empty stack raises IndexError): not a pickle torch.save wrote
        raise ConvertError(
            f"{src}: not a torch checkpoint: not a valid pickle stream ({type(exc).__name__})"
        ) from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as exc:
        detail = torch_detail(exc)
        raise ConvertError(
            f"{src}: not a readable PyTorch checkpoint (truncated or corrupt: {detail})"
        ) from None


def safe_torch_load(src: Path) -> object:
    """The object in a ``.pt`` file, read with ``weights_only=True`` (no pickled code runs;
    the caller narrows it with ``isinstance``)."""
    head = _read_head(src)
    if not looks_like_torch_pickle(head):
        raise _not_torch(src, head)
    return _torch_load(src)


def _read_safetensors(src: Path) -> SourceWeights:
    """A safetensors source: a gaitcli checkpoint (config and iteration kept), or bare weights."""
    try:
        with safe_open(str(src), framework="pt", device="cpu") as fh:
            metadata = dict(fh.metadata() or {})
            state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error type, OSError, ValueError...
        detail = torch_detail(exc)
        raise ConvertError(
            f"{src}: not a readable safetensors file (truncated or corrupt: {detail})"
        ) from None
    if is_training_state(metadata):
        raise state_file_error(src)
    if metadata.get("format") == FORMAT:
        meta = parse_metadata(src, metadata)
        config = dict(meta["config"]) or None
        return SourceWeights(state, int(meta["iteration"]), config, list(meta["labels"]))
    return SourceWeights(*extract_state_dict(state, src))


# safetensors refuses headers above 100 MB; a random 8-byte length is almost never that small
SAFETENSORS_MAX_HEADER = 100_000_000


def looks_like_safetensors(head: bytes) -> bool:
    """A safetensors file starts with its header's length (8 bytes, little endian) and the
    header's JSON ``{``; checking the length too keeps 1 in 256 random files from passing."""
    return head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= SAFETENSORS_MAX_HEADER


def read_source(src: Path) -> SourceWeights:
    """The weights (and what else is known) of ``src``: a ``.pt`` or a safetensors file."""
    head = _read_head(src)
    if looks_like_safetensors(head) and not looks_like_torch_pickle(head):
        return _read_safetensors(src)
    return SourceWeights(*extract_state_dict(safe_torch_load(src), src))


def _is_state_dict(obj: object) -> TypeGuard[Mapping[str, torch.Tensor]]:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def extract_state_dict(obj: object, src: Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """``(state dict without module. prefixes, iteration or None)``."""
    iteration = None
    state: Mapping[str, torch.Tensor] | None = None
    if _is_state_dict(obj):
        state = obj
    elif isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state_dict", "net"):
            inner = obj[key] if key in obj else None
            if _is_state_dict(inner):
                state = inner
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
            f"{src}: cannot infer the architecture: weight {key} is missing; "
            f"pass the training config with {option('config_path')}"
        )
    return int(state[key].shape[0])


def infer_model_cfg(state: Mapping[str, torch.Tensor], src: Path) -> tuple[dict[str, object], str]:
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
            f"{src}: cannot infer the class count: weight Head1.fc_bin is missing; "
            f"pass the training config with {option('config_path')}"
        )
    parts, _, class_num = (int(d) for d in state["Head1.fc_bin"].shape)
    model_cfg: dict[str, object] = {
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


@dataclass
class ConvertSummary:
    """What ``gait convert`` wrote."""

    src: str
    """The source checkpoint."""
    dst: str
    """The gaitcli safetensors checkpoint written."""
    model: str
    """``GaitGL`` or ``MetaGait``."""
    variant: str | None
    """MetaGait's ``reference`` / ``paper`` (None for GaitGL)."""
    dataset_name: str
    """``data_cfg.dataset_name`` of the stored config."""
    channels: list[int]
    """``model_cfg.channels``."""
    class_num: int
    """Classifier classes."""
    parts: int
    """Horizontal parts of the embedding."""
    iteration: int
    """The training iteration stored (0 when the source records none)."""
    tensors: int
    """Weights and buffers converted."""
    parameters: int
    """Trainable numbers of the model."""
    config_source: str
    """Where the config came from: the ``--config`` file, the source's embedded config, or
    ``inferred from the weights``."""
    warnings: list[str] = field(default_factory=list)
    """The messages also sent to ``warn``."""

    def to_json(self) -> dict[str, JSONValue]:
        return asdict(self)


def model_parts(model: torch.nn.Module) -> int:
    """The horizontal parts of a built model's embedding."""
    parts: int = model.parts_num  # type: ignore[assignment]  # set by every GaitModel
    return int(parts)


def _check_paths(src: Path, dst: Path, overwrite: bool) -> None:
    if not src.exists():
        raise ConvertError(f"{src}: no such file")
    if src.is_dir():
        raise ConvertError(f"{src}: is a folder; give the checkpoint file")
    if dst.is_dir():
        example = dst / (src.stem + ".safetensors")
        raise ConvertError(f"{dst}: is a folder; give the output file name, e.g. {example}")
    if dst.exists() and not overwrite:
        raise ConvertError(f"{dst} already exists; pass {option('overwrite')} to replace it")
    if dst.exists() and dst.resolve() == src.resolve():
        raise ConvertError(f"{dst}: the output would replace the source; choose another name")


def _config_from_file(
    config_path: str | Path, state: Mapping[str, torch.Tensor], note: Warn
) -> GaitConfig:
    """The ``--config`` file, with ``model`` / ``variant`` corrected to what the weights are (the
    MetaGait authors' config says ``model: GaitGL``)."""
    found_model, found_variant = weights_model(state)
    cfg = load_config(config_path, warn=note).to_dict()
    mcfg = cfg["model_cfg"]
    assert isinstance(mcfg, dict)
    if mcfg["model"] in ("GaitGL", "MetaGait") and mcfg["model"] != found_model:  # the authors' quirk
        keys = {"MetaGait": "eca./se. keys", "GaitGL": "no attention keys"}[found_model]
        note(
            f"{config_path}: model_cfg.model is {mcfg['model']} but the weights are {found_model} "
            f"({keys}); converting as {found_model}"
        )
        mcfg["model"] = found_model
    if found_model == "MetaGait" and mcfg.get("variant", "reference") != found_variant:
        note(
            f"{config_path}: model_cfg.variant is {mcfg.get('variant')} but the weights are the "
            f"{found_variant} variant; converting as {found_variant}"
        )
        mcfg["variant"] = found_variant
    return config_from_stored(cfg, str(config_path))


def _pick_config(
    source: SourceWeights, src: Path, config_path: str | Path | None, note: Warn
) -> tuple[GaitConfig, str]:
    """``(config, where it came from)``: ``--config``, else the embedded one, else inferred."""
    if config_path is not None:
        return _config_from_file(config_path, source.state, note), str(config_path)
    if source.config is not None:
        where = f"embedded in {src.name}"
        return config_from_stored(source.config, f"{src} ({where})"), where
    model_cfg, dataset_name = infer_model_cfg(source.state, src)
    note(
        f"no {option('config_path')} given: inferred {model_cfg['model']} channels {model_cfg['channels']} "
        f"class_num {model_cfg['class_num']} from the weights; every other setting is the packaged default"
    )
    cfg = resolve_config({"model_cfg": model_cfg, "data_cfg": {"dataset_name": dataset_name}}, str(src))
    return cfg, "inferred from the weights"


def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    config_path: str | Path | None = None,
    overwrite: bool = False,
    warn: Warn | None = None,
) -> ConvertSummary:
    """Convert ``src`` (OpenGait / MetaGait ``.pt``, bare safetensors weights, or a gaitcli
    checkpoint) to a gaitcli checkpoint at ``dst``.

    The config comes from ``config_path`` (the authors' YAML works; weights with ``eca.`` / ``se.``
    keys switch ``model: GaitGL`` to MetaGait with a warning), else from the config a gaitcli
    checkpoint embeds, else it is inferred from the weights. A gaitcli source keeps its iteration
    and label set.
    """
    src, dst = Path(src), Path(dst)
    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        if warn is not None:
            warn(msg)

    _check_paths(src, dst, overwrite)
    source = read_source(src)
    cfg, config_source = _pick_config(source, src, config_path, note)
    model = build_model(cfg, source=config_source)
    load_state_dict_checked(model, source.state, source=f"{src} (converting with config: {config_source})")
    iteration = source.iteration
    if iteration is None:
        note(f"{src}: no iteration recorded; storing 0")
        iteration = 0
    save_checkpoint(dst, model, stored_config(cfg), iteration=iteration, labels=source.labels,
                    converted_from=src.name, config_source=config_source)
    return _summary(src, dst, cfg, model, source, int(iteration), config_source, notes)


def _summary(src: Path, dst: Path, cfg: GaitConfig, model: torch.nn.Module, source: SourceWeights,
             iteration: int, config_source: str, notes: list[str]) -> ConvertSummary:
    channels = cfg.model.values.get("channels")
    if not isinstance(channels, list):  # GaitBase / DeepGaitV2 keep widths in their backbone
        channels = getattr(model, "channels", None)
    return ConvertSummary(
        src=str(src), dst=str(dst), model=cfg.model.name, variant=getattr(model, "variant", None),
        dataset_name=cfg.data.dataset_name,
        channels=[int(c) for c in channels] if isinstance(channels, (list, tuple)) else [],
        class_num=cfg.model.settings.class_num, parts=model_parts(model), iteration=iteration,
        tensors=len(source.state), parameters=sum(p.numel() for p in model.parameters()),
        config_source=config_source, warnings=notes,
    )
