"""Building blocks of OpenGait's 2-D models: the layers GaitSet and GaitPart run on every frame on
its own, a model base that packs the real frames of a padded batch, and the heads GaitSet, GaitPart,
GaitBase and DeepGaitV2 share (horizontal pyramid, ``SeparateFCs``, ``SeparateBNNecks``).

OpenGait runs these networks frame by frame (``SetBlockWrapper``: ``[n, c, s, h, w]`` viewed as
``n·s`` images) and pools over the frames of each sequence (``PackSequenceWrapper``, which cuts its
input at the ``seqL`` lengths). Here a padded batch ``[n, s, h, w]`` with per-sequence lengths is
*packed*: only its real frames (``[N, 1, h, w]``, sequence-major) go through the 2-D layers, and the
pooling over time looks at each sequence's real frames only. Each sequence of a batch therefore
gets exactly the result it gets alone, and padded frames cost nothing.

Parameter names follow OpenGait's modules (``BasicConv2d.conv``, ``FocalConv2d.conv``,
``SetBlockWrapper.forward_block``, ``SeparateFCs.fc_bin``, ``SeparateBNNecks.fc_bin`` / ``bn1d``)
so state dicts are interchangeable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import GaitModel
from .layers import SeparateFCs as _PartLinear
from .layers import lengths_to_mask


class BasicConv2d(nn.Module):
    """A bias-free Conv2d (state-dict name ``conv``)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)
        return out


class FocalConv2d(nn.Module):
    """GaitPart's focal convolution: one bias-free Conv2d (``conv``) applied to each of the
    ``2**halving`` horizontal strips separately (each strip padded on its own).

    OpenGait splits the height into pieces of ``h // 2**halving`` rows (an uneven height gives an
    extra, smaller last piece). When the strips are equal they are folded into the batch (one
    convolution call); otherwise the pieces are convolved one by one, as the reference does.
    """

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int, halving: int, stride: int = 1, padding: int = 0
    ) -> None:
        super().__init__()
        self.halving = int(halving)
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.halving == 0:
            out: torch.Tensor = self.conv(x)
            return out
        strips = 2**self.halving
        n, c, h, w = x.shape
        size = h // strips
        if size >= 1 and h % strips == 0 and self.conv.stride == (1, 1):
            folded = x.reshape(n, c, strips, size, w).transpose(1, 2).reshape(n * strips, c, size, w)
            y: torch.Tensor = self.conv(folded)
            c2, h2, w2 = y.shape[1:]
            return y.reshape(n, strips, c2, h2, w2).transpose(1, 2).reshape(n, c2, strips * h2, w2)
        return torch.cat([self.conv(part) for part in torch.split(x, max(1, size), 2)], 2)

    def extra_repr(self) -> str:
        return f"halving={self.halving}"


class SetBlockWrapper(nn.Module):
    """A 2-D module applied to every real frame (state-dict prefix ``forward_block``, as
    OpenGait's wrapper). It takes the packed frames ``[N, c, h, w]`` the model base makes."""

    def __init__(self, forward_block: nn.Module) -> None:
        super().__init__()
        self.forward_block = forward_block

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.forward_block(frames)
        return out


def horizontal_pyramid(x: torch.Tensor, bin_num: Sequence[int]) -> torch.Tensor:
    """Horizontal pooling pyramid: ``[..., c, h, w]`` → ``[..., c, sum(bin_num)]``. For each ``b``
    the map is viewed as ``b`` bins of ``h·w/b`` consecutive values (rows when ``b`` divides ``h``)
    and each bin gives its mean plus its max."""
    *lead, h, w = x.shape
    feats = []
    for b in bin_num:
        if (h * w) % b:
            raise ValueError(f"pyramid bin count {b} does not divide the {h}x{w} feature map")
        z = x.reshape(*lead, b, -1)
        feats.append(z.mean(-1) + z.amax(-1))
    return feats[0] if len(feats) == 1 else torch.cat(feats, -1)


