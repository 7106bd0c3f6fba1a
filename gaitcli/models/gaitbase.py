"""GaitBase: OpenGait's ``Baseline`` (Fan et al., "OpenGait: Revisiting Gait Recognition Toward
Better Practicality", CVPR 2023), state-dict compatible with OpenGait.

The network, for silhouettes ``[n, s, h, w]`` (docs/model-gaitbase.md):

1. ``Backbone``: a ResNet-9-like 2-D network applied to every frame on its own (OpenGait's
   ``SetBlockWrapper`` around its ``ResNet9``, a subclass of torchvision's ``ResNet``): a 3×3
   stem convolution (``conv1.conv``), ``bn1``, ReLU, an optional 3×3/2 max pool, then four stages
   ``layer1`` .. ``layer4`` of torchvision ``BasicBlock`` (or ``Bottleneck``) residual blocks with
   the widths ``channels`` and the first-block ``strides`` of ``backbone_cfg``; a stage of 0 blocks
   is the identity. Re-implemented here with torchvision's parameter names (``layerK.J.conv1``,
   ``bn1``, ``conv2``, ``bn2``, ``downsample.0`` / ``downsample.1``), without torchvision.
2. ``TP``: max over the frames of each sequence (OpenGait's ``PackSequenceWrapper(torch.max)``).
3. ``HPP``: horizontal pooling pyramid, mean + max of each of ``bin_num`` horizontal bins.
4. ``FCs``: one linear map per part (``SeparateFCs``), giving ``embed_1``.
5. ``BNNecks``: BatchNorm1d over the ``c·p`` features (or one per part), then cosine logits
   against normalised per-part class weights (``SeparateBNNecks``).

OpenGait trains the triplet loss on ``embed_1`` and evaluates ``embed_1`` too; the BN-neck
features only feed the classifier. So ``embeddings`` here is ``embed_1`` (``[n, p, c]``; OpenGait
holds it as ``[n, c, p]``) and ``logits`` are the BN neck's (``[n, p, classes]``).

Variable-length batches: the backbone works frame by frame, so only the real frames of a padded
batch are run (packed, like OpenGait's concatenated sequences), which also keeps BatchNorm's
training statistics those of the real frames; the temporal max looks at real frames only. Each
sequence of a batch therefore gets the result it gets alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .base import GaitModel
from .layers import TemporalMaxPool, init_weights
from .registry import AT_LEAST_ONE, NON_NEGATIVE, ModelConfig, option, parse_model_config, register_model
from .set_layers import BasicConv2d, SeparateBNNecks, SeparateFCs, horizontal_pyramid

BLOCKS = ("BasicBlock", "Bottleneck")
BACKBONES = ("ResNet9",)
DEFAULT_CLASS_NUM = 74
STAGES = 4


# ----------------------------------------------------------------------------------------------
# config
# ----------------------------------------------------------------------------------------------


@dataclass
class BackboneConfig:
    """``model_cfg.backbone_cfg``: OpenGait's ``ResNet9`` arguments (defaults: GaitBase's configs)."""

    type: str = option("ResNet9", "Backbone class (OpenGait's name).", kind="str", choices=BACKBONES)
    """The backbone class."""
    block: str = option(
        "BasicBlock",
        "Residual block of every stage: BasicBlock (two 3x3 convolutions) or Bottleneck "
        "(1x1, 3x3, 1x1 convolutions, output 4x wider), as torchvision's.",
        kind="str",
        choices=BLOCKS,
    )
    """The residual block."""
    in_channel: int = option(1, "Input channels (1: silhouettes).", kind="int", choices=(1,))
    """Input channels."""
    channels: list[int] = option(
        [64, 128, 256, 512],
        "Widths of stages 1-4 (the stem has stage 1's width).",
        kind="list[int]",
        range=AT_LEAST_ONE,
    )
    """Stage widths."""
    layers: list[int] = option(
        [1, 1, 1, 1], "Residual blocks per stage (0: the stage is the identity).", kind="list[int]",
        range=NON_NEGATIVE,
    )
    """Blocks per stage."""
    strides: list[int] = option(
        [1, 2, 2, 1], "Stride of each stage's first block.", kind="list[int]", range=AT_LEAST_ONE
    )
    """First-block strides."""
    maxpool: bool = option(
        False, "3x3 max pool with stride 2 after the stem (GaitBase's configs: false).", kind="bool"
    )
    """Max pool after the stem."""


@dataclass
class SeparateFCsConfig:
    """``model_cfg.SeparateFCs``: the per-part linear maps that give the embedding."""

    in_channels: int = option(
        512, "Input width: the backbone's output width.", kind="int", range=AT_LEAST_ONE
    )
    """Input width."""
    out_channels: int = option(256, "Embedding width per part.", kind="int", range=AT_LEAST_ONE)
    """Embedding width."""
    parts_num: int = option(16, "Parts: sum(bin_num).", kind="int", range=AT_LEAST_ONE)
    """Parts."""
    norm: bool = option(False, "Normalise each weight column (cosine-like maps).", kind="bool")
    """Normalised weights."""


@dataclass
class SeparateBNNecksConfig:
    """``model_cfg.SeparateBNNecks``: BatchNorm neck and classifier."""

    class_num: int | None = option(
        None,
        "Classifier width (OpenGait's key); null = model_cfg.class_num. When set it is the class count.",
        kind="int",
        nullable=True,
        range=AT_LEAST_ONE,
    )
    """Classes (null: ``model_cfg.class_num``)."""
    in_channels: int = option(256, "Input width: SeparateFCs.out_channels.", kind="int", range=AT_LEAST_ONE)
    """Input width."""
    parts_num: int = option(16, "Parts: sum(bin_num).", kind="int", range=AT_LEAST_ONE)
    """Parts."""
    norm: bool = option(True, "Cosine logits (normalised features and class weights).", kind="bool")
    """Cosine logits."""
    parallel_BN1d: bool = option(
        True, "One BatchNorm1d over all c*p features (else one per part).", kind="bool"
    )
    """One BatchNorm over all parts."""


@dataclass
class GaitBaseConfig(ModelConfig):
    """GaitBase's ``model_cfg`` keys (OpenGait's ``Baseline``) besides those of every model.

    The classifier width is ``SeparateBNNecks.class_num`` when a config sets it (OpenGait's
    configs do), else ``class_num``; after construction ``class_num`` holds that width."""

    backbone_cfg: BackboneConfig = option(
        None, "The ResNet-9-like backbone (OpenGait's backbone_cfg).", kind="section", children=BackboneConfig
    )
    """Backbone."""
    SeparateFCs: SeparateFCsConfig = option(
        None, "Per-part embedding maps.", kind="section", children=SeparateFCsConfig
    )
    """Embedding head."""
    SeparateBNNecks: SeparateBNNecksConfig = option(
        None, "BatchNorm neck and classifier.", kind="section", children=SeparateBNNecksConfig
    )
    """BN neck and classifier."""
    bin_num: list[int] | None = option(
        [16], "Horizontal bins of the pooling pyramid (mean + max per bin); parts = sum. "
        "null = one bin per part of SeparateFCs.parts_num (one per feature row of a 64-high input).",
        kind="list[int]", nullable=True, range=AT_LEAST_ONE,
    )
    """Pyramid bins (None: ``[SeparateFCs.parts_num]``)."""

    @property
    def bins(self) -> list[int]:
        """``bin_num``, or ``[SeparateFCs.parts_num]`` when it is null."""
        return [int(b) for b in self.bin_num] if self.bin_num is not None else [self.SeparateFCs.parts_num]

    def __post_init__(self) -> None:
        necks = self.SeparateBNNecks
        if necks.class_num is not None:
            if self.class_num not in (DEFAULT_CLASS_NUM, necks.class_num):
                raise ConfigError(
                    f"model_cfg.class_num {self.class_num} and model_cfg.SeparateBNNecks.class_num "
                    f"{necks.class_num} both set the classifier width; set one of them"
                )
            self.class_num = int(necks.class_num)
        check_shapes(self)


def backbone_width(cfg: BackboneConfig) -> int:
    """Channels of the backbone's output (the last stage with blocks; ×4 for Bottleneck)."""
    width = int(cfg.channels[0])  # the stem
    for planes, blocks in zip(cfg.channels, cfg.layers, strict=True):
        if blocks > 0:
            width = int(planes) * (4 if cfg.block == "Bottleneck" else 1)
    return width


