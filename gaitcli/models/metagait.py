"""MetaGait: GaitGL plus meta-learned attention (ECCV 2022).

``variant: reference`` (default) is the public code's network (docs/models.md): after ``GLConvB2``,
``out = eca(x) + se(x)`` where

* ``eca`` (MTA local): descriptor ``g = mean_{s,h,w}(x)`` ``[n, C]``; static Conv1d kernels 1, 3, 5
  along the channel axis, each followed by a sigmoid (``y1, y3, y5``); a meta hyper network
  (``dynamic_conv``) maps ``g`` to three per-sample scalars ``w``;
  ``eca(x) = x·y1·w[0] + x·y5·w[1] + x·y3·w[2]``;
* ``se`` (MTA global): ``x · sigmoid(W2 · leaky(W1 · g))``.

Both are computed as one per-sample, per-channel scale applied to ``x`` once; the MHN's grouped
"per-sample convolution" is a batched matrix product. Widths follow ``C = channels[-1]``.

``variant: paper`` replaces eca + se by :class:`~gaitcli.models.meta_modules.MetaTripleAttention`
(switches ``model_cfg.mta``) and, with ``model_cfg.mtp``, the temporal max by
:class:`~gaitcli.models.meta_modules.MetaTemporalPooling` (docs/models-paper.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .gaitgl import GaitGL, GaitGLConfig
from .layers import NEGATIVE_SLOPE, init_weights, leaky, masked_mean_descriptor
from .meta_modules import MetaTemporalPooling, MetaTripleAttention
from .registry import option, parse_model_config, register_model

VARIANTS = ("reference", "paper")


def _full_precision(device_type: str) -> contextlib.AbstractContextManager[None]:
    """Autocast switched off (the descriptors and small matrices run in float32)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


BRANCH_SCALES = 3  # kernels 1, 3, 5