class SeparateFCs(_PartLinear):
    """One linear map per part (``fc_bin`` ``[parts, in, out]``) with OpenGait's ``norm`` option
    (each weight column L2-normalised). ``[n, in, parts]`` → ``[parts, n, out]``."""

    def __init__(self, parts_num: int, in_channels: int, out_channels: int, norm: bool = False) -> None:
        super().__init__(parts_num, in_channels, out_channels)
        self.norm = bool(norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.norm or x.size(-1) != self.parts_num:  # (the parent names a part mismatch)
            return super().forward(x)
        return torch.bmm(x.permute(2, 0, 1), F.normalize(self.fc_bin, dim=1))


class SeparateBNNecks(nn.Module):
    """BatchNorm neck and per-part classifier: ``[n, c, p]`` → (normalised BN features
    ``[p, n, c]``, logits ``[p, n, classes]``). ``parallel_BN1d``: one BatchNorm1d over the
    ``c·p`` features (channel-major, as OpenGait flattens ``[n, c, p]``); else one per part
    (``bn1d.0`` ...)."""

    def __init__(
        self, parts_num: int, in_channels: int, class_num: int, norm: bool = True, parallel_BN1d: bool = True
    ) -> None:
        super().__init__()
        self.parts_num = int(parts_num)
        self.norm = bool(norm)
        self.parallel_BN1d = bool(parallel_BN1d)
        self.fc_bin = nn.Parameter(nn.init.xavier_uniform_(torch.zeros(parts_num, in_channels, class_num)))
        self.bn1d: nn.Module
        if self.parallel_BN1d:
            self.bn1d = nn.BatchNorm1d(in_channels * parts_num)
        else:
            self.bn1d = nn.ModuleList(nn.BatchNorm1d(in_channels) for _ in range(parts_num))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, c, p = x.shape
        if isinstance(self.bn1d, nn.ModuleList):
            normed = torch.stack([bn(x[:, :, i]) for i, bn in enumerate(self.bn1d)], dim=0)  # [p, n, c]
        else:
            normed = self.bn1d(x.reshape(n, c * p)).view(n, c, p).permute(2, 0, 1)
        if self.norm:
            feature = F.normalize(normed, dim=-1)
            logits = feature.matmul(F.normalize(self.fc_bin, dim=1).to(feature.dtype))
        else:
            feature = normed
            logits = feature.matmul(self.fc_bin.to(feature.dtype))
        return feature, logits

    def extra_repr(self) -> str:
        p, c, k = self.fc_bin.shape
        return f"parts={p}, in={c}, classes={k}, norm={self.norm}, parallel_BN1d={self.parallel_BN1d}"


# ----------------------------------------------------------------------------------------------
# packing the real frames of a padded batch
# ----------------------------------------------------------------------------------------------


class Frames:
    """Where the packed frames ``[N, ...]`` of a batch ``[n, s, ...]`` sit: ``index`` lists the
    flat ``n·s`` positions of the real frames (None when every frame is real, N = n·s)."""

    def __init__(self, n: int, s: int, mask: torch.Tensor | None, index: torch.Tensor | None) -> None:
        self.n, self.s, self.mask, self.index = n, s, mask, index

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """``[n, s, ...]`` → ``[N, ...]`` (the real frames, sequence by sequence)."""
        flat = x.reshape(self.n * self.s, *x.shape[2:])
        return flat if self.index is None else flat.index_select(0, self.index)

    def unpack(self, frames: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """``[N, ...]`` → ``[n, s, ...]`` with ``fill`` at the padded frames."""
        if self.index is None:
            return frames.reshape(self.n, self.s, *frames.shape[1:])
        full = frames.new_full((self.n * self.s, *frames.shape[1:]), fill)
        full = full.index_copy(0, self.index, frames)
        return full.reshape(self.n, self.s, *frames.shape[1:])

    def max(self, frames: torch.Tensor) -> torch.Tensor:
        """Set pooling: the element-wise max over each sequence's real frames, ``[N, ...]`` →
        ``[n, ...]`` (OpenGait's ``PackSequenceWrapper(torch.max)``)."""
        return self.unpack(frames, float("-inf")).max(dim=1).values


class SetModel(GaitModel):
    """Base of GaitSet and GaitPart: :class:`GaitModel`'s input handling without GaitGL's
    short-sequence repetition (OpenGait runs these models on any length as it is), and the
    real frames of a padded batch packed for the 2-D layers.

    Subclasses implement :meth:`network` (``sils`` ``[n, s, h, w]``, :class:`Frames`) → outputs
    (``embeddings`` only: these models have no classifier).
    """

    repeat_short_sequences = False
    supports_channels_last = False

    def temporal_masks(
        self, lens: torch.Tensor | None, steps: int, device: torch.device
    ) -> tuple[torch.Tensor | None, ...]:
        """``(mask [n, s] of the real frames, their flat indices)``; both None when every frame
        is real. Computed before the network function, so a compiled one has no graph breaks."""
        if lens is None or bool((lens >= steps).all()):
            return None, None
        mask = lengths_to_mask(lens.cpu(), steps)
        index = mask.reshape(-1).nonzero().squeeze(1)
        return mask.to(device), index.to(device)

    def _core(self, x: torch.Tensor, masks: tuple[torch.Tensor | None, ...]) -> dict[str, torch.Tensor]:
        mask, index = masks
        sils = x[:, 0]  # [n, s, h, w]
        return self.network(sils, Frames(sils.size(0), sils.size(1), mask, index))

    def network(self, sils: torch.Tensor, frames: Frames) -> dict[str, torch.Tensor]:
        raise NotImplementedError
