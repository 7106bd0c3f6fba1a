"""The protocols: a hand-built CASIA-B feature set with a known answer (missing views included),
a straightforward re-statement of the reference's rules on random features, and protocol
selection and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gaitcli.errors import GaitError
from gaitcli.evaluation import evaluate_features
from gaitcli.evaluation.matching import run_protocol
from gaitcli.evaluation.protocols import CASIA_B, CROSS_VIEW, OU_MVLP, resolve_protocol, view_sort_key

CENTRES = {"001": (10.0, 0.0, 0.0), "002": (0.0, 10.0, 0.0), "003": (0.0, 0.0, 10.0)}


def known_set():
    """3 ids. Gallery nm-01..04 at views 000 and 090 only (no gallery at 180). NM probes at all
    three views, one of them (003 nm-05 090) sitting next to id 001. BG probes only at view 000,
    one of them (002 bg-02) next to id 003. No CL sequences at all."""
    rng = np.random.default_rng(0)
    rows = []
    for label, centre in CENTRES.items():
        for t in ("nm-01", "nm-02", "nm-03", "nm-04"):
            for v in ("000", "090"):
                rows.append((label, t, v, np.array(centre) + rng.normal(scale=0.01, size=3)))
        for t in ("nm-05", "nm-06"):
            for v in ("000", "090", "180"):
                point = np.array(centre)
                if (label, t, v) == ("003", "nm-05", "090"):
                    point = np.array((10.0, 0.0, 3.0))  # nearest: id 001; then id 003
                rows.append((label, t, v, point))
        for t in ("bg-01", "bg-02"):
            point = np.array(centre)
            if (label, t) == ("002", "bg-02"):
                point = np.array((0.0, 3.0, 10.0))  # nearest: id 003; then id 002
            rows.append((label, t, "000", point))
    labels, types, views, vecs = zip(*rows, strict=True)
    emb = np.stack([np.stack([v, v]) for v in vecs]).astype(np.float32)  # 2 parts x 3 channels
    return emb, list(labels), list(types), list(views)


def test_casia_b_known_answer_with_missing_views():
    warnings = []
    r = run_protocol(*known_set(), CASIA_B, "euc", want_map=True, warn=warnings.append).to_json()
    assert r["views"] == ["000", "090", "180"]
    assert r["num_gallery"] == 24 and r["num_probes"] == 18 + 6
    # rows: probe views, columns: gallery views; the 180 gallery column does not exist
    assert r["matrix"]["rank1"]["NM"] == [[100.0, 100.0, None], [83.33, 83.33, None], [100.0, 100.0, None]]
    assert r["matrix"]["rank1"]["BG"] == [[83.33, 83.33, None], [None] * 3, [None] * 3]
    assert r["matrix"]["rank1"]["CL"] == [[None] * 3] * 3
    nm = r["rank1_exclude"]["NM"]
    assert nm["views"] == {"000": 100.0, "090": 83.33, "180": 100.0}
    # cells are rounded before averaging: (100 + 83.33 + 100) / 3, not (100 + 83.333.. + 100) / 3
    assert nm["mean"] == pytest.approx(94.4433333, abs=1e-6)
    assert r["rank1_include"]["NM"]["views"] == {"000": 100.0, "090": 83.33, "180": 100.0}
    assert r["rank1_exclude"]["BG"] == {"views": {"000": 83.33, "090": None, "180": None}, "mean": 83.33}
    assert r["rank1_exclude"]["CL"] == {"views": {"000": None, "090": None, "180": None}, "mean": None}
    assert r["rank1"] == {"NM": pytest.approx(94.4433333, abs=1e-6), "BG": 83.33}  # no CL: no number
    # rank-5: the misplaced probes have their own id 5th
    assert r["rank5_exclude"]["NM"]["mean"] == 100.0 and r["rank5_exclude"]["BG"]["mean"] == 100.0
    # mAP of the NM 090 cells: five probes with AP 1, one with AP (1/5 + 2/6 + 3/7 + 4/8) / 4
    ap = (1 / 5 + 2 / 6 + 3 / 7 + 4 / 8) / 4
    assert r["map"]["NM"]["views"]["090"] == round((5 + ap) / 6 * 100, 2) == 89.42
    assert any("CL" in w for w in warnings)
    json.dumps(r)  # JSON-ready: no numpy scalars, no NaN


def test_known_answer_is_metric_independent_for_cos():
    r = run_protocol(*known_set(), CASIA_B, "cos").to_json()
    assert r["rank1_exclude"]["NM"]["views"] == {"000": 100.0, "090": 83.33, "180": 100.0}


# --------------------------------------------------------------------------------------------
# the reference's rules, restated as plainly as possible


def plain_distance(x, y):
    return np.mean(
        np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1)), axis=-1
    )  # [n, m, parts] -> mean over parts


def plain_single_view(emb, labels, types, views, gallery_types, probe_sets):
    labels, types, views = map(np.asarray, (labels, types, views))
    vlist = sorted(set(views))
    out = {}
    for name, ptypes in probe_sets.items():
        acc = np.zeros((len(vlist), len(vlist)))
        for i, pv in enumerate(vlist):
            pm = np.isin(types, ptypes) & (views == pv)
            for j, gv in enumerate(vlist):
                gm = np.isin(types, gallery_types) & (views == gv)
                d = plain_distance(emb[pm].astype(np.float64), emb[gm].astype(np.float64))
                nearest = labels[gm][d.argmin(1)]
                acc[i, j] = np.round(np.sum(nearest == labels[pm]) * 100 / pm.sum(), 2)
        excl = (acc.sum(1) - np.diag(acc)) / (len(vlist) - 1)
        out[name] = (excl, acc.mean(1))
    return out


def plain_cross_view(emb, labels, types, views, gallery_types, probe_sets):
    labels, types, views = map(np.asarray, (labels, types, views))
    vlist = sorted(set(views))
    out = {}
    gm = np.isin(types, gallery_types)
    for name, ptypes in probe_sets.items():
        accs, maps = [], []
        for pv in vlist:
            pm = np.isin(types, ptypes) & (views == pv)
            d = plain_distance(emb[pm].astype(np.float64), emb[gm].astype(np.float64))
            hits, aps = [], []
            for row, (pl, pvv) in enumerate(zip(labels[pm], views[pm], strict=True)):
                keep = ~((labels[gm] == pl) & (views[gm] == pvv))
                order = np.argsort(d[row][keep], kind="stable")
                match = (labels[gm][keep][order] == pl).astype(int)
                hits.append(match[0])
                if match.sum():
                    aps.append(np.sum(np.cumsum(match) / np.arange(1, len(match) + 1) * match) / match.sum())
            accs.append(np.round(np.mean(hits) * 100, 2))
            maps.append(np.round(np.mean(aps) * 100, 2))
        out[name] = (accs, maps)
    return out


def random_casia(seed=7, ids=8, views=("000", "018", "036", "054"), noise=1.6):
    rng = np.random.default_rng(seed)
    types = [f"nm-0{i}" for i in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"]
    centres = rng.normal(size=(ids, 4, 6))
    rows = [(f"{i:03d}", t, v) for i in range(ids) for t in types for v in views]
    emb = np.stack([centres[int(i)] + rng.normal(scale=noise, size=(4, 6)) for i, _, _ in rows]).astype(
        np.float32
    )
    labels, types_, views_ = zip(*rows, strict=True)
    return emb, list(labels), list(types_), list(views_)


def test_single_view_equals_the_plain_reference_rules():
    emb, labels, types, views = random_casia()
    ours = run_protocol(emb, labels, types, views, CASIA_B, "euc", chunk=37).to_json()
    plain = plain_single_view(emb, labels, types, views, CASIA_B.gallery_types, CASIA_B.probe_sets)
    vlist = ours["views"]
    for name, (excl, incl) in plain.items():
        got_ex = [ours["rank1_exclude"][name]["views"][v] for v in vlist]
        got_in = [ours["rank1_include"][name]["views"][v] for v in vlist]
        np.testing.assert_allclose(got_ex, excl, atol=1e-9)
        np.testing.assert_allclose(got_in, incl, atol=1e-9)
        assert ours["rank1_exclude"][name]["mean"] == pytest.approx(np.mean(excl), abs=1e-9)
    assert 0 < ours["rank1_exclude"]["CL"]["mean"] < 100  # the noise makes it a real test


def test_cross_view_equals_the_plain_reference_rules():
    emb, labels, types, views = random_casia(seed=8)
    spec = CROSS_VIEW["casia-b"]
    ours = run_protocol(emb, labels, types, views, spec, "euc", chunk=5).to_json()
    plain = plain_cross_view(emb, labels, types, views, spec.gallery_types, spec.probe_sets)
    for name, (accs, maps) in plain.items():
        assert list(ours["rank1_exclude"][name]["views"].values()) == pytest.approx(accs, abs=1e-9)
        assert list(ours["map"][name]["views"].values()) == pytest.approx(maps, abs=1e-9)
    assert ours["matrix"] is None


def test_ou_mvlp_and_generic_protocols():
    rng = np.random.default_rng(3)
    views = ["000", "015", "030"]
    rows = [(f"{i:05d}", s, v) for i in range(6) for s in ("00", "01") for v in views]
    centres = rng.normal(size=(6, 2, 4)) * 5
    emb = np.stack([centres[int(i)] + rng.normal(scale=0.1, size=(2, 4)) for i, _, _ in rows]).astype(
        np.float32
    )
    labels, types, vs = map(list, zip(*rows, strict=True))
    r = run_protocol(emb, labels, types, vs, OU_MVLP, "euc").to_json()
    assert r["rank1_exclude"]["NM"]["mean"] == 100.0 and list(r["rank1_exclude"]) == ["NM"]
    spec = resolve_protocol("generic", evaluator_cfg={"gallery_types": ["00"], "probe_sets": {"A": ["01"]}})
    g = run_protocol(emb, labels, types, vs, spec, "euc").to_json()
    assert g["protocol"] == "generic" and g["rank1_exclude"]["A"]["mean"] == 100.0


def test_remove_no_gallery_drops_probes_without_gallery_ids():
    emb, labels, types, views = known_set()
    # give id 004 probes but no gallery
    extra = np.stack([np.stack([np.array((5.0, 5.0, 5.0))] * 2)]).astype(np.float32)
    emb2 = np.concatenate([emb, extra])
    args = (emb2, [*labels, "004"], [*types, "nm-05"], [*views, "000"])
    kept = run_protocol(*args, CASIA_B, remove_no_gallery=False).to_json()
    dropped = run_protocol(*args, CASIA_B, remove_no_gallery=True).to_json()
    assert kept["matrix"]["rank1"]["NM"][0][0] == round(6 / 7 * 100, 2)
    assert dropped["matrix"]["rank1"]["NM"][0][0] == 100.0


def test_protocol_selection():
    assert resolve_protocol("auto", dataset_name="CASIA-B") is CASIA_B
    assert resolve_protocol("auto", dataset_name="OUMVLP") is OU_MVLP
    assert (
        resolve_protocol("auto", dataset_name="CASIA-B", evaluator_cfg={"cross_view_gallery": True}).kind
        == "cross-view"
    )
    assert (
        resolve_protocol("auto", dataset_name="OUMVLP", evaluator_cfg={"protocol": "cross-view"})
        == CROSS_VIEW["ou-mvlp"]
    )
    assert resolve_protocol("auto", types=["00", "01"]) is OU_MVLP
    assert resolve_protocol("auto", dataset_name="Mine", types=["nm-01", "cl-02"]) is CASIA_B
    generic = resolve_protocol(
        "auto", dataset_name="GREW", evaluator_cfg={"gallery_types": ["01"], "probe_sets": {"P": "02"}}
    )
    assert generic.name == "generic" and generic.probe_sets == {"P": ("02",)}
    assert resolve_protocol("auto", dataset_name="GREW", types=["01", "02", "03"]).name == "grew"
    with pytest.raises(GaitError, match="cannot pick"):
        resolve_protocol("auto", dataset_name="Mine", types=["a-1", "b-2"])
    with pytest.raises(GaitError, match="generic protocol needs"):
        resolve_protocol("generic", dataset_name="CASIA-B")
    with pytest.raises(GaitError, match="unknown protocol"):
        resolve_protocol("casia")


def test_features_that_do_not_match_the_protocol_are_one_clear_error():
    emb, labels, types, views = known_set()
    with pytest.raises(GaitError, match="no gallery sequences of type 01"):
        run_protocol(emb, labels, types, views, OU_MVLP).to_json()
    only_gallery = [i for i, t in enumerate(types) if t in CASIA_B.gallery_types]
    with pytest.raises(GaitError, match="no probe sequences"):
        run_protocol(
            emb[only_gallery],
            [labels[i] for i in only_gallery],
            [types[i] for i in only_gallery],
            [views[i] for i in only_gallery],
            CASIA_B,
        ).to_json()
    with pytest.raises(GaitError, match="must agree"):
        run_protocol(emb, labels[:-1], types, views, CASIA_B).to_json()


def test_evaluate_features_uses_the_config():
    emb, labels, types, views = known_set()
    cfg = {"evaluator_cfg": {"metric": "cos", "protocol": "auto"}, "data_cfg": {"dataset_name": "CASIA-B"}}
    r = evaluate_features(emb, labels, types, views, cfg=cfg, metric=None).to_json()
    assert r["protocol"] == "casia-b" and r["metric"] == "cos" and r["dataset_name"] == "CASIA-B"
    assert "protocol" in r["seconds"]


def test_views_sort_numerically():
    assert sorted(["180", "18", "0", "090", "side"], key=view_sort_key) == ["0", "18", "090", "180", "side"]


def test_single_view_without_map_goes_through_the_fused_top_k(monkeypatch):
    """Without mAP no distance block is built (the fused tile-by-tile top-k walk), and the
    matrices equal those of the ranked path (with mAP) cell for cell, in both metrics."""
    import gaitcli.evaluation.matching as matching

    emb, labels, types, views = random_casia(seed=9)
    for metric in ("euc", "cos"):
        ranked = run_protocol(emb, labels, types, views, CASIA_B, metric, chunk=11, want_map=True).to_json()

        def no_block(*args, **kwargs):
            raise AssertionError("a distance block was built without mAP")

        with monkeypatch.context() as m:
            m.setattr(matching, "distance_block", no_block)
            fused = run_protocol(emb, labels, types, views, CASIA_B, metric, chunk=11).to_json()
        assert fused["matrix"]["rank1"] == ranked["matrix"]["rank1"]
        assert fused["matrix"]["rank5"] == ranked["matrix"]["rank5"]
        assert fused["rank1_exclude"] == ranked["rank1_exclude"]