def check_shapes(cfg: GaitBaseConfig) -> None:
    """The widths and part counts OpenGait leaves to the config must agree (one line when not)."""
    bb = cfg.backbone_cfg
    for key in ("channels", "layers", "strides"):
        if len(getattr(bb, key)) != STAGES:
            raise ConfigError(
                f"model_cfg.backbone_cfg.{key} needs {STAGES} entries (one per stage), got {getattr(bb, key)}"
            )
    if cfg.channels_last:
        raise ConfigError(
            "model_cfg.channels_last: GaitBase's convolutions are 2-D and channels_last is the 3-D "
            "memory format; set it to false"
        )
    parts = sum(cfg.bins)
    if parts < 1:
        raise ConfigError(
            f"model_cfg.bin_num must be null or a non-empty list of positive bins, got {cfg.bin_num}"
        )
    width = backbone_width(bb)
    fcs, necks = cfg.SeparateFCs, cfg.SeparateBNNecks
    pairs = (
        ("SeparateFCs.in_channels", fcs.in_channels, "the backbone's output width", width),
        ("SeparateFCs.parts_num", fcs.parts_num, "sum(bin_num)", parts),
        ("SeparateBNNecks.in_channels", necks.in_channels, "SeparateFCs.out_channels", fcs.out_channels),
        ("SeparateBNNecks.parts_num", necks.parts_num, "sum(bin_num)", parts),
    )
    for key, value, what, want in pairs:
        if value != want:
            raise ConfigError(f"model_cfg.{key} is {value} but {what} is {want}; set it to {want}")


