"""GaitPart (Fan et al., "GaitPart: Temporal Part-based Model for Gait Recognition", CVPR 2020),
state-dict compatible with OpenGait's ``opengait/modeling/models/gaitpart.py`` and its ``Plain``
backbone (``opengait/modeling/backbones/plain.py``).

The network, for silhouettes ``[n, s, h, w]`` (docs/model-gaitset-gaitpart.md):

1. ``Backbone``: OpenGait's ``Plain`` network run on every frame on its own, described by
   ``backbone_cfg.layers_cfg``: ``BC-c`` a convolution to ``c`` channels, ``FC-c-k`` a focal
   convolution (the same convolution applied to each of ``2**k`` horizontal strips separately),
   ``M`` a 2×2 max pool; LeakyReLU after every convolution; the first convolution is 5×5 (pad 2),
   the others 3×3 (pad 1).
2. ``HPP``: per frame, mean + max of each of ``bin_num`` horizontal bins → ``[n, c, s, parts]``.
3. ``TFA`` (temporal feature aggregator, the paper's micro-motion capture module), per part with
   the part's own weights: two branches, each a 1-D convolution over time (kernel 3, width
   c → c/4), LeakyReLU, a second one (kernel 1, resp. 3) back to c, sigmoid → a score per frame;
   the score multiplies a template (avg-pool + max-pool over time, windows 3 resp. 5, stride 1).
   The two branches are summed and max-pooled over time → ``[n, c, parts]``.
4. ``Head``: one linear map per part (``SeparateFCs``) → ``embeddings`` ``[n, parts, out]``.

No classifier (OpenGait trains GaitPart with the triplet loss alone). A padded batch runs only
its real frames through the backbone; the TFA sees zeros beyond each sequence's end exactly as the
reference's zero padding does (its max pools see -inf, as PyTorch's), and the final max looks at
real frames only, so each sequence gets the result it gets alone. The per-part 1-D convolutions
run as one grouped convolution over all parts (weights concatenated at each call).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .layers import init_weights
from .registry import AT_LEAST_ONE, ModelConfig, option, parse_model_config, register_model
from .set_layers import (
    BasicConv2d,
    FocalConv2d,
    Frames,
    SeparateFCs,
    SetBlockWrapper,
    SetModel,
    horizontal_pyramid,
)

LAYER = re.compile(r"^(?:(BC)-(\d+)|(FC)-(\d+)-(\d+)|(M))$")
SQUEEZE = 4  # TFA's hidden width is in_channels // 4 (OpenGait's default, not a config key)
BACKBONES = ("Plain",)


# ----------------------------------------------------------------------------------------------
# config
# ----------------------------------------------------------------------------------------------


@dataclass
class PlainBackboneConfig:
    """``model_cfg.backbone_cfg``: OpenGait's ``Plain`` backbone."""

    type: str = option("Plain", "Backbone class (OpenGait's name).", kind="str", choices=BACKBONES)
    """The backbone class."""
    in_channels: int = option(1, "Input channels (1: silhouettes).", kind="int", choices=(1,))
    """Input channels."""
    layers_cfg: list[str] = option(
        ["BC-32", "BC-32", "M", "FC-64-2", "FC-64-2", "M", "FC-128-3", "FC-128-3"],
        "Layers in order: BC-c (convolution to c channels), FC-c-k (focal convolution on 2**k strips), "
        "M (2x2 max pool); the first must be a convolution.",
        kind="list[str]",
    )
    """The layers."""


@dataclass
class GaitPartFCsConfig:
    """``model_cfg.SeparateFCs``: the per-part linear maps (and the TFA's width and parts)."""

    in_channels: int = option(
        128, "Input width: the backbone's output width (also the TFA's).", kind="int", range=AT_LEAST_ONE
    )
    """Input width."""
    out_channels: int = option(128, "Embedding width per part.", kind="int", range=AT_LEAST_ONE)
    """Embedding width."""
    parts_num: int = option(16, "Parts: sum(bin_num) (also the TFA's).", kind="int", range=AT_LEAST_ONE)
    """Parts."""
    norm: bool = option(False, "L2-normalise each weight column (OpenGait's option).", kind="bool")
    """Normalised weights."""


