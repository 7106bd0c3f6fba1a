"""``gait export CKPT model.onnx``: the embedding network as ONNX (docs/deploy.md).

* Input ``frames`` ``[1, T, H', W']`` float32 (T dynamic, at least 3): one walk's frames pretreated
  as ``gait prepare`` does (``H x W``, the checkpoint's frame size), then the checkpoint's
  evaluation transform (a ``Resize`` and / or the width cut) gives ``H' x W'``, scaled by 1/255.
  Output ``embedding`` ``[parts, channels]``, compared with the metric recorded in the metadata.
  All of this is written into the ONNX metadata.
* The graph is the single-sequence path: every frame valid. The TorchScript exporter is used
  (``dynamo=False``); the masks of the temporal layers are built from the input's shape inside the
  graph, so nothing depends on the length the export was traced with.
* Unless ``check=False``, onnxruntime's output is compared with PyTorch's for walks of 10, 30 and
  100 frames; a difference above 1e-4 fails (exit 1).
"""

from __future__ import annotations

import io
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from gaitcli import __version__
from gaitcli.errors import GaitError, option
from gaitcli.fileio import JSONValue, atomic_write_bytes
from gaitcli.models.base import GaitModel

from .embed import LoadedModel, load_for_inference

CHECK_LENGTHS = (10, 30, 100)
TOLERANCE = 1e-4
_EXTRA = "pip install 'gaitcli[export]' (onnx, onnxruntime, onnxscript)"


class EmbeddingNetwork(nn.Module):
    """``frames [1, T, H, W'] -> embedding [parts, channels]`` for GaitGL-family models, whose
    temporal layers see the frames and, after the stride-3 temporal aggregation, ``T // 3``."""

    def __init__(self, model: GaitModel) -> None:
        super().__init__()
        self.model = model
        probe = model.temporal_masks(torch.tensor([4]), 6, torch.device("cpu"))
        if not isinstance(probe, tuple) or len(probe) != 2:
            raise GaitError(f"gait export supports GaitGL and MetaGait models, not {type(model).__name__}")

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        every = torch.ones_like(frames[:, :, 0, 0]) > 0  # [1, T], all valid
        third = nn.functional.max_pool1d(every.float()[:, None], 3, 3)[:, 0] > 0  # [1, T // 3]
        out: torch.Tensor = self.model._core(frames.unsqueeze(1), (every, third))["embeddings"][0]
        return out


@dataclass
class ExportResult:
    """What ``gait export`` wrote and how well it matches PyTorch."""

    out: str
    """The ONNX file."""
    metadata: dict[str, str]
    """The metadata written into it (preprocessing, provenance)."""
    differences: dict[int, float] = field(default_factory=dict)
    """Max absolute difference onnxruntime vs PyTorch per walk length (empty with --no-check)."""
    seconds: float = 0.0
    """Wall time."""

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "out": self.out,
            "metadata": dict(self.metadata),
            "max_abs_difference": {str(k): v for k, v in self.differences.items()},
            "tolerance": TOLERANCE,
            "seconds": round(self.seconds, 3),
        }


def _require_onnx() -> tuple[ModuleType, ModuleType]:
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise GaitError(f"gait export needs the 'export' extra ({exc.name} is missing): {_EXTRA}") from None
    return onnx, onnxruntime


def _describe(items: list[dict[str, object]]) -> str:
    """``Resize size [32, 32], BaseSilCuttingTransform cutting 5``: a transform chain in words."""
    words = []
    for item in items:
        args = " ".join(f"{k} {v}" for k, v in item.items() if k != "type")
        words.append(f"{item['type']} {args}".strip())
    return ", ".join(words)


