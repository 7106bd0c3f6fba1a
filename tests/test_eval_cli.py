"""``gait eval`` end to end on a tiny checkpoint and a tiny prepared tree, the extraction path
the trainer uses, saved features, and the one-line errors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.evaluation import FeatureSet, evaluate_model, extract_features, load_test_split
from gaitcli.models import build_model, save_checkpoint

IDS = ("001", "002", "003")
TYPES = ("nm-01", "nm-02", "nm-05", "bg-01", "cl-01")
VIEWS = ("000", "090")


def make_tree(root, ids=IDS, types=TYPES, views=VIEWS):
    rng = np.random.default_rng(0)
    for i in ids:
        for t in types:
            for v in views:
                folder = root / i / t / v
                folder.mkdir(parents=True)
                length = int(rng.integers(3, 7))
                frames = np.zeros((length, 64, 64), np.uint8)
                top = 8 + 4 * int(i)
                frames[:, top : top + 30, 22 + int(v) // 30 : 40] = 255
                frames[:, 50:, :] = rng.integers(0, 2, size=(length, 14, 64), dtype=np.uint8) * 255
                (folder / f"{v}.pkl").write_bytes(pickle.dumps(frames))
    return root


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's operations are too small to gain from threads; on a shared machine one
    thread also avoids waiting for a descheduled second one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval")
    tree = make_tree(base / "pkl")
    part = base / "part.json"
    part.write_text(json.dumps({"TRAIN_SET": [], "TEST_SET": list(IDS)}))
    torch.manual_seed(0)
    model = build_model({"model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 3},
                         "data_cfg": {"dataset_name": "CASIA-B", "dataset_root": str(tree), "dataset_partition": str(part)}})
    ckpt = save_checkpoint(base / "tiny.safetensors", model, model.config, iteration=5, labels=list(IDS))
    return {"base": base, "tree": tree, "part": part, "ckpt": ckpt, "model": model}


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    return len(lines) == 1 and lines[0].startswith("error:")


def test_eval_checkpoint_writes_json_csv_features_heatmap(setup):
    base = setup["base"]
    out = base / "out"
    result = run("eval", setup["ckpt"], "--batch-size", 32, "--json", out / "r.json", "--csv", out / "r.csv",
                 "--save-features", out / "f.npz", "--heatmap", out / "h.png", "--rank5", "--map", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "Rank-1 accuracy (%) excluding identical views" in result.output
    assert "including identical views" in result.output and "Rank-5" in result.output and "mAP" in result.output
    payload = json.loads((out / "r.json").read_text())
    assert list(payload)[:11] == ["protocol", "metric", "checkpoint", "iteration", "num_probes", "num_gallery",
                                  "rank1_exclude", "rank1_include", "rank5_exclude", "map", "seconds"]
    assert payload["protocol"] == "casia-b" and payload["metric"] == "euc" and payload["iteration"] == 5
    assert payload["num_gallery"] == 12 and payload["num_probes"] == 18
    for table in ("rank1_exclude", "rank1_include", "rank5_exclude", "map"):
        assert set(payload[table]) == {"NM", "BG", "CL"}
        for row in payload[table].values():
            assert set(row) == {"views", "mean"} and set(row["views"]) == set(VIEWS)
    assert set(payload["seconds"]) >= {"extract", "protocol", "total"}
    header = (out / "r.csv").read_text().splitlines()[0]
    assert header == "table,probe_set,gallery_view,000,090,mean"
    assert (out / "h.png").stat().st_size > 1000
    with np.load(out / "f.npz", allow_pickle=False) as f:
        assert f["embeddings"].dtype == np.float32 and f["embeddings"].shape == (30, 64, 8)
        assert f["labels"].dtype.kind == "U" and list(f["views"][:2]) == ["000", "090"]
        assert str(f["dataset_name"]) == "CASIA-B"

    # the saved features give the same numbers without a model
    again = run("eval", "--features", out / "f.npz", "--json", out / "r2.json", "--map")
    assert again.exit_code == 0, again.output
    payload2 = json.loads((out / "r2.json").read_text())
    for table in ("rank1_exclude", "rank1_include", "rank5_exclude", "map"):
        assert payload2[table] == payload[table]
    assert payload2["iteration"] == 5 and payload2["checkpoint"] == str(setup["ckpt"])

    cross = run("eval", "--features", out / "f.npz", "--protocol", "cross-view", "--json", "-")
    assert cross.exit_code == 0, cross.output
    assert json.loads(cross.stdout[cross.stdout.index("{"):])["protocol"] == "cross-view"


def test_extraction_equals_embedding_each_sequence_alone(setup):
    model = setup["model"]
    ds = load_test_split(model.config)
    feats = extract_features(model, ds, batch_size=16)
    assert feats.embeddings.shape == (len(ds), 64, 8)
    assert list(feats.labels[:2]) == ["001", "001"] and list(feats.types[:2]) == ["bg-01", "bg-01"]
    picked = [0, 7, len(ds) - 1]
    alone = model.embed([ds.load(i)[0][:, :, 10:54] for i in picked], batch_size=1).numpy()
    np.testing.assert_allclose(feats.embeddings[picked], alone, rtol=1e-4, atol=1e-5)
    limited = extract_features(model, ds, batch_size=2, indices=[7, 0],
                               sampler_cfg={"sample_type": "all_ordered", "frames_all_limit": 3})
    short = model.embed([ds.load(i)[0][:3, :, 10:54] for i in (7, 0)], batch_size=1).numpy()
    np.testing.assert_allclose(limited.embeddings, short, rtol=1e-4, atol=1e-5)
    assert list(limited.types) == [ds.sequences[7].type, ds.sequences[0].type]


def test_evaluate_model_is_what_the_trainer_calls(setup):
    model = setup["model"]
    model.train()
    results = evaluate_model(model, model.config, device="cpu", batch_size=32)
    assert model.training  # mode restored
    assert set(results.rank1) <= {"NM", "BG", "CL"} and results.rank1
    assert all(isinstance(v, float) for v in results.rank1.values())
    json.dumps(results.to_json())  # the trainer appends it to metrics.jsonl


def test_feature_file_roundtrip(tmp_path):
    fs = FeatureSet(np.ones((2, 3, 4), np.float32), ["1", "2"], ["nm-01", "nm-05"], ["000", "000"],
                    meta={"dataset_name": "X", "iteration": 7})
    fs.save(tmp_path / "a.npz")
    back = FeatureSet.load(tmp_path / "a.npz")
    assert back.meta == {"dataset_name": "X", "iteration": 7} and back.embeddings.shape == (2, 3, 4)


def test_errors_are_one_line_exit_2(setup, tmp_path):
    ckpt = setup["ckpt"]
    cases = [
        ["eval", tmp_path / "missing.safetensors"],
        ["eval"],
        ["eval", ckpt, "--data", tmp_path / "nowhere"],
        ["eval", ckpt, "--protocol", "nonsense"],
        ["eval", ckpt, "--metric", "manhattan"],
        ["eval", "--features", tmp_path / "none.npz"],
    ]
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(ckpt.read_bytes()[:300])
    cases.append(["eval", corrupt])
    empty_part = tmp_path / "empty.json"
    empty_part.write_text(json.dumps({"TRAIN_SET": list(IDS), "TEST_SET": ["999"]}))
    cases.append(["eval", ckpt, "--partition", empty_part])
    not_npz = tmp_path / "bad.npz"
    not_npz.write_bytes(b"hello")
    cases.append(["eval", "--features", not_npz])
    ou = tmp_path / "ou.npz"
    FeatureSet(np.ones((2, 1, 2), np.float32), ["1", "1"], ["00", "01"], ["000", "000"]).save(ou)
    cases.append(["eval", "--features", ou, "--protocol", "casia-b"])
    cases.append(["eval", "--features", ou, "--heatmap", tmp_path / "x.png", "--protocol", "cross-view"])
    cases.append(["eval", "--features", ou, "--data", tmp_path])
    cases.append(["eval", ckpt, "--features", ou])
    for args in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert one_error_line(result), (args, result.output)


def test_eval_with_two_cpu_processes_matches_one(setup, tmp_path):
    fast = ["--batch-size", 32, "--set", "evaluator_cfg.sampler.frames_all_limit=3"]
    one = run("eval", setup["ckpt"], "--device", "cpu", *fast, "--save-features", tmp_path / "one.npz")
    two = run("eval", setup["ckpt"], "--device", "cpu", "--nproc", 2, *fast, "--save-features", tmp_path / "two.npz")
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    np.testing.assert_allclose(a["embeddings"], b["embeddings"], rtol=1e-4, atol=1e-5)
    assert (a["labels"] == b["labels"]).all() and (a["views"] == b["views"]).all()
