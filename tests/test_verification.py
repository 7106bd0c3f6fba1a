"""Verification metrics: EER / TAR@FAR against brute force on hand-built distances, the pair
rule, n/a when a FAR cannot be resolved, the memory-bounded histogram mode; open-set
identification (FPIR / FNIR) and the calibration of its threshold, which holds its FPIR on
identities it never saw."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gaitcli.errors import GaitError
from gaitcli.evaluation.calibration import OPEN_SET, Calibration, Provenance, calibrate
from gaitcli.evaluation.verification import (
    PairAccumulator,
    VerificationReport,
    csv_text,
    search_distances,
    table_rows,
    verify_distances,
)


def brute_force(gen: np.ndarray, imp: np.ndarray, far_target: float) -> tuple[float, float | None]:
    """EER and TAR@FAR by trying every threshold (accept when distance <= t)."""
    cands = [-math.inf, *sorted(set(gen.tolist()) | set(imp.tolist()))]
    best_gap, eer, tar_at = math.inf, None, None
    for t in cands:
        far = float(np.mean(imp <= t))
        frr = 1.0 - float(np.mean(gen <= t))
        if abs(far - frr) < best_gap - 1e-15:
            best_gap, eer = abs(far - frr), (far + frr) / 2
        if far <= far_target:
            tar_at = float(np.mean(gen <= t))
    if len(imp) * far_target < 1:
        tar_at = None
    return float(eer), tar_at


def test_eer_and_tar_at_far_equal_brute_force():
    rng = np.random.default_rng(3)
    gen = np.round(rng.normal(0.4, 0.15, 60), 3).astype(np.float32)
    imp = np.round(rng.normal(0.9, 0.2, 3000), 3).astype(np.float32)
    acc = PairAccumulator()
    dist = np.concatenate([gen, imp])[None, :]
    same = np.concatenate([np.ones(60, bool), np.zeros(3000, bool)])[None, :]
    acc.add(dist, same)
    result = acc.result("NM", (1e-2, 1e-3, 1e-4))
    for far in (1e-2, 1e-3):
        eer, tar = brute_force(gen.astype(np.float64), imp.astype(np.float64), far)
        assert result.eer == pytest.approx(eer, abs=1e-12)
        assert result.point(far).tar == pytest.approx(tar, abs=1e-12)
        assert result.point(far).achieved_far <= far
    na = result.point(1e-4)
    assert na.tar is None and "3000 impostor pairs" in na.note and "10000" in na.note
    assert result.exact and result.genuine.count == 60 and result.impostor.count == 3000
    assert sum(result.genuine.counts) == 60 and sum(result.impostor.counts) == 3000


def test_identical_views_are_excluded_and_genuine_is_same_id():
    dist = np.array([[0.1, 0.5, 0.2], [0.7, 0.3, 0.9]], np.float32)
    result = verify_distances(
        dist, ["a", "b"], ["a", "a", "b"], probe_views=["000", "090"], gallery_views=["000", "090", "090"]
    )
    # probe a@000: gallery a@000 excluded (same view); a@090 genuine 0.5, b@090 impostor 0.2
    # probe b@090: a@000 impostor 0.7; a@090, b@090 excluded
    assert result.genuine.count == 1 and result.impostor.count == 2
    assert result.genuine.min == pytest.approx(0.5)
    # thresholds 0.2 and 0.5 tie on |FAR - FRR| = 0.5; the lower one wins: FAR 0.5, FRR 1
    assert result.eer == pytest.approx(0.75) and result.eer_threshold == pytest.approx(0.2)


def test_histogram_mode_matches_exact_within_a_bin():
    rng = np.random.default_rng(0)
    gen = rng.normal(0.5, 0.1, 400)
    imp = rng.normal(1.2, 0.25, 20000)
    same = np.concatenate([np.ones(400, bool), np.zeros(20000, bool)])[None, :]
    dist = np.concatenate([gen, imp])[None, :].astype(np.float32)
    exact, binned = PairAccumulator(), PairAccumulator(exact_limit=1000)
    exact.add(dist, same)
    for part in np.array_split(np.arange(dist.shape[1]), 7):  # block by block, range grows on the way
        binned.add(dist[:, part], same[:, part])
    a, b = exact.result("x"), binned.result("x")
    assert a.exact and not b.exact
    assert b.eer == pytest.approx(a.eer, abs=2e-3)
    assert b.point(1e-2).tar == pytest.approx(a.point(1e-2).tar, abs=5e-3)
    assert binned.impostor.hist is not None and binned.impostor.hist.sum() == 20000


def test_tables_csv_and_calibration(tmp_path):
    rng = np.random.default_rng(1)
    dist = rng.random((20, 60)).astype(np.float32)
    labels_p = np.repeat(np.arange(5), 4).astype(str)
    labels_g = np.repeat(np.arange(5), 12).astype(str)
    dist[labels_p[:, None] == labels_g[None, :]] *= 0.3
    fars = (1e-2, 1e-3, 1e-4, 0.05)
    report = VerificationReport(
        "euc",
        "test",
        [verify_distances(dist, labels_p, labels_g, name="NM", fars=fars)],
        [search_distances(dist, labels_p, labels_g, name="NM", fpirs=fars)],
    )
    rows = table_rows(report)
    assert rows[0][0] == "NM" and rows[0][1] == "240" and rows[0][2] == "960" and rows[0][5] == "n/a"
    assert "verification,NM,240,960" in csv_text(report) and "open_set,NM,20,20" in csv_text(report)
    prov = Provenance("c.safetensors", "ab" * 32, "GaitGL", "euc", "64x64")
    cal = calibrate(report, 0.05, dataset="CASIA-B", provenance=prov)
    # the decision identify makes: a probe's best distance over the other identities' sequences
    same = labels_p[:, None] == labels_g[None, :]
    non_mated_best = np.where(same, np.inf, dist).min(axis=1)
    assert cal.decision == OPEN_SET and cal.negatives == 20 and cal.gallery_identities == 5
    assert np.mean(non_mated_best <= cal.threshold) <= 0.05
    next_up = non_mated_best[non_mated_best > cal.threshold].min()  # the largest threshold keeping the rate
    assert np.mean(non_mated_best <= next_up) > 0.05
    mate_best = np.where(same, dist, np.inf).min(axis=1)
    hits = (mate_best < non_mated_best) & (mate_best <= cal.threshold)
    assert cal.miss_rate == pytest.approx(1 - hits.mean(), abs=1e-12)
    cal.save(tmp_path / "cal.json")
    again = Calibration.load(tmp_path / "cal.json")
    assert again == cal and "FPIR 0.05" in again.meaning() and "CASIA-B" in again.meaning()
    with pytest.raises(GaitError, match="non-mated searches"):
        calibrate(report, 1e-2, dataset=None, provenance=prov)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(GaitError, match="not a readable calibration"):
        Calibration.load(tmp_path / "bad.json")


def test_eval_cli_verification_json_csv_roc_calibration(tmp_path):
    import json

    from typer.testing import CliRunner

    from gaitcli.cli import app
    from gaitcli.evaluation import FeatureSet

    rng = np.random.default_rng(0)
    types = [f"nm-0{i}" for i in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"]
    rows = [(i, t, v) for i in range(6) for t in types for v in ("000", "090")]
    centres = rng.normal(size=(6, 2, 4))
    emb = np.stack([centres[i] + 0.8 * rng.normal(size=(2, 4)) for i, _, _ in rows]).astype(np.float32)
    FeatureSet(
        emb,
        [f"{i:03d}" for i, _, _ in rows],
        [t for _, t, _ in rows],
        [v for _, _, v in rows],
        meta={"dataset_name": "CASIA-B", "checkpoint": "c.safetensors", "metric": "euc"},
    ).save(tmp_path / "f.npz")
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "--features",
            str(tmp_path / "f.npz"),
            "--verification",
            "--calibrate",
            "0.05",
            "--calibration-out",
            str(out / "cal.json"),
            "--roc",
            str(out / "roc.png"),
            "--json",
            str(out / "r.json"),
            "--csv",
            str(out / "r.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Verification" in res.output and "TAR@1e-4 %" in res.output and "calibration written" in res.output
    assert "Open-set identification" in res.output and "FPIR 0.05 for open-set identification" in res.output
    payload = json.loads((out / "r.json").read_text())
    sets = {s["probe_set"]: s for s in payload["verification"]["sets"]}
    searches = {s["probe_set"]: s for s in payload["verification"]["open_set"]["sets"]}
    assert searches["NM"]["non_mated_searches"] == 6 * 2 * 2 and searches["NM"]["gallery_identities"] == 6
    assert payload["calibration"]["decision"] == OPEN_SET and payload["calibration"]["fpir"] == 0.05
    assert set(sets) == {"NM", "BG", "CL", "ALL"}
    # per id: 4 NM probes x 4 gallery sequences at the other view; 5 other ids as impostors
    assert sets["NM"]["genuine"]["count"] == 6 * 4 * 4 and sets["NM"]["impostor"]["count"] == 6 * 4 * 4 * 5
    assert sets["ALL"]["tar_at_far"][2]["tar"] is None and "n/a" in sets["ALL"]["tar_at_far"][2]["note"]
    assert "verification,ALL," in (out / "r.csv").read_text() and "rank1" in (out / "r.csv").read_text()
    assert "open_set,ALL," in (out / "r.csv").read_text()
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG"
    cal = Calibration.load(out / "cal.json")
    assert cal.rate == 0.05 and cal.dataset == "CASIA-B" and cal.probe_sets == "ALL" and cal.open_set
    assert cal.provenance.metric == "euc" and cal.negatives == 6 * 2 * 2 * 3
    short = CliRunner().invoke(app, ["eval", "--features", str(tmp_path / "f.npz"), "--verification",
                                     "--calibrate", "0.01", "--calibration-out", str(out / "c2.json")])
    assert short.exit_code == 2 and "72 non-mated searches" in short.output and "100" in short.output
    bad = CliRunner().invoke(app, ["eval", "--features", str(tmp_path / "f.npz"), "--calibrate", "0.01"])
    assert bad.exit_code == 2 and "--verification" in bad.output


def test_verification_is_part_of_the_plan(tmp_path, monkeypatch):
    """The plan checks the verification options before any feature is read, and ``run_plan``
    computes the report and calibration from the features in memory: no scratch file is written."""
    import tempfile

    from gaitcli.evaluation.api import run_plan
    from gaitcli.evaluation.plan import EvalOutputs, plan_arrays, plan_features

    with pytest.raises(GaitError, match="go together"):
        plan_features(tmp_path / "absent.npz", outputs=EvalOutputs(verification=True, calibrate=0.1))
    with pytest.raises(GaitError, match="roc"):
        plan_features(tmp_path / "absent.npz", outputs=EvalOutputs(verification=True, roc=tmp_path / "r.xyz"))
    rng = np.random.default_rng(1)
    rows = [(i, t, v) for i in range(4) for t in ("nm-01", "nm-02", "nm-05") for v in ("000", "090")]
    emb = rng.normal(size=(len(rows), 2, 4)).astype(np.float32)
    ev = {"gallery_types": ["nm-01", "nm-02"], "probe_sets": {"NM": ["nm-05"]}}
    plan = plan_arrays(emb, [str(i) for i, _, _ in rows], [t for _, t, _ in rows], [v for _, _, v in rows],
                       protocol="generic", cfg={"evaluator_cfg": ev})
    cal_path = tmp_path / "cal.json"
    plan.outputs = EvalOutputs(verification=True, calibrate=0.2, calibration_out=cal_path)  # 8 searches
    monkeypatch.setattr(tempfile, "TemporaryDirectory", None)  # a scratch folder would fail here
    result = run_plan(plan)
    assert result.verification is not None and result.calibration is not None
    body = result.to_json()
    assert body["verification"]["sets"][0]["genuine"]["count"] == 4 * 4 and body["calibration"]["fpir"] == 0.2


def _people(rng: np.random.Generator, centres: np.ndarray, rows: list[tuple[int, str, str]],
            noise: float) -> np.ndarray:
    return np.stack([centres[i] + noise * rng.normal(size=centres.shape[1:]) for i, _, _ in rows]).astype(
        np.float32
    )


def test_open_set_threshold_holds_its_fpir_on_identities_held_apart(tmp_path):
    """Calibrate FPIR 0.05 with ``gait eval`` on one set of identities, then search probes of
    other identities (never seen) against that gallery with ``gait identify``'s decision: the share
    accepted is the FPIR asked for, within the binomial error of both measurements. (A pairwise
    FAR threshold, what gaitcli calibrated before, accepts most of them against 1500 identities.)"""
    from typer.testing import CliRunner

    from gaitcli.cli import app
    from gaitcli.deploy.identify import Threshold, identify
    from gaitcli.evaluation import FeatureSet

    rng = np.random.default_rng(12)
    n_cal, n_new, noise, target = 1500, 4000, 0.4, 0.05
    centres = rng.normal(size=(n_cal + n_new, 2, 8))
    views = ("000", "090")
    # the evaluation: 2 gallery walks and 1 probe per identity (one probe each keeps searches independent)
    rows = [(i, t, views[k % 2]) for i in range(n_cal) for k, t in enumerate(("nm-01", "nm-02"))]
    rows += [(i, "nm-05", views[int(rng.integers(2))]) for i in range(n_cal)]
    emb = _people(rng, centres, rows, noise)
    feats = FeatureSet(emb, [f"{i:05d}" for i, _, _ in rows], [t for _, t, _ in rows],
                       [v for _, _, v in rows], meta={"dataset_name": "CASIA-B", "metric": "euc"})
    feats.save(tmp_path / "eval.npz")
    res = CliRunner().invoke(app, ["eval", "--features", str(tmp_path / "eval.npz"), "--verification",
                                   "--calibrate", str(target), "--calibration-out",
                                   str(tmp_path / "cal.json")])
    assert res.exit_code == 0, res.output
    cal = Calibration.load(tmp_path / "cal.json")
    assert cal.open_set and cal.negatives == n_cal and cal.gallery_identities == n_cal
    gallery = feats.subset(np.flatnonzero(feats.types != "nm-05"))
    threshold = Threshold(cal.threshold, cal.meaning())

    # non-mated searches of identities held apart from the calibration
    new_rows = [(n_cal + i, "nm-05", views[i % 2]) for i in range(n_new)]
    strangers = FeatureSet(_people(rng, centres, new_rows, noise), [f"{i:05d}" for i, _, _ in new_rows],
                           ["nm-05"] * n_new, [v for _, _, v in new_rows], meta={"metric": "euc"})
    accepted = np.mean([a.known for a in identify(gallery, strangers, top_k=1, threshold=threshold).answers])
    # the calibration's estimate and this measurement each have binomial error sqrt(p(1-p)/n)
    sigma = math.sqrt(target * (1 - target) * (1 / n_cal + 1 / n_new))
    assert abs(accepted - target) <= 4 * sigma + 1 / n_cal, (accepted, target, sigma)

    # mated searches: fresh walks of the gallery's identities miss at about the FNIR recorded
    mated_rows = [(i, "nm-06", views[i % 2]) for i in range(n_cal)]
    mates = FeatureSet(_people(rng, centres, mated_rows, noise), [f"{i:05d}" for i, _, _ in mated_rows],
                       ["nm-06"] * n_cal, [v for _, _, v in mated_rows], meta={"metric": "euc"})
    answers = identify(gallery, mates, top_k=1, threshold=threshold).answers
    missed = np.mean([a.identity != a.probe for a in answers])
    assert cal.miss_rate is not None and 0.02 < cal.miss_rate < 0.98  # not a trivial case
    sigma = math.sqrt(cal.miss_rate * (1 - cal.miss_rate) * 2 / n_cal)
    assert abs(missed - cal.miss_rate) <= 4 * sigma, (missed, cal.miss_rate)
