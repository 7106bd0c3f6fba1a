"""GaitGL / MetaGait: shapes, state-dict layout, fast paths vs straightforward code, masking."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gaitcli.build import build_model
from gaitcli.errors import ConfigError
from gaitcli.models import model_names
from gaitcli.models.layers import GeMHPP, GLConv, SeparateFCs, TemporalMaxPool, masked_mean_descriptor
from gaitcli.models.metagait import MHN
from gaitcli.models.straightforward import straightforward_embed, straightforward_forward

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def small_cfg(model: str = "GaitGL", dataset: str = "CASIA-B", **extra) -> dict:
    channels = [4, 8, 8, 8] if dataset in ("OUMVLP", "GREW") else [4, 8, 8]
    mc = {"model": model, "channels": channels, "class_num": 5, "bin_num": [16], **extra}
    return {"model_cfg": mc, "data_cfg": {"dataset_name": dataset}}


def small_model(model: str = "GaitGL", dataset: str = "CASIA-B", seed: int = 0, **extra):
    torch.manual_seed(seed)
    m = build_model(small_cfg(model, dataset, **extra))
    randomize_bn(m)
    return m


def randomize_bn(model: torch.nn.Module) -> None:
    """Give BatchNorm realistic running statistics so eval outputs are not near zero."""
    g = torch.Generator().manual_seed(1)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.01)
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) * 1e-3 + 1e-4)


def sils(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) > 0.45).float()


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    assert a.shape == b.shape
    scale = max(b.abs().max().item(), 1e-12)
    diff = (a - b).abs().max().item()
    assert diff <= atol + rtol * scale, f"max |diff| {diff:.3g} (scale {scale:.3g})"


MODEL_KINDS = [("GaitGL", {}), ("MetaGait", {"variant": "reference"}), ("MetaGait", {"variant": "paper"})]


# ----------------------------------------------------------------------------------------------
# straightforward versions of each fast path, written from docs/models.md ("The network")
# ----------------------------------------------------------------------------------------------


def naive_glconv(layer: GLConv, x: torch.Tensor) -> torch.Tensor:
    wg = layer.global_conv3d.conv3d.weight
    wl = layer.local_conv3d.conv3d.weight
    gob = F.conv3d(x, wg, padding=1)
    if layer.halving == 0:
        lcl = F.conv3d(x, wl, padding=1)
    else:
        size = int(x.size(3) // 2**layer.halving)
        lcl = torch.cat([F.conv3d(p.contiguous(), wl, padding=1) for p in torch.split(x, size, dim=3)], dim=3)
    if layer.fm_sign:
        return F.leaky_relu(torch.cat([gob, lcl], 3), 0.01)
    return F.leaky_relu(gob, 0.01) + F.leaky_relu(lcl, 0.01)


def naive_mhn(mhn: MHN, x: torch.Tensor) -> torch.Tensor:
    """docs/models.md: reduce → wn_fc1 → sigmoid → grouped wn_fc2; per-sample 1x1x1 conv over g."""
    g = F.adaptive_avg_pool3d(x, 1)  # [n, C, 1, 1, 1]
    h = F.conv3d(g, mhn.reduce.weight, mhn.reduce.bias)
    a = torch.sigmoid(F.conv3d(h, mhn.wn_fc1.weight, mhn.wn_fc1.bias))
    gen = F.conv3d(a, mhn.wn_fc2.weight, groups=6)  # [n, 3C, 1, 1, 1]
    outs = []
    for i in range(x.size(0)):  # one grouped conv per sample
        outs.append(F.conv3d(g[i : i + 1], gen[i].reshape(3, -1, 1, 1, 1)).reshape(3))
    return torch.stack(outs)


def naive_gem(x: torch.Tensor, bins: list[int], p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    n, c = x.shape[:2]
    outs = []
    for b in bins:
        z = x.view(n, c, b, -1)
        outs.append(F.avg_pool2d(z.clamp(min=eps).pow(p), (1, z.size(-1))).pow(1.0 / p).squeeze(-1))
    return torch.cat(outs, -1)


def naive_fcs(fc_bin: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[n, c, p] → [p, n, out], one part at a time."""
    return torch.stack([x[:, :, i] @ fc_bin[i] for i in range(fc_bin.size(0))])


