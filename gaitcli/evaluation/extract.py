"""Embeddings of a test split: every frame of every sequence through ``model.embed``.

* Frames follow ``evaluator_cfg.sampler`` (``all_ordered``: every frame in order, the first
  ``frames_all_limit``), cut to width by ``evaluator_cfg.transform`` (64×64 → 64×44).
* Sequences are read a window at a time (a background thread reads the next window while the
  model runs on this one) and handed to ``model.embed``, which sorts them by length and pads
  within batches of ``batch_size``. No batch size rule ties to the number of devices.
* Memory stays bounded: the result is one preallocated float32 array ``[N, parts, channels]``
  filled window by window; inputs are dropped as soon as they have been embedded.
* ``nproc > 1`` (``--gpus N`` / ``--device cpu --nproc N``) splits the sequences over processes
  (every N-th sequence each), which write their part to a temporary folder; the parent puts the
  parts back in dataset order. Progress bars come from :func:`gaitcli.progress.make_progress`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from gaitcli.data.collate import frame_indices, transform_cut
from gaitcli.errors import ConfigError, GaitError

FEATURE_KEYS = ("embeddings", "labels", "types", "views")
#: optional text fields of a feature file (older files lack the later ones; they load as absent)
META_TEXT_KEYS = ("dataset_name", "checkpoint", "metric", "model", "frame_size", "checkpoint_sha256")
_WINDOW_FRAMES = 8192  # frames converted to float at once (about 92 MB at 64x44)


# ----------------------------------------------------------------------------------------------
# the feature set and its .npz file
# ----------------------------------------------------------------------------------------------


@dataclass
class FeatureSet:
    """Embeddings ``[N, parts, channels]`` (float32) with each sequence's label, type and view."""

    embeddings: np.ndarray
    labels: np.ndarray
    types: np.ndarray
    views: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels).astype(str)
        self.types = np.asarray(self.types).astype(str)
        self.views = np.asarray(self.views).astype(str)
        emb = self.embeddings
        if emb.ndim == 2:
            emb = emb[:, None, :]
        if emb.ndim != 3:
            raise GaitError(f"embeddings must be [N, parts, channels], got shape {list(emb.shape)}")
        self.embeddings = emb
        n = emb.shape[0]
        if not (len(self.labels) == len(self.types) == len(self.views) == n):
            raise GaitError(
                f"features: {n} embeddings but {len(self.labels)} labels, {len(self.types)} types, "
                f"{len(self.views)} views; they must agree"
            )

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write an ``.npz`` (``embeddings`` float32, ``labels``/``types``/``views`` as strings,
        plus ``dataset_name``, ``checkpoint``, ``iteration`` when known), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {}
        for key in META_TEXT_KEYS:
            if self.meta.get(key) is not None:
                extra[key] = np.array(str(self.meta[key]))
        if self.meta.get("iteration") is not None:
            extra["iteration"] = np.array(int(self.meta["iteration"]), dtype=np.int64)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, embeddings=np.ascontiguousarray(self.embeddings, dtype=np.float32),
                         labels=self.labels, types=self.types, views=self.views, **extra)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureSet:
        """Read a feature file written by ``--save-features`` (or any ``.npz`` with the four
        arrays). Nothing is unpickled."""
        path = Path(path)
        if not path.is_file():
            raise GaitError(f"{path}: no such feature file")
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in FEATURE_KEYS if k not in data.files]
                if missing:
                    raise GaitError(
                        f"{path}: not a feature file: it lacks {', '.join(missing)} "
                        f"(expected arrays {', '.join(FEATURE_KEYS)})"
                    )
                emb = data["embeddings"]
                meta: dict[str, Any] = {}
                for key in META_TEXT_KEYS:
                    if key in data.files:
                        meta[key] = str(data[key])
                if "iteration" in data.files:
                    meta["iteration"] = int(data["iteration"])
                arrays = [data[k] for k in ("labels", "types", "views")]
        except GaitError:
            raise
        except ValueError as exc:  # object arrays (pickles) end up here
            raise GaitError(f"{path}: cannot read feature file without unpickling ({str(exc).splitlines()[0]})") from None
        except Exception as exc:  # zipfile / OSError / bad magic
            raise GaitError(f"{path}: not a readable .npz feature file ({type(exc).__name__}: {exc})") from None
        if not np.issubdtype(emb.dtype, np.floating):
            raise GaitError(f"{path}: embeddings must be floating point, got {emb.dtype}")
        return cls(emb.astype(np.float32, copy=False), *arrays, meta=meta)


