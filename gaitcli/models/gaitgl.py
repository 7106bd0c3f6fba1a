"""GaitGL (global-local features + local temporal aggregation), OpenGait-compatible.

State-dict names and shapes are those of OpenGait's GaitGL (docs/models.md), for both of its branches:

* CASIA-B and other sets (``channels`` ``[c0, c1, c2]``): one stem convolution, GLConvs with
  halving 3 (8 horizontal strips), the last with ``fm_sign`` (height doubles);
* OU-MVLP and GREW (``data_cfg.dataset_name`` in ``('OUMVLP', 'GREW')``, ``channels``
  ``[c0, c1, c2, c3]``): two stem convolutions and pairs of GLConvs with halving 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .base import GaitModel
from .layers import (
    BasicConv3d,
    ConvBlock,
    GeMHPP,
    GLConv,
    MaskedSequential,
    SeparateFCs,
    TemporalMaxPool,
    init_weights,
    padding_mask,
)
from .registry import AT_LEAST_ONE, ModelConfig, option, parse_model_config, register_model

LARGE_DATASETS = ("OUMVLP", "GREW")
DEFAULT_PARTS = 64


def _stem(c_in: int, c_out: int) -> list[nn.Module]:
    return [BasicConv3d(c_in, c_out, (3, 3, 3), (1, 1, 1), (1, 1, 1)), nn.LeakyReLU(inplace=True)]


def parts_from_cfg(model_cfg: Mapping[str, object]) -> int:
    """Number of horizontal parts: ``sum(bin_num)``, or 64 (one per feature row of a 64-high
    input) when ``bin_num`` is null."""
    bins = model_cfg.get("bin_num")
    if bins is None:
        return DEFAULT_PARTS
    if not isinstance(bins, Iterable):
        raise TypeError(f"model_cfg.bin_num must be a list of bin counts, got {bins!r}")
    return int(sum(int(b) for b in bins))


@dataclass
class GaitGLConfig(ModelConfig):
    """GaitGL's ``model_cfg`` keys (besides those of every model)."""

    channels: list[int] = option(
        [32, 64, 128],
        "Widths of the backbone stages ([32, 64, 128, 256] for OU-MVLP / GREW).",
        kind="list[int]",
        range=AT_LEAST_ONE,
    )
    """Backbone widths."""
    bin_num: list[int] | None = option(
        None,
        "Horizontal bins of the GeM pooling; null = one bin per feature row.",
        kind="list[int]",
        nullable=True,
        range=AT_LEAST_ONE,
    )
    """GeM pooling bins."""


@register_model("GaitGL", GaitGLConfig)
class GaitGL(GaitModel):
    """GaitGL. ``model_cfg``: see :class:`GaitGLConfig`."""

    name = "GaitGL"
    config_class: type[GaitGLConfig] = GaitGLConfig

    def __init__(self, model_cfg: Mapping[str, object], dataset_name: str = "CASIA-B") -> None:
        super().__init__(model_cfg, dataset_name)
        self.cfg = parse_model_config(self.config_class, model_cfg)
        channels = [int(c) for c in self.cfg.channels]
        class_num = int(self.cfg.class_num)
        bin_num = self.cfg.bin_num
        self.large = self.dataset_name in LARGE_DATASETS
        need = 4 if self.large else 3
        if len(channels) != need:
            which = f"data set {self.dataset_name}" if self.large else "the CASIA-B-style branch"
            example = "[32, 64, 128, 256]" if self.large else "[32, 64, 128]"
            raise ConfigError(
                f"model_cfg.channels: {which} needs {need} widths (e.g. {example}), got {channels}"
            )
        if bin_num is not None and (not bin_num or any(int(b) < 1 for b in bin_num)):
            raise ConfigError(
                f"model_cfg.bin_num must be null or a list of positive bin counts, got {bin_num}"
            )
        if class_num < 1:
            raise ConfigError(f"model_cfg.class_num must be at least 1, got {class_num}")
        self.channels = channels
        self.class_num = class_num
        self.parts_num = parts_from_cfg({"bin_num": bin_num})
        c = channels
        if self.large:
            self.conv3d = ConvBlock(*_stem(1, c[0]), *_stem(c[0], c[0]))
        else:
            self.conv3d = ConvBlock(*_stem(1, c[0]))
        lta = BasicConv3d(c[0], c[0], (3, 1, 1), (3, 1, 1), (0, 0, 0))
        self.LTA = ConvBlock(lta, nn.LeakyReLU(inplace=True))
        if self.large:
            self.GLConvA0: nn.Module = MaskedSequential(GLConv(c[0], c[1], 1), GLConv(c[1], c[1], 1))
            self.MaxPool0 = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
            self.GLConvA1: nn.Module = MaskedSequential(GLConv(c[1], c[2], 1), GLConv(c[2], c[2], 1))
            self.GLConvB2: nn.Module = MaskedSequential(
                GLConv(c[2], c[3], 1), GLConv(c[3], c[3], 1, fm_sign=True)
            )
        else:
            self.GLConvA0 = GLConv(c[0], c[1], 3)
            self.MaxPool0 = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
            self.GLConvA1 = GLConv(c[1], c[2], 3)
            self.GLConvB2 = GLConv(c[2], c[2], 3, fm_sign=True)
        self.out_channels = c[-1]
        self.build_attention()
        self.TP = TemporalMaxPool()
        self.HPP = GeMHPP(bin_num)
        self.Head0 = SeparateFCs(self.parts_num, c[-1], c[-1])
        self.Bn = nn.BatchNorm1d(c[-1])
        self.Head1 = SeparateFCs(self.parts_num, c[-1], class_num)
        self.reset_parameters()

    # -- construction hooks -------------------------------------------------------------------
    def build_attention(self) -> None:
        """MetaGait adds its attention modules here (before TP, as in the reference order)."""

    def reset_parameters(self) -> None:
        """The initialisation ``model_cfg.init`` names (default: the reference's)."""
        init_weights(self, self.cfg.init)

    # -- forward pieces -----------------------------------------------------------------------
    def temporal_masks(
        self, lens: torch.Tensor | None, steps: int, device: torch.device
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Masks before and after LTA (kernel 3, stride 3, no padding: L frames → floor(L / 3))."""
        if lens is None:
            return None, None
        return padding_mask(lens, steps, device), padding_mask(lens // 3, steps // 3, device)

    def backbone(
        self, x: torch.Tensor, masks: tuple[torch.Tensor | None, ...]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        mask0, mask = masks
        x = self.conv3d(x, mask0)
        x = self.LTA(x, mask)
        x = self.GLConvA0(x, mask)
        x = self.MaxPool0(x)
        x = self.GLConvA1(x, mask)
        x = self.GLConvB2(x, mask)
        return x, mask

    def pool_time(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        pooled: torch.Tensor = self.TP(x, mask)
        return pooled

    def heads(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = self.HPP(feat)  # [n, c, p]
        gait = self.Head0(pooled).permute(1, 2, 0)  # [p, n, c] → [n, c, p]
        bnft = self.Bn(gait)  # BatchNorm1d over channels, shared by all parts
        logits = self.Head1(bnft)  # [p, n, classes]
        return {
            "embeddings": bnft.permute(0, 2, 1).float().contiguous(),
            "logits": logits.permute(1, 0, 2).float().contiguous(),
        }

    def extra_repr(self) -> str:
        branch = "large (OUMVLP/GREW)" if self.large else "CASIA-B"
        return (
            f"branch={branch}, channels={self.channels}, class_num={self.class_num}, parts={self.parts_num}"
        )
