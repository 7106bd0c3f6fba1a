"""``gait eval`` end to end on a tiny checkpoint and a tiny prepared tree, the extraction path
the trainer uses, saved features, and the one-line errors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gaitcli.build import build_model
from gaitcli.cli import app
from gaitcli.config import resolve_config
from gaitcli.evaluation import FeatureSet, evaluate_model, extract_features, load_test_split
from gaitcli.models import save_checkpoint

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
    model = build_model(
        {
            "model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 3},
            "data_cfg": {
                "dataset_name": "CASIA-B",
                "dataset_root": str(tree),
                "dataset_partition": str(part),
            },
        }
    )
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
    result = run(
        "eval",
        setup["ckpt"],
        "--batch-size",
        32,
        "--json",
        out / "r.json",
        "--csv",
        out / "r.csv",
        "--save-features",
        out / "f.npz",
        "--heatmap",
        out / "h.png",
        "--rank5",
        "--map",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    assert "Rank-1 accuracy (%) excluding identical views" in result.output
    assert (
        "including identical views" in result.output and "Rank-5" in result.output and "mAP" in result.output
    )
    payload = json.loads((out / "r.json").read_text())
    assert list(payload)[:11] == [
        "protocol",
        "metric",
        "checkpoint",
        "iteration",
        "num_probes",
        "num_gallery",
        "rank1_exclude",
        "rank1_include",
        "rank5_exclude",
        "map",
        "seconds",
    ]
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
        assert json.loads(str(f["header"]))["dataset_name"] == "CASIA-B"

    # the saved features give the same numbers without a model
    again = run("eval", "--features", out / "f.npz", "--json", out / "r2.json", "--map")
    assert again.exit_code == 0, again.output
    payload2 = json.loads((out / "r2.json").read_text())
    for table in ("rank1_exclude", "rank1_include", "rank5_exclude", "map"):
        assert payload2[table] == payload[table]
    assert payload2["iteration"] == 5 and payload2["checkpoint"] == str(setup["ckpt"])

    cross = run("eval", "--features", out / "f.npz", "--protocol", "cross-view", "--json", "-")
    assert cross.exit_code == 0, cross.output
    assert json.loads(cross.stdout[cross.stdout.index("{") :])["protocol"] == "cross-view"


def test_extraction_equals_embedding_each_sequence_alone(setup):
    model = setup["model"]
    ds = load_test_split(resolve_config(model.config))
    feats = extract_features(model, ds, batch_size=16)
    assert feats.embeddings.shape == (len(ds), 64, 8)
    assert list(feats.labels[:2]) == ["001", "001"] and list(feats.types[:2]) == ["bg-01", "bg-01"]
    picked = [0, 7, len(ds) - 1]
    alone = model.embed([ds.load(i)[0][:, :, 10:54] for i in picked], batch_size=1).numpy()
    np.testing.assert_allclose(feats.embeddings[picked], alone, rtol=1e-4, atol=1e-5)
    limited = extract_features(
        model,
        ds,
        batch_size=2,
        indices=[7, 0],
        sampler_cfg={"sample_type": "all_ordered", "frames_all_limit": 3},
    )
    short = model.embed([ds.load(i)[0][:3, :, 10:54] for i in (7, 0)], batch_size=1).numpy()
    np.testing.assert_allclose(limited.embeddings, short, rtol=1e-4, atol=1e-5)
    assert list(limited.types) == [ds.sequences[7].type, ds.sequences[0].type]


def test_evaluate_model_is_what_the_trainer_calls(setup):
    model = setup["model"]
    model.train()
    results = evaluate_model(model, resolve_config(model.config), device="cpu", batch_size=32)
    assert model.training  # mode restored
    assert set(results.rank1) <= {"NM", "BG", "CL"} and results.rank1
    assert all(isinstance(v, float) for v in results.rank1.values())
    json.dumps(results.to_json())  # the trainer appends it to metrics.jsonl


def test_feature_file_roundtrip(tmp_path):
    fs = FeatureSet(
        np.ones((2, 3, 4), np.float32),
        ["1", "2"],
        ["nm-01", "nm-05"],
        ["000", "000"],
        meta={"dataset_name": "X", "iteration": 7},
    )
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
    two = run(
        "eval", setup["ckpt"], "--device", "cpu", "--nproc", 2, *fast, "--save-features", tmp_path / "two.npz"
    )
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    np.testing.assert_allclose(a["embeddings"], b["embeddings"], rtol=1e-4, atol=1e-5)
    assert (a["labels"] == b["labels"]).all() and (a["views"] == b["views"]).all()


# --------------------------------------------------------------------------------------------
# a checkpoint whose rank-1 is known by construction


def lookalike_tree(root, impostors):
    """Every sequence of an id is the same 4 frames, whatever its type and view, so any model
    embeds it exactly like that id's gallery sequences; ``impostors`` maps (id, type, view) to the
    id whose frames it carries instead. Rank-1 is then known without running a model."""
    for i in IDS:
        for t in TYPES:
            for v in VIEWS:
                looks = impostors.get((i, t, v), i)
                frames = np.zeros((4, 64, 64), np.uint8)
                n = int(looks)
                frames[:, 8 + 8 * n : 56, 18 + 4 * n : 44 - 2 * n] = 255
                (root / i / t / v).mkdir(parents=True)
                (root / i / t / v / f"{v}.pkl").write_bytes(pickle.dumps(frames))
    return root


def test_checkpoint_with_a_known_rank1(tmp_path):
    # CL: 003's cl-01 at 090 looks like 001; BG: 002's bg-01 at 000 looks like 003
    tree = lookalike_tree(tmp_path / "pkl", {("003", "cl-01", "090"): "001", ("002", "bg-01", "000"): "003"})
    part = tmp_path / "part.json"
    part.write_text(json.dumps({"TRAIN_SET": [], "TEST_SET": list(IDS)}))
    torch.manual_seed(1)
    model = build_model(
        {
            "model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 3},
            "data_cfg": {
                "dataset_name": "CASIA-B",
                "dataset_root": str(tree),
                "dataset_partition": str(part),
            },
        }
    )
    ckpt = save_checkpoint(tmp_path / "known.safetensors", model, model.config, iteration=3)
    result = run("eval", ckpt, "--device", "cpu", "--json", tmp_path / "r.json", "--map")
    assert result.exit_code == 0, result.output
    r = json.loads((tmp_path / "r.json").read_text())
    third = round(2 * 100 / 3, 2)  # 66.67: two of three probes right
    assert r["matrix"]["rank1"]["NM"] == [[100.0, 100.0], [100.0, 100.0]]
    assert r["matrix"]["rank1"]["BG"] == [[third, third], [100.0, 100.0]]  # rows: probe views 000, 090
    assert r["matrix"]["rank1"]["CL"] == [[100.0, 100.0], [third, third]]
    assert r["rank1_exclude"]["CL"] == {
        "views": {"000": 100.0, "090": third},
        "mean": pytest.approx((100 + third) / 2),
    }
    assert r["rank1_exclude"]["BG"]["views"] == {"000": third, "090": 100.0}
    assert r["rank1"] == {
        "NM": 100.0,
        "BG": pytest.approx((100 + third) / 2),
        "CL": pytest.approx((100 + third) / 2),
    }
    # the impostor ranks its own id second among two gallery ids at a view: AP (0 + 1/2 ...) is known too
    assert r["map"]["NM"]["mean"] == 100.0 and r["map"]["CL"]["views"]["000"] == 100.0


# --------------------------------------------------------------------------------------------
# the plan: resolved once per gait eval


def test_gait_eval_builds_its_plan_once(setup, monkeypatch, tmp_path):
    import gaitcli.evaluation.api as api
    import gaitcli.evaluation.matching as matching
    import gaitcli.evaluation.plan as plan_mod
    from gaitcli.evaluation.plan import EvalPlan

    calls = {"plan": 0, "check_metric": 0, "check_fit": 0}

    def counting(name, func):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return func(*args, **kwargs)

        return wrapper

    init = EvalPlan.__init__
    monkeypatch.setattr(EvalPlan, "__init__", counting("plan", init))
    for module in (api, matching, plan_mod):
        for name in ("check_metric", "check_fit"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, counting(name, getattr(module, name)))
    result = run(
        "eval",
        setup["ckpt"],
        "--device",
        "cpu",
        "--batch-size",
        32,
        "--json",
        tmp_path / "r.json",
        "--csv",
        tmp_path / "r.csv",
        "--heatmap",
        tmp_path / "h.png",
        "--metric",
        "cos",
    )
    assert result.exit_code == 0, result.output
    assert calls == {"plan": 1, "check_metric": 1, "check_fit": 1}
    assert json.loads((tmp_path / "r.json").read_text())["metric"] == "cos"


# --------------------------------------------------------------------------------------------
# the two behaviour fixes of issue 10


def test_test_dataset_name_is_honoured_even_when_it_is_the_default(setup, tmp_path):
    """Trained on a data set named "Mine" with a generic protocol, tested on CASIA-B."""
    cfg = {
        "model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 3},
        "data_cfg": {
            "dataset_name": "Mine",
            "test_dataset_name": "CASIA-B",
            "dataset_root": str(setup["tree"]),
            "dataset_partition": str(setup["part"]),
        },
        "evaluator_cfg": {"gallery_types": ["nm-01"], "probe_sets": {"Other": ["nm-02"]}},
    }
    torch.manual_seed(0)
    model = build_model(cfg)
    ckpt = save_checkpoint(tmp_path / "mine.safetensors", model, model.config)
    result = run("eval", ckpt, "--device", "cpu", "--json", "-", "--batch-size", 32)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{") :])
    assert payload["protocol"] == "casia-b" and payload["dataset_name"] == "CASIA-B"
    assert set(payload["rank1_exclude"]) == {"NM", "BG", "CL"}
    # without a test set name the training set's name (and its generic protocol) applies
    cfg["data_cfg"].pop("test_dataset_name")
    model = build_model(cfg)
    ckpt = save_checkpoint(tmp_path / "mine2.safetensors", model, model.config)
    result = run("eval", ckpt, "--device", "cpu", "--json", "-", "--batch-size", 32)
    payload = json.loads(result.stdout[result.stdout.index("{") :])
    assert payload["protocol"] == "generic" and list(payload["rank1_exclude"]) == ["Other"]


def test_checkpoint_without_a_config_never_gets_defaults(setup, tmp_path):
    from safetensors.torch import save_file

    from gaitcli.models.checkpoint import FORMAT

    state = {k: v.contiguous() for k, v in setup["model"].state_dict().items()}
    bare = tmp_path / "bare.safetensors"
    save_file(state, str(bare), metadata={"format": FORMAT, "config": "", "iteration": "1", "labels": "[]"})
    for extra in ([], ["--set", "evaluator_cfg.metric=cos"], ["--nproc", "2"]):
        result = run("eval", bare, "--device", "cpu", *extra)
        assert result.exit_code == 2 and one_error_line(result), result.output
        assert "carries no config" in result.output