def _metadata(
    loaded: LoadedModel, input_hw: tuple[int, int], cut: int, chain: list[dict[str, object]]
) -> dict[str, str]:
    prov = loaded.provenance
    model = loaded.model
    resized = any(item.get("type") == "Resize" for item in chain)
    steps = (f"then {_describe(chain)} ({input_hw[0]}x{input_hw[1]})" if resized
             else f"{cut} columns cut from each side ({input_hw[0]}x{input_hw[1]})")
    return {
        "gaitcli_version": __version__,
        "checkpoint": str(prov.checkpoint),
        "checkpoint_sha256": str(prov.checkpoint_sha256),
        "model": str(prov.model),
        "metric": str(prov.metric),
        "frame_size": str(prov.frame_size),
        "input_size": f"{input_hw[0]}x{input_hw[1]}",
        "cut_width": str(cut),
        "transform": json.dumps(chain),
        "scale": "1/255",
        "min_frames": "3",
        "preprocessing": (
            f"silhouettes pretreated as gait prepare does, to {prov.frame_size} frames, {steps}, "
            "uint8 / 255 as float32, shape [1, T, H, W] with T >= 3 (repeat shorter walks)"
        ),
        "output": (
            f"embedding [parts={getattr(model, 'parts_num', '?')}, channels]; "
            f"compare with metric {prov.metric}"
        ),
    }


def _trace(net: EmbeddingNetwork, input_hw: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    example = torch.rand(1, 30, *input_hw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (example,),
            buf,  # type: ignore[arg-type]  # a file-like object is accepted
            input_names=["frames"],
            output_names=["embedding"],
            dynamic_axes={"frames": {1: "T"}},
            dynamo=False,
            opset_version=17,
        )
    return buf.getvalue()


def check_parity(
    model_bytes: bytes,
    net: EmbeddingNetwork,
    input_hw: tuple[int, int],
    lengths: tuple[int, ...] = CHECK_LENGTHS,
) -> dict[int, float]:
    """Max absolute difference onnxruntime vs PyTorch's forward per walk length."""
    _, ort = _require_onnx()
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    out: dict[int, float] = {}
    for length in lengths:
        frames = (rng.random((1, length, *input_hw)) > 0.5).astype(np.float32)
        with torch.no_grad():
            ref = net.model(torch.from_numpy(frames))["embeddings"][0].numpy()
        got = session.run(None, {"frames": frames})[0]
        out[length] = float(np.abs(got - ref).max())
    return out


def export_onnx(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    img_size: str | None = None,
    check: bool = True,
    overwrite: bool = False,
) -> ExportResult:
    """Export ``checkpoint``'s embedding network to ``out`` (atomic), then check it."""
    from gaitcli.data.transforms import build_transform, flat_transforms

    started = time.perf_counter()
    onnx, _ = _require_onnx()
    target = Path(out)
    if target.suffix.lower() != ".onnx":
        raise GaitError(f"{target}: name the output *.onnx")
    if target.exists() and not overwrite:
        raise GaitError(f"{target} exists; pass {option('overwrite')} to replace it")
    loaded = load_for_inference(checkpoint, img_size=img_size, device="cpu")
    ev = loaded.evaluator
    height, width = loaded.frame_size
    chain = [dict(item) for item in flat_transforms(ev.get("transform"))]
    transform = build_transform(ev.get("transform"), training=False)  # built once: size and cut
    cut = transform.total_cut(width)
    input_hw = transform.out_size(height, width)
    net = EmbeddingNetwork(loaded.model.float().eval()).eval()
    proto = onnx.load_model_from_string(_trace(net, input_hw))
    meta = _metadata(loaded, input_hw, cut, chain)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    data = proto.SerializeToString()
    result = ExportResult(str(target), meta)
    if check:
        result.differences = check_parity(data, net, input_hw)
        worst = max(result.differences.values())
        if not worst <= TOLERANCE:
            raise GaitError(
                f"ONNX output differs from PyTorch by {worst:.3g} (> {TOLERANCE:g}); not written", exit_code=1
            )
    atomic_write_bytes(target, data)
    result.seconds = time.perf_counter() - started
    return result