# ----------------------------------------------------------------------------------------------
# backbone (torchvision's ResNet names)
# ----------------------------------------------------------------------------------------------


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm and a residual: ``relu(bn2(conv2(relu(bn1(conv1 x)))) + x')``
    where ``x'`` is ``downsample(x)`` (1×1 convolution + BatchNorm) when the shape changes."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(c_in, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + shortcut
        result: torch.Tensor = self.relu(out)
        return result


class Bottleneck(nn.Module):
    """1×1 → 3×3 (strided) → 1×1 (4× wider) convolutions with BatchNorm and a residual."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(c_in, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + shortcut
        result: torch.Tensor = self.relu(out)
        return result


class ResNet9(nn.Module):
    """OpenGait's ``ResNet9`` for frames ``[N, in_channel, h, w]`` → ``[N, width, h', w']``."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        block: type[BasicBlock] | type[Bottleneck] = BasicBlock if cfg.block == "BasicBlock" else Bottleneck
        channels = [int(c) for c in cfg.channels]
        self.maxpool_flag = bool(cfg.maxpool)
        self.inplanes = channels[0]
        self.conv1 = BasicConv2d(int(cfg.in_channel), self.inplanes, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._stage(block, channels[0], int(cfg.layers[0]), int(cfg.strides[0]))
        self.layer2 = self._stage(block, channels[1], int(cfg.layers[1]), int(cfg.strides[1]))
        self.layer3 = self._stage(block, channels[2], int(cfg.layers[2]), int(cfg.strides[2]))
        self.layer4 = self._stage(block, channels[3], int(cfg.layers[3]), int(cfg.strides[3]))

    def _stage(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int
    ) -> nn.Module:
        """torchvision's ``_make_layer``: the first block strides (and projects the shortcut when
        the shape changes), the others keep the shape. 0 blocks: the identity (no parameters)."""
        if blocks < 1:
            return nn.Identity()
        width = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != width:
            downsample = nn.Sequential(_conv1x1(self.inplanes, width, stride), nn.BatchNorm2d(width))
        items: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = width
        items += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*items)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool_flag:
            x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        out: torch.Tensor = self.layer4(x)
        return out


class SetBlockWrapper(nn.Module):
    """A frame-wise 2-D module over sequences: ``[n, c, s, h, w]`` (with an optional ``[n, s]``
    mask of real frames) → ``[n, c', s, h', w']``. With a mask only the real frames are run
    (packed) and the padded ones are zeros in the output. State-dict prefix ``forward_block``."""

    def __init__(self, forward_block: nn.Module) -> None:
        super().__init__()
        self.forward_block = forward_block

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        n, c, s, h, w = x.shape
        frames = x.transpose(1, 2).reshape(n * s, c, h, w)
        if mask is None:
            out: torch.Tensor = self.forward_block(frames)
            return out.view(n, s, *out.shape[1:]).transpose(1, 2)
        keep = mask.reshape(n * s)
        real: torch.Tensor = self.forward_block(frames[keep])
        full = real.new_zeros((n * s, *real.shape[1:]))
        full = full.index_put((keep,), real)
        return full.view(n, s, *real.shape[1:]).transpose(1, 2)


# ----------------------------------------------------------------------------------------------
# the model (heads: set_layers.horizontal_pyramid, SeparateFCs, SeparateBNNecks)
# ----------------------------------------------------------------------------------------------


@register_model("GaitBase", GaitBaseConfig)
@register_model("Baseline", GaitBaseConfig)
class GaitBase(GaitModel):
    """GaitBase (OpenGait's ``Baseline``). ``model_cfg``: see :class:`GaitBaseConfig`;
    ``model: Baseline`` (OpenGait's name) and ``model: GaitBase`` build the same network."""

    name = "Baseline"
    repeat_short_sequences = False  # OpenGait's Baseline runs 1- and 2-frame sequences as they are
    supports_channels_last = False

    def __init__(self, model_cfg: Mapping[str, object], dataset_name: str = "CASIA-B") -> None:
        super().__init__(model_cfg, dataset_name)
        self.cfg = parse_model_config(GaitBaseConfig, model_cfg)
        cfg = self.cfg
        self.channels = [int(c) for c in cfg.backbone_cfg.channels]
        self.class_num = int(cfg.class_num)
        self.parts_num = sum(cfg.bins)
        self.out_channels = int(cfg.SeparateFCs.out_channels)
        self.Backbone = SetBlockWrapper(ResNet9(cfg.backbone_cfg))
        fcs, necks = cfg.SeparateFCs, cfg.SeparateBNNecks
        self.FCs = SeparateFCs(fcs.parts_num, fcs.in_channels, fcs.out_channels, norm=fcs.norm)
        self.BNNecks = SeparateBNNecks(
            necks.parts_num, necks.in_channels, self.class_num, norm=necks.norm,
            parallel_BN1d=necks.parallel_BN1d,
        )
        self.TP = TemporalMaxPool()
        self.bin_num = [int(b) for b in cfg.bins]
        init_weights(self, cfg.init)

    def backbone(
        self, x: torch.Tensor, masks: tuple[torch.Tensor | None, ...]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        mask = masks[0]
        return self.Backbone(x, mask), mask

    def pool_time(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        pooled: torch.Tensor = self.TP(x, mask)
        return pooled

    def heads(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = horizontal_pyramid(feat, self.bin_num)  # [n, c, p]
        embed = self.FCs(pooled)  # [p, n, c]
        _, logits = self.BNNecks(embed.permute(1, 2, 0))  # [p, n, classes]
        return {
            "embeddings": embed.transpose(0, 1).float().contiguous(),
            "logits": logits.transpose(0, 1).float().contiguous(),
        }

    def extra_repr(self) -> str:
        bb = self.cfg.backbone_cfg
        return (
            f"backbone=ResNet9({bb.block}, channels={self.channels}, layers={bb.layers}, "
            f"strides={bb.strides}, maxpool={bb.maxpool}), class_num={self.class_num}, parts={self.parts_num}"
        )
