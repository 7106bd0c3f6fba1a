"""Tests for gaitcli.models.meta_modules (MetaGait paper variant: MHN, MTA, MTP). Small shapes only."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gaitcli.models.layers import lengths_to_mask, padding_mask
from gaitcli.models.meta_modules import (
    MetaHyperNetwork,
    MetaTemporalPooling,
    MetaTripleAttention,
)

SWITCHES = list(itertools.product([True, False], repeat=3))


def _features(n, c, s, h, w, seed=0, lengths=None):
    """Post-LeakyReLU-like activations; padded frames (beyond each length) are zero."""
    gen = torch.Generator().manual_seed(seed)
    x = F.leaky_relu(torch.randn(n, c, s, h, w, generator=gen), 0.01)
    mask = None
    if lengths is not None:
        mask = lengths_to_mask(lengths, s)
        x = x * mask[:, None, :, None, None]
    return x, mask


def _seeded(cls, *args, seed=0, **kwargs):
    torch.manual_seed(seed)
    return cls(*args, **kwargs)


# ----------------------------------------------------------------------------------------------
# shapes


@pytest.mark.parametrize("c,s,h,w", [(8, 5, 6, 4), (16, 3, 8, 6), (4, 1, 1, 1), (32, 10, 16, 11)])
def test_shapes(c, s, h, w):
    x, _ = _features(2, c, s, h, w)
    mta = _seeded(MetaTripleAttention, c)
    mtp = _seeded(MetaTemporalPooling, c)
    y = mta(x)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    z = mtp(y)
    assert z.shape == (2, c, h, w) and torch.isfinite(z).all()
    maps = mta.attention_maps(x)
    assert maps["global"].shape == (2, c) and maps["channel"].shape == (2, c)
    assert maps["spatial"].shape == (2, h, w) and maps["temporal"].shape == (2, s)
    assert maps["gate"].shape == (2, c) and maps["fusion"].shape == (2, 3, 3)


def test_lengths_to_mask_and_bad_inputs():
    assert lengths_to_mask([2, 0, 3]).tolist() == [[True, True, False], [False, False, False], [True] * 3]
    # the one mask builder: padding_mask is it, or None when nothing is padded
    lens = torch.tensor([2, 3])
    assert padding_mask(lens, 3).tolist() == lengths_to_mask(lens, 3).tolist()
    assert padding_mask(torch.tensor([3, 3]), 3) is None and padding_mask(None, 3) is None
    mta = MetaTripleAttention(8)
    x, _ = _features(2, 8, 4, 3, 3)
    with pytest.raises(ValueError):
        mta(x, torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError):
        mta(x[:, :4])
    with pytest.raises(ValueError):
        MetaTripleAttention(8, kernel_sizes=(1, 2))


# ----------------------------------------------------------------------------------------------
# masking


@pytest.mark.parametrize(
    "flags", [(True, True, True), (False, False, True), (False, True, False), (False, False, False)]
)
def test_mta_padded_batch_equals_one_at_a_time(flags):
    c, s, h, w = 8, 7, 6, 4
    lengths = [7, 3, 5, 1]
    x, mask = _features(len(lengths), c, s, h, w, seed=1, lengths=lengths)
    mta = _seeded(MetaTripleAttention, c, *flags, seed=2)
    with torch.no_grad():
        y = mta(x, mask)
        for i, length in enumerate(lengths):
            alone = mta(x[i : i + 1, :, :length])
            assert (y[i : i + 1, :, :length] - alone).abs().max() <= 1e-5
            assert (y[i, :, length:] == 0).all()
        # garbage at padded frames and different neighbours change nothing for a sequence
        x2 = x + 50.0 * (~mask)[:, None, :, None, None]
        x2[0] = torch.randn_like(x2[0])
        y2 = mta(x2, mask)
        assert (y2[1:] - y[1:]).abs().max() <= 1e-5


def test_mtp_padded_batch_equals_one_at_a_time():
    c, s, h, w = 8, 7, 5, 3
    lengths = [7, 2, 5, 1]
    x, mask = _features(len(lengths), c, s, h, w, seed=3, lengths=lengths)
    mtp = _seeded(MetaTemporalPooling, c, seed=4)
    with torch.no_grad():
        y = mtp(x, mask)
        for i, length in enumerate(lengths):
            assert (y[i : i + 1] - mtp(x[i : i + 1, :, :length])).abs().max() <= 1e-5
        x2 = x + 50.0 * (~mask)[:, None, :, None, None]  # garbage at padded frames is ignored
        assert (mtp(x2, mask) - y).abs().max() <= 1e-5


def test_sample_without_valid_frames_is_zero_and_finite():
    c = 8
    x, mask = _features(2, c, 4, 3, 3, seed=5, lengths=[4, 0])
    x.requires_grad_(True)
    mta, mtp = _seeded(MetaTripleAttention, c), _seeded(MetaTemporalPooling, c)
    y = mta(x, mask)
    z = mtp(y, mask)
    assert (y[1] == 0).all() and (z[1] == 0).all() and torch.isfinite(z).all()
    z.sum().backward()
    for p in itertools.chain([x], mta.parameters(), mtp.parameters()):
        assert torch.isfinite(p.grad).all()


# ----------------------------------------------------------------------------------------------
# switches and parameters


@pytest.mark.parametrize("flags", SWITCHES)
def test_switches_and_every_parameter_gets_a_gradient(flags):
    c = 8
    mta = _seeded(MetaTripleAttention, c, *flags)
    names = dict(mta.named_parameters())
    for on, prefix in zip(flags, ("channel_kernels", "spatial_kernels", "temporal_kernels"), strict=True):
        assert any(k.startswith(prefix) for k in names) == on
    assert ("mhn.heads.gate.weight" in names) == any(flags)
    assert ("mhn.heads.fusion.weight" in names) == any(flags)
    assert mta.branches == tuple(
        b for b, on in zip(("channel", "spatial", "temporal"), flags, strict=True) if on
    )

    x, mask = _features(3, c, 5, 4, 3, seed=6, lengths=[5, 4, 2])
    y = mta(x, mask)
    assert y.shape == x.shape
    if not any(flags):  # global branch only: out = x * A_g
        a_g = mta.attention_maps(x, mask)["global"]
        assert torch.allclose(y, x * a_g[:, :, None, None, None], atol=1e-6)
    weight = torch.randn(y.shape, generator=torch.Generator().manual_seed(7))
    (y * weight).sum().backward()
    for name, p in mta.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_mtp_every_parameter_gets_a_gradient():
    mtp = _seeded(MetaTemporalPooling, 8)
    x, mask = _features(3, 8, 5, 4, 3, seed=8, lengths=[5, 3, 1])
    z = mtp(x, mask)
    (z * torch.randn(z.shape, generator=torch.Generator().manual_seed(9))).sum().backward()
    for name, p in mtp.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_no_batchnorm_and_no_stock_linear_or_conv_submodules():
    # A model-wide "xavier every nn.Linear / nn.ConvNd" sweep must not undo our initialisation.
    for mod in (MetaTripleAttention(16), MetaTemporalPooling(16)):
        for sub in mod.modules():
            assert not isinstance(sub, (nn.modules.batchnorm._NormBase, nn.Linear, nn.modules.conv._ConvNd))


def test_parameter_counts_c128_match_docs():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(MetaTripleAttention(128)) == 143_914
    assert count(MetaTripleAttention(128, False, False, False)) == 139_296
    assert count(MetaTemporalPooling(128)) == 4_228


def test_reset_parameters_is_deterministic_operating_point():
    mta = _seeded(MetaTripleAttention, 16)
    with torch.no_grad():
        for p in mta.parameters():
            p.fill_(3.0)
    mta.reset_parameters()
    for head in ("fusion", "gate"):
        assert (mta.mhn.heads[head].base == 0).all()
    mtp = MetaTemporalPooling(16, p_init=4.0)
    with torch.no_grad():
        mtp.p.fill_(9.0)
    mtp.reset_parameters()
    assert mtp.p.item() == 4.0


def test_initial_operating_point():
    c = 32
    x, mask = _features(4, c, 10, 16, 11, seed=10, lengths=[10, 8, 6, 10])
    mta, mtp = _seeded(MetaTripleAttention, c, seed=11), _seeded(MetaTemporalPooling, c, seed=12)
    with torch.no_grad():
        maps = mta.attention_maps(x, mask)
        for name in ("global", "channel", "spatial", "temporal"):
            assert 0.25 < maps[name].min() and maps[name].max() < 0.75, name
        assert (maps["gate"] - 0.5).abs().max() < 0.1
        assert (maps["fusion"] - 1 / 3).abs().max() < 0.1
        _, mean, _ = mtp.pools(x, mask)
        assert (mtp.mixing_weights(mean) - 1 / 3).abs().max() < 0.1


# ----------------------------------------------------------------------------------------------
# batched MHN / MTA / MTP equal straightforward per-sample loops


def _loop_mhn(mhn: MetaHyperNetwork, g_i: torch.Tensor, head: str) -> torch.Tensor:
    z = F.leaky_relu(mhn.trunk_weight @ g_i + mhn.trunk_bias, 0.01)
    h = mhn.heads[head]
    return (h.weight @ z + h.base).reshape(h.spec.shape)


def _loop_mta_one(mta: MetaTripleAttention, xi: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Straightforward single-sequence MTA: xi [c, L, h, w], all frames valid."""
    c, L, h, w = xi.shape
    g = xi.mean(dim=(1, 2, 3))
    w1 = _loop_mhn(mta.mhn, g, "se_w1")
    w2 = _loop_mhn(mta.mhn, g, "se_w2")
    a_glob = torch.sigmoid(w2 @ F.leaky_relu(w1 @ g, 0.01))
    maps = {"global": a_glob}
    if not mta.branches:
        return xi * a_glob[:, None, None, None], maps
    pi = torch.softmax(_loop_mhn(mta.mhn, g, "fusion"), dim=-1)
    gate = torch.sigmoid(_loop_mhn(mta.mhn, g, "gate"))
    att = (1 - gate)[:, None, None, None] * a_glob[:, None, None, None]
    for b, name in enumerate(mta.branches):
        fused = 0.0
        for k, kern in enumerate(getattr(mta, f"{name}_kernels")):
            pad = kern.shape[-1] // 2
            if name == "channel":
                logit = F.conv1d(g[None, None], kern, padding=pad)[0, 0]  # [c]
            elif name == "spatial":
                pooled = xi.mean(dim=1)
                inp = torch.stack([pooled.mean(0), pooled.max(0).values])[None]
                logit = F.conv2d(inp, kern, padding=pad)[0, 0]  # [h, w]
            else:
                fd = xi.mean(dim=(2, 3))
                inp = torch.stack([fd.mean(0), fd.max(0).values])[None]
                logit = F.conv1d(inp, kern, padding=pad)[0, 0]  # [L]
            fused = fused + pi[b, k] * logit
        a = torch.sigmoid(fused)
        maps[name] = a
        shaped = {
            "channel": a[:, None, None, None],
            "spatial": a[None, None],
            "temporal": a[None, :, None, None],
        }
        att = att + gate[:, None, None, None] / len(mta.branches) * shaped[name]
    return xi * att, maps


