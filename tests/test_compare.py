"""``gait eval --save-hits`` and ``gait compare``: the hits file reproduces the eval's tables and
round-trips; identical runs differ by exactly 0; McNemar's exact p-value; the subject bootstrap
covers the truth; evaluations of different probes are refused; seeds recorded by training, read
by eval and used to pair runs; the CLI end to end on tiny GaitGL checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config, write_tiny_tree
from typer.testing import CliRunner

from gaitcli.build import build_model
from gaitcli.cli import app
from gaitcli.compare import CompareError, compare_hits, mcnemar_exact, mcnemar_exact_small
from gaitcli.evaluation import FeatureSet
from gaitcli.evaluation.calibration import Provenance
from gaitcli.evaluation.hits import NA, EvalIdentity, Hits, HitsFileError, cell_rank1, load_hits
from gaitcli.evaluation.plan import training_seed
from gaitcli.models import read_checkpoint_metadata, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result, *words):
    lines = [line for line in result.output.splitlines() if line.strip()]
    ok = result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:")
    return ok and all(w in lines[0] for w in words)


# ----------------------------------------------------------------------------------------------
# synthetic hits
# ----------------------------------------------------------------------------------------------


def identity(seed=None, sha=None, metric="euc"):
    prov = Provenance(None, sha, None, metric, None)
    return EvalIdentity("generic", "single-view", metric, prov, None, seed, None, None)


def hits_of(outcome, labels, probe_views, *, columns=("000",), types=None, seed=None, sha=None, source=""):
    """Hits of one probe set ``P`` (types ``p`` unless given) with the given outcomes [rows, columns]."""
    n = len(labels)
    return Hits(
        identity=identity(seed, sha), gallery_types=("g",), probe_sets={"P": ("p",)},
        views=tuple(sorted(set(probe_views) | set(columns))), columns=tuple(columns), gallery_size=1,
        gallery_digest="d" * 64, sets=np.full(n, "P"), labels=np.array(labels),
        types=np.array(types) if types is not None else np.full(n, "p"),
        probe_views=np.array(probe_views), outcome=np.asarray(outcome, dtype=np.int8), source=source,
    )


def one_cell(a, b, subjects=None):
    """Two single-cell runs with outcome vectors ``a`` and ``b`` (one probe per subject)."""
    n = len(a)
    labels = subjects if subjects is not None else [f"{i:03d}" for i in range(n)]
    views = ["090"] * n
    return (hits_of(np.array(a)[:, None], labels, views, source="A.json"),
            hits_of(np.array(b)[:, None], labels, views, source="B.json"))


def test_mcnemar_exact_matches_the_binomial_sum():
    # 8 discordant one way, 2 the other: p = 2 * (C(10,0) + C(10,1) + C(10,2)) / 2^10 = 0.109375
    assert mcnemar_exact(8, 2) == pytest.approx(0.109375, rel=1e-12)
    assert mcnemar_exact_small(8, 2) == 0.109375
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == 1.0
    for b in range(0, 40, 3):
        for c in range(0, 40, 7):
            assert mcnemar_exact(b, c) == pytest.approx(mcnemar_exact_small(b, c), rel=1e-10, abs=1e-300)
    # vectorised
    assert np.allclose(mcnemar_exact(np.array([8, 0, 3]), np.array([2, 0, 9])),
                       [0.109375, 1.0, mcnemar_exact_small(3, 9)])


def test_known_discordant_table_gives_the_exact_p_value():
    # 20 probes: 8 where only A hits, 2 where only B hits, 6 both, 4 neither
    a = [1] * 8 + [0] * 2 + [1] * 6 + [0] * 4
    b = [0] * 8 + [1] * 2 + [1] * 6 + [0] * 4
    cmp = compare_hits(*map(lambda h: [h], one_cell(a, b)), resamples=500)
    est = cmp.sets[0].overall
    assert (est.a_only, est.b_only, est.outcomes) == (8, 2, 20)
    assert est.p_value == pytest.approx(2 * sum(math.comb(10, k) for k in range(3)) / 2**10, rel=1e-12)
    assert est.a == pytest.approx(70.0) and est.b == pytest.approx(40.0) and est.diff == pytest.approx(30.0)
    cell = cmp.sets[0].cells["090"]["000"]
    assert cell.p_value == est.p_value and cell.diff == pytest.approx(30.0)


def test_identical_runs_differ_by_zero_with_a_zero_interval_and_p_one():
    rng = np.random.default_rng(3)
    labels = [f"{i:03d}" for i in range(12) for _ in range(4)]
    views = ["000", "090"] * 24
    types = ["p1", "p1", "p2", "p2"] * 12
    outcome = (rng.random((48, 2)) < 0.7).astype(np.int8)
    outcome[0, 1] = NA
    h = hits_of(outcome, labels, views, columns=("000", "090"), types=types)
    cmp = compare_hits([h], [h], resamples=2000)
    estimates = [s.overall for s in cmp.sets] + [e for s in cmp.sets for e in s.views.values()]
    estimates += [e for s in cmp.sets for row in s.cells.values() for e in row.values()]
    assert len(estimates) == 1 + 2 + 4
    for e in estimates:
        assert e.diff == 0.0 and (e.low, e.high) == (0.0, 0.0) and e.p_value == 1.0
        assert e.a_only == e.b_only == 0


def test_the_set_headline_leaves_identical_views_out():
    # probes at 000 and 090 against gallery views 000 and 090: identical cells all hit, others all miss
    labels = [f"{i:03d}" for i in range(10) for _ in range(2)]
    views = ["000", "090"] * 10
    a = np.array([[1, 0], [0, 1]] * 10)
    b = np.array([[0, 0], [0, 0]] * 10)
    cmp = compare_hits([hits_of(a, labels, views, columns=("000", "090"))],
                       [hits_of(b, labels, views, columns=("000", "090"))], resamples=200)
    assert cmp.sets[0].overall.a == 0.0 and cmp.sets[0].overall.diff == 0.0  # identical cells left out
    assert cmp.sets[0].cells["000"]["000"].diff == 100.0


def test_bootstrap_over_subjects_covers_the_true_difference():
    """40 synthetic test sets drawn from a population whose true difference is 10 points (each
    subject has its own ability, shared by its probes): the 95 % interval covers 10 in most."""
    rng = np.random.default_rng(2024)
    covered, widths = 0, []
    for trial in range(40):
        subjects, probes = 60, 6
        ability = rng.uniform(0.35, 0.95, subjects)
        labels = np.repeat([f"{i:03d}" for i in range(subjects)], probes)
        p_a = np.repeat(ability, probes)
        a = (rng.random(len(p_a)) < p_a).astype(np.int8)
        b = (rng.random(len(p_a)) < p_a - 0.10).astype(np.int8)
        views = np.full(len(labels), "090")
        types = np.tile([f"p{k}" for k in range(probes)], subjects)
        cmp = compare_hits([hits_of(a[:, None], labels, views, types=types)],
                           [hits_of(b[:, None], labels, views, types=types)], resamples=1000, seed=trial)
        est = cmp.sets[0].overall
        covered += est.low <= 10.0 <= est.high
        widths.append(est.high - est.low)
    assert covered >= 34, f"coverage {covered}/40"
    # the standard error of a mean of 360 paired outcomes is about 2.5 points: width ~ 4 x that
    assert 5 < float(np.median(widths)) < 16


def test_bootstrap_draws_subjects_not_probes():
    """20 subjects of 10 probes each; A hits every probe of the first 10 subjects, B none: the
    outcomes are 20 independent subjects, not 200 independent probes, and the interval says so
    (subject standard error sqrt(.25 / 20) = 11 points, width about 44; per probe it would be 14)."""
    labels = np.repeat([f"{i:03d}" for i in range(20)], 10)
    types = np.tile([f"p{k}" for k in range(10)], 20)
    views = np.full(200, "090")
    a = np.repeat([1] * 10 + [0] * 10, 10)[:, None]
    b = np.zeros((200, 1), dtype=int)
    est = compare_hits([hits_of(a, labels, views, types=types)], [hits_of(b, labels, views, types=types)],
                       resamples=4000).sets[0].overall
    assert est.diff == pytest.approx(50.0)
    assert 35 < est.high - est.low < 55


def test_bootstrap_is_seeded():
    a, b = one_cell([1, 0, 1, 1, 0, 1, 1, 0], [0, 0, 1, 1, 1, 0, 0, 0])
    x = compare_hits([a], [b], resamples=300, seed=5).sets[0].overall
    y = compare_hits([a], [b], resamples=300, seed=5).sets[0].overall
    z = compare_hits([a], [b], resamples=300, seed=6).sets[0].overall
    assert (x.low, x.high) == (y.low, y.high)
    assert (x.low, x.high) != (z.low, z.high) or x.low == x.high


def test_probe_order_does_not_matter():
    a, b = one_cell([1, 0, 1, 1, 0], [0, 0, 1, 1, 1])
    order = np.array([4, 2, 0, 1, 3])
    shuffled = Hits(**{**b.__dict__, "sets": b.sets[order], "labels": b.labels[order],
                       "types": b.types[order], "probe_views": b.probe_views[order],
                       "outcome": b.outcome[order]})
    x, y = compare_hits([a], [b], resamples=100), compare_hits([a], [shuffled], resamples=100)
    assert x.sets[0].overall == y.sets[0].overall


def test_mismatched_probes_are_refused():
    a, b = one_cell([1, 0, 1], [1, 1, 1])
    other = hits_of(b.outcome, ["000", "001", "999"], ["090"] * 3, source="C.json")
    with pytest.raises(CompareError, match="not evaluations of the same probes.*999"):
        compare_hits([a], [other])
    fewer = hits_of(b.outcome[:2], ["000", "001"], ["090"] * 2, source="D.json")
    with pytest.raises(CompareError, match="1 probes of A.json are not in D.json"):
        compare_hits([a], [fewer])
    gallery = Hits(**{**b.__dict__, "gallery_digest": "e" * 64})
    with pytest.raises(CompareError, match="different galleries"):
        compare_hits([a], [gallery])
    twice = [hits_of(a.outcome, list(a.labels), ["090"] * 3, sha="f" * 64, source=f"A{i}.json")
             for i in (1, 2)]
    with pytest.raises(CompareError, match="same evaluation"):
        compare_hits(twice, [b])


def test_runs_pair_by_seed_and_average_over_seeds():
    labels = [f"{i:03d}" for i in range(8)]
    views = ["090"] * 8
    a0 = hits_of(np.array([1, 1, 1, 1, 0, 0, 0, 0])[:, None], labels, views, seed=0, source="a0")
    a1 = hits_of(np.array([1, 1, 1, 1, 1, 1, 0, 0])[:, None], labels, views, seed=1, source="a1")
    b1 = hits_of(np.array([1, 1, 0, 0, 0, 0, 0, 0])[:, None], labels, views, seed=1, source="b1")
    b0 = hits_of(np.array([1, 1, 1, 1, 0, 0, 0, 0])[:, None], labels, views, seed=0, source="b0")
    cmp = compare_hits([a0, a1], [b1, b0], resamples=200)
    assert cmp.pairing == "seed"
    assert [(p.a, p.b, p.seed) for p in cmp.pairs] == [(0, 1, 0), (1, 0, 1)]
    assert [p.sets["P"].diff for p in cmp.pairs] == [0.0, 50.0]
    est = cmp.sets[0].overall
    assert est.a == pytest.approx(62.5) and est.b == pytest.approx(37.5) and est.diff == pytest.approx(25.0)
    assert (est.a_only, est.b_only, est.outcomes) == (4, 0, 8)  # pooled over the seed pairs
    assert [r.rank1["P"] for r in cmp.runs_a] == [50.0, 75.0]
    # unknown seeds: paired in order (noted); unequal counts: no p-value
    c = compare_hits([Hits(**{**a0.__dict__, "identity": identity()}), a1], [b0, b1], resamples=50)
    assert c.pairing == "order" and any("order" in n for n in c.notes)
    d = compare_hits([a0, a1], [b0], resamples=50)
    assert d.pairing is None and d.sets[0].overall.p_value is None and d.sets[0].overall.low is not None


def test_training_seed_from_metadata_config_or_unknown():
    assert training_seed({"seed": "7"}, {"trainer_cfg": {"seed": 1}}) == 7
    assert training_seed({}, {"trainer_cfg": {"seed": 3}}) == 3  # gait train before the seed metadata
    assert training_seed({"converted_from": "x.pt"}, {"trainer_cfg": {"seed": 0}}) is None
    assert training_seed({}, {}) is None


# ----------------------------------------------------------------------------------------------
# eval --save-hits and gait compare end to end
# ----------------------------------------------------------------------------------------------


def synthetic_features(path, noise, seed):
    """CASIA-B-shaped features: 8 ids x 10 types x 3 views, ids separable up to ``noise``."""
    rng = np.random.default_rng(seed)
    types = [f"nm-{k:02d}" for k in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"]
    rows = [(f"{i:03d}", t, v) for i in range(1, 9) for t in types for v in ("000", "090", "180")]
    centre = {f"{i:03d}": np.random.default_rng(100 + i).normal(size=(2, 8)) for i in range(1, 9)}
    emb = np.stack([centre[i] + noise * rng.normal(size=(2, 8)) for i, _, _ in rows]).astype(np.float32)
    labels, kinds, views = (np.array(c) for c in zip(*rows, strict=True))
    FeatureSet(emb, labels, kinds, views, meta={"dataset_name": "CASIA-B"}).save(path)


@pytest.mark.parametrize("protocol", ["casia-b", "cross-view"])
def test_hits_reproduce_the_eval_tables_and_round_trip(tmp_path, protocol):
    feats = tmp_path / "f.npz"
    synthetic_features(feats, 1.0, 0)
    hits_path, eval_json = tmp_path / "h.json", tmp_path / "e.json"
    result = run("eval", "--features", feats, "--protocol", protocol, "--save-hits", hits_path,
                 "--json", eval_json)
    assert result.exit_code == 0, result.output
    hits = load_hits(hits_path)
    doc = json.loads(eval_json.read_text())
    assert hits.identity.protocol == protocol and hits.identity.features == str(feats)
    assert hits.identity.seed is None and doc["seed"] is None  # features without a checkpoint at hand
    for name in ("NM", "BG", "CL"):
        for i, view in enumerate(doc["views"]):
            if protocol == "casia-b":
                for j, col in enumerate(hits.columns):
                    got = cell_rank1(hits, name, view, col)
                    want = doc["matrix"]["rank1"][name][i][j]
                    assert (got is None and want is None) or round(got, 2) == pytest.approx(want)
            else:
                got = cell_rank1(hits, name, view, "all")
                assert round(got, 2) == pytest.approx(doc["rank1_exclude"][name]["views"][view])
    # the comparison's headline is the eval's (before the reference's rounding of each cell)
    same = compare_hits([hits], [hits], resamples=10)
    for s in same.sets:
        assert s.overall.a == pytest.approx(doc["rank1"][s.name], abs=0.01)
    # round trip: the same bytes again
    again = tmp_path / "again.json"
    hits.save(again)
    assert again.read_bytes() == hits_path.read_bytes()
    text = hits_path.read_text()
    assert text.count("\n") > len(hits)  # one probe per line


FIELD = Path(__file__).resolve().parent / "fixtures" / "parity"


@pytest.mark.parametrize("protocol", ["gait3d", "grew", "ccpg"])
def test_field_protocol_hits_reproduce_the_eval_tables(tmp_path, protocol):
    """The tiny synthetic features of the field-protocol parity tests: every column's hit rate is the
    rank-1 the eval table reports, and a run compared with itself differs by exactly 0."""
    hits_path, eval_json = tmp_path / "h.json", tmp_path / "e.json"
    extra = ["--partition", FIELD / "evaluators_gait3d_partition.json"] if protocol == "gait3d" else []
    result = run("eval", "--features", FIELD / f"evaluators_{protocol}.npz", "--protocol", protocol, *extra,
                 "--save-hits", hits_path, "--json", eval_json)
    assert result.exit_code == 0, result.output
    hits = load_hits(hits_path)
    doc = json.loads(eval_json.read_text())
    assert hits.identity.protocol == protocol and hits.identity.kind == doc["kind"]
    assert NA not in hits.outcome or protocol == "ccpg"
    if protocol == "ccpg":
        assert list(hits.columns) == doc["views"] == ["01", "02", "03", "04"]
        assert "01_2" in set(hits.probe_views.tolist())  # the full view name is the probe's key
        for name in ("CL", "UP", "DN", "BG"):
            for i, view in enumerate(doc["views"]):
                for j, col in enumerate(hits.columns):
                    got = cell_rank1(hits, name, view, col)
                    want = doc["matrix"]["rank1"][name][i][j]
                    assert (got is None) == (want is None)
                    if got is not None:
                        assert round(got, 2) == pytest.approx(want, abs=1e-9)
    else:
        name = {"gait3d": "Gait3D", "grew": "GREW"}[protocol]
        row = doc["retrieval"][name]
        assert hits.columns == ("all",) and set(hits.sets.tolist()) == {name}
        assert len(hits) == row["probes"]  # gait3d: the 4 probes without a gallery id left out
        got = cell_rank1(hits, name, "all", "all")
        assert got is not None
        want = row["rank1"]
        assert (round(got, 2) if protocol == "grew" else got) == pytest.approx(want, abs=1e-9)
    same = compare_hits([hits], [hits], resamples=50)
    assert [s.name for s in same.sets] == list(doc["rank1"])
    for s in same.sets:
        assert s.overall.a == pytest.approx(doc["rank1"][s.name], abs=0.01)
        estimates = [s.overall, *s.views.values(), *(e for row in s.cells.values() for e in row.values())]
        for e in estimates:
            assert e.diff == 0.0 and (e.low, e.high) == (0.0, 0.0) and e.p_value == 1.0
    result = run("compare", hits_path, hits_path, "--resamples", 50, "--json", "-")
    assert result.exit_code == 0, result.output
    assert all(s["overall"]["diff"] == 0.0 for s in json.loads(result.stdout)["sets"])


def test_field_protocol_hits_tell_two_models_apart(tmp_path):
    """Noisier features of the same gait3d probes: compare sees the drop, matching the two tables."""
    feats = FeatureSet.load(FIELD / "evaluators_gait3d.npz")
    rng = np.random.default_rng(0)
    worse = tmp_path / "worse.npz"
    noisy = feats.embeddings + 3 * rng.normal(size=feats.embeddings.shape).astype(np.float32)
    FeatureSet(noisy, feats.labels, feats.types, feats.views).save(worse)
    part = ["--protocol", "gait3d", "--partition", FIELD / "evaluators_gait3d_partition.json"]
    rank1 = {}
    for name, path in (("a", FIELD / "evaluators_gait3d.npz"), ("b", worse)):
        result = run("eval", "--features", path, *part, "--save-hits", tmp_path / f"{name}.json",
                     "--json", tmp_path / f"{name}.eval.json")
        assert result.exit_code == 0, result.output
        rank1[name] = json.loads((tmp_path / f"{name}.eval.json").read_text())["rank1"]["Gait3D"]
    assert rank1["a"] != rank1["b"]
    cmp = compare_hits([load_hits(tmp_path / "a.json")], [load_hits(tmp_path / "b.json")], resamples=200)
    est = cmp.sets[0].overall
    assert est.diff == pytest.approx(rank1["a"] - rank1["b"], abs=1e-9)
    assert est.a_only + est.b_only > 0 and est.low is not None and est.high is not None
    assert est.low <= est.diff <= est.high


def test_damaged_or_newer_hits_files_are_one_line(tmp_path):
    feats, good = tmp_path / "f.npz", tmp_path / "h.json"
    synthetic_features(feats, 1.0, 0)
    assert run("eval", "--features", feats, "--save-hits", good).exit_code == 0
    doc = json.loads(good.read_text())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**doc, "version": 99}))
    with pytest.raises(HitsFileError, match="newer gaitcli"):
        load_hits(bad)
    doc["probes"][3][4] = "1x1"
    bad.write_text(json.dumps(doc))
    with pytest.raises(HitsFileError, match=r"probes\[3\]"):
        load_hits(bad)
    result = run("compare", good, bad)
    assert one_error_line(result, "probes[3]")
    assert one_error_line(run("compare", good, tmp_path / "missing.json"), "no such hits file")
    assert one_error_line(run("compare", good), "two hits files")
    assert one_error_line(run("compare", good, good, "--a", good), "not both")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare")
    tree = base / "pkl"
    types = ("nm-01", "nm-02", "nm-03", "nm-04", "nm-05", "nm-06", "bg-01", "cl-01")
    write_tiny_tree(tree, ids=4, types=types, views=("000", "090"), frames=6, size=32)
    part = base / "part.json"
    part.write_text(json.dumps({"TRAIN_SET": [], "TEST_SET": ["001", "002", "003", "004"]}))
    cfg = tiny_config(tree, part)
    out = {}
    for name, seed in (("a0", 0), ("a1", 1), ("b0", 0), ("b1", 1)):
        torch.manual_seed(hash(name) % 1000)
        model = build_model(cfg)
        path = save_checkpoint(base / f"{name}.safetensors", model, model.config, iteration=8,
                               labels=["001", "002"], frame_size="32x32", seed=seed)
        out[name] = path
    return base, out


def test_cli_end_to_end_on_checkpoints(checkpoints):
    base, ckpts = checkpoints
    for name, path in ckpts.items():
        result = run("eval", path, "--device", "cpu", "--save-hits", base / f"{name}.json",
                     "--json", base / f"{name}.eval.json")
        assert result.exit_code == 0, result.output
    a0 = load_hits(base / "a0.json")
    assert a0.identity.seed == 0 and a0.identity.provenance.checkpoint_sha256 is not None
    assert a0.identity.iteration == 8 and a0.identity.protocol == "casia-b"
    assert json.loads((base / "a1.eval.json").read_text())["seed"] == 1
    # one run a side
    result = run("compare", base / "a0.json", base / "b0.json", "--resamples", 500, "--json", "-")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["pairing"] == "single" and doc["bootstrap"]["resamples"] == 500
    assert [s["name"] for s in doc["sets"]] == ["NM", "BG", "CL"]
    nm = doc["sets"][0]["overall"]
    assert nm["diff"] == pytest.approx(nm["a"] - nm["b"])
    low, high = nm["interval"]
    assert low <= nm["diff"] <= high and 0 <= nm["p_value"] <= 1
    # several seeds a side, paired by seed; the tables print
    result = run("compare", "--a", base / "a1.json", "--a", base / "a0.json", "--b", base / "b0.json",
                 "--b", base / "b1.json", "--resamples", 300, "--cells")
    assert result.exit_code == 0, result.output
    assert "Per pair of runs (seed)" in result.output and "McNemar p" in result.output
    assert "Per cell" in result.output
    # features saved from a checkpoint keep its seed (the checkpoint is at hand)
    feats = base / "a1.npz"
    assert run("eval", ckpts["a1"], "--device", "cpu", "--save-features", feats).exit_code == 0
    assert run("eval", "--features", feats, "--save-hits", base / "f.json").exit_code == 0
    assert load_hits(base / "f.json").identity.seed == 1
    # a different protocol: refused in one line
    assert run("eval", ckpts["b0"], "--device", "cpu", "--protocol", "cross-view", "--save-hits",
               base / "x.json").exit_code == 0
    assert one_error_line(run("compare", base / "a0.json", base / "x.json"), "different protocols")


def test_training_records_its_seed(tiny_data, tmp_path):
    from gaitcli.config import resolve_config
    from gaitcli.training.trainer import train

    summary = train(resolve_config(tiny_config(*tiny_data, seed=7, total_iter=2, save_iter=2, log_iter=1)),
                    output=tmp_path / "run", device="cpu", progress=False)
    assert summary.checkpoint is not None
    assert read_checkpoint_metadata(summary.checkpoint)["seed"] == "7"
