"""The Python API shared by every model: ``model(sils, seq_lens)`` and ``model.embed(seqs)``.

``forward`` takes silhouettes ``[n, s, h, w]`` (float in [0, 1], already cut to 64x44) and, for a
batch padded along time, the real length of each sequence. Padded frames never change a valid
sequence's result: every temporal layer zeroes them (see :mod:`gaitcli.models.layers`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from .layers import CHANNELS_LAST, mask_frames, padding_mask
from .registry import ModelConfig, parse_model_config

CPU_FRAME_BUDGET = 128  # padded frames per forward call in embed() on the CPU


def _as_lengths(seq_lens: torch.Tensor | npt.ArrayLike, n: int, s: int) -> torch.Tensor:
    lens = torch.as_tensor(seq_lens if not isinstance(seq_lens, torch.Tensor) else seq_lens.detach())
    lens = lens.to(device="cpu", dtype=torch.long).reshape(-1)
    if lens.numel() != n:
        raise ValueError(f"seq_lens has {lens.numel()} entries for a batch of {n} sequences")
    if n and (int(lens.min()) < 1 or int(lens.max()) > s):
        raise ValueError(f"seq_lens must lie in [1, {s}] (the padded length), got {lens.tolist()}")
    return lens


def repeat_short(sils: torch.Tensor, lens: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The reference's rule for sequences shorter than 3 frames, applied per sequence:
    1 frame → repeated 3 times, 2 frames → the pair repeated twice (4 frames)."""
    n, s = sils.shape[:2]
    if lens is None:
        if s >= 3:
            return sils, None
        return sils.repeat(1, 3 if s == 1 else 2, *([1] * (sils.dim() - 2))), None
    if n == 0 or int(lens.min()) >= 3:
        return sils, lens
    new_lens = torch.where(lens == 1, 3, torch.where(lens == 2, 4, lens))
    steps = max(s, int(new_lens.max()))
    t = torch.arange(steps)[None, :]
    short = (lens < 3)[:, None]
    index = torch.where(short, t % lens[:, None], t.clamp(max=s - 1))  # [n, steps]
    index = index.to(sils.device)
    rows = torch.arange(n, device=sils.device)[:, None]
    return sils[rows, index], new_lens


def _to_float_frames(item: torch.Tensor | npt.ArrayLike) -> torch.Tensor:
    if isinstance(item, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(item))
    elif isinstance(item, torch.Tensor):
        t = item
    else:
        t = torch.as_tensor(np.asarray(item))
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    return t.float()


