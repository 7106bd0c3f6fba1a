"""``gait embed``: equal to eval's features on a tree, PNG walks pretreated exactly as prepare
does, bad inputs listed and skipped, --append (never re-embeds, never loses a concurrent append,
never mixes models), walk identity, frame-size and output refusals."""

from __future__ import annotations

import json
import pickle
import shutil
import threading
import time

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gaitcli.build import build_model
from gaitcli.cli import app
from gaitcli.evaluation import FeatureSet
from gaitcli.models import save_checkpoint

IDS = ("001", "002")
TYPES = ("nm-01", "nm-02", "nm-05", "bg-01", "cl-01")
VIEWS = ("000", "090")


pytestmark = pytest.mark.usefixtures("one_thread_for_module")


def silhouettes(seed: int, frames: int = 5, h: int = 80, w: int = 60) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros((frames, h, w), np.uint8)
    for f in range(frames):
        top, left = 5 + int(rng.integers(0, 6)), 18 + int(rng.integers(0, 8))
        out[f, top : top + 60, left : left + 16] = 255
        out[f, top : top + 8, left + 4 : left + 12] = 255
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from gaitcli.data.prepare import prepare_dataset

    base = tmp_path_factory.mktemp("embed")
    raw = base / "raw"
    for n, (i, t, v) in enumerate((i, t, v) for i in IDS for t in TYPES for v in VIEWS):
        folder = raw / i / t / v
        folder.mkdir(parents=True)
        for f, frame in enumerate(silhouettes(n)):
            cv2.imwrite(str(folder / f"{f:03d}.png"), frame)
    (raw / "001" / "nm-01" / "000" / "999.png").write_bytes(b"")  # a bad frame: skipped, as by prepare
    tree = base / "pkl"
    prepare_dataset(raw, tree, img_size=32, workers=1)
    part = base / "part.json"
    part.write_text(json.dumps({"TRAIN_SET": [], "TEST_SET": list(IDS)}))
    torch.manual_seed(0)
    model = build_model(
        {
            "model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 2, "bin_num": [32]},
            "data_cfg": {
                "dataset_name": "CASIA-B",
                "dataset_root": str(tree),
                "dataset_partition": str(part),
            },
        }
    )
    ckpt = save_checkpoint(
        base / "tiny.safetensors", model, model.config, iteration=3, labels=list(IDS), frame_size="32x32"
    )
    bare = save_checkpoint(base / "bare.safetensors", model, model.config, iteration=3, labels=list(IDS))
    return {"base": base, "raw": raw, "tree": tree, "part": part, "ckpt": ckpt, "bare": bare}


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:")


