"""Frame sampling and batch collation for every ``sample_type`` (docs/config.md, the
``sampler`` keys), and the per-sequence transforms (docs/config.md, ``transform``;
:mod:`gaitcli.data.transforms`).

Frame choice is computed as index arrays per sequence and applied with one fancy-indexing call;
the batch is one preallocated uint8 array. Conversion to float and division by 255 happen on the
device (:func:`to_model_input`), so only uint8 crosses the host-device link.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gaitcli.data.samplers import batch_rng
from gaitcli.data.transforms import build_transform
from gaitcli.errors import ConfigError


def cut_width(width: int) -> int:
    """Columns removed from each side by BaseSilCuttingTransform: ``10 * (W // 64)``."""
    return 10 * (width // 64)


def transform_cut(transform: Any, width: int) -> int:
    """Columns removed from each side by the cutting transforms of ``transform``
    (:func:`gaitcli.data.transforms.build_transform`; ``None`` is the default cutting transform)."""
    return build_transform(transform, training=True).total_cut(width)


def frame_indices(length: int, sample_type: str, rng: np.random.Generator, *, frames: int = 30,
                  skip: int = 0, limit: int | None = None) -> np.ndarray:
    """Indices of the frames to take from a sequence of ``length`` frames.

    - ``fixed_ordered``: window = frames + skip. A sequence shorter than the window is repeated
      end-to-start (``0..L-1, 0..L-1, ...``) until long enough; a random start makes the window
      fit; ``frames`` positions of the window are chosen without replacement, kept in time order.
    - ``fixed_unordered``: ``frames`` frames at random (with replacement only if L < frames).
    - ``all_ordered``: every frame in order (the first ``limit`` when given).
    - ``all_unordered``: every frame (the first ``limit``), in random order.
    ``unfixed_*`` callers draw ``frames`` per sequence and call the ``fixed_*`` rule.
    """
    if length < 1:
        raise ValueError("a sequence without frames cannot be sampled")
    kind, order = sample_type.split("_")
    if kind == "all":
        idx = np.arange(length if limit is None else min(length, limit))
        return idx if order == "ordered" else rng.permutation(idx)
    if order == "ordered":
        window = frames + skip
        base = np.arange(length)
        if length < window:
            base = np.tile(base, -(-window // length))
        start = int(rng.integers(0, len(base) - window + 1))
        chosen = np.sort(rng.choice(window, size=frames, replace=False))
        return base[start + chosen]
    return rng.choice(length, size=frames, replace=length < frames)


@dataclass
class Batch:
    """One collated batch. ``sils`` is uint8 ``[n, s, h, w]`` (already transformed), padded
    along time when ``seq_lens`` is given (padded frames are zero)."""

    sils: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    types: list[str]
    views: list[str]
    seq_lens: torch.Tensor | None
    indices: list[int]

    def pin_memory(self) -> Batch:
        self.sils = self.sils.pin_memory()
        self.labels = self.labels.pin_memory()
        return self


@dataclass(frozen=True)
class FrameSampling:
    """How frames are drawn from each sequence (the frame keys of a ``sampler`` section,
    docs/config.md)."""

    sample_type: str = "all_ordered"
    """fixed_*, unfixed_* or all_* with _ordered / _unordered."""
    frames_num_fixed: int = 30
    """Frames per sequence for fixed_* sampling."""
    frames_skip_num: int = 0
    """Extra frames in the window from which fixed_ordered picks."""
    frames_num_min: int = 25
    """Lower bound of the frame count for unfixed_* sampling."""
    frames_num_max: int = 50
    """Upper bound of the frame count for unfixed_* sampling."""
    frames_all_limit: int | None = 720
    """all_* sampling keeps at most this many leading frames (None: all)."""

    @classmethod
    def from_mapping(cls, raw: Mapping[str, object]) -> FrameSampling:
        """The frame keys of a ``sampler`` section as YAML holds it; an absent or 0
        ``frames_all_limit`` means no limit."""
        def whole(key: str, default: int) -> int:
            value = raw.get(key, default)
            return int(value) if isinstance(value, (int, float, str)) else default

        limit = raw.get("frames_all_limit")
        return cls(str(raw.get("sample_type", "all_ordered")), whole("frames_num_fixed", 30),
                   whole("frames_skip_num", 0), whole("frames_num_min", 25), whole("frames_num_max", 50),
                   int(limit) if isinstance(limit, (int, float, str)) and limit else None)


class Collator:
    """Turns ``[(arrays, label, type, view, index, batch, position), ...]`` into a :class:`Batch`.

    Each sequence's frames come from its own RNG, seeded by (seed, batch number, position in the
    global batch): the same frames whichever rank or DataLoader worker collates it."""

    def __init__(self, sampling: FrameSampling, label_index: Mapping[str, int] | None = None, *,
                 seed: int = 0, transform: Any = None) -> None:
        self.sample_type = sampling.sample_type
        kind = self.sample_type.split("_")[0]
        if kind not in ("fixed", "unfixed", "all"):
            raise ConfigError(f"sample_type {self.sample_type!r} is not one of fixed_*, unfixed_*, all_*")
        self.frames = sampling.frames_num_fixed
        self.skip = sampling.frames_skip_num
        self.frames_min = sampling.frames_num_min
        self.frames_max = sampling.frames_num_max
        self.limit = sampling.frames_all_limit
        self.label_index = dict(label_index or {})
        self.seed, self.transform = seed, transform
        self.compose = build_transform(transform, training=True)

    def __call__(self, items: Sequence[tuple[list[np.ndarray], str, str, str, int, int, int]]) -> Batch:
        kind, order = self.sample_type.split("_")
        clips = []
        for arrays, *_, batch_no, position in items:
            rng = batch_rng(self.seed, batch_no, stream=1 + position)
            length = len(arrays[0])
            if kind == "unfixed":
                n = int(rng.integers(self.frames_min, self.frames_max + 1))
                idx = frame_indices(length, f"fixed_{order}", rng, frames=n, skip=self.skip)
            else:
                idx = frame_indices(length, self.sample_type, rng, frames=self.frames, skip=self.skip,
                                    limit=self.limit)
            clips.append(self.compose(arrays[0][idx], rng))  # random transforms continue this rng
        lens = np.array([len(c) for c in clips])
        h, w = clips[0].shape[1:]
        sils = np.zeros((len(items), int(lens.max()), h, w), dtype=np.uint8)
        for row, clip in enumerate(clips):
            sils[row, : len(clip)] = clip
        ids = [it[1] for it in items]
        labels = torch.tensor([self.label_index.get(i, -1) for i in ids], dtype=torch.long)
        variable = kind != "fixed"
        return Batch(
            sils=torch.from_numpy(sils),
            labels=labels,
            ids=ids,
            types=[it[2] for it in items],
            views=[it[3] for it in items],
            seq_lens=torch.from_numpy(lens) if variable else None,
            indices=[it[4] for it in items],
        )


Element = tuple[list[np.ndarray], str, str, str, int, int, int]
"""One collator input: arrays, label, type, view, dataset index, batch, position in the batch."""


class IndexedDataset(torch.utils.data.Dataset[Element]):
    """Adapts a :class:`~gaitcli.data.dataset.GaitDataset` to ``(index, batch, position)`` elements."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, element: tuple[int, int, int]) -> Element:
        index, batch, position = element
        arrays, label, seq_type, view = self.dataset[index]
        return arrays, label, seq_type, view, index, batch, position


def to_model_input(
    batch: Batch, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Move a batch to ``device`` (non-blocking from pinned memory) and scale to [0, 1] there."""
    device = torch.device(device)
    non_blocking = device.type == "cuda"
    sils = batch.sils.to(device, non_blocking=non_blocking).float().div_(255.0)
    labels = batch.labels.to(device, non_blocking=non_blocking)
    seq_lens = batch.seq_lens.to(device) if batch.seq_lens is not None else None
    return sils, labels, seq_lens
