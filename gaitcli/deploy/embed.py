"""``gait embed CKPT INPUT... --out FEATURES.npz``: walks → the feature file of ``gait eval``.

The walks (:mod:`gaitcli.deploy.inputs`) go through the extraction of evaluation,
:func:`gaitcli.evaluation.extract.extract_features`, with the checkpoint's ``evaluator_cfg``
sampler and width cut, so a prepared tree gives the embeddings ``gait eval --save-features`` saves.
The file records the provenance (checkpoint path and SHA-256, model, metric, frame size) and each
walk's frames digest (:mod:`gaitcli.evaluation.features`).

* The frame size is the checkpoint's: a different ``--img-size`` is refused; a checkpoint that
  does not record it needs ``--img-size``, which is tried on the network before anything is read
  (a size it cannot embed is one line naming the smallest it can).
* ``--append G.npz`` adds walks to a gallery without re-embedding those already in it. The
  gallery is written under a lock (:func:`gaitcli.runtime.lock.exclusive_lock`): the new
  embeddings are merged into the gallery as it is on disk *at that moment*, so two concurrent
  appends both land.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from gaitcli.errors import GaitError, option
from gaitcli.evaluation.calibration import Provenance, file_sha256
from gaitcli.evaluation.extract import extract_features
from gaitcli.evaluation.features import FeatureSet, concat_features, require_finite
from gaitcli.evaluation.precision import Precision, resolve_precision
from gaitcli.fileio import JSONValue
from gaitcli.models.base import GaitModel
from gaitcli.runtime.lock import NETWORK_FILESYSTEMS, LockError, exclusive_lock, filesystem_type

from .compat import Source, check_compatible, feature_file
from .inputs import Problem, VideoOptions, WalkSet, parse_frame_size, resolve_inputs

LOCK_WAIT = 120.0
"""Seconds ``--append`` waits for another process writing the same gallery."""
_SCAN_UP_TO = 128  # frame sizes tried to name the smallest one a network embeds


@dataclass
class LoadedModel:
    """A checkpoint ready to embed walks."""

    model: GaitModel
    """The network (eval mode)."""
    config: dict[str, object]
    """Its stored config."""
    provenance: Provenance
    """Checkpoint, model, metric and frame size."""
    frame_size: tuple[int, int]
    """Height and width of the frames before the width cut."""
    precision: Precision = Precision(False, "asked for")
    """fp32 or bf16 autocast (the ``precision`` option, docs/eval.md "Precision")."""

    @property
    def evaluator(self) -> dict[str, object]:
        """The stored ``evaluator_cfg`` (sampler, transform, metric, enable_float16)."""
        return section(self.config, "evaluator_cfg")

    @property
    def data_in_use(self) -> list[bool] | None:
        value = section(self.config, "data_cfg").get("data_in_use")
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"data_cfg.data_in_use must be a list, got {type(value).__name__}")
        return [bool(v) for v in value]


def section(cfg: Mapping[str, object], name: str) -> dict[str, object]:
    """A copy of the mapping ``cfg[name]`` (empty when it is absent or null)."""
    value = cfg.get(name) or {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping, got {type(value).__name__}")
    return {str(k): v for k, v in value.items()}


def model_label(model: GaitModel) -> str:
    variant = str(getattr(model, "variant", "") or "")
    name = str(getattr(model, "name", type(model).__name__))
    return f"{name} ({variant})" if variant else name


def frame_size_of(
    checkpoint: str | os.PathLike[str], meta: Mapping[str, object], override: str | None
) -> tuple[tuple[int, int], bool]:
    """The checkpoint's ``frame_size`` (``--img-size`` may only repeat it), or ``--img-size`` when
    the checkpoint does not record one; neither is a one-line error. Also whether the size came
    from ``--img-size`` (then it still has to be tried on the network)."""
    stored = meta.get("frame_size")
    if stored:
        size = parse_frame_size(str(stored), f"{checkpoint} (frame_size)")
        if override is not None and parse_frame_size(override, option("img_size")) != size:
            raise GaitError(
                f"{option('img_size', override)}: {checkpoint} was trained on {size[0]}x{size[1]} frames and "
                f"embeds only those; drop {option('img_size')} (and prepare walks with gait prepare "
                f"{option('img_size', size[0])})"
            )
        return size, False
    if override is None:
        raise GaitError(
            f"{checkpoint}: the checkpoint does not record its frame size; pass {option('img_size', 'N')} "
            f"(the {option('img_size')} gait prepare used, e.g. 64)"
        )
    return parse_frame_size(override, option("img_size")), True


def _cannot_embed(model: GaitModel, evaluator: Mapping[str, object], size: tuple[int, int],
                  device: torch.device) -> str | None:
    """Why the network cannot embed a walk of ``size`` frames (None: it can), tried on 3 blank
    frames through the evaluation transform."""
    from gaitcli.data.transforms import build_transform

    frames = np.zeros((3, *size), dtype=np.uint8)
    try:
        cut = build_transform(evaluator.get("transform"), training=False)(frames, np.random.default_rng(0))
        with torch.inference_mode():
            model.embed([cut], batch_size=1, device=device)
    except (ValueError, RuntimeError, IndexError) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def check_frame_size(loaded: LoadedModel, checkpoint: str | os.PathLike[str], text: str,
                     device: torch.device) -> None:
    """``--img-size`` for a checkpoint that does not record its frame size: refused in one line
    when the network cannot embed frames of that size, naming the smallest square size it can."""
    size = loaded.frame_size
    reason = _cannot_embed(loaded.model, loaded.evaluator, size, device)
    if reason is None:
        return
    smallest = next(
        (s for s in range(2, _SCAN_UP_TO + 1) if _cannot_embed(loaded.model, loaded.evaluator, (s, s), device)
         is None),
        None,
    )
    if smallest is None:
        hint = f"no square frame size up to {_SCAN_UP_TO}x{_SCAN_UP_TO} works"
    elif smallest > min(size):
        hint = f"too small: the smallest frame size it embeds is {smallest}x{smallest}"
    else:
        hint = f"the smallest frame size it embeds is {smallest}x{smallest}; give the size it was trained on"
    raise GaitError(
        f"{option('img_size', text)}: {checkpoint} cannot embed {size[0]}x{size[1]} frames ({reason}); {hint}"
    )


def load_for_inference(
    checkpoint: str | os.PathLike[str],
    *,
    img_size: str | None = None,
    device: str | None = None,
    metric: str | None = None,
    precision: str = "fp32",
) -> LoadedModel:
    """Load ``checkpoint`` for embedding; ``metric`` defaults to its ``evaluator_cfg.metric``;
    ``precision`` is fp32, bf16 or auto (resolved here, for the device)."""
    from gaitcli.evaluation.metrics import check_metric
    from gaitcli.models import load_checkpoint
    from gaitcli.runtime.distributed import resolve_devices

    device_type, _ = resolve_devices(device, None, None)
    chosen_precision = resolve_precision(precision, device_type)
    model = load_checkpoint(checkpoint, map_location=device_type)
    size, from_flag = frame_size_of(checkpoint, model.checkpoint_meta, img_size)
    cfg: dict[str, object] = dict(model.config or {})
    chosen = check_metric(metric or str(section(cfg, "evaluator_cfg").get("metric") or "euc"))
    prov = Provenance(
        str(checkpoint), file_sha256(checkpoint), model_label(model), chosen, f"{size[0]}x{size[1]}"
    )
    loaded = LoadedModel(model, cfg, prov, size, chosen_precision)
    if from_flag:
        assert img_size is not None
        check_frame_size(loaded, checkpoint, img_size, torch.device(device_type))
    return loaded


def embed_walks(
    loaded: LoadedModel, walks: WalkSet, *, batch_size: int | None = None, console: Console | None = None
) -> FeatureSet:
    """Embeddings of ``walks`` with the extraction of ``gait eval``; the provenance in ``meta``,
    each walk's frames digest in ``digests``. Non-finite embeddings are one line."""
    ev = loaded.evaluator
    sampler = section(ev, "sampler")
    raw_bs = batch_size or sampler.get("batch_size") or 8
    if not isinstance(raw_bs, (int, float, str)):
        raise TypeError(f"evaluator_cfg.sampler.batch_size must be a number, got {type(raw_bs).__name__}")
    bs = int(raw_bs)
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
        bf16=loaded.precision.bf16,
    )
    feats.meta = {**loaded.provenance.to_meta(), "iteration": loaded.model.checkpoint_meta.get("iteration"),
                  "precision": loaded.precision.name}
    feats.digests = np.array([walks.digest(i) for i in range(len(walks))], dtype="<U64")
    if walks.from_tree:
        from gaitcli.evaluation.api import dataset_name_of

        feats.meta["dataset_name"] = dataset_name_of(loaded.config)
    require_finite(
        feats,
        f"checkpoint {loaded.provenance.checkpoint}",
        "the checkpoint gives NaN or infinite embeddings (damaged, or its training diverged): "
        "use an earlier checkpoint",
    )
    return feats


