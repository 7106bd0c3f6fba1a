"""``gait embed CKPT INPUT... --out FEATURES.npz``: walks → the feature file of ``gait eval``.

The walks (:mod:`gaitcli.deploy.inputs`) go through the extraction of evaluation,
:func:`gaitcli.evaluation.extract.extract_features`, with the checkpoint's ``evaluator_cfg``
sampler and width cut, so a prepared tree gives the embeddings ``gait eval --save-features`` saves.
The file also records the checkpoint (path and SHA-256), model, metric and frame size.
``--append G.npz`` adds walks to a gallery without re-embedding those already in it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from gaitcli.errors import GaitError
from gaitcli.evaluation.calibration import Provenance, file_sha256
from gaitcli.evaluation.extract import FeatureSet, extract_features

from .compat import check_compatible
from .inputs import Problem, WalkSet, parse_frame_size, resolve_inputs


@dataclass
class LoadedModel:
    """A checkpoint ready to embed walks."""

    model: Any
    """The network (eval mode)."""
    config: dict[str, Any]
    """Its stored config."""
    provenance: Provenance
    """Checkpoint, model, metric and frame size."""
    frame_size: tuple[int, int]
    """Height and width of the frames before the width cut."""


def model_label(model: Any) -> str:
    variant = str(getattr(model, "variant", "") or "")
    name = str(getattr(model, "name", type(model).__name__))
    return f"{name} ({variant})" if variant else name


def frame_size_of(
    checkpoint: str | os.PathLike[str], meta: dict[str, Any], override: str | None
) -> tuple[int, int]:
    """``--img-size`` when given, else the checkpoint's ``frame_size``; neither is a one-line error."""
    if override is not None:
        return parse_frame_size(override, "--img-size")
    stored = meta.get("frame_size")
    if not stored:
        raise GaitError(
            f"{checkpoint}: the checkpoint does not record its frame size; pass --img-size N "
            "(the --img-size gait prepare used, e.g. 64)"
        )
    return parse_frame_size(str(stored), f"{checkpoint} (frame_size)")


def load_for_inference(
    checkpoint: str | os.PathLike[str],
    *,
    img_size: str | None = None,
    device: str | None = None,
    metric: str | None = None,
) -> LoadedModel:
    """Load ``checkpoint`` for embedding; ``metric`` defaults to its ``evaluator_cfg.metric``."""
    from gaitcli.evaluation.metrics import check_metric
    from gaitcli.models import load_checkpoint
    from gaitcli.runtime.distributed import resolve_devices

    device_type, _ = resolve_devices(device, None, None)
    model: Any = load_checkpoint(checkpoint, map_location=device_type)
    size = frame_size_of(checkpoint, model.checkpoint_meta, img_size)
    cfg: dict[str, Any] = dict(model.config or {})
    chosen = check_metric(metric or (cfg.get("evaluator_cfg") or {}).get("metric") or "euc")
    prov = Provenance(
        str(checkpoint), file_sha256(checkpoint), model_label(model), chosen, f"{size[0]}x{size[1]}"
    )
    return LoadedModel(model, cfg, prov, size)


def embed_walks(
    loaded: LoadedModel, walks: WalkSet, *, batch_size: int | None = None, console: Console | None = None
) -> FeatureSet:
    """Embeddings of ``walks`` with the extraction of ``gait eval``; the provenance in ``meta``."""
    ev = loaded.config.get("evaluator_cfg") or {}
    sampler = dict(ev.get("sampler") or {})
    bs = int(batch_size or sampler.get("batch_size") or 8)
    if len(walks) == 0:
        raise GaitError("nothing to embed")
    feats = extract_features(
        loaded.model,
        walks,
        batch_size=bs,
        sampler_cfg=sampler,
        transform=ev.get("transform"),
        enable_float16=bool(ev.get("enable_float16")),
        console=console,
        progress=console is not None,
    )
    feats.meta = {**loaded.provenance.to_meta(), "iteration": loaded.model.checkpoint_meta.get("iteration")}
    if walks.from_tree:
        from gaitcli.evaluation.api import dataset_name_of

        feats.meta["dataset_name"] = dataset_name_of(loaded.config)
    return feats