@pytest.mark.parametrize("flags", [(True, True, True), (True, False, True), (False, False, False)])
def test_batched_mta_equals_per_sample_loop(flags):
    c, s, h, w = 8, 6, 5, 4
    lengths = [6, 4, 2]
    x, mask = _features(len(lengths), c, s, h, w, seed=13, lengths=lengths)
    mta = _seeded(MetaTripleAttention, c, *flags, seed=14)
    with torch.no_grad():
        # make the generated part of every head matter (the init is deliberately small)
        for head in mta.mhn.heads.values():
            head.weight.mul_(20.0)
        y = mta(x, mask)
        maps = mta.attention_maps(x, mask)
        for i, length in enumerate(lengths):
            ref, ref_maps = _loop_mta_one(mta, x[i, :, :length])
            assert (y[i, :, :length] - ref).abs().max() <= 1e-5
            for name, val in ref_maps.items():
                got = maps[name][i, :length] if name == "temporal" else maps[name][i]
                assert (got - val).abs().max() <= 1e-5, name


def test_generated_weights_differ_per_sample():
    mta = _seeded(MetaTripleAttention, 8, seed=15)
    g = torch.rand(2, 8) * torch.tensor([[1.0], [3.0]])
    gen = mta.mhn(g)
    assert gen["se_w1"].shape == (2, mta.se_hidden, 8)
    assert not torch.allclose(gen["se_w1"][0], gen["se_w1"][1])
    for i in range(2):
        assert torch.allclose(gen["se_w1"][i], _loop_mhn(mta.mhn, g[i], "se_w1"), atol=1e-6)