@dataclass
class EmbedResult:
    """What ``gait embed`` did."""

    out: str
    """The feature file written."""
    embedded: int
    """Walks added in this run."""
    kept: int
    """Sequences the ``--append`` gallery held when it was written."""
    already_present: int
    """Input walks left out because the gallery already holds them (same name and frames)."""
    skipped: list[Problem] = field(default_factory=list)
    """Inputs listed and skipped (bad PNG, folder without usable frames, malformed pkl, repeats)."""
    provenance: Provenance | None = None
    """Checkpoint, model, metric and frame size of the embeddings."""
    seconds: float = 0.0
    """Wall time."""

    @property
    def total(self) -> int:
        return self.kept + self.embedded

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "out": self.out,
            "sequences": self.total,
            "embedded": self.embedded,
            "kept": self.kept,
            "already_present": self.already_present,
            "skipped": [dict(p.to_json()) for p in self.skipped],
            **(_recorded(self.provenance.to_json()) if self.provenance else {}),
            "seconds": round(self.seconds, 3),
        }


def _recorded(fields: dict[str, JSONValue]) -> dict[str, JSONValue]:
    """The fields that are not None (as :meth:`Provenance.to_meta`)."""
    return {k: v for k, v in fields.items() if v is not None}


def _check_target(out: Path, append: Path | None, overwrite: bool) -> None:
    if out.exists() and out.is_dir():
        raise GaitError(f"{option('out', out)} is a folder; give a file name such as {out / 'features.npz'}")
    same = append is not None and out.resolve() == append.resolve()
    if out.exists() and not same and not overwrite:
        raise GaitError(
            f"{option('out', out)} exists; pass {option('overwrite')} to replace it, or "
            f"{option('append', out)} to add to it"
        )


