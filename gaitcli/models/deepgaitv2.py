"""DeepGaitV2 (Fan et al., "Exploring Deep Models for Practical Gait Recognition"), OpenGait-compatible.

State-dict names and shapes are those of OpenGait's ``DeepGaitV2`` in each of its modes
(``model_cfg.Backbone.mode``; docs/model-deepgaitv2.md):

* ``p3d`` (pseudo-3-D, the published configs): stages 2-4 of ``BasicBlockP3D`` — two per-frame
  3×3 convolutions and, between them, a temporal (3, 1, 1) convolution added as a residual;
* ``3d``: stages 2-4 of ``BasicBlock3D`` — two 3×3×3 convolutions per block;
* ``2d``: every block per frame (``BasicBlock2D``, torchvision's basic block).

The stem (``layer0``) and the first stage (``layer1``) run per frame in every mode; stages 2
and 3 halve the frame size; temporal max pooling, a 16-bin horizontal pyramid (mean + max per
bin), per-part FCs (``FCs``, the embedding) and per-part BNNecks (``BNNecks``, cosine logits).

Frames are processed *packed*: the real frames of every sequence of a batch, one after the other,
as one ``[frames, c, h, w]`` tensor (OpenGait's concatenated form). Per-frame layers see only
real frames, so a BatchNorm in training takes its statistics over real frames only. A temporal
convolution unpacks the frames into ``[n, c, s, h, w]`` with zeros in the padded frames — the
zeros the convolution would see at the end of a sequence run alone — and packs its output
again, so each sequence of a padded batch gets its result alone (:class:`FrameLayout`).
OpenGait's BatchNorm3d layers run here as BatchNorm2d on the packed frames: the same per-channel
statistics, the same state-dict entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import GaitModel
from .layers import (
    SeparateFCs,
    TemporalMaxPool,
    _direct_onednn,
    init_weights,
    lengths_to_mask,
    onednn_conv3d,
)
from .registry import AT_LEAST_ONE, ModelConfig, option, parse_model_config, register_model
from .set_layers import SeparateBNNecks, horizontal_pyramid

MODES = ("2d", "p3d", "3d")
PARTS = 16  # OpenGait's HorizontalPoolingPyramid(bin_num=[16]) and its 16-part heads
STAGES = 4


# ----------------------------------------------------------------------------------------------
# model_cfg
# ----------------------------------------------------------------------------------------------


@dataclass
class DeepGaitV2BackboneConfig:
    """``model_cfg.Backbone``: the residual backbone."""

    mode: str = option(
        "p3d",
        "Block type of stages 2-4: p3d (pseudo-3-D, the published configs), 3d (3x3x3 convolutions) "
        "or 2d (per frame).",
        kind="str",
        choices=MODES,
    )
    """Block type of stages 2-4."""
    in_channels: int = option(
        1, "Input channels (gaitcli feeds one silhouette channel).", kind="int", choices=(1,)
    )
    """Input channels."""
    layers: list[int] = option(
        [1, 1, 1, 1],
        "Residual blocks per stage (four stages; [1, 4, 4, 1] for Gait3D / GREW).",
        kind="list[int]",
        range=AT_LEAST_ONE,
    )
    """Blocks per stage."""
    channels: list[int] = option(
        [64, 128, 256, 512],
        "Widths of the four stages; the embedding has channels[2] channels per part.",
        kind="list[int]",
        range=AT_LEAST_ONE,
    )
    """Stage widths."""

    def __post_init__(self) -> None:
        # checked when the config is loaded (gait config), not only when the model is built
        for key, values in (("channels", self.channels), ("layers", self.layers)):
            if len(values) != STAGES:
                raise ConfigError(
                    f"model_cfg.Backbone.{key} must be {STAGES} numbers (one per stage), got {values}"
                )


@dataclass
class DeepGaitV2NeckConfig:
    """``model_cfg.SeparateBNNecks``: the BNNeck classifier."""

    class_num: int | None = option(
        None,
        "Classifier width (OpenGait's key); null = model_cfg.class_num. When set it is the class count.",
        kind="int",
        nullable=True,
        range=AT_LEAST_ONE,
    )
    """Classes (null: ``model_cfg.class_num``)."""


@dataclass
class DeepGaitV2Config(ModelConfig):
    """DeepGaitV2's ``model_cfg`` keys (OpenGait's) besides those of every model.

    The classifier width is ``SeparateBNNecks.class_num`` when a config sets it (OpenGait's
    configs do), else ``class_num``; after construction ``class_num`` holds that width."""

    Backbone: DeepGaitV2BackboneConfig = option(
        None, "The residual backbone (OpenGait's Backbone).", kind="section",
        children=DeepGaitV2BackboneConfig,
    )
    """The backbone."""
    SeparateBNNecks: DeepGaitV2NeckConfig = option(
        None, "The BNNeck classifier.", kind="section", children=DeepGaitV2NeckConfig
    )
    """The classifier."""
    use_emb2: bool = option(
        False,
        "Retrieve with the BNNeck's normalised features instead of the FCs' output (training "
        "still feeds the FCs' output to the triplet loss, as OpenGait).",
        kind="bool",
    )
    """Inference embedding: BNNeck features (true) or FCs output (false)."""

    def __post_init__(self) -> None:
        if self.SeparateBNNecks.class_num is not None:
            self.class_num = int(self.SeparateBNNecks.class_num)


# ----------------------------------------------------------------------------------------------
# packed frames
# ----------------------------------------------------------------------------------------------


class FrameLayout:
    """Where the real frames of a batch ``[n, c, s, h, w]`` padded along time lie: the first
    ``lengths[b]`` frames of sequence ``b`` (None: every frame is real).

    :meth:`pack` keeps the real frames as ``[frames, c, h, w]``, sequence after sequence;
    :meth:`unpack` puts them back with zeros in the padded frames. Both are one strided copy per
    sequence (a gather through an index tensor was many times slower on the CPU)."""

    def __init__(self, n: int, steps: int, lengths: list[int] | None) -> None:
        self.n = n
        self.steps = steps
        self.lengths = lengths

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """``[n, c, s, h, w]`` → ``[frames, c, h, w]``."""
        if self.lengths is None:
            n, c, s, h, w = x.shape
            return x.transpose(1, 2).reshape(n * s, c, h, w)
        return torch.cat([x[b, :, :length].transpose(0, 1) for b, length in enumerate(self.lengths)])

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """``[frames, c, h, w]`` → ``[n, c, s, h, w]`` (contiguous), zeros in the padded frames."""
        c, h, w = x.shape[1:]
        if self.lengths is None:
            return x.reshape(self.n, self.steps, c, h, w).transpose(1, 2).contiguous()
        out = x.new_zeros((self.n, c, self.steps, h, w))
        start = 0
        for b, length in enumerate(self.lengths):
            out[b, :, :length] = x[start : start + length].transpose(0, 1)
            start += length
        return out


class TimeConv3d(nn.Conv3d):
    """``nn.Conv3d`` (same parameters) applied to packed frames ``[frames, c, h, w]``.

    A kernel one frame deep is a per-frame 2-D convolution; a deeper one (which keeps the frame
    count: stride 1, padding ``(k - 1) / 2`` in time) runs on the unpacked, zero-padded batch.
    A 5-D input is a plain ``Conv3d``."""

    def forward(self, input: torch.Tensor, layout: FrameLayout | None = None) -> torch.Tensor:
        if input.dim() == 5:
            return self._conv3d(input)
        kt, st, pt = self.kernel_size[0], self.stride[0], self.padding
        if kt == 1 and st == 1 and isinstance(pt, tuple) and pt[0] == 0:
            weight = self.weight[:, :, 0]
            return F.conv2d(input, weight, self.bias, self.stride[1:], pt[1:], self.dilation[1:], self.groups)
        if layout is None:
            raise ValueError("a temporal convolution on packed frames needs their FrameLayout")
        return layout.pack(self._conv3d(layout.unpack(input)))

    def _conv3d(self, x: torch.Tensor) -> torch.Tensor:
        if _direct_onednn(x, self):
            return onednn_conv3d(x, self)
        out: torch.Tensor = super().forward(x)
        return out


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


# ----------------------------------------------------------------------------------------------
# blocks (every forward takes packed frames and their layout)
# ----------------------------------------------------------------------------------------------


class SetBlock(nn.Module):
    """OpenGait's ``SetBlockWrapper`` (state-dict name ``forward_block``): a per-frame module,
    here applied to the packed frames directly."""

    def __init__(self, forward_block: nn.Module) -> None:
        super().__init__()
        self.forward_block = forward_block

    def forward(self, x: torch.Tensor, layout: FrameLayout | None = None) -> torch.Tensor:
        if isinstance(self.forward_block, Stage):
            staged: torch.Tensor = self.forward_block(x, layout)
            return staged
        out: torch.Tensor = self.forward_block(x)
        return out


class Stage(nn.Sequential):
    """A stage of residual blocks, each called with ``(frames, layout)``."""

    def forward(self, x: torch.Tensor, layout: FrameLayout | None = None) -> torch.Tensor:
        for block in self:
            x = block(x, layout)
        return x


class BasicBlock2D(nn.Module):
    """torchvision's basic block, per frame: ``relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut)``."""

    def __init__(self, c_in: int, c_out: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = downsample

    def forward(self, x: torch.Tensor, layout: FrameLayout | None = None) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + shortcut
        result: torch.Tensor = self.relu(out)
        return result


class BasicBlockP3D(nn.Module):
    """Pseudo-3-D block: per-frame ``conv1`` (3×3, BN, ReLU), then
    ``relu(out + sbn(shortcut3d(out)))`` with a (3, 1, 1) temporal convolution, per-frame
    ``conv2`` (3×3, BN), plus the shortcut, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = SetBlock(nn.Sequential(conv3x3(c_in, c_out, stride), nn.BatchNorm2d(c_out),
                                            nn.ReLU(inplace=True)))
        self.conv2 = SetBlock(nn.Sequential(conv3x3(c_out, c_out), nn.BatchNorm2d(c_out)))
        self.shortcut3d = TimeConv3d(c_out, c_out, (3, 1, 1), (1, 1, 1), (1, 0, 0), bias=False)
        self.sbn = nn.BatchNorm2d(c_out)  # OpenGait's BatchNorm3d, on packed frames
        self.downsample = downsample

    def forward(self, x: torch.Tensor, layout: FrameLayout | None = None) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.conv1(x)
        out = self.relu(out + self.sbn(self.shortcut3d(out, layout)))
        out = self.conv2(out) + shortcut
        result: torch.Tensor = self.relu(out)
        return result


class BasicBlock3D(nn.Module):
    """3-D block: two 3×3×3 convolutions (the first strides space) with BN, plus the shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = TimeConv3d(c_in, c_out, (3, 3, 3), (1, stride, stride), (1, 1, 1), bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)  # OpenGait's BatchNorm3d, on packed frames
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = TimeConv3d(c_out, c_out, (3, 3, 3), (1, 1, 1), (1, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = downsample

    def forward(self, x: torch.Tensor, layout: FrameLayout | None = None) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x, layout)))
        out = self.bn2(self.conv2(out, layout)) + shortcut
        result: torch.Tensor = self.relu(out)
        return result


