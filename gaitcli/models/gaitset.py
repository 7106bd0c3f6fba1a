"""GaitSet (Chao et al., "GaitSet: Regarding Gait as a Set for Cross-View Gait Recognition", AAAI
2019), state-dict compatible with OpenGait's ``opengait/modeling/models/gaitset.py``.

The network, for silhouettes ``[n, s, h, w]`` (docs/model-gaitset-gaitpart.md):

1. ``set_block1`` .. ``set_block3``: 2-D convolutions run on every frame on its own (a 5×5 then a
   3×3 convolution per block, LeakyReLU after each, a 2×2 max pool after blocks 1 and 2), widths
   ``in_channels[1..3]``.
2. Set pooling: the element-wise max over each sequence's frames after every block.
3. The global branch: ``gl_block2`` / ``gl_block3`` (copies of blocks 2 and 3 with their own
   weights) run on the pooled maps, each adding the next pooled map:
   ``gl = gl_block3(gl_block2(P1) + P2) + P3``.
4. Horizontal pooling pyramid (mean + max of each of ``bin_num`` bins) of ``P3`` and of ``gl``,
   concatenated: ``2 · sum(bin_num)`` parts (62 with OpenGait's bins).
5. ``Head``: one linear map per part (``SeparateFCs``) → ``embeddings`` ``[n, parts, out]``.

No classifier: OpenGait trains GaitSet with the triplet loss alone, so the model returns only
``embeddings``. A padded batch runs only its real frames and pools over them, so each sequence
gets the result it gets alone (OpenGait's evaluator runs every test sequence at batch size 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .layers import init_weights
from .registry import AT_LEAST_ONE, ModelConfig, option, parse_model_config, register_model
from .set_layers import BasicConv2d, Frames, SeparateFCs, SetBlockWrapper, SetModel, horizontal_pyramid


@dataclass
class GaitSetFCsConfig:
    """``model_cfg.SeparateFCs``: the per-part linear maps that give the embedding."""

    in_channels: int = option(128, "Input width: in_channels[3].", kind="int", range=AT_LEAST_ONE)
    """Input width."""
    out_channels: int = option(256, "Embedding width per part.", kind="int", range=AT_LEAST_ONE)
    """Embedding width."""
    parts_num: int = option(62, "Parts: 2 * sum(bin_num).", kind="int", range=AT_LEAST_ONE)
    """Parts."""
    norm: bool = option(False, "L2-normalise each weight column (OpenGait's option).", kind="bool")
    """Normalised weights."""


@dataclass
class GaitSetConfig(ModelConfig):
    """GaitSet's ``model_cfg`` keys (OpenGait's names) besides those of every model.
    ``class_num`` is not used: GaitSet has no classifier."""

    in_channels: list[int] = option(
        [1, 32, 64, 128],
        "Input channels (1) and the widths of set blocks 1-3 ([1, 64, 128, 256] for OU-MVLP / GREW).",
        kind="list[int]",
        range=AT_LEAST_ONE,
    )
    """Input and block widths."""
    SeparateFCs: GaitSetFCsConfig = option(
        None, "Per-part embedding maps.", kind="section", children=GaitSetFCsConfig
    )
    """Embedding head."""
    bin_num: list[int] = option(
        [16, 8, 4, 2, 1],
        "Horizontal bins of the pooling pyramid (mean + max per bin); parts = 2 * sum.",
        kind="list[int]",
        range=AT_LEAST_ONE,
    )
    """Pyramid bins."""

    def __post_init__(self) -> None:
        widths = [int(c) for c in self.in_channels]
        if len(widths) != 4:
            raise ConfigError(
                f"model_cfg.in_channels needs 4 entries (input channels, then blocks 1-3), got {widths}"
            )
        if widths[0] != 1:
            raise ConfigError(
                f"model_cfg.in_channels[0] must be 1 (gaitcli feeds silhouettes), got {widths[0]}"
            )
        if not self.bin_num:
            raise ConfigError("model_cfg.bin_num must list at least one bin count")
        if self.channels_last:
            raise ConfigError(
                "model_cfg.channels_last: GaitSet's convolutions are 2-D and channels_last is the 3-D "
                "memory format; set it to false"
            )
        fcs = self.SeparateFCs
        parts = 2 * sum(int(b) for b in self.bin_num)
        for key, value, what, want in (
            ("SeparateFCs.in_channels", fcs.in_channels, "in_channels[3]", widths[3]),
            ("SeparateFCs.parts_num", fcs.parts_num, "2 * sum(bin_num)", parts),
        ):
            if value != want:
                raise ConfigError(f"model_cfg.{key} is {value} but {what} is {want}; set it to {want}")


def _set_block(c_in: int, c_out: int, first_kernel: int, pool: bool) -> nn.Sequential:
    """Two convolutions with LeakyReLU, then (``pool``) a 2×2 max pool; OpenGait's indices
    (``0`` and ``2`` are the convolutions)."""
    pad = first_kernel // 2
    layers: list[nn.Module] = [
        BasicConv2d(c_in, c_out, first_kernel, 1, pad),
        nn.LeakyReLU(inplace=True),
        BasicConv2d(c_out, c_out, 3, 1, 1),
        nn.LeakyReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


@register_model("GaitSet", GaitSetConfig)
class GaitSet(SetModel):
    """GaitSet. ``model_cfg``: see :class:`GaitSetConfig`. Returns ``embeddings`` only."""

    name = "GaitSet"

    def __init__(self, model_cfg: Mapping[str, object], dataset_name: str = "CASIA-B") -> None:
        super().__init__(model_cfg, dataset_name)
        self.cfg = parse_model_config(GaitSetConfig, model_cfg)
        c = [int(w) for w in self.cfg.in_channels]
        fcs = self.cfg.SeparateFCs
        self.channels = c[1:]
        self.bin_num = [int(b) for b in self.cfg.bin_num]
        self.parts_num = int(fcs.parts_num)
        self.out_channels = int(fcs.out_channels)
        self.class_num = None  # no classifier
        self.set_block1 = SetBlockWrapper(_set_block(c[0], c[1], 5, pool=True))
        self.set_block2 = SetBlockWrapper(_set_block(c[1], c[2], 3, pool=True))
        self.set_block3 = SetBlockWrapper(_set_block(c[2], c[3], 3, pool=False))
        self.gl_block2 = _set_block(c[1], c[2], 3, pool=True)  # the global branch: same shapes,
        self.gl_block3 = _set_block(c[2], c[3], 3, pool=False)  # its own weights
        self.Head = SeparateFCs(self.parts_num, int(fcs.in_channels), self.out_channels, norm=fcs.norm)
        init_weights(self, self.cfg.init)

    def network(self, sils: torch.Tensor, frames: Frames) -> dict[str, torch.Tensor]:
        x = frames.pack(sils.unsqueeze(2))  # [N, 1, h, w]: the real frames
        x = self.set_block1(x)
        gl = self.gl_block2(frames.max(x))
        x = self.set_block2(x)
        gl = self.gl_block3(gl + frames.max(x))
        x = self.set_block3(x)
        pooled = frames.max(x)  # [n, c, h', w']
        gl = gl + pooled
        parts = [horizontal_pyramid(pooled, self.bin_num), horizontal_pyramid(gl, self.bin_num)]
        feature = torch.cat(parts, -1)  # [n, c, 2 * sum(bin_num)]
        embeddings = self.Head(feature)  # [p, n, out]
        return {"embeddings": embeddings.transpose(0, 1).float().contiguous()}

    def extra_repr(self) -> str:
        return f"channels={self.channels}, bin_num={self.bin_num}, parts={self.parts_num}"