# ----------------------------------------------------------------------------------------------
# frames of one sequence
# ----------------------------------------------------------------------------------------------


class FramePicker:
    """The inference frames of one sequence (uint8 ``[s, h, w']``), per ``evaluator_cfg``."""

    def __init__(self, sampler_cfg: Mapping[str, Any] | None = None, transform: Any = None,
                 seed: int = 0) -> None:
        sampler_cfg = dict(sampler_cfg or {})
        self.sample_type = str(sampler_cfg.get("sample_type", "all_ordered"))
        kind = self.sample_type.split("_")[0]
        if kind not in ("all", "fixed", "unfixed") or "_" not in self.sample_type:
            raise ConfigError(f"evaluator_cfg.sampler.sample_type {self.sample_type!r} is not all_*, fixed_* "
                              "or unfixed_*")
        if kind == "unfixed":  # inference has no min/max: use the fixed count
            self.sample_type = "fixed_" + self.sample_type.split("_", 1)[1]
        limit = sampler_cfg.get("frames_all_limit")
        self.limit = int(limit) if limit else None
        self.frames = int(sampler_cfg.get("frames_num_fixed", 30))
        self.skip = int(sampler_cfg.get("frames_skip_num", 0))
        self.transform = transform
        transform_cut(transform, 64)  # fail early on an unknown transform
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
        lo = transform_cut(self.transform, frames.shape[-1])
        if lo:
            frames = frames[..., lo : frames.shape[-1] - lo]
        return frames


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


def _unwrap(model: Any) -> Any:
    inner = model
    while not hasattr(inner, "embed") and hasattr(inner, "module"):
        inner = inner.module
    if not hasattr(inner, "embed"):
        raise TypeError("the model has no embed() method")
    return inner


def _model_device(model: Any) -> torch.device:
    try:
        device: torch.device = next(model.parameters()).device
        return device
    except StopIteration:
        return torch.device("cpu")