def concat_features(base: FeatureSet, extra: FeatureSet) -> FeatureSet:
    """``base`` followed by ``extra`` (same checkpoint); ``base``'s meta is kept."""
    if len(base) and len(extra) and base.embeddings.shape[1:] != extra.embeddings.shape[1:]:
        raise GaitError(
            f"embeddings of shape {list(extra.embeddings.shape[1:])} cannot join a gallery of "
            f"{list(base.embeddings.shape[1:])}"
        )
    parts = [f for f in (base, extra) if len(f)]
    if not parts:
        return base
    return FeatureSet(
        np.concatenate([f.embeddings for f in parts]),
        np.concatenate([f.labels for f in parts]),
        np.concatenate([f.types for f in parts]),
        np.concatenate([f.views for f in parts]),
        meta=dict(base.meta) if len(base) else dict(extra.meta),
    )


@dataclass
class EmbedResult:
    """What ``gait embed`` did."""

    out: str
    """The feature file written."""
    embedded: int
    """Walks embedded in this run."""
    kept: int
    """Walks already in the ``--append`` gallery (not re-embedded)."""
    already_present: int
    """Input walks skipped because the gallery already holds their id/type/view."""
    skipped: list[Problem] = field(default_factory=list)
    """Inputs listed and skipped (bad PNG, folder without usable frames, malformed pkl)."""
    provenance: Provenance | None = None
    """Checkpoint, model, metric and frame size of the embeddings."""
    seconds: float = 0.0
    """Wall time."""

    @property
    def total(self) -> int:
        return self.kept + self.embedded

    def to_json(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "sequences": self.total,
            "embedded": self.embedded,
            "kept": self.kept,
            "already_present": self.already_present,
            "skipped": [p.to_json() for p in self.skipped],
            **(self.provenance.to_meta() if self.provenance else {}),
            "seconds": round(self.seconds, 3),
        }


def _check_target(out: Path, append: Path | None, overwrite: bool) -> None:
    if out.exists() and out.is_dir():
        raise GaitError(f"--out {out} is a folder; give a file name such as {out / 'features.npz'}")
    same = append is not None and out.resolve() == append.resolve()
    if out.exists() and not same and not overwrite:
        raise GaitError(f"--out {out} exists; pass --overwrite to replace it, or --append {out} to add to it")


def run_embed(
    checkpoint: str | os.PathLike[str],
    inputs: list[str],
    out: str | os.PathLike[str] | None,
    *,
    append: str | os.PathLike[str] | None = None,
    partition: Path | None = None,
    split: str = "test",
    img_size: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    overwrite: bool = False,
    console: Console | None = None,
) -> EmbedResult:
    """``gait embed``: resolve the inputs, embed them, write (or extend) the feature file."""
    started = time.perf_counter()
    append_path = Path(append) if append is not None else None
    if out is None and append_path is None:
        raise GaitError("give --out FEATURES.npz (or --append GALLERY.npz to extend a gallery)")
    target = Path(out) if out is not None else append_path
    assert target is not None
    _check_target(target, append_path, overwrite)
    base = FeatureSet.load(append_path) if append_path is not None else None
    loaded = load_for_inference(
        checkpoint,
        img_size=img_size,
        device=device,
        metric=(base.meta.get("metric") if base is not None else None),
    )
    if base is not None:
        check_compatible(
            Provenance.from_meta(base.meta),
            f"gallery {append_path}",
            loaded.provenance,
            f"checkpoint {checkpoint}",
        )
    data_in_use = (loaded.config.get("data_cfg") or {}).get("data_in_use")
    walks = resolve_inputs(
        inputs, loaded.frame_size, partition=partition, split=split, data_in_use=data_in_use
    )
    present: set[tuple[str, str, str]] = set()
    if base is not None:
        present = set(zip(base.labels.tolist(), base.types.tolist(), base.views.tolist(), strict=True))
    todo = walks.without(present)
    result = EmbedResult(
        str(target),
        len(todo),
        len(base) if base is not None else 0,
        len(walks) - len(todo),
        walks.skipped,
        loaded.provenance,
    )
    if len(todo) == 0 and base is None:
        raise GaitError("nothing to embed")
    if len(todo):
        with torch.inference_mode():
            feats = embed_walks(loaded, todo, batch_size=batch_size, console=console)
        merged = concat_features(base, feats) if base is not None else feats
        if base is not None and not base.meta.get("checkpoint_sha256"):
            merged.meta.update(loaded.provenance.to_meta())
        merged.save(target)
    elif base is not None and append_path is not None and target.resolve() != append_path.resolve():
        base.save(target)  # nothing new: --out still gets the gallery
    result.seconds = time.perf_counter() - started
    return result