_BLOCKS: dict[str, type[BasicBlock2D] | type[BasicBlockP3D] | type[BasicBlock3D]] = {
    "2d": BasicBlock2D,
    "p3d": BasicBlockP3D,
    "3d": BasicBlock3D,
}


def make_stage(mode: str, c_in: int, c_out: int, stride: int, blocks: int, per_frame: bool = False) -> Stage:
    """OpenGait's ``make_layer``: the first block strides (and projects its shortcut when the
    stride or the width changes: a 1×1 convolution for ``2d``, a 1×1×1 Conv3d for ``p3d`` / ``3d``,
    then BN); the others keep the shape. ``per_frame`` forces ``BasicBlock2D`` (layer1)."""
    block = BasicBlock2D if per_frame else _BLOCKS[mode]
    downsample: nn.Module | None = None
    if stride > 1 or c_in != c_out:
        if mode == "2d":
            proj: nn.Module = nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False)
        else:
            proj = TimeConv3d(c_in, c_out, (1, 1, 1), (1, stride, stride), (0, 0, 0), bias=False)
        downsample = nn.Sequential(proj, nn.BatchNorm2d(c_out))
    stage = [block(c_in, c_out, stride, downsample)]
    stage += [block(c_out, c_out, 1, None) for _ in range(1, blocks)]
    return Stage(*stage)