class MHN(nn.Module):
    """The reference's meta hyper network: descriptor ``g`` ``[n, C]`` → per-sample weights
    ``[n, 3]`` of the three ECA branches.

    ``reduce`` (C → max(16, C//16), bias) → ``wn_fc1`` (→ 6, bias) → sigmoid → ``wn_fc2``
    (6 → 3·C in 6 groups, no bias) gives a per-sample ``[3, C]`` matrix applied to ``g``. Kept as
    1×1×1 Conv3d modules for the reference's state-dict names and shapes; evaluated with linear
    maps and one batched product."""

    def __init__(self, channels: int, outputs: int = BRANCH_SCALES, m: int = 2, g: int = 2) -> None:
        super().__init__()
        hidden = max(16, channels // 16)
        groups = g * outputs
        if (outputs * channels) % groups:
            raise ConfigError(f"MetaGait needs an even last channel width, got {channels}")
        self.channels = channels
        self.outputs = outputs
        self.groups = groups
        self.reduce = nn.Conv3d(channels, hidden, kernel_size=1)
        self.wn_fc1 = nn.Conv3d(hidden, m * outputs, kernel_size=1, bias=True)
        self.wn_fc2 = nn.Conv3d(m * outputs, outputs * channels, kernel_size=1, groups=groups, bias=False)

    def generated(self, g: torch.Tensor) -> torch.Tensor:
        """The per-sample matrix ``[n, outputs, C]`` that the reference applies as a convolution."""
        h = F.linear(g, self.reduce.weight.flatten(1), self.reduce.bias)
        a = torch.sigmoid(F.linear(h, self.wn_fc1.weight.flatten(1), self.wn_fc1.bias))  # [n, m*outputs]
        # wn_fc2: output channel o belongs to group o // (outputs*C/groups) and scales that input.
        per_group = self.wn_fc2.weight.view(self.groups, -1)  # [groups, outputs*C/groups]
        return (a[:, : self.groups, None] * per_group).reshape(g.size(0), self.outputs, self.channels)

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        return torch.bmm(self.generated(g), g.unsqueeze(2)).squeeze(2)  # [n, outputs]


class LocalAttention(nn.Module):
    """``eca``: multi-scale channel attention fused with MHN weights (returns the scale ``[n, C]``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, 1, kernel_size=1, padding=0, bias=False)
        self.conv3 = nn.Conv1d(1, 1, kernel_size=3, padding=1, bias=False)
        self.conv5 = nn.Conv1d(1, 1, kernel_size=5, padding=2, bias=False)
        self.dynamic_conv = MHN(channels)

    def scale(self, g: torch.Tensor) -> torch.Tensor:
        w = self.dynamic_conv(g)  # [n, 3]
        row = g.unsqueeze(1)  # [n, 1, C]
        y1 = torch.sigmoid(self.conv1(row)).squeeze(1)
        y3 = torch.sigmoid(self.conv3(row)).squeeze(1)
        y5 = torch.sigmoid(self.conv5(row)).squeeze(1)
        # The reference pairs w[1] with the kernel-5 branch and w[2] with kernel 3.
        out: torch.Tensor = y1 * w[:, 0:1] + y5 * w[:, 1:2] + y3 * w[:, 2:3]
        return out


class SELayer(nn.Module):
    """``se``: squeeze-and-excitation without bias (returns the scale ``[n, C]``)."""

    def __init__(self, channels: int, reduction: int = 1) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.LeakyReLU(NEGATIVE_SLOPE),
            nn.Linear(channels // reduction, channels, bias=False),
            nn.Sigmoid(),
        )

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W1 and W2 (``fc.0.weight``, ``fc.2.weight``)."""
        return cast(nn.Linear, self.fc[0]).weight, cast(nn.Linear, self.fc[2]).weight

    def scale(self, g: torch.Tensor) -> torch.Tensor:
        w1, w2 = self.weights()
        return torch.sigmoid(F.linear(leaky(F.linear(g, w1)), w2))


@dataclass
class MTAConfig:
    """``model_cfg.mta``: the Meta Triple Attention branches of the paper variant."""

    channel: bool = option(True, "Channel attention branch.", kind="bool")
    """Channel branch on."""
    spatial: bool = option(True, "Spatial attention branch.", kind="bool")
    """Spatial branch on."""
    temporal: bool = option(True, "Temporal attention branch.", kind="bool")
    """Temporal branch on."""


@dataclass
class MetaGaitConfig(GaitGLConfig):
    """MetaGait's ``model_cfg`` keys: GaitGL's plus the variant and its switches."""

    variant: str = option(
        "reference",
        "MetaGait variant: reference (public code) or paper (our design of the paper).",
        kind="str",
        choices=VARIANTS,
    )
    """Which MetaGait."""
    mta: MTAConfig = option(
        None, "Paper variant: Meta Triple Attention branches.", kind="section", children=MTAConfig
    )
    """MTA switches."""
    mtp: bool = option(True, "Paper variant: Meta Temporal Pooling (else temporal max).", kind="bool")
    """MTP on."""


@register_model("MetaGait", MetaGaitConfig, default=True)
class MetaGait(GaitGL):
    """MetaGait. ``model_cfg``: see :class:`MetaGaitConfig`."""

    name = "MetaGait"
    config_class = MetaGaitConfig

    def __init__(self, model_cfg: Mapping[str, object], dataset_name: str = "CASIA-B") -> None:
        variant = parse_model_config(MetaGaitConfig, model_cfg).variant
        if variant not in VARIANTS:
            raise ConfigError(f"model_cfg.variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        self.variant = variant
        super().__init__(model_cfg, dataset_name)

    def build_attention(self) -> None:
        c = self.out_channels
        if self.variant == "reference":
            self.eca = LocalAttention(c)
            self.se = SELayer(c)
            self.use_mtp = False
            return

        cfg = self.cfg
        assert isinstance(cfg, MetaGaitConfig)  # parsed with config_class
        mta = cfg.mta
        self.mta = MetaTripleAttention(c, channel=mta.channel, spatial=mta.spatial, temporal=mta.temporal)
        self.use_mtp = bool(cfg.mtp)
        if self.use_mtp:
            self.mtp = MetaTemporalPooling(c)

    def reset_parameters(self) -> None:
        """``model_cfg.init`` for the GaitGL layers and the reference attention; the paper
        modules keep their own calibrated initialisation."""
        for child in self.children():
            if isinstance(child, (MetaTripleAttention, MetaTemporalPooling)):
                child.reset_parameters()
            else:
                init_weights(child, self.cfg.init)

    def attend(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.variant == "paper":
            attended: torch.Tensor = self.mta(x, mask)
            return attended
        with _full_precision(x.device.type):
            g = masked_mean_descriptor(x, mask)  # [n, C], float32
            g = g.to(self.se.weights()[0].dtype)  # float32 unless the whole model was cast
            scale = self.eca.scale(g) + self.se.scale(g)
        # eca(x) + se(x) = x * (y1·w0 + y5·w1 + y3·w2) + x * s: one product over the big tensor.
        return x * scale.to(x.dtype)[:, :, None, None, None]

    def pool_time(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        pooled: torch.Tensor = self.mtp(x, mask) if self.use_mtp else self.TP(x, mask)
        return pooled

    def extra_repr(self) -> str:
        return f"variant={self.variant}, " + super().extra_repr()
