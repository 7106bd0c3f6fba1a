"""The gait3d, grew and ccpg protocols of ``gait eval`` against OpenGait's own evaluators.

``tests/fixtures/parity/evaluators_*`` hold synthetic features named as each data set names its
sequences and what OpenGait's ``evaluate_Gait3D``, ``evaluate_real_scene`` (GREW),
``GREW_submission`` and ``evaluate_CCPG`` returned (or logged) on them, for both metrics
(``tests/parity/evaluators_harness.py`` made them; its docstring says how to regenerate). The
reference keeps Gait3D's and CCPG's rank-k as float32, so those compare to 2e-5 (float32
rounding at 100); everything else to 1e-9, and the GREW file byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.evaluation import evaluate_features
from gaitcli.evaluation.metrics import pairwise_distances, rank_scores
from gaitcli.evaluation.submission import submission_csv

FIX = Path(__file__).resolve().parent / "fixtures" / "parity"
REF = json.loads((FIX / "evaluators_reference.json").read_text())["reference"]
PARTITION = FIX / "evaluators_gait3d_partition.json"
METRICS = ("euc", "cos")
FLOAT32 = 2e-5  # the reference's float32 rank-k, in %
EXACT = 1e-9


def run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def eval_json(*args: object) -> dict:
    result = run("eval", *args, "--json", "-")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def load(name: str) -> dict[str, np.ndarray]:
    with np.load(FIX / f"evaluators_{name}.npz") as z:
        return {k: z[k] for k in z.files}


# ----------------------------------------------------------------------------------------------
# parity with the reference evaluators
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_gait3d_matches_evaluate_gait3d(metric):
    out = eval_json("--features", FIX / "evaluators_gait3d.npz", "--protocol", "gait3d",
                    "--partition", PARTITION, "--metric", metric)
    ref = REF["gait3d"][metric]
    row = out["retrieval"]["Gait3D"]
    for k in (1, 5, 10):
        assert row[f"rank{k}"] == pytest.approx(ref[f"Rank-{k}"], abs=FLOAT32)
    assert row["map"] == pytest.approx(ref["mAP"], abs=EXACT)
    assert row["minp"] == pytest.approx(ref["mINP"], abs=EXACT)
    assert out["rank1"] == {"Gait3D": row["rank1"]}
    # 41 PROBE_SET entries, one without a sequence; 4 probes whose id has no other sequence
    assert (out["num_probes"], row["probes"], row["left_out"]) == (40, 36, 4)
    assert out["protocol"] == "gait3d" and out["kind"] == "retrieval"


@pytest.mark.parametrize("metric", METRICS)
def test_grew_ranks_and_submission_match_the_reference(metric, tmp_path):
    target = tmp_path / "sub.csv"
    out = eval_json("--features", FIX / "evaluators_grew.npz", "--protocol", "grew", "--metric", metric,
                    "--submission", target)
    ref = REF["grew"][metric]
    row = out["retrieval"]["GREW"]
    for k in (1, 5, 10, 20):
        assert row[f"rank{k}"] == pytest.approx(ref[f"Rank-{k}"], abs=EXACT)
    assert target.read_bytes() == (FIX / f"evaluators_grew_{metric}.csv").read_bytes()
    assert out["submission"] == {"probes": 45, "ranks": 20}


def test_grew_submission_to_stdout_is_the_file_alone():
    result = run("eval", "--features", FIX / "evaluators_grew.npz", "--protocol", "grew", "--submission", "-")
    assert result.exit_code == 0, result.output
    assert result.stdout.encode() == (FIX / "evaluators_grew_euc.csv").read_bytes()


@pytest.mark.parametrize("metric", METRICS)
def test_ccpg_matches_evaluate_ccpg(metric):
    out = eval_json("--features", FIX / "evaluators_ccpg.npz", "--protocol", "ccpg", "--metric", metric)
    ref = REF["ccpg"][metric]
    assert out["views"] == ["01", "02", "03", "04"]  # "01_2" is camera 01
    for name in ("CL", "UP", "DN", "BG"):
        assert out["matrix"]["rank1"][name] == ref[name]  # the rounded cells, exactly
        assert out["rank1_exclude"][name]["mean"] == pytest.approx(ref[f"{name}_exclude"], abs=EXACT)
        assert out["rank1_include"][name]["mean"] == pytest.approx(ref[f"{name}_include"], abs=EXACT)
        per_view = list(out["rank1_exclude"][name]["views"].values())
        assert per_view == pytest.approx(ref[f"{name}_exclude_views"], abs=EXACT)
        reid, reid_ref = out["retrieval"][name], ref[f"reid_{name}"]
        assert reid["rank1"] == pytest.approx(reid_ref["rank1"], abs=FLOAT32)
        assert reid["map"] == pytest.approx(reid_ref["map"], abs=EXACT)
        assert reid["minp"] == pytest.approx(reid_ref["minp"], abs=EXACT)
        assert out["rank1"][name] == out["rank1_exclude"][name]["mean"]
    assert out["set_galleries"]["UP"] == ["U0_D3"]


def test_python_api_gives_the_same_numbers():
    f = load("gait3d")
    res = evaluate_features(f["embeddings"], f["labels"], f["types"], f["views"], protocol="gait3d",
                            partition=PARTITION)
    assert res.result.retrieval is not None
    scores = res.result.retrieval["Gait3D"].scores
    assert scores["map"] == pytest.approx(REF["gait3d"]["euc"]["mAP"], abs=EXACT)
    g = load("grew")
    res = evaluate_features(g["embeddings"], g["labels"], g["types"], g["views"], protocol="grew",
                            submission=True)
    assert res.result.submission is not None
    assert submission_csv(res.result.submission).encode() == (FIX / "evaluators_grew_euc.csv").read_bytes()


# ----------------------------------------------------------------------------------------------
# the ranking kernel against a straightforward restatement
# ----------------------------------------------------------------------------------------------


def test_rank_scores_match_a_per_probe_restatement():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(23, 3, 5)).astype(np.float32)
    y = rng.normal(size=(41, 3, 5)).astype(np.float32)
    pl, gl = rng.integers(0, 6, 23), rng.integers(0, 6, 41)
    pv, gv = rng.integers(0, 3, 23), rng.integers(0, 3, 41)
    t = torch.from_numpy
    got = rank_scores(t(x), t(y), t(pl), t(gl), "euc", probe_groups=t(pv), gallery_groups=t(gv), budget=2000)
    dist = pairwise_distances(x, y, "euc")
    for i in range(len(x)):
        keep = ~((gl == pl[i]) & (gv == pv[i]))
        order = np.argsort(dist[i][keep], kind="stable")
        rel = (gl[keep][order] == pl[i]).astype(int)
        if not rel.any():
            assert got.first[i] == -1 and np.isnan(got.ap[i]) and np.isnan(got.inp[i])
            continue
        pos = np.flatnonzero(rel)
        assert got.first[i] == pos[0]
        assert got.ap[i] == pytest.approx(np.mean((np.arange(len(pos)) + 1) / (pos + 1)))
        assert got.inp[i] == pytest.approx(len(pos) / (pos[-1] + 1))


# ----------------------------------------------------------------------------------------------
# from a checkpoint: the partition of its config gives the PROBE_SET
# ----------------------------------------------------------------------------------------------


def test_gait3d_from_a_checkpoint_equals_its_saved_features(tmp_path):
    import pickle

    from gaitcli.build import build_model
    from gaitcli.models import save_checkpoint

    rng = np.random.default_rng(0)
    ids, probes = ("0001", "0002", "0003", "0004"), []
    for n, pid in enumerate(ids):
        for j, cam in enumerate(("camid1_videoid1", "camid2_videoid1", "camid7_videoid2")):
            folder = tmp_path / "pkl" / pid / cam / "seq0"
            folder.mkdir(parents=True)
            frames = np.zeros((4, 64, 64), np.uint8)
            frames[:, 8 + 6 * n : 40 + 6 * n, 20 + 3 * j : 40] = 255
            frames[:, 50:, :] = rng.integers(0, 2, size=(4, 14, 64), dtype=np.uint8) * 255
            (folder / "seq0.pkl").write_bytes(pickle.dumps(frames))
        probes.append(f"{pid}-camid1_videoid1-seq0")
    part = tmp_path / "Gait3D.json"
    part.write_text(json.dumps({"TRAIN_SET": [], "TEST_SET": list(ids), "PROBE_SET": probes}))
    torch.manual_seed(0)
    model = build_model({
        "model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 4},
        "data_cfg": {"dataset_name": "Gait3D", "dataset_root": str(tmp_path / "pkl"),
                     "dataset_partition": str(part)},
        "evaluator_cfg": {"sampler": {"batch_size": 4}},
    })
    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", model, model.config, iteration=1, labels=list(ids))
    feats = tmp_path / "f.npz"
    from_ckpt = eval_json(ckpt, "--device", "cpu", "--save-features", feats)  # auto: Gait3D → gait3d
    from_feats = eval_json("--features", feats, "--partition", part, "--protocol", "gait3d")
    assert from_ckpt["protocol"] == "gait3d"
    assert from_ckpt["retrieval"] == from_feats["retrieval"]
    assert from_ckpt["num_probes"] == 4 and from_ckpt["num_gallery"] == 8


# ----------------------------------------------------------------------------------------------
# one-line errors, before any matching
# ----------------------------------------------------------------------------------------------


def test_mistakes_are_one_line(tmp_path):
    g3d, grew = FIX / "evaluators_gait3d.npz", FIX / "evaluators_grew.npz"
    assert "--partition" in one_error_line(run("eval", "--features", g3d, "--protocol", "gait3d"))
    line = one_error_line(run("eval", "--features", grew, "--protocol", "grew", "--partition", PARTITION))
    assert "--partition" in line and "no effect" in line
    line = one_error_line(run("eval", "--features", g3d, "--partition", PARTITION, "--protocol", "gait3d",
                              "--submission", tmp_path / "s.csv"))
    assert "--protocol grew" in line
    assert "--heatmap" in one_error_line(run("eval", "--features", grew, "--protocol", "grew",
                                             "--heatmap", tmp_path / "h.png"))
    no_probes = tmp_path / "p.json"
    no_probes.write_text(json.dumps({"TRAIN_SET": [], "TEST_SET": []}))
    assert "PROBE_SET" in one_error_line(run("eval", "--features", g3d, "--protocol", "gait3d",
                                             "--partition", no_probes))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"TRAIN_SET": [], "TEST_SET": [], "PROBE_SET": ["1-2-3"]}))
    assert "none of the 1 PROBE_SET" in one_error_line(run("eval", "--features", g3d, "--protocol", "gait3d",
                                                           "--partition", other))
    f = load("grew")
    small = tmp_path / "small.npz"
    keep = (f["types"] == "03") | (np.arange(len(f["types"])) < 10)
    np.savez(small, **{k: v[keep] for k, v in f.items()})
    assert "only 10" in one_error_line(run("eval", "--features", small, "--protocol", "grew",
                                           "--submission", tmp_path / "s.csv"))
    named = tmp_path / "named.npz"
    labels = f["labels"].copy()
    labels[0] = "abc"
    np.savez(named, **{**f, "labels": labels})
    assert "'abc' is not a number" in one_error_line(run("eval", "--features", named, "--protocol", "grew",
                                                         "--submission", tmp_path / "s.csv"))
    assert not (tmp_path / "s.csv").exists()


def test_auto_picks_the_field_protocols_from_the_types():
    assert eval_json("--features", FIX / "evaluators_ccpg.npz")["protocol"] == "ccpg"
    assert eval_json("--features", FIX / "evaluators_grew.npz")["protocol"] == "grew"
    out = eval_json("--features", FIX / "evaluators_gait3d.npz", "--partition", PARTITION)
    assert out["protocol"] == "gait3d"


def test_tables_and_csv(tmp_path):
    result = run("eval", "--features", FIX / "evaluators_ccpg.npz", "--protocol", "ccpg",
                 "--csv", tmp_path / "t.csv")
    assert result.exit_code == 0, result.output
    assert "Re-identification" in result.stdout and "mINP" in result.stdout
    text = (tmp_path / "t.csv").read_text()
    assert "table,probe_set,rank1,map,minp,probes,left_out" in text
    assert text.splitlines()[0].startswith("table,probe_set,gallery_view,01,02,03,04,mean")