def naive_tp(x: torch.Tensor, lens: list[int]) -> torch.Tensor:
    return torch.stack([x[i, :, :L].max(dim=1).values for i, L in enumerate(lens)])


# ----------------------------------------------------------------------------------------------
# CASIA-B layout
# ----------------------------------------------------------------------------------------------

GAITGL_SPEC = {
    "conv3d.0.conv3d.weight": (32, 1, 3, 3, 3),
    "LTA.0.conv3d.weight": (32, 32, 3, 1, 1),
    "GLConvA0.global_conv3d.conv3d.weight": (64, 32, 3, 3, 3),
    "GLConvA0.local_conv3d.conv3d.weight": (64, 32, 3, 3, 3),
    "GLConvA1.global_conv3d.conv3d.weight": (128, 64, 3, 3, 3),
    "GLConvA1.local_conv3d.conv3d.weight": (128, 64, 3, 3, 3),
    "GLConvB2.global_conv3d.conv3d.weight": (128, 128, 3, 3, 3),
    "GLConvB2.local_conv3d.conv3d.weight": (128, 128, 3, 3, 3),
    "HPP.p": (1,),
    "Head0.fc_bin": (64, 128, 128),
    "Bn.weight": (128,),
    "Bn.bias": (128,),
    "Bn.running_mean": (128,),
    "Bn.running_var": (128,),
    "Bn.num_batches_tracked": (),
    "Head1.fc_bin": (64, 128, 74),
}
METAGAIT_EXTRA = {
    "eca.conv1.weight": (1, 1, 1),
    "eca.conv3.weight": (1, 1, 3),
    "eca.conv5.weight": (1, 1, 5),
    "eca.dynamic_conv.reduce.weight": (16, 128, 1, 1, 1),
    "eca.dynamic_conv.reduce.bias": (16,),
    "eca.dynamic_conv.wn_fc1.weight": (6, 16, 1, 1, 1),
    "eca.dynamic_conv.wn_fc1.bias": (6,),
    "eca.dynamic_conv.wn_fc2.weight": (384, 1, 1, 1, 1),
    "se.fc.0.weight": (128, 128),
    "se.fc.2.weight": (128, 128),
}


def test_registry_names():
    assert {"GaitGL", "MetaGait"} <= set(model_names())
    with pytest.raises(ConfigError, match="MetaGait"):
        build_model({"model_cfg": {"model": "MetaGiat"}})


@pytest.mark.parametrize(
    "name,expected", [("GaitGL", GAITGL_SPEC), ("MetaGait", {**GAITGL_SPEC, **METAGAIT_EXTRA})]
)
def test_casia_state_dict_names_shapes_and_counts(name, expected):
    m = build_model({"model_cfg": {"model": name}, "data_cfg": {"dataset_name": "CASIA-B"}})
    got = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert got == expected
    count = m.num_parameters()
    assert count == (3_096_673 if name == "GaitGL" else 3_132_000)
    assert round(count / 1e6, 2) == (3.10 if name == "GaitGL" else 3.13)


def test_initialisation_matches_reference():
    torch.manual_seed(0)
    m = build_model({"model_cfg": {"model": "MetaGait"}})
    w = m.GLConvB2.global_conv3d.conv3d.weight
    fan_in, fan_out = 128 * 27, 128 * 27
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert torch.all(m.eca.dynamic_conv.reduce.bias == 0) and torch.all(m.eca.dynamic_conv.wn_fc1.bias == 0)
    assert torch.all(m.Bn.bias == 0)
    assert abs(m.Bn.weight.mean().item() - 1.0) < 0.01 and 0.01 < m.Bn.weight.std().item() < 0.03
    assert m.HPP.p.item() == pytest.approx(6.5)
    fb = m.Head0.fc_bin  # xavier on the 3-D tensor: fan_in = 128*128, fan_out = 64*128
    assert fb.abs().max() <= math.sqrt(6.0 / (128 * 128 + 64 * 128))