# ----------------------------------------------------------------------------------------------
# the model (heads: set_layers.horizontal_pyramid, SeparateBNNecks)
# ----------------------------------------------------------------------------------------------


@register_model("DeepGaitV2", DeepGaitV2Config)
class DeepGaitV2(GaitModel):
    """DeepGaitV2. ``model_cfg``: see :class:`DeepGaitV2Config`."""

    name = "DeepGaitV2"
    repeat_short_sequences = False  # OpenGait's DeepGaitV2 runs a 1- or 2-frame sequence as it is
    supports_channels_last = False

    def __init__(self, model_cfg: Mapping[str, object], dataset_name: str = "CASIA-B") -> None:
        super().__init__(model_cfg, dataset_name)
        self.cfg = parse_model_config(DeepGaitV2Config, model_cfg)
        bb = self.cfg.Backbone
        mode = str(bb.mode)
        channels = [int(c) for c in bb.channels]
        layers = [int(n) for n in bb.layers]
        if mode not in MODES:
            raise ConfigError(f"model_cfg.Backbone.mode must be one of {', '.join(MODES)}, got {mode!r}")
        for key, values in (("channels", channels), ("layers", layers)):
            if len(values) != STAGES or min(values) < 1:
                raise ConfigError(
                    f"model_cfg.Backbone.{key} must be {STAGES} positive numbers (one per stage), "
                    f"got {values}"
                )
        if int(bb.in_channels) != 1:
            raise ConfigError(
                f"model_cfg.Backbone.in_channels must be 1 (gaitcli feeds silhouettes), got {bb.in_channels}"
            )
        if self.channels_last:
            raise ConfigError(
                "model_cfg.channels_last is for the 3-D networks (GaitGL, MetaGait); DeepGaitV2 runs on "
                "packed 2-D frames: set it to false"
            )
        self.mode = mode
        self.channels = channels
        self.class_num = int(self.cfg.class_num)
        self.parts_num = PARTS
        self.out_channels = channels[2]
        self.use_emb2 = bool(self.cfg.use_emb2)
        c = channels
        self.layer0 = SetBlock(nn.Sequential(conv3x3(1, c[0]), nn.BatchNorm2d(c[0]), nn.ReLU(inplace=True)))
        self.layer1 = SetBlock(make_stage(mode, c[0], c[0], 1, layers[0], per_frame=True))
        strides = (2, 2, 1)
        later = [make_stage(mode, c[i], c[i + 1], strides[i], layers[i + 1]) for i in range(3)]
        if mode == "2d":
            self.layer2: nn.Module = SetBlock(later[0])
            self.layer3: nn.Module = SetBlock(later[1])
            self.layer4: nn.Module = SetBlock(later[2])
        else:
            self.layer2, self.layer3, self.layer4 = later
        self.FCs = SeparateFCs(PARTS, c[3], c[2])
        self.BNNecks = SeparateBNNecks(PARTS, c[2], self.class_num)
        self.TP = TemporalMaxPool()
        init_weights(self, self.cfg.init)

    # -- forward pieces ----------------------------------------------------------------------
    def temporal_masks(
        self, lens: torch.Tensor | None, steps: int, device: torch.device
    ) -> tuple[torch.Tensor | None, ...]:
        """``(mask [n, s], lengths on the CPU)``, both None when every frame is real."""
        if lens is None or bool((lens >= steps).all()):
            return None, None
        lens = lens.cpu()
        return lengths_to_mask(lens, steps, device), lens

    def backbone(
        self, x: torch.Tensor, masks: tuple[torch.Tensor | None, ...]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        mask, lens = masks
        layout = FrameLayout(x.size(0), x.size(2), None if lens is None else [int(v) for v in lens.tolist()])
        frames = layout.pack(x)
        frames = self.layer0(frames)
        frames = self.layer1(frames, layout)
        frames = self.layer2(frames, layout)
        frames = self.layer3(frames, layout)
        frames = self.layer4(frames, layout)
        return layout.unpack(frames), mask

    def pool_time(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        pooled: torch.Tensor = self.TP(x, mask)
        return pooled

    def heads(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = horizontal_pyramid(feat, [PARTS])  # [n, c, p]
        embed_1 = self.FCs(pooled)  # [p, n, c2]
        embed_2, logits = self.BNNecks(embed_1.permute(1, 2, 0))  # [p, n, c2], [p, n, classes]
        embed = embed_2 if self.use_emb2 and not self.training else embed_1
        return {
            "embeddings": embed.transpose(0, 1).float().contiguous(),
            "logits": logits.transpose(0, 1).float().contiguous(),
        }

    def extra_repr(self) -> str:
        layers = self.cfg.Backbone.layers
        return (
            f"mode={self.mode}, channels={self.channels}, layers={layers}, class_num={self.class_num}, "
            f"parts={self.parts_num}, use_emb2={self.use_emb2}"
        )
