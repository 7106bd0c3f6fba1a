"""Embeddings of a test split: every frame of every sequence through ``model.embed``.

* Frames follow ``evaluator_cfg.sampler`` (``all_ordered``: every frame in order, the first
  ``frames_all_limit``), cut to width by ``evaluator_cfg.transform`` (64×64 → 64×44).
* Sequences are read a window at a time (a background thread reads the next window while the
  model runs on this one) and handed to ``model.embed``, which sorts them by length and pads
  within batches of ``batch_size``. No batch size rule ties to the number of devices.
* Memory stays bounded: the result is one preallocated float32 array ``[N, parts, channels]``
  filled window by window; inputs are dropped as soon as they have been embedded.
* ``nproc > 1`` (``--gpus N`` / ``--device cpu --nproc N``) splits the sequences over processes
  started by :func:`gaitcli.runtime.launch.launch` (a contiguous share each); rank 0 gathers the
  shares in rank order, which is dataset order, and returns them through the launcher.
  Progress bars come from :func:`gaitcli.progress.make_progress`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from rich.console import Console

from gaitcli.config_types import GaitConfig
from gaitcli.data.collate import FrameSampling, frame_indices
from gaitcli.data.transforms import build_transform
from gaitcli.errors import ConfigError, GaitError, option
from gaitcli.runtime.distributed import DistInfo

from .features import FeatureSet

__all__ = ["FeatureSet", "FramePicker", "extract_distributed", "extract_features"]

_WINDOW_FRAMES = 8192  # frames converted to float at once (about 92 MB at 64x44)


class SequenceName(Protocol):
    """Who and what a sequence is (:class:`~gaitcli.data.dataset.SequenceInfo`, a deploy walk)."""

    @property
    def label(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def view(self) -> str: ...


class SequenceSource(Protocol):
    """What extraction reads: a :class:`~gaitcli.data.dataset.GaitDataset` or a deploy
    ``WalkSet`` (``load(i)`` gives sequence ``i``'s arrays, one per modality)."""

    @property
    def sequences(self) -> Sequence[SequenceName]: ...

    def __len__(self) -> int: ...

    def load(self, index: int) -> list[np.ndarray]: ...


@runtime_checkable
class EmbeddingModel(Protocol):
    """What extraction needs of a model: ``embed`` (a :class:`~gaitcli.models.base.GaitModel`),
    its parameters (where it lives) and ``to`` (move it)."""

    def embed(self, sequences: Sequence[np.ndarray], batch_size: int = 8, *,
              device: torch.device | str | None = None) -> torch.Tensor: ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...

    def to(self, device: torch.device) -> object: ...


# ----------------------------------------------------------------------------------------------
# the feature set and its .npz file: gaitcli.evaluation.features (format, versions, provenance)
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# frames of one sequence
# ----------------------------------------------------------------------------------------------


class FramePicker:
    """The inference frames of one sequence (uint8 ``[s, h, w']``), per ``evaluator_cfg``."""

    def __init__(self, sampling: FrameSampling | Mapping[str, object] | None = None,
                 transform: object = None, seed: int = 0) -> None:
        if not isinstance(sampling, FrameSampling):
            sampling = FrameSampling.from_mapping(sampling or {})
        self.sample_type = sampling.sample_type
        kind = self.sample_type.split("_")[0]
        if kind not in ("all", "fixed", "unfixed") or "_" not in self.sample_type:
            raise ConfigError(f"evaluator_cfg.sampler.sample_type {self.sample_type!r} is not all_*, fixed_* "
                              "or unfixed_*")
        if kind == "unfixed":  # inference has no min/max: use the fixed count
            self.sample_type = "fixed_" + self.sample_type.split("_", 1)[1]
        self.limit = sampling.frames_all_limit or None
        self.frames = sampling.frames_num_fixed
        self.skip = sampling.frames_skip_num
        self.transform = transform
        self.compose = build_transform(transform, training=False)  # fails early on a bad transform
        self.seed = seed

    def __call__(self, array: np.ndarray, index: int) -> np.ndarray:
        if array.ndim != 3 or len(array) == 0:
            raise GaitError(f"sequence {index}: expected frames [T, H, W] with T >= 1, "
                            f"got shape {list(array.shape)}")
        if self.sample_type == "all_ordered":
            frames = array if self.limit is None else array[: self.limit]
        else:
            rng = np.random.default_rng([self.seed, index])
            frames = array[frame_indices(len(array), self.sample_type, rng, frames=self.frames,
                                         skip=self.skip, limit=self.limit)]
        return self.compose(frames, np.random.default_rng(0))  # deterministic transforms only


# ----------------------------------------------------------------------------------------------
# extraction
# ----------------------------------------------------------------------------------------------


def _windows(lengths: Sequence[int], max_seqs: int, max_frames: int) -> list[tuple[int, int]]:
    out, start, frames = [], 0, 0
    for i, n in enumerate(lengths):
        if i > start and (i - start >= max_seqs or frames + n > max_frames):
            out.append((start, i))
            start, frames = i, 0
        frames += n
    if start < len(lengths):
        out.append((start, len(lengths)))
    return out


def _unwrap(model: torch.nn.Module) -> EmbeddingModel:
    """The model itself, or the one a wrapper (DistributedDataParallel) holds as ``module``."""
    inner: object = model
    while not isinstance(inner, EmbeddingModel) and hasattr(inner, "module"):
        inner = inner.module
    if not isinstance(inner, EmbeddingModel):
        raise TypeError("the model has no embed() method")
    return inner


def _model_device(model: EmbeddingModel) -> torch.device:
    try:
        device: torch.device = next(model.parameters()).device
        return device
    except StopIteration:
        return torch.device("cpu")


def extract_features(
    model: torch.nn.Module,
    dataset: SequenceSource,
    *,
    batch_size: int = 8,
    sampler_cfg: FrameSampling | Mapping[str, object] | None = None,
    transform: object = None,
    device: torch.device | str | None = None,
    enable_float16: bool = False,
    indices: Sequence[int] | None = None,
    console: Console | None = None,
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    bf16: bool = False,
) -> FeatureSet:
    """Embed the sequences of ``dataset`` (a :class:`~gaitcli.data.dataset.GaitDataset`), or the
    ``indices`` of it, in order. Shows a rich progress bar with sequences/s on ``console``.
    ``bf16`` runs the model under bfloat16 autocast on the model's device (float32 embeddings;
    docs/eval.md, "Speed and memory", says how far the table moves)."""
    net = _unwrap(model)
    dev = torch.device(device) if device is not None else _model_device(net)
    if _model_device(net) != dev:
        net.to(dev)
    if batch_size < 1:
        raise GaitError(f"{option('batch_size', batch_size)}: must be at least 1")
    picker = FramePicker(sampler_cfg, transform)
    order = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    infos = [dataset.sequences[i] for i in order]
    n = len(order)
    # windows by sequence count only: lengths are unknown until read; the frame budget is checked
    # on the frames actually read
    max_seqs = max(batch_size * 4, 32)
    windows = _windows([1] * n, max_seqs, max_seqs)
    out: np.ndarray | None = None
    amp: torch.dtype | None = torch.bfloat16 if bf16 else None
    if enable_float16 and dev.type == "cuda" and not bf16:
        amp = torch.float16

    def read(window: tuple[int, int]) -> list[np.ndarray]:
        return [picker(dataset.load(order[i])[0], order[i]) for i in range(*window)]

    bar = _ProgressBar(console, n) if (progress and console is not None and n) else None
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gait-eval-read") as pool:
            pending = pool.submit(read, windows[0]) if windows else None
            for w, (s, e) in enumerate(windows):
                assert pending is not None
                seqs = pending.result()
                pending = pool.submit(read, windows[w + 1]) if w + 1 < len(windows) else None
                emb = _embed_window(net, seqs, batch_size, dev, amp)
                del seqs
                if out is None:
                    out = np.empty((n, *emb.shape[1:]), dtype=np.float32)
                out[s:e] = emb
                if bar is not None:
                    bar.advance(e - s)
                if on_progress is not None:
                    on_progress(e, n)
    finally:
        if bar is not None:
            bar.stop()
    return _feature_set(out, infos, time.perf_counter() - started)


def _embed_window(net: EmbeddingModel, seqs: list[np.ndarray], batch_size: int, dev: torch.device,
                  amp: torch.dtype | None) -> np.ndarray:
    """Embeddings of one window of sequences, in frame-bounded parts (a window of many long
    sequences never becomes one huge float array)."""
    parts = []
    for start, end in _windows([len(f) for f in seqs], len(seqs), _WINDOW_FRAMES):
        with torch.autocast(dev.type, dtype=amp) if amp is not None else contextlib.nullcontext():
            emb = net.embed(seqs[start:end], batch_size=batch_size, device=dev)
        parts.append(emb.float().cpu().numpy())
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _feature_set(out: np.ndarray | None, infos: Sequence[SequenceName], seconds: float) -> FeatureSet:
    n = len(infos)
    return FeatureSet(
        out if out is not None else np.empty((0, 0, 0), dtype=np.float32),
        np.array([i.label for i in infos], dtype=str),
        np.array([i.type for i in infos], dtype=str),
        np.array([i.view for i in infos], dtype=str),
        meta={"extract_seconds": seconds, "sequences_per_second": (n / seconds) if seconds > 0 else None},
    )


class _ProgressBar:
    """Extraction progress: sequences done, sequences/s and the ETA (gaitcli.progress)."""

    def __init__(self, console: Console, total: int) -> None:
        from gaitcli.progress import make_progress

        self.progress = make_progress("extracting", console)
        self.task = self.progress.add_task("extract", total=total)
        self.progress.start()

    def advance(self, count: int) -> None:
        self.progress.update(self.task, advance=count)

    def stop(self) -> None:
        self.progress.stop()


# ----------------------------------------------------------------------------------------------
# several processes
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractJob:
    """What every extraction rank needs: plain, picklable values (each rank builds its own
    dataset, model and console from them)."""

    checkpoint: str
    """The checkpoint each rank loads its model from."""
    cfg: GaitConfig
    """The resolved config (``evaluator_cfg`` sampler / transform, ``data_cfg.data_in_use``)."""
    root: str
    """The data set root."""
    partition: str
    """The partition file naming the test split."""
    batch_size: int
    """Sequences per ``model.embed`` batch."""
    show_progress: bool
    """Whether rank 0 draws the progress bar."""
    threads: int
    """CPU threads per rank (CPU runs only)."""
    bf16: bool = False
    """bf16 autocast (the ``precision`` option, docs/eval.md)."""


def _rank_device(info: DistInfo, threads: int) -> torch.device:
    if info.device == "cpu":
        torch.set_num_threads(max(1, threads))
        return torch.device("cpu")
    return torch.device("cuda", info.local_rank)


def _extract_rank(info: DistInfo, job: ExtractJob) -> np.ndarray | None:
    """One rank's share (a contiguous slice, :class:`~gaitcli.data.samplers.InferenceSampler`),
    gathered on rank 0 in rank order: rank 0 returns every sequence's embedding, in dataset order,
    the others ``None``. Runs under :func:`gaitcli.runtime.launch.launch`."""
    from gaitcli.data.dataset import GaitDataset
    from gaitcli.data.samplers import InferenceSampler
    from gaitcli.models import load_checkpoint
    from gaitcli.runtime.distributed import gather_to_main

    device = _rank_device(info, job.threads)
    ev = job.cfg.evaluator
    use = job.cfg.data.data_in_use
    dataset = GaitDataset(job.root, job.partition, "test", data_in_use=None if use is None else list(use))
    model = load_checkpoint(job.checkpoint, map_location=device)
    mine = InferenceSampler(len(dataset), job.batch_size, rank=info.rank, world_size=info.world_size).indices
    console = Console(stderr=True) if job.show_progress and info.is_main else None
    feats = extract_features(model, dataset, batch_size=job.batch_size,
                             sampler_cfg=ev.sampler.frame_sampling(), transform=list(ev.transform),
                             device=device, enable_float16=ev.enable_float16, indices=mine.tolist(),
                             console=console, progress=console is not None, bf16=job.bf16)
    parts = gather_to_main(feats.embeddings if len(mine) else None)
    if parts is None:
        return None
    shares = [p for p in parts if p is not None]  # a rank with no sequences sends None
    return np.concatenate(shares) if shares else None


def extract_distributed(
    checkpoint: str | os.PathLike[str],
    cfg: GaitConfig,
    dataset: SequenceSource,
    *,
    root: str,
    partition: str,
    device: str,
    nproc: int,
    batch_size: int = 8,
    progress: bool = True,
    bf16: bool = False,
) -> FeatureSet:
    """Extract with ``nproc`` processes (CUDA: one per GPU; CPU: gloo), each taking a contiguous
    share of the sequences; rank 0 gathers the shares back in dataset order. A rank's error is
    re-raised here once, as one line (the launcher's protocol, :mod:`gaitcli.runtime.launch`)."""
    from gaitcli.runtime.launch import launch

    started = time.perf_counter()
    threads = max(1, (os.cpu_count() or 1) // nproc)
    job = ExtractJob(str(checkpoint), cfg, str(root), str(partition), batch_size, progress, threads, bf16)
    out = launch(_extract_rank, job, nproc, device)
    if out is None or len(out) != len(dataset):
        got = 0 if out is None else len(out)
        raise GaitError(f"extraction with {nproc} processes returned {got} of {len(dataset)} embeddings "
                        "(empty test split?)")
    return _feature_set(out, dataset.sequences, time.perf_counter() - started)