def test_casia_stage_shapes_and_outputs():
    torch.manual_seed(0)
    m = build_model({"model_cfg": {"model": "MetaGait"}})
    shapes = {}
    names = ["conv3d", "LTA", "GLConvA0", "MaxPool0", "GLConvA1", "GLConvB2", "TP", "HPP"]
    hooks = [
        getattr(m, n).register_forward_hook(
            lambda mod, inp, out, n=n: shapes.__setitem__(n, tuple(out.shape))
        )
        for n in names
    ]
    with torch.no_grad():
        out = m(sils(1, 30, 64, 44))
    for h in hooks:
        h.remove()
    assert shapes == {
        "conv3d": (1, 32, 30, 64, 44),
        "LTA": (1, 32, 10, 64, 44),
        "GLConvA0": (1, 64, 10, 64, 44),
        "MaxPool0": (1, 64, 10, 32, 22),
        "GLConvA1": (1, 128, 10, 32, 22),
        "GLConvB2": (1, 128, 10, 64, 22),
        "TP": (1, 128, 64, 22),
        "HPP": (1, 128, 64),
    }
    assert out["embeddings"].shape == (1, 64, 128) and out["logits"].shape == (1, 64, 74)
    assert out["embeddings"].dtype == torch.float32


def test_large_branch_layout():
    cfg = {
        "model_cfg": {"model": "GaitGL", "channels": [32, 64, 128, 256], "class_num": 5153},
        "data_cfg": {"dataset_name": "OUMVLP"},
    }
    m = build_model(cfg)
    sd = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert sd["conv3d.0.conv3d.weight"] == (32, 1, 3, 3, 3)
    assert sd["conv3d.2.conv3d.weight"] == (32, 32, 3, 3, 3)
    assert sd["GLConvA0.0.global_conv3d.conv3d.weight"] == (64, 32, 3, 3, 3)
    assert sd["GLConvA0.1.local_conv3d.conv3d.weight"] == (64, 64, 3, 3, 3)
    assert sd["GLConvA1.1.global_conv3d.conv3d.weight"] == (128, 128, 3, 3, 3)
    assert sd["GLConvB2.0.global_conv3d.conv3d.weight"] == (256, 128, 3, 3, 3)
    assert sd["GLConvB2.1.local_conv3d.conv3d.weight"] == (256, 256, 3, 3, 3)
    assert sd["Head0.fc_bin"] == (64, 256, 256) and sd["Head1.fc_bin"] == (64, 256, 5153)
    assert all(layer.halving == 1 for stage in (m.GLConvA0, m.GLConvA1, m.GLConvB2) for layer in stage)
    assert [layer.fm_sign for layer in m.GLConvB2] == [False, True]
    with pytest.raises(ConfigError, match="4 widths"):
        build_model({"model_cfg": {"model": "GaitGL"}, "data_cfg": {"dataset_name": "GREW"}})
    with pytest.raises(ConfigError, match="3 widths"):
        build_model({"model_cfg": {"model": "GaitGL", "channels": [32, 64, 128, 256]}})


def test_partial_config_defaults_and_model_config_kept():
    m = build_model(
        {"model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 3, "bin_num": [16]}}
    )
    assert m.config["model_cfg"]["class_num"] == 3
    assert m.config["data_cfg"]["dataset_name"] == "CASIA-B"
    assert "trainer_cfg" in m.config


# ----------------------------------------------------------------------------------------------
# fast paths == straightforward
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "halving,fm_sign,h",
    [(3, False, 16), (3, True, 16), (1, False, 8), (1, True, 6), (0, False, 8), (3, False, 12)],
)
def test_glconv_local_strips_fast_equals_loop(halving, fm_sign, h):
    torch.manual_seed(0)
    layer = GLConv(3, 5, halving, fm_sign)
    for n in (2, 5):  # CPU: strips folded into the batch (2*8 <= 32), strip loop (5*8 > 32)
        x = torch.randn(n, 3, 4, h, 5)
        close(layer(x), naive_glconv(layer, x))
        xcl = x.contiguous(memory_format=torch.channels_last_3d)
        close(layer(xcl), naive_glconv(layer, x))