@dataclass
class GaitPartConfig(ModelConfig):
    """GaitPart's ``model_cfg`` keys (OpenGait's names) besides those of every model.
    ``class_num`` is not used: GaitPart has no classifier."""

    backbone_cfg: PlainBackboneConfig = option(
        None, "The frame-wise Plain backbone.", kind="section", children=PlainBackboneConfig
    )
    """Backbone."""
    SeparateFCs: GaitPartFCsConfig = option(
        None, "Per-part embedding maps.", kind="section", children=GaitPartFCsConfig
    )
    """Embedding head."""
    bin_num: list[int] = option(
        [16], "Horizontal bins of the per-frame pooling pyramid (mean + max per bin); parts = sum.",
        kind="list[int]", range=AT_LEAST_ONE,
    )
    """Pyramid bins."""

    def __post_init__(self) -> None:
        width = parse_layers(self.backbone_cfg.layers_cfg)[-1][1]
        if not self.bin_num:
            raise ConfigError("model_cfg.bin_num must list at least one bin count")
        if self.channels_last:
            raise ConfigError(
                "model_cfg.channels_last: GaitPart's convolutions are 2-D and channels_last is the 3-D "
                "memory format; set it to false"
            )
        fcs = self.SeparateFCs
        parts = sum(int(b) for b in self.bin_num)
        for key, value, what, want in (
            ("SeparateFCs.in_channels", fcs.in_channels, "the backbone's output width", width),
            ("SeparateFCs.parts_num", fcs.parts_num, "sum(bin_num)", parts),
        ):
            if value != want:
                raise ConfigError(f"model_cfg.{key} is {value} but {what} is {want}; set it to {want}")
        if fcs.in_channels < SQUEEZE:
            raise ConfigError(
                f"model_cfg.SeparateFCs.in_channels is {fcs.in_channels}; the TFA needs at least {SQUEEZE} "
                "channels (its hidden width is a quarter of it)"
            )


def parse_layers(layers_cfg: list[str]) -> list[tuple[str, int, int]]:
    """``layers_cfg`` → ``(kind, channels, halving)`` per entry (``M``: the current width);
    a malformed list is one :class:`ConfigError` line."""
    out: list[tuple[str, int, int]] = []
    width = 0
    for i, item in enumerate(layers_cfg):
        found = LAYER.match(str(item))
        if found is None:
            raise ConfigError(
                f"model_cfg.backbone_cfg.layers_cfg[{i}] is {item!r}; use BC-<channels>, "
                "FC-<channels>-<halving> or M"
            )
        if found.group(6):
            if i == 0:
                raise ConfigError(
                    "model_cfg.backbone_cfg.layers_cfg must start with a convolution (BC-c or FC-c-k)"
                )
            out.append(("M", width, 0))
            continue
        kind = "BC" if found.group(1) else "FC"
        width = int(found.group(2) or found.group(4))
        halving = int(found.group(5) or 0)
        if width < 1:
            raise ConfigError(
                f"model_cfg.backbone_cfg.layers_cfg[{i}] is {item!r}; channels must be at least 1"
            )
        out.append((kind, width, halving))
    if not out:
        raise ConfigError("model_cfg.backbone_cfg.layers_cfg is empty; list the backbone's layers")
    return out


# ----------------------------------------------------------------------------------------------
# layers
# ----------------------------------------------------------------------------------------------