def _held_names(gallery: FeatureSet) -> dict[tuple[str, str, str], set[str]]:
    """Per (label, type, view) in ``gallery``, the digests of its walks (``""``: unknown)."""
    held: dict[tuple[str, str, str], set[str]] = {}
    for key, digest in zip(gallery.keys(), gallery.digest_list, strict=True):
        held.setdefault(key, set()).add(digest)
    return held


def _is_held(held: dict[tuple[str, str, str], set[str]], key: tuple[str, str, str], digest: str) -> bool:
    """Same name and same frames; a gallery row without a digest (an older file) matches on its
    name alone."""
    digests = held.get(key)
    return digests is not None and ("" in digests or digest in digests)


def new_walks(walks: WalkSet, gallery: FeatureSet) -> WalkSet:
    """The walks ``gallery`` does not hold. Frames are read (for their digest) only for walks
    whose name the gallery already has."""
    held = _held_names(gallery)
    rows = [i for i, w in enumerate(walks.sequences) if w.key not in held or not _is_held(held, w.key,
                                                                                             walks.digest(i))]
    return walks.subset(rows)


def _not_held(feats: FeatureSet, gallery: FeatureSet) -> FeatureSet:
    held = _held_names(gallery)
    pairs = enumerate(zip(feats.keys(), feats.digest_list, strict=True))
    rows = [i for i, (key, digest) in pairs if not _is_held(held, key, digest)]
    return feats.subset(np.array(rows, dtype=np.int64))