def _length_batches(
    frames: Sequence[torch.Tensor], batch_size: int, max_frames: int | None, pad_multiple: int
) -> list[tuple[list[int], int]]:
    """Sequences sorted by length (longest first) in batches of at most ``batch_size``
    sequences and ``max_frames`` padded frames: ``(indices, padded length)`` per batch."""
    order = sorted(range(len(frames)), key=lambda i: -frames[i].size(0))
    batches: list[tuple[list[int], int]] = []
    start = 0
    while start < len(order):
        longest = frames[order[start]].size(0)
        padded_len = -(-longest // pad_multiple) * pad_multiple
        stop = min(len(order), start + batch_size)
        if max_frames is not None:
            stop = min(stop, start + max(1, max_frames // max(padded_len, 1)))
        batches.append((order[start:stop], padded_len))
        start = stop
    return batches


class GaitModel(nn.Module):
    """Base of GaitGL and MetaGait: input handling, masking, heads' layout and ``embed``.

    Subclasses build the layers and implement :meth:`backbone` (``[n,1,s,h,w]`` → ``[n,c,s',h',w']``
    plus the mask of its output frames), :meth:`attend` and :meth:`pool_time`.
    """

    name = "GaitModel"
    repeat_short_sequences = True
    """Whether ``forward`` applies GaitGL's rule for sequences under 3 frames (:func:`repeat_short`);
    a model whose reference does not repeat frames sets it to False."""
    supports_channels_last = True
    """Whether ``model_cfg.channels_last`` (the 3-D memory format) applies: the 3-D networks
    (GaitGL, MetaGait); the 2-D ones refuse it and the training kernel choice never tries it."""

    def __init__(self, model_cfg: Mapping[str, object], dataset_name: str = "CASIA-B") -> None:
        super().__init__()
        self.model_cfg = dict(model_cfg)
        self.dataset_name = str(dataset_name)
        self.config: Mapping[str, object] | None = None  # the full resolved config (set by build_model)
        self.checkpoint_meta: dict[str, object] = {}
        self.channels_last = bool(parse_model_config(ModelConfig, model_cfg).channels_last)
        self._compiled_core: Callable[..., dict[str, torch.Tensor]] | None = None
        self._compile_kwargs: dict[str, Any] | None = None
        self._cudnn_set = False

    # -- to be provided by subclasses ----------------------------------------------------
    def backbone(
        self, x: torch.Tensor, masks: tuple[torch.Tensor | None, ...]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def attend(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return x

    def temporal_masks(
        self, lens: torch.Tensor | None, steps: int, device: torch.device
    ) -> tuple[torch.Tensor | None, ...]:
        """Masks of the input frames (first) and of the backbone's output frames (last); the
        default suits a backbone that keeps the frame count. GaitGL overrides it (its LTA
        divides the frame count by 3)."""
        mask = padding_mask(lens, steps, device)
        return mask, mask

    def pool_time(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def heads(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # -- options ---------------------------------------------------------------------------
    def enable_compile(self, **kwargs: Any) -> None:
        """Run the network function through ``torch.compile`` (parameter names unchanged).

        Compilation happens at the first forward call; ``kwargs`` go to ``torch.compile``
        (default ``dynamic=True``: sequence lengths vary)."""
        kwargs.setdefault("dynamic", True)
        self._compile_kwargs = kwargs
        self._compiled_core = None

    @property
    def compile_enabled(self) -> bool:
        return self._compile_kwargs is not None

    # -- forward ---------------------------------------------------------------------------
    def forward(
        self, sils: torch.Tensor, seq_lens: torch.Tensor | npt.ArrayLike | None = None
    ) -> dict[str, torch.Tensor]:
        """``sils`` ``[n, s, h, w]`` in [0, 1] (``[n, 1, s, h, w]`` also accepted), optional
        ``seq_lens`` (length n) for a batch padded along time.

        Returns ``embeddings`` ``[n, parts, channels]`` (post-BN, used by the triplet loss and for
        retrieval) and ``logits`` ``[n, parts, classes]``, both float32.
        """
        if sils.dim() == 5:
            if sils.size(1) != 1:
                raise ValueError(
                    f"expected silhouettes [n, s, h, w] or [n, 1, s, h, w], got {list(sils.shape)}"
                )
            sils = sils[:, 0]
        if sils.dim() != 4:
            raise ValueError(f"expected silhouettes [n, s, h, w], got {list(sils.shape)}")
        if sils.dtype == torch.uint8:
            sils = sils.float().div(255.0)
        target = self._input_dtype()
        if sils.dtype != target:
            sils = sils.to(target)
        n, s = sils.shape[:2]
        lens = None if seq_lens is None else _as_lengths(seq_lens, n, s)
        if self.repeat_short_sequences:
            sils, lens = repeat_short(sils, lens)
        if lens is not None and bool((lens >= sils.size(1)).all()):
            lens = None
        if sils.is_cuda and not self._cudnn_set:
            torch.backends.cudnn.benchmark = True
            self._cudnn_set = True
        x = sils.unsqueeze(1)
        if self.channels_last:
            x = x.contiguous(memory_format=CHANNELS_LAST)
        masks = self.temporal_masks(lens, x.size(2), x.device)
        if self._compile_kwargs is not None:
            if self._compiled_core is None:
                self._compiled_core = torch.compile(self._core, **self._compile_kwargs)
            compiled: dict[str, torch.Tensor] = self._compiled_core(x, masks)
            return compiled
        return self._core(x, masks)

    def set_channels_last(self, on: bool) -> None:
        """Switch the 3-D memory format of the weights and of every input from now on (the
        training kernel choice, docs/train.md). The weights' values do not change."""
        if on and not self.supports_channels_last:
            raise ValueError(f"{self.name} does not take the channels-last 3-D memory format")
        self.channels_last = on
        self.to(memory_format=CHANNELS_LAST if on else torch.contiguous_format)  # type: ignore[call-overload]

    def _input_dtype(self) -> torch.dtype:
        for p in self.parameters():
            return p.dtype if p.is_floating_point() else torch.float32
        return torch.float32

    def _core(self, x: torch.Tensor, masks: tuple[torch.Tensor | None, ...]) -> dict[str, torch.Tensor]:
        # Everything data-dependent (lengths → masks) happens before this point, so a compiled
        # version of this function has no graph breaks.
        x = mask_frames(x, masks[0])
        x, mask = self.backbone(x, masks)
        x = self.attend(x, mask)
        x = self.pool_time(x, mask)  # [n, c, h, w]
        return self.heads(x)

    # -- inference -------------------------------------------------------------------------
    @torch.no_grad()
    def embed(
        self,
        sequences: Sequence[torch.Tensor | npt.ArrayLike],

        batch_size: int = 8,
        *,
        max_frames: int | str | None = "auto",
        pad_multiple: int | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Embeddings ``[n, parts, channels]`` of variable-length sequences, in input order.

        Each item is ``[s_i, h, w]`` (tensor or numpy; uint8 is divided by 255). Sequences are
        sorted by length, grouped into batches of at most ``batch_size`` sequences and at most
        ``max_frames`` padded frames, padded and masked; the result equals running each sequence
        alone. ``max_frames="auto"`` is 128 on the CPU, where one big batch runs slower per frame
        than several calls of about 100 frames (cache), and unlimited on GPUs; None = unlimited.
        ``pad_multiple`` rounds the padded length up (default 8 on CUDA, so
        cuDNN autotuning sees few shapes; masking makes the rounding free of numeric effect).
        Runs in eval mode without gradients; the previous mode is restored.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        device = self._embed_device(device)
        if pad_multiple is None:
            pad_multiple = 8 if device.type == "cuda" else 1
        if max_frames == "auto":
            max_frames = CPU_FRAME_BUDGET if device.type == "cpu" else None
        elif max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
            raise ValueError(f"max_frames must be a positive int, 'auto' or None, got {max_frames!r}")
        frames = [_to_float_frames(item) for item in sequences]
        for i, f in enumerate(frames):
            if f.dim() != 3 or f.size(0) < 1:
                raise ValueError(f"sequence {i}: expected frames [s, h, w] with s >= 1, got {list(f.shape)}")
        if not frames:
            return torch.empty(
                0, getattr(self, "parts_num", 0), getattr(self, "out_channels", 0), device=device
            )
        results: list[torch.Tensor] = []
        order: list[int] = []
        was_training = self.training
        self.eval()
        try:
            for idx, padded_len in _length_batches(frames, batch_size, max_frames, pad_multiple):
                results.extend(self._embed_batch(frames, idx, padded_len, device))
                order.extend(idx)
        finally:
            self.train(was_training)
        by_input = [results[pos] for pos in sorted(range(len(order)), key=order.__getitem__)]
        return torch.stack(by_input)

    def _embed_device(self, device: torch.device | str | None) -> torch.device:
        if device is not None:
            return torch.device(device)
        try:
            return next(self.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    def _embed_batch(
        self, frames: list[torch.Tensor], idx: list[int], padded_len: int, device: torch.device
    ) -> list[torch.Tensor]:
        """Embeddings of ``frames[i]`` for ``i`` in ``idx``, padded to ``padded_len`` and masked."""
        h, w = frames[idx[0]].shape[1:]
        batch = torch.zeros(len(idx), padded_len, h, w)
        lens = []
        for j, i in enumerate(idx):
            f = frames[i]
            if f.shape[1:] != (h, w):
                raise ValueError(f"sequence {i}: frame size {tuple(f.shape[1:])} differs from {(h, w)}")
            batch[j, : f.size(0)] = f
            lens.append(f.size(0))
        out = self(batch.to(device, non_blocking=True), lens)["embeddings"]
        return [out[j] for j in range(len(idx))]

    # -- info ------------------------------------------------------------------------------
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