def test_mhn_batched_equals_grouped_conv():
    torch.manual_seed(0)
    for c in (8, 128):
        mhn = MHN(c)
        for mod in (mhn.reduce, mhn.wn_fc1, mhn.wn_fc2):
            torch.nn.init.normal_(mod.weight)
        torch.nn.init.normal_(mhn.reduce.bias)
        x = torch.randn(3, c, 2, 4, 3)
        close(mhn(masked_mean_descriptor(x, None)), naive_mhn(mhn, x))


@pytest.mark.parametrize("bins,h,w", [(None, 8, 5), ([8], 8, 5), ([4, 2, 1], 8, 5), ([16], 8, 4)])
def test_gem_fast_equals_avg_pool(bins, h, w):
    torch.manual_seed(0)
    hpp = GeMHPP(bins)
    x = torch.rand(2, 3, h, w) * 2
    close(hpp(x), naive_gem(x, bins or [h], hpp.p))


def test_separate_fcs_fast_equals_loop():
    torch.manual_seed(0)
    fcs = SeparateFCs(7, 5, 4)
    x = torch.randn(3, 5, 7)
    close(fcs(x), naive_fcs(fcs.fc_bin, x))


def test_temporal_pool_masked_equals_per_sequence():
    torch.manual_seed(0)
    lens = [5, 1, 3, 2]
    x = torch.randn(4, 3, 5, 2, 2) - 3.0  # negative values: padding must not win the max
    x[1, :, 1:] = 100.0  # garbage in padded frames
    mask = torch.arange(5)[None] < torch.tensor(lens)[:, None]
    close(TemporalMaxPool()(x, mask), naive_tp(x, lens))
    close(TemporalMaxPool()(x, None), x.max(dim=2).values)


@pytest.mark.parametrize("name,extra", MODEL_KINDS)
@pytest.mark.parametrize("train", [False, True])
def test_whole_model_fast_equals_straightforward(name, extra, train):
    m = small_model(name, **extra)
    m.train(train)
    x = sils(3, 7, 16, 11)
    with torch.no_grad():
        a = m(x)
        b = straightforward_forward(m, x)
    close(a["embeddings"], b["embeddings"])
    close(a["logits"], b["logits"])