def _is_network(folder: Path) -> bool:
    fstype = filesystem_type(folder)
    return fstype is not None and (fstype in NETWORK_FILESYSTEMS or fstype.startswith("fuse."))


@contextmanager
def gallery_lock(target: Path, wait: float = LOCK_WAIT) -> Iterator[None]:
    """Hold the lock of feature file ``target`` (``.NAME.lock`` beside it), waiting up to ``wait``
    seconds for another writer of it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.parent / f".{target.name}.lock"
    deadline = time.monotonic() + wait
    with ExitStack() as stack:
        while True:
            try:
                stack.enter_context(exclusive_lock(lock, what=f"gait embed writing {target.name}"))
                break
            except LockError:
                if _is_network(target.parent) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
        yield


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
    lock_wait: float = LOCK_WAIT,
    video: VideoOptions | None = None,
    precision: str = "fp32",
) -> EmbedResult:
    """``gait embed``: resolve the inputs, embed the new ones, write (or extend) the feature file."""
    started = time.perf_counter()
    append_path = Path(append) if append is not None else None
    if out is None and append_path is None:
        raise GaitError(
            f"give {option('out', 'FEATURES.npz')} (or {option('append', 'GALLERY.npz')} to extend a gallery)"
        )
    target = Path(out) if out is not None else append_path
    assert target is not None
    _check_target(target, append_path, overwrite)
    in_place = append_path is not None and target.resolve() == append_path.resolve()
    base = _gallery(append_path) if append_path is not None else None
    loaded = load_for_inference(
        checkpoint,
        img_size=img_size,
        device=device,
        metric=(base.meta.get("metric") if base is not None else None),
        precision=precision,
    )
    me = Source(loaded.provenance, f"checkpoint {checkpoint}")
    if base is not None:
        check_compatible(feature_file(base.provenance, f"gallery {append_path}"), me)
    walks = resolve_inputs(inputs, loaded.frame_size, partition=partition, split=split,
                           data_in_use=loaded.data_in_use, video=video, console=console)
    todo = new_walks(walks, base) if base is not None else walks
    if len(todo) == 0 and base is None:
        raise GaitError("nothing to embed")
    feats: FeatureSet | None = None
    if len(todo):
        with torch.inference_mode():
            feats = embed_walks(loaded, todo, batch_size=batch_size, console=console)
    with gallery_lock(target, lock_wait):
        if in_place and append_path is not None:  # merge into the gallery as it is now
            current = _gallery(append_path)
            check_compatible(feature_file(current.provenance, f"gallery {append_path}"), me)
            fresh = _not_held(feats, current) if feats is not None else None
            merged = concat_features(current, fresh) if fresh is not None and len(fresh) else None
            kept, added = len(current), len(fresh) if fresh is not None else 0
        else:
            if base is not None and feats is not None:
                merged = concat_features(base, feats)
            else:
                merged = feats if feats is not None else base
            kept, added = (len(base) if base is not None else 0), (len(feats) if feats is not None else 0)
        if merged is not None:
            merged.save(target)
    result = EmbedResult(str(target), added, kept, len(walks) - added, walks.skipped, loaded.provenance)
    result.seconds = time.perf_counter() - started
    return result


def _gallery(path: Path) -> FeatureSet:
    gallery = FeatureSet.load(path)
    return require_finite(gallery, f"gallery {path}", "re-create it with gait embed (or leave that walk out)")