def test_embed_tree_equals_eval_features(setup):
    base = setup["base"]
    res = run(
        "embed",
        setup["ckpt"],
        setup["tree"],
        "--partition",
        setup["part"],
        "--out",
        base / "t.npz",
        "--device",
        "cpu",
    )
    assert res.exit_code == 0, res.output
    res = run("eval", setup["ckpt"], "--save-features", base / "e.npz", "--device", "cpu")
    assert res.exit_code == 0, res.output
    a, b = FeatureSet.load(base / "t.npz"), FeatureSet.load(base / "e.npz")
    assert len(a) == len(IDS) * len(TYPES) * len(VIEWS)
    # the same walks in the same batches on the same machine: bit-exact (docs/deploy.md)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    # gait eval --save-features records the model that made the features, as gait embed does
    assert b.provenance == a.provenance and b.provenance.verified
    for key in ("labels", "types", "views"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert a.meta["frame_size"] == "32x32" and a.meta["model"] == "GaitGL" and a.meta["metric"] == "euc"
    assert len(a.meta["checkpoint_sha256"]) == 64 and a.meta["dataset_name"] == "CASIA-B"
    walk = setup["tree"] / "001" / "nm-05" / "000"
    res = run("identify", walk, "--checkpoint", setup["ckpt"], "--gallery", base / "e.npz")
    assert res.exit_code == 0, res.output  # an eval gallery works with its checkpoint


def test_png_walks_are_pretreated_like_prepare_and_bad_inputs_are_listed(setup):
    base, raw, tree = setup["base"], setup["raw"], setup["tree"]
    empty = base / "dark" / "nm-01" / "000"
    empty.mkdir(parents=True)
    cv2.imwrite(str(empty / "000.png"), np.zeros((80, 60), np.uint8))
    bad_pkl = base / "evil.pkl"
    bad_pkl.write_bytes(pickle.dumps(print))  # a pickle that would call code: refused, listed, skipped
    walk = raw / "001" / "nm-01" / "000"
    res = run(
        "embed",
        setup["ckpt"],
        walk,
        empty,
        bad_pkl,
        tree / "002" / "bg-01" / "090" / "090.pkl",
        "--out",
        base / "w.npz",
        "--json",
        base / "w.json",
    )
    assert res.exit_code == 0, res.output
    report = json.loads((base / "w.json").read_text())
    reasons = {p["path"]: p["reason"] for p in report["skipped"]}
    assert set(reasons) == {str(walk / "999.png"), str(empty), str(bad_pkl)}, reasons
    assert "empty file" in reasons[str(walk / "999.png")] and "no usable frame" in reasons[str(empty)]
    assert "skipped 3 input(s)" in res.output
    walks = FeatureSet.load(base / "w.npz")
    assert walks.labels.tolist() == ["001", "002"] and walks.views.tolist() == ["000", "090"]
    run("embed", setup["ckpt"], tree, "--out", base / "all.npz", "--overwrite")
    every = FeatureSet.load(base / "all.npz")
    for row, (i, t, v) in enumerate([("001", "nm-01", "000"), ("002", "bg-01", "090")]):
        k = np.flatnonzero((every.labels == i) & (every.types == t) & (every.views == v))[0]
        # the same pixels as the prepared pkl give the same embedding up to float rounding: the
        # walks went through the network in another batch (2 walks vs the tree's 20), where the
        # kernels may sum in another order (AVX-512-BF16 / AMX Xeons: relative 6e-7); bit-equality
        # holds only for the same batch on the same machine (docs/deploy.md)
        scale = float(np.abs(every.embeddings[k]).max())
        np.testing.assert_allclose(walks.embeddings[row], every.embeddings[k], rtol=0, atol=1e-5 * scale)


def test_append_adds_without_reembedding_and_refuses_mismatch(setup):
    base, tree = setup["base"], setup["tree"]
    g = base / "g.npz"
    assert run("embed", setup["ckpt"], tree / "001", "--out", g, "--overwrite").exit_code == 0
    first = FeatureSet.load(g)
    res = run("embed", setup["ckpt"], tree / "001", tree / "002", "--append", g)
    assert res.exit_code == 0, res.output
    grown = FeatureSet.load(g)
    assert len(grown) == 2 * len(first) and "not re-embedded" in res.output
    np.testing.assert_array_equal(grown.embeddings[: len(first)], first.embeddings)
    again = run("embed", setup["ckpt"], tree / "002", "--append", g)
    assert again.exit_code == 0 and len(FeatureSet.load(g)) == len(grown)  # idempotent
    other = FeatureSet.load(g)
    other.meta.update(checkpoint_sha256="0" * 64)
    other.save(base / "other.npz")
    assert one_error_line(res := run("embed", setup["ckpt"], tree / "002", "--append", base / "other.npz"))
    assert "checkpoint" in res.output


def test_one_line_errors(setup):
    base, tree = setup["base"], setup["tree"]
    assert one_error_line(res := run("embed", setup["bare"], tree, "--out", base / "x.npz"))
    assert "--img-size" in res.output
    assert run("embed", setup["bare"], tree, "--out", base / "x.npz", "--img-size", "32").exit_code == 0
    assert one_error_line(
        run("embed", setup["bare"], tree, "--out", base / "x.npz", "--img-size", "32")
    )  # exists
    assert one_error_line(
        res := run("embed", setup["ckpt"], tree, "--out", base / "y.npz", "--img-size", "64")
    )
    assert "--img-size 64" in res.output and "trained on 32x32" in res.output
    walk = setup["raw"] / "001" / "nm-01" / "000"  # PNG frames could be pretreated to any size: refused
    assert one_error_line(run("embed", setup["ckpt"], walk, "--out", base / "y.npz", "--img-size", "64"))
    assert not (base / "y.npz").exists()
    assert run("embed", setup["ckpt"], walk, "--out", base / "y.npz", "--img-size", "32").exit_code == 0
    assert one_error_line(run("embed", setup["ckpt"], base / "nowhere", "--out", base / "y.npz"))
    assert one_error_line(run("embed", setup["ckpt"], setup["part"], "--out", base / "y.npz"))
    assert one_error_line(run("embed", setup["ckpt"], tree, "--out", base / "y.npz", "--img-size", "abc"))
    assert one_error_line(
        run(
            "embed",
            setup["ckpt"],
            tree,
            "--partition",
            setup["part"],
            "--split",
            "dev",
            "--out",
            base / "y.npz",
        )
    )


def test_eval_calibration_feeds_identify_on_the_same_checkpoint(setup):
    base, tree = setup["base"], setup["tree"]
    cal = base / "cal.json"
    res = run(
        "eval",
        setup["ckpt"],
        "--device",
        "cpu",
        "--verification",
        "--calibrate",
        0.5,
        "--calibration-out",
        cal,
    )
    assert res.exit_code == 0, res.output
    stored = json.loads(cal.read_text())["provenance"]
    assert stored["frame_size"] == "32x32" and len(stored["checkpoint_sha256"]) == 64
    gallery = base / "cal-gallery.npz"
    assert run("embed", setup["ckpt"], tree, "--out", gallery, "--overwrite").exit_code == 0
    res = run(
        "identify",
        tree / "001" / "nm-05" / "000",
        "--checkpoint",
        setup["ckpt"],
        "--gallery",
        gallery,
        "--calibration",
        cal,
        "--gallery-types",
        "nm-01,nm-02",
    )
    assert res.exit_code == 0, res.output
    assert "FPIR 0.5 for open-set identification" in res.output and "CASIA-B test split" in res.output
    res = run(
        "identify",
        tree / "001" / "nm-05" / "000",
        "--checkpoint",
        setup["bare"],
        "--img-size",
        "32",
        "--gallery",
        gallery,
    )
    assert one_error_line(res) and "checkpoint" in res.output  # another checkpoint file: refused


def write_v1(path, feats: FeatureSet, **meta) -> None:
    """A feature file as gaitcli wrote it before version 2 (loose arrays, no header)."""
    with open(path, "wb") as fh:
        np.savez(fh, embeddings=feats.embeddings, labels=feats.labels, types=feats.types, views=feats.views,
                 **{k: np.array(v) for k, v in meta.items()})


def test_append_never_stamps_an_unverified_gallery(setup):
    """An older gallery records no checkpoint SHA-256: appending to it with a checkpoint would
    stamp the checkpoint's identity on embeddings it cannot vouch for, so it is refused."""
    base, tree = setup["base"], setup["tree"]
    res = run("embed", setup["ckpt"], tree / "001", "--out", base / "fresh.npz", "--overwrite")
    assert res.exit_code == 0, res.output
    old = base / "old.npz"
    write_v1(old, FeatureSet.load(base / "fresh.npz"), checkpoint=str(setup["ckpt"]), metric="euc")
    before = old.read_bytes()
    res = run("embed", setup["ckpt"], tree / "002", "--append", old)
    assert one_error_line(res), res.output
    assert "SHA-256" in res.output and "re-create it with gait embed" in res.output
    assert old.read_bytes() == before


def test_concurrent_appends_both_land(setup, monkeypatch):
    """While one append embeds, another one writes the gallery: the first merges into the gallery
    as it is then (under the lock), so neither walk is lost."""
    from gaitcli.deploy import embed as embed_module

    base, tree = setup["base"], setup["tree"]
    g = base / "c.npz"
    assert run("embed", setup["ckpt"], tree / "001", "--out", g, "--overwrite").exit_code == 0
    first, second = tree / "002" / "nm-01" / "000", tree / "002" / "bg-01" / "090"
    real = embed_module.embed_walks
    others: list[object] = []

    def meanwhile(*args, **kwargs):
        feats = real(*args, **kwargs)
        if not others:  # the other process appends while this one is still embedding
            others.append(second)
            embed_module.run_embed(setup["ckpt"], [str(second)], None, append=g)
        return feats

    monkeypatch.setattr(embed_module, "embed_walks", meanwhile)
    result = embed_module.run_embed(setup["ckpt"], [str(first)], None, append=g)
    grown = FeatureSet.load(g)
    keys = set(zip(grown.labels.tolist(), grown.types.tolist(), grown.views.tolist(), strict=True))
    assert ("002", "nm-01", "000") in keys and ("002", "bg-01", "090") in keys
    assert len(grown) == len(IDS[:1]) * len(TYPES) * len(VIEWS) + 2 and result.total == len(grown)


def test_append_waits_for_the_writer_holding_the_gallery(setup):
    from gaitcli.deploy.embed import gallery_lock, run_embed
    from gaitcli.runtime.lock import LockError

    base, tree = setup["base"], setup["tree"]
    g = base / "w.npz"
    assert run("embed", setup["ckpt"], tree / "001", "--out", g, "--overwrite").exit_code == 0
    held, release = threading.Event(), threading.Event()

    def writer() -> None:
        with gallery_lock(g):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        held.wait(10)
        with pytest.raises(LockError, match="another gait embed"):
            run_embed(setup["ckpt"], [str(tree / "002" / "nm-01" / "000")], None, append=g, lock_wait=0.2)
        threading.Timer(0.5, release.set).start()
        started = time.perf_counter()
        run_embed(setup["ckpt"], [str(tree / "002" / "nm-01" / "000")], None, append=g, lock_wait=30)
        assert time.perf_counter() - started >= 0.4  # it waited for the writer, then merged
    finally:
        release.set()
        thread.join()
    assert ("002", "nm-01", "000") in set(FeatureSet.load(g).keys())


def test_a_walk_is_its_resolved_path(setup, monkeypatch):
    base, raw = setup["base"], setup["raw"]
    src = raw / "002" / "nm-02" / "090"
    one, two = base / "ident" / "a" / "walk", base / "ident" / "b" / "walk"
    shutil.copytree(src, one)
    shutil.copytree(raw / "001" / "bg-01" / "000", two)
    out = base / "ident" / "g.npz"
    monkeypatch.chdir(one.parent)
    report = base / "ident" / "r.json"
    res = run("embed", setup["ckpt"], "walk", "./walk", one, "--out", out, "--json", report)
    assert res.exit_code == 0, res.output
    feats = FeatureSet.load(out)
    assert feats.labels.tolist() == [str(one.resolve())]  # one walk, named by its resolved path
    repeats = json.loads(report.read_text())["skipped"]
    assert len(repeats) == 2 and all("the same walk as walk" in p["reason"] for p in repeats)
    monkeypatch.chdir(two.parent)
    assert run("embed", setup["ckpt"], "walk", "--append", out).exit_code == 0  # another folder named walk
    assert sorted(FeatureSet.load(out).labels.tolist()) == sorted([str(one.resolve()), str(two.resolve())])
    assert run("embed", setup["ckpt"], two, "--append", out).exit_code == 0  # the same walk again: nothing
    assert len(FeatureSet.load(out)) == 2
    monkeypatch.chdir(src)  # "." inside an id/type/view folder is that walk, not a person named "."
    assert run("embed", setup["ckpt"], ".", "--out", base / "ident" / "dot.npz").exit_code == 0
    assert FeatureSet.load(base / "ident" / "dot.npz").keys() == [("002", "nm-02", "090")]


def test_append_tells_walks_apart_by_their_frames(setup):
    """Two walks may share an id/type/view (another recording, another data set): the gallery
    keeps both; the same frames again are not re-embedded."""
    base, raw = setup["base"], setup["raw"]
    walk = base / "frames" / "003" / "nm-01" / "000"
    shutil.copytree(raw / "001" / "nm-01" / "000", walk)
    (walk / "999.png").unlink()
    g = base / "frames" / "g.npz"
    assert run("embed", setup["ckpt"], walk, "--out", g).exit_code == 0
    assert run("embed", setup["ckpt"], walk, "--append", g).exit_code == 0
    assert len(FeatureSet.load(g)) == 1
    cv2.imwrite(str(walk / "000.png"), silhouettes(1234)[0])  # other frames under the same name
    res = run("embed", setup["ckpt"], walk, "--append", g)
    assert res.exit_code == 0, res.output
    grown = FeatureSet.load(g)
    assert grown.keys() == [("003", "nm-01", "000")] * 2 and len(set(grown.digest_list)) == 2


def test_append_refuses_a_gallery_holding_nan(setup):
    base, tree = setup["base"], setup["tree"]
    g = base / "nan.npz"
    assert run("embed", setup["ckpt"], tree / "001", "--out", g, "--overwrite").exit_code == 0
    feats = FeatureSet.load(g)
    feats.embeddings[3, 0, 0] = np.nan
    feats.save(g)
    res = run("embed", setup["ckpt"], tree / "002", "--append", g)
    assert one_error_line(res) and "nan.npz" in res.output and f"entry 3 ({feats.name(3)})" in res.output


def test_img_size_the_network_cannot_embed_is_refused_up_front(setup):
    """A checkpoint without a recorded frame size takes --img-size; a size its network cannot
    embed is refused before anything is read, naming the smallest it can (no GeM traceback)."""
    from gaitcli.deploy.embed import load_for_inference

    walk = setup["raw"] / "001" / "nm-01" / "000"
    res = run("embed", setup["bare"], walk, "--out", setup["base"] / "small.npz", "--img-size", "4")
    assert one_error_line(res), res.output
    assert "--img-size 4" in res.output and "4x4" in res.output
    assert "smallest frame size it embeds is" in res.output
    smallest = int(res.output.split("smallest frame size it embeds is ")[1].split("x")[0])
    assert 4 < smallest <= 32
    load_for_inference(setup["bare"], img_size=str(smallest), device="cpu")  # the size named works