def test_reference_attention_equals_spec_formula():
    """eca(x) + se(x) on CASIA-B widths, compared with the formula written out in docs/models.md
    ("The network")."""
    from gaitcli.models.straightforward import reference_attention

    torch.manual_seed(0)
    m = build_model({"model_cfg": {"model": "MetaGait"}})
    x = torch.rand(2, 128, 3, 4, 3)
    close(m.attend(x, None), reference_attention(m, x), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# padded batches, short sequences, embed
# ----------------------------------------------------------------------------------------------


def padded_batch(seqs: list[torch.Tensor], fill: float = float("nan")) -> tuple[torch.Tensor, list[int]]:
    lens = [s.size(0) for s in seqs]
    out = torch.full((len(seqs), max(lens), *seqs[0].shape[1:]), fill)
    for i, s in enumerate(seqs):
        out[i, : s.size(0)] = s
    return out, lens


@pytest.mark.parametrize("name,extra", MODEL_KINDS)
def test_padded_batch_equals_one_at_a_time(name, extra):
    m = small_model(name, **extra).eval()
    seqs = [sils(L, 16, 11, seed=L) for L in (7, 1, 2, 3, 4, 8, 5)]
    batch, lens = padded_batch(seqs)  # NaN in padded frames must not leak
    with torch.no_grad():
        out = m(batch, lens)
        for i, s in enumerate(seqs):
            alone = m(s[None])
            close(out["embeddings"][i], alone["embeddings"][0], atol=1e-4, rtol=1e-4)
            close(out["logits"][i], alone["logits"][0], atol=1e-4, rtol=1e-4)
    assert torch.isfinite(out["embeddings"]).all()


def test_large_branch_padded_equals_alone():
    m = small_model("MetaGait", dataset="OUMVLP").eval()
    seqs = [sils(L, 16, 11, seed=L) for L in (6, 2, 4)]
    batch, lens = padded_batch(seqs, fill=0.0)
    with torch.no_grad():
        out = m(batch, lens)["embeddings"]
        for i, s in enumerate(seqs):
            close(out[i], m(s[None])["embeddings"][0], atol=1e-4, rtol=1e-4)


def test_short_sequence_rule():
    m = small_model("GaitGL").eval()
    one = sils(1, 16, 11)  # [s=1, h, w]
    two = sils(2, 16, 11, seed=3)
    with torch.no_grad():
        e1 = m(one[None])["embeddings"][0]
        e2 = m(two[None])["embeddings"][0]
        close(e1, m(one.repeat(3, 1, 1)[None])["embeddings"][0])  # 1 frame -> 3
        close(e2, m(two.repeat(2, 1, 1)[None])["embeddings"][0])  # 2 frames -> 4 (f0 f1 f0 f1)
        # per sequence inside a padded batch too
        batch, lens = padded_batch([one, two, sils(6, 16, 11)], fill=0.0)
        out = m(batch, lens)["embeddings"]
        close(out[0], e1, atol=1e-4)
        close(out[1], e2, atol=1e-4)


def test_training_mode_padding_content_is_irrelevant():
    m = small_model("MetaGait").train()
    seqs = [sils(L, 16, 11, seed=L) for L in (6, 3, 5)]
    a, lens = padded_batch(seqs, fill=0.0)
    b, _ = padded_batch(seqs, fill=1.0)
    oa, ob = m(a, lens), m(b, lens)
    close(oa["embeddings"], ob["embeddings"], atol=1e-6)
    loss = oa["logits"].logsumexp(-1).mean() + oa["embeddings"].pow(2).mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


@pytest.mark.parametrize("name,extra", MODEL_KINDS[:2])
def test_embed_equals_one_at_a_time_and_keeps_order(name, extra):
    m = small_model(name, **extra).train()
    rng = np.random.default_rng(0)
    lens = [9, 1, 4, 2, 12, 3, 7]
    seqs_u8 = [(rng.random((L, 16, 11)) > 0.5).astype(np.uint8) * 255 for L in lens]
    emb = m.embed(seqs_u8, batch_size=3)
    assert m.training  # mode restored
    assert emb.shape == (len(lens), 16, 8)
    ref = straightforward_embed(m, [torch.from_numpy(s).float() / 255 for s in seqs_u8])
    close(emb, ref, atol=1e-4, rtol=1e-4)
    # tensors, float numpy, a frame budget and a different batch size agree too
    emb2 = m.embed(
        [torch.from_numpy(s.astype(np.float32) / 255) for s in seqs_u8], batch_size=8, max_frames=20
    )
    close(emb2, emb, atol=1e-4, rtol=1e-4)


def test_embed_rejects_bad_items():
    m = small_model("GaitGL")
    assert m.embed([]).shape == (0, 16, 8)
    with pytest.raises(ValueError, match="sequence 1"):
        m.embed([sils(3, 16, 11), sils(16, 11)])


# ----------------------------------------------------------------------------------------------
# bins, dtype, options
# ----------------------------------------------------------------------------------------------


def test_input_dtypes_are_normalised():
    m = small_model("GaitGL").eval()
    x = sils(2, 4, 16, 11)
    with torch.no_grad():
        ref = m(x)["embeddings"]
        close(m(x.double())["embeddings"], ref)
        close(m((x * 255).to(torch.uint8))["embeddings"], ref)
        close(m(x[:, None])["embeddings"], ref)  # [n, 1, s, h, w]


def test_bin_num_other_heights():
    m = build_model(
        {"model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 3, "bin_num": [32]}}
    )
    assert m(sils(2, 4, 32, 22))["embeddings"].shape == (2, 32, 8)
    m = build_model(
        {"model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 3, "bin_num": [16, 8]}}
    )
    assert m(sils(1, 3, 32, 22))["embeddings"].shape == (1, 24, 8)
    m = build_model(
        {"model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 3, "bin_num": [64]}}
    )
    assert m(sils(1, 3, 128, 16))["embeddings"].shape == (1, 64, 8)  # 128 feature rows, 2 per bin
    m = build_model(
        {"model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 3}}
    )  # null: 64 rows
    with pytest.raises(ValueError, match="bin_num"):
        m(sils(1, 3, 32, 22))


@pytest.mark.parametrize("name,extra", MODEL_KINDS)
def test_autocast_bfloat16_close_to_fp32(name, extra):
    m = small_model(name, **extra).eval()
    x = sils(2, 6, 16, 11)
    with torch.no_grad():
        ref = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = m(x)
    for key in ("embeddings", "logits"):
        assert low[key].dtype == torch.float32
        assert torch.isfinite(low[key]).all()
        cos = F.cosine_similarity(low[key].flatten(), ref[key].flatten(), dim=0)
        assert cos > 0.995


def test_channels_last_same_result():
    a = small_model("MetaGait")
    b = build_model(small_cfg("MetaGait", channels_last=True))
    b.load_state_dict(a.state_dict())
    assert b.GLConvA0.global_conv3d.conv3d.weight.is_contiguous(memory_format=torch.channels_last_3d)
    a.eval(), b.eval()
    x = sils(2, 5, 16, 11)
    with torch.no_grad():
        close(b(x)["embeddings"], a(x)["embeddings"])


def test_compile_flag_wires_torch_compile():
    m = build_model(small_cfg("GaitGL", compile=True))
    assert m.compile_enabled and m._compiled_core is None  # compiled at the first forward
    assert all(not k.startswith("_orig_mod") for k in m.state_dict())


# ----------------------------------------------------------------------------------------------
# paper variant
# ----------------------------------------------------------------------------------------------


def test_paper_variant_trains_with_every_switch():
    x = sils(4, 6, 16, 11, seed=5)
    labels = torch.tensor([0, 1, 0, 1])
    for channel, spatial, temporal, mtp in itertools.product([True, False], repeat=4):
        m = small_model(
            "MetaGait",
            variant="paper",
            mta={"channel": channel, "spatial": spatial, "temporal": temporal},
            mtp=mtp,
        )
        assert hasattr(m, "mta") and not hasattr(m, "eca")
        assert hasattr(m, "mtp") == mtp
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        for _ in range(2):
            out = m(x, [6, 5, 3, 1])
            loss = F.cross_entropy(out["logits"].permute(0, 2, 1), labels[:, None].expand(-1, 16))
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert torch.isfinite(loss), (channel, spatial, temporal, mtp)


@pytest.mark.parametrize("name,extra", MODEL_KINDS)
def test_batch_one_inference_avoids_the_slow_reference_convolution(name, extra):
    """One sequence at inference runs every 3-D convolution through oneDNN (PyTorch's own choice
    sends such small batches to ``slow_conv3d``), with the straightforward model's result."""
    m = small_model(name, **extra).eval()
    x = sils(1, 7, 16, 11)
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        a = m(x)
    names = {e.key for e in prof.key_averages()}
    assert not any("slow_conv3d" in k for k in names), sorted(k for k in names if "conv" in k)
    assert "aten::mkldnn_convolution" in names
    with torch.no_grad():
        close(a["embeddings"], straightforward_forward(m, x)["embeddings"])


@pytest.mark.parametrize("name,extra", MODEL_KINDS)
def test_training_gradients_equal_straightforward(name, extra):
    """The in-place activations and fused paths of the training step give the straightforward
    model's gradients."""
    m = small_model(name, **extra).train()
    x = sils(3, 7, 16, 11)
    grads = []
    for forward in (m, lambda s: straightforward_forward(m, s)):
        m.zero_grad()
        torch.manual_seed(0)
        out = forward(x)
        (out["embeddings"].square().mean() + out["logits"].logsumexp(-1).mean()).backward()
        grads.append({k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 5
    for key, g in grads[0].items():
        close(g, grads[1][key], atol=1e-5, rtol=1e-3)
