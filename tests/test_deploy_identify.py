"""``gait identify``: rank-1 equals the cross-view protocol's, exclusions, open set, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.deploy.identify import UNKNOWN, Threshold, identify
from gaitcli.evaluation import CROSS_VIEW, FeatureSet, pairwise_distances, run_protocol

VIEWS = ("000", "090", "180")
TYPES = ("nm-01", "bg-01", "cl-01", "nm-02", "bg-02", "cl-02")


def feature_set(ids: int = 8, seed: int = 0, metric: str = "euc") -> FeatureSet:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, 4, 6))
    rows = [(i, t, v) for i in range(ids) for t in TYPES for v in VIEWS]
    emb = np.stack([centres[i] + 0.9 * rng.normal(size=(4, 6)) for i, _, _ in rows]).astype(np.float32)
    return FeatureSet(
        emb,
        [f"{i:03d}" for i, _, _ in rows],
        [t for _, t, _ in rows],
        [v for _, _, v in rows],
        meta={"checkpoint": "a.safetensors", "metric": metric, "frame_size": "64x64"},
    )


def subset(feats: FeatureSet, mask: np.ndarray) -> FeatureSet:
    return FeatureSet(
        feats.embeddings[mask],
        feats.labels[mask],
        feats.types[mask],
        feats.views[mask],
        meta=dict(feats.meta),
    )


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:")


def test_rank1_equals_cross_view_protocol_per_probe_view():
    feats = feature_set()
    spec = CROSS_VIEW["casia-b"]
    protocol = run_protocol(feats.embeddings, feats.labels, feats.types, feats.views, spec, "euc").to_json()
    for name, probe_types in spec.probe_sets.items():
        probes = subset(feats, np.isin(feats.types, probe_types))
        result = identify(feats, probes, top_k=3, gallery_types=spec.gallery_types)
        for view in VIEWS:
            answers = [a for a in result.answers if a.view == view]
            rank1 = round(100 * np.mean([a.answer == a.probe for a in answers]), 2)
            assert rank1 == protocol["rank1_include"][name]["views"][view]
    assert 0 < protocol["rank1_include"]["NM"]["mean"] < 100  # not a trivial case


def test_top_k_is_one_entry_per_identity_and_exclusions_hold():
    feats = feature_set(ids=5, seed=1)
    probes = subset(feats, feats.types == "nm-01")
    gallery_types = ("nm-02", "bg-02")
    result = identify(feats, probes, top_k=4, exclude_same_view=True, gallery_types=gallery_types)
    g_mask = np.isin(feats.types, gallery_types)
    dist = pairwise_distances(probes.embeddings, feats.embeddings[g_mask])
    g_labels, g_views = feats.labels[g_mask], feats.views[g_mask]
    for p, answer in enumerate(result.answers):
        labels = [m.label for m in answer.matches]
        assert len(labels) == len(set(labels)) == 4
        assert [m.distance for m in answer.matches] == sorted(m.distance for m in answer.matches)
        allowed = g_views != answer.view
        for m in answer.matches:  # brute force: each identity's best allowed sequence
            cols = np.flatnonzero(allowed & (g_labels == m.label))
            assert m.distance == pytest.approx(float(dist[p, cols].min()), abs=1e-5)
            assert m.view != answer.view and feats.types[m.index] in gallery_types


def test_unknown_above_threshold():
    feats = feature_set(ids=4, seed=2)
    probes = subset(feats, feats.types == "cl-01")
    gallery = subset(feats, feats.types == "nm-02")
    best = [a.best.distance for a in identify(gallery, probes, top_k=1).answers]
    cut = float(np.median(best))
    result = identify(gallery, probes, top_k=1, threshold=Threshold(cut, "test"))
    for a, d in zip(result.answers, best, strict=True):
        assert (a.answer == UNKNOWN) == (d > cut)
        assert a.matches  # the nearest identity is still reported
    assert any(a.answer == UNKNOWN for a in result.answers) and any(
        a.answer != UNKNOWN for a in result.answers
    )


def test_cli_json_and_refusals(tmp_path):
    feats = feature_set(ids=4, seed=3)
    gallery = tmp_path / "g.npz"
    subset(feats, feats.types == "nm-02").save(gallery)
    probe = tmp_path / "p.npz"
    subset(feats, feats.types == "nm-01").save(probe)
    result = run(
        "identify",
        probe,
        "--gallery",
        gallery,
        "--threshold",
        100,
        "--json",
        tmp_path / "a.json",
        "--top-k",
        2,
    )
    assert result.exit_code == 0, result.output
    assert "given on the command line" in result.output
    payload = json.loads((tmp_path / "a.json").read_text())
    assert len(payload["answers"]) == 12 and len(payload["answers"][0]["matches"]) == 2
    other = subset(feats, feats.types == "nm-01")
    other.meta["metric"] = "cos"
    other.save(tmp_path / "cos.npz")
    assert one_error_line(res := run("identify", tmp_path / "cos.npz", "--gallery", gallery)), res.output
    assert "metric" in res.output
    other.meta.update(metric="euc", checkpoint="b.safetensors")
    other.save(tmp_path / "b.npz")
    assert one_error_line(res := run("identify", tmp_path / "b.npz", "--gallery", gallery)), res.output
    cal = {
        "format": "gaitcli-calibration-1",
        "threshold": 0.5,
        "far": 0.01,
        "tar": 0.9,
        "achieved_far": 0.01,
        "dataset": "X",
        "split": "test",
        "probe_sets": "ALL",
        "genuine_pairs": 1,
        "impostor_pairs": 100,
        "checkpoint": "a.safetensors",
        "checkpoint_sha256": None,
        "model": None,
        "metric": "euc",
        "frame_size": "32x32",
    }
    (tmp_path / "cal.json").write_text(json.dumps(cal))
    assert one_error_line(
        res := run("identify", probe, "--gallery", gallery, "--calibration", tmp_path / "cal.json")
    )
    assert "frame size" in res.output
    cal["frame_size"] = "64x64"
    (tmp_path / "cal.json").write_text(json.dumps(cal))
    res = run("identify", probe, "--gallery", gallery, "--calibration", tmp_path / "cal.json")
    assert res.exit_code == 0 and "FAR 0.01 calibrated on X test split" in res.output
    assert one_error_line(run("identify", tmp_path / "walk", "--gallery", gallery))  # no --checkpoint
    assert one_error_line(run("identify", probe, "--gallery", tmp_path / "missing.npz"))
    assert one_error_line(run("identify", probe, "--gallery", gallery, "--gallery-types", "xx-01"))