def test_mtp_equals_per_sequence_max_mean_gem():
    c, s, h, w = 8, 7, 4, 3
    lengths = [7, 5, 2, 1]
    x, mask = _features(len(lengths), c, s, h, w, seed=16, lengths=lengths)
    mtp = _seeded(MetaTemporalPooling, c, seed=17)
    with torch.no_grad():
        mtp.p.fill_(4.5)
        mtp.mhn.heads["mix"].weight.mul_(30.0)
        y = mtp(x, mask)
        weights = []
        for i, length in enumerate(lengths):
            xi = x[i, :, :length]
            mx = xi.max(dim=1).values
            mean = xi.mean(dim=1)
            gem = xi.clamp(min=1e-6).pow(4.5).mean(dim=1).pow(1 / 4.5)
            wi = torch.softmax(_loop_mhn(mtp.mhn, mean.mean(dim=(1, 2)), "mix"), dim=-1)
            weights.append(wi)
            ref = wi[0] * mx + wi[1] * mean + wi[2] * gem
            assert (y[i] - ref).abs().max() <= 1e-5
        weights = torch.stack(weights)
        assert weights.std(dim=0).max() > 1e-3  # per-sample mixing really differs


def test_mtp_gem_p_below_one_is_clamped():
    mtp = MetaTemporalPooling(4)
    x, _ = _features(1, 4, 5, 2, 2, seed=18)
    with torch.no_grad():
        mtp.p.fill_(0.3)
        _, mean, gem = mtp.pools(x)
        assert torch.allclose(gem, x.clamp(min=1e-6).mean(dim=2), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# autocast / training


def test_bf16_autocast_finite_and_close():
    c, s, h, w = 16, 6, 8, 5
    x, mask = _features(3, c, s, h, w, seed=19, lengths=[6, 4, 3])
    x = x * 5.0
    mta, mtp = _seeded(MetaTripleAttention, c, seed=20), _seeded(MetaTemporalPooling, c, seed=21)
    with torch.no_grad():
        ref = mtp(mta(x, mask), mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = mta(x, mask)
            out = mtp(y, mask)
        assert y.dtype == torch.float32 and out.dtype == torch.float32
        assert torch.isfinite(out).all()
        assert (out - ref).abs().max() <= 0.03 * ref.abs().max()
        assert (y[1, :, 4:] == 0).all() and (y[2, :, 3:] == 0).all()
        # bf16 activations (what a bf16 backbone hands over) stay bf16
        xb = x.to(torch.bfloat16)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yb = mta(xb, mask)
            ob = mtp(yb, mask)
        assert yb.dtype == torch.bfloat16 and ob.dtype == torch.bfloat16
        assert torch.isfinite(ob.float()).all()
        assert (ob.float() - ref).abs().max() <= 0.05 * ref.abs().max()
    # large activations: the GeM power stays bounded in bf16
    big = torch.full((1, c, 3, 2, 2), 300.0, dtype=torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(mtp(big).float()).all()
    # a module cast to bf16 as a whole (no autocast) works too: no hard-coded float32
    mta16, mtp16 = copy.deepcopy(mta).to(torch.bfloat16), copy.deepcopy(mtp).to(torch.bfloat16)
    with torch.no_grad():
        o16 = mtp16(mta16(x.to(torch.bfloat16), mask), mask)
        assert o16.dtype == torch.bfloat16 and torch.isfinite(o16.float()).all()
        assert (o16.float() - ref).abs().max() <= 0.05 * ref.abs().max()
        assert torch.isfinite(mtp16(big).float()).all()
    # backward under autocast is finite too
    xg = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = mtp(mta(xg, mask), mask).float().square().mean()
    loss.backward()
    assert torch.isfinite(xg.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in itertools.chain(mta.parameters(), mtp.parameters()))


def test_adam_reduces_loss_on_tiny_regression():
    c, s, h, w = 8, 5, 4, 3
    x, mask = _features(6, c, s, h, w, seed=22, lengths=[5, 5, 4, 3, 5, 2])
    target = torch.randn(6, c, generator=torch.Generator().manual_seed(23)).abs()
    mta, mtp = _seeded(MetaTripleAttention, c, seed=24), _seeded(MetaTemporalPooling, c, seed=25)
    params = list(mta.parameters()) + list(mtp.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)

    def loss_fn():
        return F.mse_loss(mtp(mta(x, mask), mask).mean(dim=(2, 3)), target)

    first = loss_fn().item()
    for _ in range(30):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    assert loss_fn().item() < 0.8 * first
