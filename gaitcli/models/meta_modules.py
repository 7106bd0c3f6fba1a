"""Building blocks of MetaGait's "paper" variant (docs/models-paper.md): MHN, MTA and MTP.

The public MetaGait code only ships the "reference" attention (``eca`` + ``se``); the paper's
Meta Triple Attention (MTA) and Meta Temporal Pooling (MTP) are not public, so what follows is our
own design, documented in ``docs/models-paper.md``. In short:

* :class:`MetaHyperNetwork` (MHN) maps a per-sample descriptor ``g`` ([n, C]) to the weights of
  that sample's calibration layers. Each generated tensor is ``base + H · z`` with
  ``z = leaky(W_t · g + b_t)``: a learned base weight plus a per-sample modulation. The generated
  weights are applied with batched matrix products (``einsum``), never with grouped convolutions.
* :class:`MetaTripleAttention` replaces the reference ``MTA_local(x) + MTA_global(x)``: channel,
  spatial and temporal branches, each multi-scale (kernels 1/3/5) with per-sample softmax fusion
  weights from the MHN, an SE-like global branch whose two linear maps are generated per sample by
  the MHN, and a per-sample, per-channel sigmoid gate between the local branches and the global one.
* :class:`MetaTemporalPooling` replaces the temporal max: temporal max, mean and GeM (learnable p)
  over the valid frames, mixed with per-sample softmax weights from an MHN.

Masking contract (both modules): ``mask`` is ``[n, s]`` bool, True for a valid frame, or None (all
valid). Padded frames are zeroed on entry (so garbage there cannot leak), every statistic is taken
over valid frames only, the temporal convolutions see exact zeros at padded frames (which is what
zero padding gives a sequence run alone), and MTA's output is exactly zero at padded frames. With
trailing padding, a sequence's result does not depend on the padding or on its batch neighbours.
No BatchNorm is used. A sample without any valid frame gives an all-zero output (finite gradients).

Parameters are plain ``nn.Parameter`` tensors used through the functional API, not ``nn.Linear`` /
``nn.ConvNd`` submodules: a model-wide ``for m in modules(): if isinstance(m, nn.Linear): xavier``
sweep (the reference initialisation, docs/models.md) therefore leaves the calibrated
initialisation of these modules
alone. Call :meth:`reset_parameters` to restore it explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "GeneratedSpec",
    "MetaHyperNetwork",
    "MetaTemporalPooling",
    "MetaTripleAttention",
]

NEG_SLOPE = 0.01  # LeakyReLU slope used throughout the project (docs/models.md)
BRANCHES = ("channel", "spatial", "temporal")


# ---------------------------------------------------------------------------------------------
# helpers


def _check_input(x: Tensor, mask: Tensor | None) -> Tensor | None:
    if x.dim() != 5:
        raise ValueError(f"expected x of shape [n, c, s, h, w], got {tuple(x.shape)}")
    if mask is None:
        return None
    if mask.shape != (x.shape[0], x.shape[2]):
        raise ValueError(f"mask must have shape [n, s] = {(x.shape[0], x.shape[2])}, got {tuple(mask.shape)}")
    return mask.to(device=x.device, dtype=torch.bool)


def _uniform_(t: Tensor, fan_in: int, fan_out: int, gain: float) -> None:
    """Xavier-uniform with explicit fans (so 1-D / flattened tensors can be initialised as matrices)."""
    bound = gain * math.sqrt(6.0 / float(fan_in + fan_out))
    with torch.no_grad():
        t.uniform_(-bound, bound)


@dataclass(frozen=True)
class GeneratedSpec:
    """One tensor the MHN generates per sample.

    ``shape``: per-sample shape. ``base_fans``: (fan_in, fan_out) for a xavier-uniform base weight
    with gain ``base_gain``; None gives a zero base (for logits: softmax -> uniform, sigmoid -> 0.5).
    ``gen_gain``: gain of the xavier-uniform generator matrix (small, so every sample starts close
    to the base).
    """

    shape: tuple[int, ...]
    base_fans: tuple[int, int] | None = None
    base_gain: float = 1.0
    gen_gain: float = 0.1


class _GeneratedHead(nn.Module):
    """``z [n, d] -> base + weight · z``, reshaped to ``[n, *shape]``."""

    def __init__(self, hidden: int, spec: GeneratedSpec) -> None:
        super().__init__()
        self.spec = spec
        numel = math.prod(spec.shape)
        self.weight = nn.Parameter(torch.empty(numel, hidden))
        self.base = nn.Parameter(torch.empty(numel))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        numel, hidden = self.weight.shape
        _uniform_(self.weight, hidden, numel, self.spec.gen_gain)
        if self.spec.base_fans is None:
            nn.init.zeros_(self.base)
        else:
            _uniform_(self.base, *self.spec.base_fans, self.spec.base_gain)

    def forward(self, z: Tensor) -> Tensor:
        return F.linear(z, self.weight, self.base).reshape(z.shape[0], *self.spec.shape)

    def extra_repr(self) -> str:
        return f"hidden={self.weight.shape[1]}, shape={self.spec.shape}"


# ---------------------------------------------------------------------------------------------
# MHN


class MetaHyperNetwork(nn.Module):
    """Meta hyper network: per-sample descriptor ``g [n, C]`` -> per-sample weights.

    ``z = leaky(W_t g + b_t)`` ([n, hidden]); for every head ``k``:
    ``theta_k(g) = base_k + H_k z`` reshaped to ``[n, *shape_k]``.
    """

    def __init__(self, in_features: int, hidden: int, heads: dict[str, GeneratedSpec]) -> None:
        super().__init__()
        self.in_features = in_features
        self.hidden = hidden
        self.trunk_weight = nn.Parameter(torch.empty(hidden, in_features))
        self.trunk_bias = nn.Parameter(torch.empty(hidden))
        self.heads = nn.ModuleDict({name: _GeneratedHead(hidden, spec) for name, spec in heads.items()})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _uniform_(self.trunk_weight, self.in_features, self.hidden, 1.0)
        nn.init.zeros_(self.trunk_bias)
        for head in self.heads.values():
            assert isinstance(head, _GeneratedHead)
            head.reset_parameters()

    def embed(self, g: Tensor) -> Tensor:
        return F.leaky_relu(F.linear(g, self.trunk_weight, self.trunk_bias), NEG_SLOPE)

    def forward(self, g: Tensor) -> dict[str, Tensor]:
        z = self.embed(g)
        return {name: head(z) for name, head in self.heads.items()}

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, hidden={self.hidden}"


def _default_hidden(channels: int) -> int:
    return max(16, channels // 4)


# ---------------------------------------------------------------------------------------------
# MTA


class MetaTripleAttention(nn.Module):
    """Meta Triple Attention (paper variant, our design). ``x [n,c,s,h,w] -> [n,c,s,h,w]``.

    With ``g`` the masked mean of ``x`` over valid frames and space and ``z`` the MHN embedding:

    * global:   ``A_g = sigmoid(W2(g) · leaky(W1(g) · g))`` ([n, c]), W1 [c/r, c] and W2 [c, c/r]
      generated per sample by the MHN;
    * channel:  ``A_c = sigmoid(sum_k pi_c,k · conv1d_k(g))`` along the channel axis ([n, c]);
    * spatial:  ``A_s = sigmoid(sum_k pi_s,k · conv2d_k([mean_c, max_c](mean_t x)))`` ([n, h, w]);
    * temporal: ``A_t = sigmoid(sum_k pi_t,k · conv1d_k([mean_c, max_c](mean_hw x)))`` along time
      ([n, s]), the conv input being zero at padded frames;
    * ``pi_b = softmax(MHN)`` over the kernels (1, 3, 5) of branch b, ``gamma = sigmoid(MHN)`` [n, c];
    * ``out = x * (gamma * mean_b(A_b) + (1 - gamma) * A_g)`` (each ``A_b`` broadcast to x).

    Branches are switched by ``channel`` / ``spatial`` / ``temporal``; a switched-off branch owns
    no parameter (so no unused parameters under DDP). With all three off the module is the
    MHN-generated SE alone: ``out = x * A_g`` (no gate, no fusion head).
    """

    def __init__(
        self,
        channels: int,
        channel: bool = True,
        spatial: bool = True,
        temporal: bool = True,
        *,
        kernel_sizes: Sequence[int] = (1, 3, 5),
        se_reduction: int = 8,
        mhn_hidden: int | None = None,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError("channels must be positive")
        kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if not kernel_sizes or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be odd positive integers, got {kernel_sizes}")
        self.channels = channels
        self.kernel_sizes = kernel_sizes
        self.branches = tuple(b for b, on in zip(BRANCHES, (channel, spatial, temporal), strict=True) if on)
        self.se_hidden = max(4, channels // se_reduction)
        hidden = mhn_hidden if mhn_hidden is not None else _default_hidden(channels)

        c, r = channels, self.se_hidden
        heads = {
            "se_w1": GeneratedSpec((r, c), base_fans=(c, r)),
            "se_w2": GeneratedSpec((c, r), base_fans=(r, c)),
        }
        if self.branches:
            heads["fusion"] = GeneratedSpec((len(self.branches), len(kernel_sizes)))
            heads["gate"] = GeneratedSpec((c,))
        self.mhn = MetaHyperNetwork(c, hidden, heads)

        # Static multi-scale kernels of the local branches (stored as raw weights, see module doc).
        if "channel" in self.branches:
            self.channel_kernels = nn.ParameterList(
                [nn.Parameter(torch.empty(1, 1, k)) for k in kernel_sizes]
            )
        if "spatial" in self.branches:
            self.spatial_kernels = nn.ParameterList(
                [nn.Parameter(torch.empty(1, 2, k, k)) for k in kernel_sizes]
            )
        if "temporal" in self.branches:
            self.temporal_kernels = nn.ParameterList(
                [nn.Parameter(torch.empty(1, 2, k)) for k in kernel_sizes]
            )
        self._reset_kernels()

    # -- init -----------------------------------------------------------------------------
    def _reset_kernels(self) -> None:
        # Xavier with gain 0.5: the local logits start small, so attentions start near 0.5.
        for name in ("channel_kernels", "spatial_kernels", "temporal_kernels"):
            for w in getattr(self, name, ()):
                receptive = math.prod(w.shape[2:])
                _uniform_(w, w.shape[1] * receptive, w.shape[0] * receptive, 0.5)

    def reset_parameters(self) -> None:
        self.mhn.reset_parameters()
        self._reset_kernels()

    # -- computation ----------------------------------------------------------------------
    def _fuse(self, logits: list[Tensor], pi: Tensor) -> Tensor:
        """Per-sample convex combination of the per-kernel logits, then sigmoid."""
        stacked = torch.stack(logits, dim=1)  # [n, K, ...]
        fused = torch.einsum("nk,nkl->nl", pi.to(stacked.dtype), stacked.flatten(2))
        return torch.sigmoid(fused).reshape(stacked.shape[0], *stacked.shape[2:])

    def _maps(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        mask = _check_input(x, mask)
        n, c, s, h, w = x.shape
        if c != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {c}")
        if mask is not None:
            m = mask.to(x.dtype)
            x = x * m[:, None, :, None, None]
            length = m.sum(1).clamp(min=1.0)
        else:
            m = None
            length = x.new_full((n,), float(s))

        frame_desc = x.mean(dim=(3, 4))  # [n, c, s], zero at padded frames
        g = frame_desc.sum(dim=2) / length[:, None]  # [n, c]
        gen = self.mhn(g)

        maps: dict[str, Tensor] = {}
        # global branch: SE whose two linear maps are generated per sample (batched matmuls)
        hid = F.leaky_relu(torch.einsum("nrc,nc->nr", gen["se_w1"], g.to(gen["se_w1"].dtype)), NEG_SLOPE)
        maps["global"] = torch.sigmoid(torch.einsum("ncr,nr->nc", gen["se_w2"], hid))
        if not self.branches:
            return x, maps

        pi = torch.softmax(gen["fusion"].float(), dim=-1)  # [n, B, K]; softmax in fp32, tiny
        maps["fusion"] = pi
        maps["gate"] = torch.sigmoid(gen["gate"])  # [n, c]
        for b, name in enumerate(self.branches):
            if name == "channel":
                inp = g[:, None, :]  # [n, 1, c]
                logits = [F.conv1d(inp, k, padding=k.shape[-1] // 2)[:, 0] for k in self.channel_kernels]
            elif name == "spatial":
                pooled = x.sum(dim=2) / length[:, None, None, None]  # [n, c, h, w], valid frames only
                inp = torch.stack([pooled.mean(dim=1), pooled.amax(dim=1)], dim=1)  # [n, 2, h, w]
                logits = [F.conv2d(inp, k, padding=k.shape[-1] // 2)[:, 0] for k in self.spatial_kernels]
            else:  # temporal
                inp = torch.stack([frame_desc.mean(dim=1), frame_desc.amax(dim=1)], dim=1)  # [n, 2, s]
                if m is not None:
                    inp = inp * m[:, None, :]  # padded frames are exact zeros = conv zero padding
                logits = [F.conv1d(inp, k, padding=k.shape[-1] // 2)[:, 0] for k in self.temporal_kernels]
            maps[name] = self._fuse(logits, pi[:, b])
        return x, maps

    def attention_maps(self, x: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        """The calibration factors, for inspection: ``global`` [n,c] and, when the branches are on,
        ``channel`` [n,c], ``spatial`` [n,h,w], ``temporal`` [n,s], ``gate`` [n,c],
        ``fusion`` [n, branches, kernels] (rows in the order of ``self.branches``)."""
        return self._maps(x, mask)[1]

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        xm, maps = self._maps(x, mask)
        a_glob = maps["global"]
        if not self.branches:
            return xm * a_glob[:, :, None, None, None].to(x.dtype)
        gate = maps["gate"]
        local_w = gate / len(self.branches)  # mean over the enabled local branches, gated
        per_channel = (1.0 - gate) * a_glob
        if "channel" in maps:
            per_channel = per_channel + local_w * maps["channel"]
        att = per_channel[:, :, None, None, None]
        st = None  # spatial + temporal maps, [n, 1, s|1, h|1, w|1]
        if "spatial" in maps:
            st = maps["spatial"][:, None, None]
        if "temporal" in maps:
            t = maps["temporal"][:, None, :, None, None]
            st = t if st is None else st + t
        if st is not None:
            att = att + local_w[:, :, None, None, None] * st
        return xm * att.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, branches={self.branches}, kernel_sizes={self.kernel_sizes}, "
            f"se_hidden={self.se_hidden}"
        )


# ---------------------------------------------------------------------------------------------
# MTP


class MetaTemporalPooling(nn.Module):
    """Meta Temporal Pooling (paper variant, our design). ``x [n,c,s,h,w] -> [n,c,h,w]``.

    Over the valid frames only: ``max``, ``mean`` and ``GeM_p = (mean_t clamp(x, eps)^p)^(1/p)``
    (one learnable p, init 3, used as ``max(p, 1)``), mixed as
    ``out = w_max * max + w_mean * mean + w_gem * GeM`` with ``w = softmax(MHN(g))`` [n, 3] and
    ``g`` = the spatial mean of the temporal mean ([n, c]).

    GeM is evaluated as ``M * (mean_t (clamp(x, eps) / M)^p)^(1/p)`` with ``M`` the (detached)
    clamped temporal max: mathematically identical, but the powers stay in (0, 1], so half /
    bfloat16 cannot overflow and the root never sees 0 (gradients stay finite).
    """

    def __init__(
        self, channels: int, *, mhn_hidden: int | None = None, p_init: float = 3.0, eps: float = 1e-6
    ) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.p_init = float(p_init)
        hidden = mhn_hidden if mhn_hidden is not None else _default_hidden(channels)
        self.mhn = MetaHyperNetwork(channels, hidden, {"mix": GeneratedSpec((3,))})
        self.p = nn.Parameter(torch.tensor(self.p_init))

    def reset_parameters(self) -> None:
        self.mhn.reset_parameters()
        with torch.no_grad():
            self.p.fill_(self.p_init)

    def pools(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(max, mean, gem)`` over valid frames, each ``[n, c, h, w]``."""
        mask = _check_input(x, mask)
        n, c, s, h, w = x.shape
        p = self.p.clamp(min=1.0)
        if mask is None:
            mx = x.amax(dim=2)
            mean = x.mean(dim=2)
            big_m = mx.detach().clamp(min=self.eps)
            ratio = (x.clamp(min=self.eps) / big_m[:, :, None]).pow(p)
            gem = big_m * ratio.mean(dim=2).pow(1.0 / p)
            return mx, mean, gem

        valid = mask[:, None, :, None, None]
        has = mask.any(dim=1)[:, None, None, None]  # [n,1,1,1]
        length = mask.sum(dim=1).clamp(min=1).to(x.dtype)[:, None, None, None]
        x0 = x.masked_fill(~valid, 0.0)
        mx = torch.where(has, x.masked_fill(~valid, float("-inf")).amax(dim=2), 0.0)
        mean = x0.sum(dim=2) / length
        big_m = mx.detach().clamp(min=self.eps)
        ratio = (x0.clamp(min=self.eps) / big_m[:, :, None]).pow(p) * valid.to(x.dtype)
        pm = torch.where(has, ratio.sum(dim=2) / length, 1.0)  # 1 keeps the root finite when empty
        gem = torch.where(has, big_m * pm.pow(1.0 / p), 0.0)
        return mx, mean, gem

    def mixing_weights(self, mean: Tensor) -> Tensor:
        """Per-sample softmax weights ``[n, 3]`` (max, mean, GeM) from the temporal mean ``[n,c,h,w]``."""
        g = mean.mean(dim=(2, 3))
        return torch.softmax(self.mhn(g)["mix"].float(), dim=-1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if x.dim() == 5 and x.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {x.shape[1]}")
        mx, mean, gem = self.pools(x, mask)
        wts = self.mixing_weights(mean).to(x.dtype)[:, :, None, None, None]  # [n, 3, 1, 1, 1]
        out = wts[:, 0] * mx + wts[:, 1] * mean + wts[:, 2] * gem
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, p_init={self.p_init}, eps={self.eps}"
