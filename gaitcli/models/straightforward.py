"""A straightforward re-statement of the networks, written from docs/models.md without any fast path.

It uses a built model's parameters but none of its fast code: the local convolution runs strip by
strip, the MHN applies its generated weights as a grouped per-sample convolution, the GeM pooling
uses ``avg_pool2d`` per bin, each part has its own matrix product, and variable-length inference
runs one sequence at a time. Tests check the fast model against it, and ``bench/models.py`` times
both side by side.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from .base import _to_float_frames
from .gaitgl import GaitGL
from .layers import BasicConv3d, GeMHPP, GLConv
from .metagait import MHN, MetaGait

SLOPE = 0.01


def _leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, SLOPE)


def _basic(module: nn.Module) -> BasicConv3d:
    if not isinstance(module, BasicConv3d):
        raise TypeError(f"expected a BasicConv3d, got {type(module).__name__}")
    return module


def _conv(block: BasicConv3d, x: torch.Tensor) -> torch.Tensor:
    conv = block.conv3d
    return F.conv3d(x, conv.weight, conv.bias, conv.stride, conv.padding)


def glconv(layer: GLConv, x: torch.Tensor) -> torch.Tensor:
    """GLConv: global conv over the whole map, local conv on each horizontal strip alone."""
    gob = _conv(layer.global_conv3d, x)
    if layer.halving == 0:
        lcl = _conv(layer.local_conv3d, x)
    else:
        size = int(x.size(3) // 2**layer.halving)
        lcl = torch.cat([_conv(layer.local_conv3d, strip) for strip in torch.split(x, size, 3)], 3)
    if layer.fm_sign:
        return _leaky(torch.cat([gob, lcl], dim=3))
    return _leaky(gob) + _leaky(lcl)


def _glconvs(stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
    layers = list(stage) if isinstance(stage, torch.nn.Sequential) else [stage]
    for layer in layers:
        if not isinstance(layer, GLConv):
            raise TypeError(f"expected a GLConv, got {type(layer).__name__}")
        x = glconv(layer, x)
    return x


def mhn_weights(mhn: MHN, g5: torch.Tensor) -> torch.Tensor:
    """The reference MHN on a pooled descriptor ``[n, C, 1, 1, 1]`` → ``[n, 3]``: the generated
    ``[3, C]`` matrix of each sample is applied as that sample's 1×1×1 convolution (grouped conv
    over the batch)."""
    n, c = g5.shape[:2]
    gap = F.conv3d(g5.mean(dim=(2, 3, 4), keepdim=True), mhn.reduce.weight, mhn.reduce.bias)
    a = torch.sigmoid(F.conv3d(gap, mhn.wn_fc1.weight, mhn.wn_fc1.bias))
    gen = F.conv3d(a, mhn.wn_fc2.weight, None, groups=mhn.wn_fc2.groups)  # [n, 3*C, 1, 1, 1]
    out = F.conv3d(g5.reshape(1, n * c, 1, 1, 1), gen.reshape(n * mhn.outputs, c, 1, 1, 1), groups=n)
    return out.reshape(n, mhn.outputs)


def reference_attention(model: MetaGait, x: torch.Tensor) -> torch.Tensor:
    """MetaGait reference: ``eca(x) + se(x)`` exactly as docs/models.md writes it."""
    g5 = F.adaptive_avg_pool3d(x, 1)  # [n, C, 1, 1, 1]
    w = mhn_weights(model.eca.dynamic_conv, g5)
    row = g5.reshape(x.size(0), 1, x.size(1))  # [n, 1, C]
    ys = {}
    for k, conv in ((1, model.eca.conv1), (3, model.eca.conv3), (5, model.eca.conv5)):
        ys[k] = torch.sigmoid(F.conv1d(row, conv.weight, None, padding=k // 2)).reshape(
            x.size(0), -1, 1, 1, 1
        )
    w0, w1, w2 = (w[:, i].reshape(-1, 1, 1, 1, 1) for i in range(3))
    eca = x * ys[1] * w0 + x * ys[5] * w1 + x * ys[3] * w2
    g = g5.flatten(1)
    w1, w2 = model.se.weights()  # fc.0 and fc.2
    s = torch.sigmoid(F.linear(_leaky(F.linear(g, w1)), w2))
    se = x * s.reshape(x.size(0), -1, 1, 1, 1)
    return eca + se


def gem_hpp(hpp: GeMHPP, x: torch.Tensor) -> torch.Tensor:
    """GeM per bin with ``avg_pool2d``: ``[n, c, h, w]`` → ``[n, c, parts]``."""
    n, c, h, w = x.shape
    bins = [h] if hpp.bin_num is None else hpp.bin_num
    out = []
    for b in bins:
        z = x.reshape(n, c, b, -1)
        out.append(
            F.avg_pool2d(z.clamp(min=hpp.eps).pow(hpp.p), (1, z.size(-1))).pow(1.0 / hpp.p).squeeze(-1)
        )
    return torch.cat(out, -1)


def separate_fcs(fc_bin: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-part linear maps, one part at a time: ``[n, c, p]`` → ``[n, out, p]``."""
    return torch.stack([x[:, :, i] @ fc_bin[i] for i in range(fc_bin.size(0))], dim=2)


def straightforward_forward(model: GaitGL, sils: torch.Tensor) -> dict[str, torch.Tensor]:
    """The whole network on a batch of equal-length sequences ``[n, s, h, w]`` (no padding)."""
    x = sils.unsqueeze(1).float()
    s = x.size(2)
    if s < 3:
        x = x.repeat(1, 1, 3 if s == 1 else 2, 1, 1)
    for layer in model.conv3d:
        x = _conv(layer, x) if isinstance(layer, BasicConv3d) else _leaky(x)
    x = _leaky(_conv(_basic(model.LTA[0]), x))
    x = _glconvs(model.GLConvA0, x)
    x = F.max_pool3d(x, kernel_size=(1, 2, 2), stride=(1, 2, 2))
    x = _glconvs(model.GLConvA1, x)
    x = _glconvs(model.GLConvB2, x)
    meta = model if isinstance(model, MetaGait) else None  # GaitGL: no attention, max over time
    if meta is not None and meta.variant == "reference" and hasattr(meta, "eca"):
        x = reference_attention(meta, x)
    elif meta is not None and meta.variant == "paper":
        x = meta.mta(x, None)
    if meta is not None and meta.use_mtp:
        x = meta.mtp(x, None)
    else:
        x = torch.max(x, dim=2)[0]
    feat = gem_hpp(model.HPP, x)  # [n, c, p]
    gait = separate_fcs(model.Head0.fc_bin, feat)  # [n, c, p]
    bnft = model.Bn(gait)
    logits = separate_fcs(model.Head1.fc_bin, bnft)  # [n, classes, p]
    return {"embeddings": bnft.permute(0, 2, 1).contiguous(), "logits": logits.permute(0, 2, 1).contiguous()}


@torch.no_grad()
def straightforward_embed(model: GaitGL, sequences: Sequence[torch.Tensor | npt.ArrayLike]) -> torch.Tensor:
    """Embeddings of variable-length sequences, one sequence at a time (eval mode)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        outs = [
            straightforward_forward(model, _to_float_frames(seq).to(device)[None])["embeddings"][0]
            for seq in sequences
        ]
    finally:
        model.train(was_training)
    return torch.stack(outs)