class Plain(nn.Module):
    """OpenGait's ``Plain`` backbone: ``feature`` is the sequence of layers ``layers_cfg`` names
    (a LeakyReLU after each convolution), ``[N, in, h, w]`` → ``[N, c, h', w']``."""

    def __init__(self, cfg: PlainBackboneConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = int(cfg.in_channels)
        for i, (kind, width, halving) in enumerate(parse_layers(cfg.layers_cfg)):
            if kind == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            k, pad = (5, 2) if i == 0 else (3, 1)
            conv: nn.Module
            if kind == "BC":
                conv = BasicConv2d(c_in, width, k, 1, pad)
            else:
                conv = FocalConv2d(c_in, width, k, halving, 1, pad)
            layers += [conv, nn.LeakyReLU(inplace=True)]
            c_in = width
        self.out_channels = c_in
        self.feature = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.feature(x)
        return out


class BasicConv1d(nn.Module):
    """A bias-free Conv1d (state-dict name ``conv``)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel_size, padding=padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)
        return out


def _score_net(c: int, hidden: int, second_kernel: int) -> nn.Sequential:
    """One part's score network: conv k3 (c → hidden), LeakyReLU, conv k1 or k3 (hidden → c)."""
    return nn.Sequential(
        BasicConv1d(c, hidden, 3, padding=1),
        nn.LeakyReLU(inplace=True),
        BasicConv1d(hidden, c, second_kernel, padding=second_kernel // 2),
    )


def _grouped(nets: nn.ModuleList, index: int) -> torch.Tensor:
    """The ``index``-th convolution's weights of every part, concatenated along the output channels
    (a grouped convolution with one group per part)."""
    weights = []
    for net in nets:
        assert isinstance(net, nn.Sequential)
        layer = net[index]
        assert isinstance(layer, BasicConv1d)
        weights.append(layer.conv.weight)
    return torch.cat(weights, 0)


class TemporalFeatureAggregator(nn.Module):
    """GaitPart's TFA (``conv1d3x1`` / ``conv1d3x3``: one score network per part).

    Takes ``x`` ``[n, parts·c, s]`` (part-major) with zeros at padded frames and the ``[n, s]`` mask
    (None: every frame real); returns ``[n, parts, c]``."""

    def __init__(self, in_channels: int, parts_num: int, squeeze: int = SQUEEZE) -> None:
        super().__init__()
        hidden = int(in_channels // squeeze)
        self.parts_num = int(parts_num)
        self.in_channels = int(in_channels)
        self.conv1d3x1 = nn.ModuleList(_score_net(in_channels, hidden, 1) for _ in range(parts_num))
        self.conv1d3x3 = nn.ModuleList(_score_net(in_channels, hidden, 3) for _ in range(parts_num))

    def scores(self, nets: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """sigmoid(conv(leaky(conv(x)))) per part, as one grouped convolution per layer; the hidden
        activations are zeroed at padded frames (what the second convolution's padding sees)."""
        first = _grouped(nets, 0)
        second = _grouped(nets, 2)
        hidden = F.leaky_relu(F.conv1d(x, first, padding=1, groups=self.parts_num), 0.01)
        if mask is not None:
            hidden = torch.where(mask[:, None, :], hidden, hidden.new_zeros(()))
        pad = second.size(-1) // 2
        return torch.sigmoid(F.conv1d(hidden, second, padding=pad, groups=self.parts_num))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        n, pc, s = x.shape
        if mask is None:
            low = x
        else:
            low = torch.where(mask[:, None, :], x, x.new_full((), float("-inf")))
        # templates: avg pools count the zero padding (PyTorch's default, as the reference), max
        # pools see -inf there (padded frames of the batch included)
        template1 = F.avg_pool1d(x, 3, 1, 1) + F.max_pool1d(low, 3, 1, 1)
        template3 = F.avg_pool1d(x, 5, 1, 2) + F.max_pool1d(low, 5, 1, 2)
        if mask is not None:  # padded frames' templates may be -inf: zero them (no inf·0 in gradients)
            keep = mask[:, None, :]
            template1 = torch.where(keep, template1, template1.new_zeros(()))
            template3 = torch.where(keep, template3, template3.new_zeros(()))
        out = template1 * self.scores(self.conv1d3x1, x, mask)
        out = out + template3 * self.scores(self.conv1d3x3, x, mask)
        if mask is not None:
            out = torch.where(keep, out, out.new_full((), float("-inf")))
        return out.max(dim=-1).values.view(n, self.parts_num, pc // self.parts_num)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, parts={self.parts_num}"


class PackSequenceWrapper(nn.Module):
    """A container with OpenGait's state-dict prefix ``pooling_func`` for the TFA."""

    def __init__(self, pooling_func: TemporalFeatureAggregator) -> None:
        super().__init__()
        self.pooling_func = pooling_func

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        out: torch.Tensor = self.pooling_func(x, mask)
        return out


# ----------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------


@register_model("GaitPart", GaitPartConfig)
class GaitPart(SetModel):
    """GaitPart. ``model_cfg``: see :class:`GaitPartConfig`. Returns ``embeddings`` only."""

    name = "GaitPart"

    def __init__(self, model_cfg: Mapping[str, object], dataset_name: str = "CASIA-B") -> None:
        super().__init__(model_cfg, dataset_name)
        self.cfg = parse_model_config(GaitPartConfig, model_cfg)
        fcs = self.cfg.SeparateFCs
        plain = Plain(self.cfg.backbone_cfg)
        self.channels = [w for kind, w, _ in parse_layers(self.cfg.backbone_cfg.layers_cfg) if kind != "M"]
        self.bin_num = [int(b) for b in self.cfg.bin_num]
        self.parts_num = int(fcs.parts_num)
        self.out_channels = int(fcs.out_channels)
        self.class_num = None  # no classifier
        self.Backbone = SetBlockWrapper(plain)
        self.TFA = PackSequenceWrapper(TemporalFeatureAggregator(int(fcs.in_channels), self.parts_num))
        self.Head = SeparateFCs(self.parts_num, int(fcs.in_channels), self.out_channels, norm=fcs.norm)
        init_weights(self, self.cfg.init)

    def network(self, sils: torch.Tensor, frames: Frames) -> dict[str, torch.Tensor]:
        x = self.Backbone(frames.pack(sils.unsqueeze(2)))  # [N, c, h', w']: the real frames
        x = horizontal_pyramid(x, self.bin_num)  # [N, c, p]
        x = frames.unpack(x)  # [n, s, c, p], zeros at padded frames
        n, s, c, p = x.shape
        x = x.permute(0, 3, 2, 1).reshape(n, p * c, s)  # part-major channels, time last
        feat = self.TFA(x, frames.mask)  # [n, p, c]
        embeddings = self.Head(feat.transpose(1, 2))  # [p, n, out]
        return {"embeddings": embeddings.transpose(0, 1).float().contiguous()}

    def extra_repr(self) -> str:
        return f"layers={self.cfg.backbone_cfg.layers_cfg}, bin_num={self.bin_num}, parts={self.parts_num}"
