"""``gait identify``: rank-1 equals the cross-view protocol's, exclusions, open set (an answer no
identity name can fake), non-finite embeddings refused, which files go together, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.deploy.identify import UNKNOWN, Threshold, identify
from gaitcli.evaluation import CROSS_VIEW, FeatureSet, pairwise_distances, run_protocol

FIXTURES = Path(__file__).parent / "fixtures"
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
    # rank-1 is a decision on distances computed by two kernels (identify's and the protocol's):
    # they agree to float rounding, so the test needs no near-tie between the two best identities
    dist = pairwise_distances(feats.embeddings, feats.embeddings[np.isin(feats.types, spec.gallery_types)])
    g_labels = feats.labels[np.isin(feats.types, spec.gallery_types)]
    per_id = np.stack([dist[:, g_labels == i].min(axis=1) for i in np.unique(g_labels)], axis=1)
    two = np.sort(per_id, axis=1)[:, :2]
    assert (two[:, 1] - two[:, 0] > 1e-4 * two[:, 1]).all()
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
    for a, d in zip(result.answers, best, strict=True):  # the same call twice: the same distances
        assert a.known == (d <= cut) and (a.identity is None) == (d > cut)
        assert a.matches  # the nearest identity is still reported
        assert a.answer == (a.identity if a.known else UNKNOWN)
    assert any(not a.known for a in result.answers) and any(a.known for a in result.answers)


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
        "format": "gaitcli-calibration",
        "version": 2,
        "decision": "open-set identification",
        "method": "leave-one-identity-out",
        "threshold": 0.5,
        "fpir": 0.01,
        "achieved_fpir": 0.01,
        "fnir": 0.1,
        "non_mated_searches": 100,
        "mated_searches": 100,
        "gallery_identities": 4,
        "dataset": "X",
        "split": "test",
        "probe_sets": "ALL",
        "provenance": {"checkpoint": "a.safetensors", "checkpoint_sha256": None, "model": None,
                       "metric": "euc", "frame_size": "32x32"},
    }
    (tmp_path / "cal.json").write_text(json.dumps(cal))
    assert one_error_line(
        res := run("identify", probe, "--gallery", gallery, "--calibration", tmp_path / "cal.json")
    )
    assert "frame size" in res.output
    cal["provenance"]["frame_size"] = "64x64"
    (tmp_path / "cal.json").write_text(json.dumps(cal))
    res = run("identify", probe, "--gallery", gallery, "--calibration", tmp_path / "cal.json")
    assert res.exit_code == 0 and "FPIR 0.01 for open-set identification" in res.output
    assert "X test split" in res.output
    assert one_error_line(run("identify", tmp_path / "walk", "--gallery", gallery))  # no --checkpoint
    assert one_error_line(res := run("identify", probe, "--gallery", gallery, "--img-size", "64"))
    assert "--checkpoint" in res.output  # --img-size without a network to feed is not silently ignored
    assert one_error_line(run("identify", probe, "--gallery", tmp_path / "missing.npz"))
    assert one_error_line(run("identify", probe, "--gallery", gallery, "--gallery-types", "xx-01"))


def test_non_finite_embeddings_are_refused_naming_the_file_and_entry(tmp_path):
    feats = feature_set(ids=4, seed=4)
    gallery = subset(feats, feats.types == "nm-02")
    probe = subset(feats, feats.types == "nm-01")
    good_g, good_p = tmp_path / "g.npz", tmp_path / "p.npz"
    gallery.save(good_g)
    probe.save(good_p)
    gallery.embeddings[5, 1, 2] = np.nan
    gallery.save(tmp_path / "nan-g.npz")
    res = run("identify", good_p, "--gallery", tmp_path / "nan-g.npz")
    assert one_error_line(res), res.output
    assert "nan-g.npz" in res.output and "entry 5 (001/nm-02/180)" in res.output and "NaN" in res.output
    probe.embeddings[2, 0, 0] = np.inf
    probe.save(tmp_path / "inf-p.npz")
    res = run("identify", tmp_path / "inf-p.npz", "--gallery", good_g)
    assert one_error_line(res) and "inf-p.npz" in res.output and "entry 2 (000/nm-01/180)" in res.output


def test_an_identity_named_unknown_is_not_the_open_set_answer(tmp_path):
    feats = feature_set(ids=3, seed=5)
    feats.labels = np.where(feats.labels == "001", "unknown", feats.labels)
    gallery = subset(feats, feats.types == "nm-02")
    probes = subset(feats, (feats.types == "nm-01") & np.isin(feats.labels, ["unknown", "002"]))
    stranger = feature_set(ids=1, seed=99)  # someone else, far away
    stranger.embeddings += 50
    stranger.labels = np.full(len(stranger), "stranger")
    gallery.save(tmp_path / "g.npz")
    probes.save(tmp_path / "p.npz")
    subset(stranger, stranger.types == "nm-01").save(tmp_path / "s.npz")
    cut = 10.0
    res = run("identify", tmp_path / "p.npz", tmp_path / "s.npz", "--gallery", tmp_path / "g.npz",
              "--threshold", cut, "--top-k", 1, "--json", tmp_path / "a.json")
    assert res.exit_code == 0, res.output
    answers = json.loads((tmp_path / "a.json").read_text())["answers"]
    named = [a for a in answers if a["probe"] == "unknown"]
    assert named and all(a["known"] and a["answer"] == "unknown" for a in named)  # a person called unknown
    strangers = [a for a in answers if a["probe"] == "stranger"]
    assert strangers and all(a["known"] is False and a["answer"] is None for a in strangers)
    assert all(a["matches"] for a in strangers)  # the nearest identity is still listed
    rows = [line.split() for line in res.output.splitlines() if line.startswith(("unknown/", "stranger/"))]
    assert {r[0].split("/")[0]: r[1] for r in rows} == {"unknown": "yes", "stranger": "no"}


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copy(FIXTURES / name, tmp_path / name))


def test_files_without_a_checkpoint_sha_mix_only_with_each_other(tmp_path):
    old = _copy("features_v1_eval.npz", tmp_path)  # gait eval --save-features before provenance
    verified = _copy("features_v1_embed.npz", tmp_path)  # gait embed: records the SHA-256
    res = run("identify", old, "--gallery", old)  # old with old: allowed
    assert res.exit_code == 0, res.output
    res = run("identify", old, "--gallery", verified)  # same checkpoint name, but unprovable
    assert one_error_line(res), res.output
    assert "does not record its checkpoint's SHA-256" in res.output
    assert "re-create it with gait embed" in res.output
    assert one_error_line(run("identify", verified, "--gallery", old))
    cal = _copy("calibration_v1.json", tmp_path)  # a pairwise threshold of an older gaitcli
    res = run("identify", verified, "--gallery", verified, "--calibration", cal)
    assert res.exit_code == 0, res.output
    assert "pairwise FAR 0.01" in res.output and "recalibrate" in res.output
    res = run("identify", old, "--gallery", old, "--calibration", cal)
    assert one_error_line(res) and "SHA-256" in res.output
    other = FeatureSet.load(verified)
    other.meta["checkpoint_sha256"] = "0" * 64
    other.save(tmp_path / "other.npz")
    res = run("identify", tmp_path / "other.npz", "--gallery", verified)
    assert one_error_line(res) and "use one checkpoint for both" in res.output


def test_a_larger_gallery_than_calibrated_is_noted(tmp_path):
    feats = feature_set(ids=6, seed=6)
    gallery = subset(feats, feats.types == "nm-02")
    gallery.save(tmp_path / "g.npz")
    subset(feats, feats.types == "nm-01").save(tmp_path / "p.npz")
    cal = {
        "format": "gaitcli-calibration", "version": 2, "decision": "open-set identification",
        "method": "m", "threshold": 1.0, "fpir": 0.05, "achieved_fpir": 0.05, "fnir": 0.3,
        "non_mated_searches": 40, "mated_searches": 40, "gallery_identities": 3, "dataset": None,
        "split": "test", "probe_sets": "ALL",
        "provenance": {"checkpoint": "a.safetensors", "checkpoint_sha256": None, "model": None,
                       "metric": "euc", "frame_size": "64x64"},
    }
    (tmp_path / "c.json").write_text(json.dumps(cal))
    res = run("identify", tmp_path / "p.npz", "--gallery", tmp_path / "g.npz", "--calibration",
              tmp_path / "c.json", "--json", tmp_path / "a.json")
    assert res.exit_code == 0, res.output
    notes = json.loads((tmp_path / "a.json").read_text())["notes"]
    assert any("gallery of 3 identities" in n and "has 6" in n for n in notes), notes
