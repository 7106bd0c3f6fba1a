"""Building blocks shared by GaitGL and MetaGait.

Every temporal layer takes an optional boolean ``mask`` of shape ``[n, s]`` (True = a real frame)
describing a batch padded along time. A layer that mixes frames zeroes the padded frames of its
output, so the next layer sees exactly the zeros it would see at the end of a sequence run alone
(a 3-frame convolution with padding 1 pads with zeros). Pooling over time and the descriptors of
the attention modules only look at real frames. ``mask=None`` means every frame is real and costs
nothing.

Module and parameter names follow the reference implementation so state dicts are interchangeable:
``BasicConv3d.conv3d``, ``GLConv.{global,local}_conv3d``, ``GeMHPP.p``, ``SeparateFCs.fc_bin``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

NEGATIVE_SLOPE = 0.01
CHANNELS_LAST = torch.channels_last_3d
# On the CPU, oneDNN runs a strip-by-strip loop slowly when the batch is small (one sequence at
# inference: 6x slower than folding the strips into the batch) but slightly faster than one folded
# call when the batch is already large (training, n=8). Fold up to this many folded samples.
CPU_FOLD_MAX_BATCH = 32
_MKLDNN = bool(torch.backends.mkldnn.is_available())  # type: ignore[no-untyped-call]


def leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, NEGATIVE_SLOPE)


def leaky_(x: torch.Tensor) -> torch.Tensor:
    """In-place LeakyReLU, for tensors nothing else holds (a convolution's fresh output)."""
    return F.leaky_relu_(x, NEGATIVE_SLOPE)


# ----------------------------------------------------------------------------------------------
# masks
# ----------------------------------------------------------------------------------------------


def lengths_to_mask(
    lengths: torch.Tensor | Sequence[int], steps: int | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """``[n]`` lengths → ``[n, steps]`` bool mask, True on each sequence's first ``length`` frames
    (``steps`` defaults to the longest length; ``device`` to that of ``lengths``)."""
    lens = torch.as_tensor(lengths, dtype=torch.long)
    if steps is None:
        steps = int(lens.max()) if lens.numel() else 0
    device = lens.device if device is None else device
    return torch.arange(steps, device=device)[None, :] < lens.to(device)[:, None]


def padding_mask(
    lengths: torch.Tensor | None, steps: int, device: torch.device | str | None = None
) -> torch.Tensor | None:
    """:func:`lengths_to_mask`, or None when there are no lengths or every sequence fills
    ``steps`` (nothing to mask). Keep ``lengths`` on the CPU: the decision then needs no device
    synchronisation."""
    if lengths is None or bool((lengths >= steps).all()):
        return None
    return lengths_to_mask(lengths, steps, device)


def mask_frames(x: torch.Tensor, mask: torch.Tensor | None, time_dim: int = 2) -> torch.Tensor:
    """Zero the padded frames of ``x`` (``[n, c, s, ...]`` with time at ``time_dim``)."""
    if mask is None:
        return x
    shape = [1] * x.dim()
    shape[0], shape[time_dim] = mask.shape
    keep = mask.view(shape)
    # where() rather than a product: garbage (inf/nan) in padded input frames must not leak.
    return torch.where(keep, x, x.new_zeros(()))


# ----------------------------------------------------------------------------------------------
# convolutions
# ----------------------------------------------------------------------------------------------


class BasicConv3d(nn.Module):
    """A bias-free Conv3d (state-dict name ``conv3d``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int, int] = (3, 3, 3),
        stride: tuple[int, int, int] = (1, 1, 1),
        padding: tuple[int, int, int] = (1, 1, 1),
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.conv3d = nn.Conv3d(
            in_channels, out_channels, kernel_size=kernel_size, stride=stride, padding=padding, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _direct_onednn(x, self.conv3d):
            return onednn_conv3d(x, self.conv3d)
        out: torch.Tensor = self.conv3d(x)
        return out


def _direct_onednn(x: torch.Tensor, conv: nn.Conv3d) -> bool:
    """Whether to call oneDNN directly: CPU inference (nothing needs a gradient) in float32 or
    bfloat16. PyTorch's own choice sends small batches (one sequence at extraction) to its slow
    reference kernel, about 3-5x slower at these widths (docs/models.md, "Speed")."""
    if x.device.type != "cpu" or x.dim() != 5 or conv.groups != 1 or not _MKLDNN:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad):
        return False
    plain = conv.padding_mode == "zeros" and isinstance(conv.padding, tuple)
    return plain and x.dtype in (torch.float32, torch.bfloat16)


def onednn_conv3d(x: torch.Tensor, conv: nn.Conv3d) -> torch.Tensor:
    """``conv(x)`` through ``torch.mkldnn_convolution`` (same arithmetic as the large-batch path
    of ``F.conv3d``), in the CPU autocast dtype when autocast is on."""
    weight, bias = conv.weight, conv.bias
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    if dtype not in (torch.float32, torch.bfloat16):
        dtype = x.dtype
    x, weight = x.to(dtype), weight.to(dtype)
    bias = None if bias is None else bias.to(dtype)
    padding = [int(p) for p in conv.padding]
    out: torch.Tensor = torch.mkldnn_convolution(
        x, weight, bias, padding, list(conv.stride), list(conv.dilation), conv.groups
    )
    return out


class ConvBlock(nn.Sequential):
    """``Sequential`` of ``BasicConv3d`` / ``LeakyReLU`` that masks padded frames after each
    activation. Used for the stem (``conv3d.0``, ``conv3d.2``) and ``LTA.0``; the caller passes
    the mask that matches the *output* length (LTA shortens time by its stride)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for module in self:
            x = module(x)
            if isinstance(module, nn.LeakyReLU):
                x = mask_frames(x, mask)
        return x


class MaskedSequential(nn.Sequential):
    """``Sequential`` whose children take ``(x, mask)`` (pairs of GLConvs in the large branch)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for module in self:
            x = module(x, mask)
        return x


def fold_strips(x: torch.Tensor, strips: int) -> torch.Tensor:
    """``[n, c, s, h, w]`` → ``[n*strips, c, s, h/strips, w]``: horizontal strips into the batch.

    Keeps channels-last 3-D memory format when the input has it."""
    n, c, s, h, w = x.shape
    hs = h // strips
    if c > 1 and not x.is_contiguous() and x.is_contiguous(memory_format=CHANNELS_LAST):
        y = x.permute(0, 2, 3, 4, 1)  # [n, s, h, w, c], contiguous
        y = y.reshape(n, s, strips, hs, w, c).transpose(1, 2).reshape(n * strips, s, hs, w, c)
        return y.permute(0, 4, 1, 2, 3)
    y = x.reshape(n, c, s, strips, hs, w).permute(0, 3, 1, 2, 4, 5)
    return y.reshape(n * strips, c, s, hs, w)


def unfold_strips(y: torch.Tensor, strips: int) -> torch.Tensor:
    """Inverse of :func:`fold_strips`."""
    ns, c, s, hs, w = y.shape
    n = ns // strips
    if c > 1 and not y.is_contiguous() and y.is_contiguous(memory_format=CHANNELS_LAST):
        z = y.permute(0, 2, 3, 4, 1)  # [n*k, s, hs, w, c]
        z = z.reshape(n, strips, s, hs, w, c).transpose(1, 2).reshape(n, s, strips * hs, w, c)
        return z.permute(0, 4, 1, 2, 3)
    z = y.reshape(n, strips, c, s, hs, w).permute(0, 2, 3, 1, 4, 5)
    return z.reshape(n, c, s, strips * hs, w)


class GLConv(nn.Module):
    """Global-local convolution.

    ``global_conv3d`` sees the whole map; ``local_conv3d`` (same shape) runs on each of the
    ``2**halving`` horizontal strips separately, each strip zero-padded on its own. Without
    ``fm_sign`` the result is ``leaky(global) + leaky(local)``; with it,
    ``leaky(cat([global, local], height))`` (height doubles).

    The strips are folded into the batch so the local convolution is one call (on the CPU only
    while the folded batch stays small, see ``CPU_FOLD_MAX_BATCH``); when the height is not
    divisible by the number of strips the reference's uneven split is reproduced with a loop.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        halving: int,
        fm_sign: bool = False,
        kernel_size: tuple[int, int, int] = (3, 3, 3),
        stride: tuple[int, int, int] = (1, 1, 1),
        padding: tuple[int, int, int] = (1, 1, 1),
    ) -> None:
        super().__init__()
        self.halving = int(halving)
        self.fm_sign = bool(fm_sign)
        self.global_conv3d = BasicConv3d(in_channels, out_channels, kernel_size, stride, padding)
        self.local_conv3d = BasicConv3d(in_channels, out_channels, kernel_size, stride, padding)

    def local(self, x: torch.Tensor) -> torch.Tensor:
        if self.halving == 0:
            out: torch.Tensor = self.local_conv3d(x)
            return out
        strips = 2**self.halving
        h = x.size(3)
        if h % strips == 0 and (x.device.type != "cpu" or x.size(0) * strips <= CPU_FOLD_MAX_BATCH):
            return unfold_strips(self.local_conv3d(fold_strips(x, strips)), strips)
        # The reference's split into pieces of int(h // 2**halving) rows (uneven heights give an
        # extra, smaller piece); also the faster choice for large CPU batches.
        size = max(1, h // strips)
        return torch.cat([self.local_conv3d(part) for part in torch.split(x, size, 3)], 3)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        gob = self.global_conv3d(x)
        lcl = self.local(x)
        if self.fm_sign:
            out = leaky_(torch.cat([gob, lcl], dim=3))
        else:
            out = leaky_(gob) + leaky_(lcl)
        return mask_frames(out, mask)

    def extra_repr(self) -> str:
        return f"halving={self.halving}, fm_sign={self.fm_sign}"


# ----------------------------------------------------------------------------------------------
# pooling and heads
# ----------------------------------------------------------------------------------------------


class TemporalMaxPool(nn.Module):
    """Max over time, over the real frames of each sequence only: ``[n, c, s, ...]`` → ``[n, c, ...]``."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            shape = [1] * x.dim()
            shape[0], shape[2] = mask.shape
            x = x.masked_fill(~mask.view(shape), float("-inf"))
        return x.max(dim=2).values


def masked_mean_descriptor(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-sample channel descriptor: mean over the real frames and all positions, in float32.

    ``[n, c, s, h, w]`` → ``[n, c]``. The spatial mean comes first so nothing overflows in
    half precision."""
    spatial = x.mean(dim=(3, 4), dtype=torch.float32)  # [n, c, s]
    if mask is None:
        return spatial.mean(dim=2)
    m = mask.to(spatial.dtype)
    return (spatial * m[:, None, :]).sum(dim=2) / m.sum(dim=1).clamp(min=1.0)[:, None]


class GeMHPP(nn.Module):
    """Generalised-mean horizontal pyramid pooling.

    ``[n, c, h, w]`` → ``[n, c, sum(bins)]``. For each ``b`` in ``bin_num`` the map is viewed as
    ``b`` bins of ``h*w/b`` consecutive values (rows when ``b == h``) and each bin is pooled as
    ``mean(clamp(x, eps)^p)^(1/p)`` with one learnable ``p`` (init 6.5). ``bin_num=None`` means one
    bin per feature row. Computed in float32 whatever the input dtype (``x^6.5`` overflows
    float16) and returned in the input dtype.
    """

    def __init__(self, bin_num: Sequence[int] | None = None, p: float = 6.5, eps: float = 1.0e-6) -> None:
        super().__init__()
        self.bin_num = None if bin_num is None else [int(b) for b in bin_num]
        self.p = nn.Parameter(torch.ones(1) * p)
        self.eps = eps

    def bins_for(self, height: int) -> list[int]:
        return [height] if self.bin_num is None else list(self.bin_num)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        bins = self.bins_for(h)
        for b in bins:
            if (h * w) % b:
                raise ValueError(f"GeM bin count {b} does not divide the {h}x{w} feature map")
        p = self.p.float()
        powered = x.float().clamp(min=self.eps).pow(p)
        pooled = [powered.reshape(n, c, b, -1).mean(dim=-1) for b in bins]
        out = pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=-1)
        return out.pow(1.0 / p).to(x.dtype)

    def extra_repr(self) -> str:
        return f"bin_num={self.bin_num}, eps={self.eps}"


class SeparateFCs(nn.Module):
    """One linear map per part (``fc_bin`` ``[parts, in, out]``), as one batched matmul.

    ``[n, in, parts]`` → ``[parts, n, out]`` (callers permute as they need)."""

    def __init__(self, parts_num: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.parts_num = int(parts_num)
        self.fc_bin = nn.Parameter(nn.init.xavier_uniform_(torch.zeros(parts_num, in_channels, out_channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(-1) != self.parts_num:
            raise ValueError(
                f"the head expects {self.parts_num} parts but the pooled feature has {x.size(-1)}; "
                "set model_cfg.bin_num to match the input height (e.g. [32] for 32x22 inputs)"
            )
        return torch.bmm(x.permute(2, 0, 1), self.fc_bin)

    def extra_repr(self) -> str:
        p, i, o = self.fc_bin.shape
        return f"parts={p}, in={i}, out={o}"


# ----------------------------------------------------------------------------------------------
# initialisation
# ----------------------------------------------------------------------------------------------


def init_parameters(module: nn.Module) -> None:
    """The reference initialisation: xavier-uniform conv / linear weights, zero biases,
    BatchNorm weight ~ N(1, 0.02) and bias 0 (``fc_bin`` is xavier-initialised at creation)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv3d, nn.Conv2d, nn.Conv1d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight.data)
            if m.bias is not None:
                nn.init.constant_(m.bias.data, 0.0)
        elif isinstance(m, (nn.BatchNorm3d, nn.BatchNorm2d, nn.BatchNorm1d)):
            if m.affine:
                nn.init.normal_(m.weight.data, 1.0, 0.02)
                nn.init.constant_(m.bias.data, 0.0)


def _torch_default_init(module: nn.Module) -> None:
    """PyTorch's own initialisation: every layer's ``reset_parameters`` (``fc_bin`` keeps the
    xavier draw it was created with, as the reference layer does)."""
    for m in module.modules():
        if m is not module and isinstance(
            m, (nn.Conv3d, nn.Conv2d, nn.Conv1d, nn.Linear, nn.modules.batchnorm._BatchNorm)
        ):
            m.reset_parameters()


def _kaiming_init(module: nn.Module) -> None:
    """He-normal convolution / linear weights for the LeakyReLU slope, zero biases, BatchNorm 1 / 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv3d, nn.Conv2d, nn.Conv1d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight.data, a=NEGATIVE_SLOPE, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.constant_(m.bias.data, 0.0)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.constant_(m.weight.data, 1.0)
            nn.init.constant_(m.bias.data, 0.0)


def init_weights(module: nn.Module, scheme: str) -> None:
    """Initialise ``module`` by ``model_cfg.init``: ``reference`` (xavier, as the reference
    code), ``torch`` (PyTorch's layer defaults) or ``kaiming`` (docs/models.md)."""
    if scheme == "reference":
        init_parameters(module)
    elif scheme == "torch":
        _torch_default_init(module)
    elif scheme == "kaiming":
        _kaiming_init(module)
    else:
        raise ValueError(f"unknown init scheme {scheme!r}")