def extract_features(
    model: Any,
    dataset: Any,
    *,
    batch_size: int = 8,
    sampler_cfg: Mapping[str, Any] | None = None,
    transform: Any = None,
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
        raise GaitError(f"--batch-size must be at least 1, got {batch_size}")
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


def _embed_window(net: Any, seqs: list[np.ndarray], batch_size: int, dev: torch.device,
                  amp: torch.dtype | None) -> np.ndarray:
    """Embeddings of one window of sequences, in frame-bounded parts (a window of many long
    sequences never becomes one huge float array)."""
    parts = []
    for start, end in _windows([len(f) for f in seqs], len(seqs), _WINDOW_FRAMES):
        with torch.autocast(dev.type, dtype=amp) if amp is not None else contextlib.nullcontext():
            emb = net.embed(seqs[start:end], batch_size=batch_size, device=dev)
        parts.append(emb.float().cpu().numpy())
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _feature_set(out: np.ndarray | None, infos: Sequence[Any], seconds: float) -> FeatureSet:
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


def _rank_worker(info: Any, checkpoint: str, cfg: Mapping[str, Any], root: str, partition: str,
                 batch_size: int, tmpdir: str, show_progress: bool, threads: int) -> None:
    from gaitcli.data.dataset import GaitDataset
    from gaitcli.models import load_checkpoint

    if info.device == "cpu":
        torch.set_num_threads(max(1, threads))
        device = torch.device("cpu")
    else:
        device = torch.device("cuda", info.local_rank)
    ev = cfg["evaluator_cfg"]
    dataset = GaitDataset(root, partition, "test", data_in_use=cfg["data_cfg"].get("data_in_use"))
    model = load_checkpoint(checkpoint, map_location=device)
    from gaitcli.data.samplers import InferenceSampler

    sampler = InferenceSampler(len(dataset), batch_size, rank=info.rank, world_size=info.world_size)
    mine = sampler.indices.tolist()
    console = None
    if show_progress and info.rank == 0:
        from rich.console import Console

        console = Console(stderr=True)
    feats = extract_features(model, dataset, batch_size=batch_size, sampler_cfg=ev.get("sampler"),
                             transform=ev.get("transform"), device=device,
                             enable_float16=bool(ev.get("enable_float16")), indices=mine, console=console)
    target = Path(tmpdir) / f"rank{info.rank}.npy"
    np.save(target.with_suffix(".tmp.npy"), feats.embeddings)
    os.replace(target.with_suffix(".tmp.npy"), target)


def extract_distributed(
    checkpoint: str | os.PathLike[str],
    cfg: Mapping[str, Any],
    dataset: Any,
    *,
    root: str,
    partition: str,
    device: str,
    nproc: int,
    batch_size: int = 8,
    progress: bool = True,
) -> FeatureSet:
    """Extract with ``nproc`` processes (CUDA: one per GPU; CPU: gloo), each taking every
    ``nproc``-th sequence; the parts are gathered back in dataset order."""
    from gaitcli.runtime.launch import launch_args as launch

    started = time.perf_counter()
    n = len(dataset)
    threads = max(1, (os.cpu_count() or 1) // nproc)
    with tempfile.TemporaryDirectory(prefix="gait-eval-") as tmpdir:
        launch(_rank_worker, device, nproc, str(checkpoint), dict(cfg), str(root), str(partition),
               batch_size, tmpdir, progress, threads)
        from gaitcli.data.samplers import rank_bounds

        bounds = rank_bounds(n, nproc)  # the shares InferenceSampler gave the ranks
        out: np.ndarray | None = None
        for rank in range(nproc):
            part_path = Path(tmpdir) / f"rank{rank}.npy"
            if not part_path.exists():
                raise GaitError(f"extraction process {rank} of {nproc} produced no features "
                                "(see its error above)")
            part = np.load(part_path, mmap_mode="r")
            if len(part) == 0:  # more processes than sequences
                continue
            if out is None:
                out = np.empty((n, *part.shape[1:]), dtype=np.float32)
            out[bounds[rank] : bounds[rank + 1]] = part
            del part
    if out is None:
        raise GaitError("extraction produced no features (empty test split?)")
    seconds = time.perf_counter() - started
    infos = dataset.sequences
    return FeatureSet(
        out,
        np.array([i.label for i in infos], dtype=str),
        np.array([i.type for i in infos], dtype=str),
        np.array([i.view for i in infos], dtype=str),
        meta={"extract_seconds": seconds, "sequences_per_second": n / seconds if seconds > 0 else None},
    )


def extract_with_processes(checkpoint: str, cfg: Mapping[str, Any], dataset: Any, *, root: str,
                           partition: str, device: str, nproc: int, batch_size: int,
                           progress: bool) -> FeatureSet:
    """:func:`extract_distributed` with a failed process's error as one line."""
    try:
        return extract_distributed(checkpoint, cfg, dataset, root=root, partition=partition, device=device,
                                   nproc=nproc, batch_size=batch_size, progress=progress)
    except GaitError:
        raise
    except Exception as exc:  # a failed child process: keep the last line of its traceback
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        raise GaitError(f"extraction with {nproc} processes failed: {lines[-1] if lines else exc}") from None
