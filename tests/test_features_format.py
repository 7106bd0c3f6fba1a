"""Feature and calibration files: versions, migration of every older shape (kept in
tests/fixtures, written by tests/fixtures/make_format_v1.py), newer files refused, every field of
an edited calibration checked, malformed files one line (never a traceback)."""

from __future__ import annotations

import json
import math
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gaitcli.errors import GaitError
from gaitcli.evaluation.calibration import OPEN_SET, PAIRWISE, Calibration, CalibrationError, Provenance
from gaitcli.evaluation.features import VERSION, FeatureFileError, FeatureSet, frames_digest

FIXTURES = Path(__file__).parent / "fixtures"
V1_SHA = "4fff7c15a7405e08888dbcd4f04f33063f86afaf90a63fc14791516f6fab703b"


def small_set(**meta) -> FeatureSet:
    rng = np.random.default_rng(0)
    return FeatureSet(
        rng.normal(size=(3, 2, 4)).astype(np.float32),
        ["001", "002", "003"],
        ["nm-01", "nm-01", "nm-02"],
        ["000", "090", "000"],
        meta=dict(meta),
        digests=[frames_digest([np.full((2, 3, 3), i, np.uint8)]) for i in range(3)],
    )


def test_version_2_round_trip_keeps_provenance_and_digests(tmp_path):
    sha = "ab" * 32
    feats = small_set(checkpoint="m.safetensors", checkpoint_sha256=sha, model="GaitGL", metric="cos",
                      frame_size="32x32", iteration=7, dataset_name="CASIA-B")
    feats.save(tmp_path / "f.npz")
    with np.load(tmp_path / "f.npz", allow_pickle=False) as raw:
        header = json.loads(str(raw["header"]))
    assert header["format"] == "gaitcli-features" and header["version"] == VERSION == 2
    assert header["provenance"]["checkpoint_sha256"] == sha
    again = FeatureSet.load(tmp_path / "f.npz")
    assert again.provenance == Provenance("m.safetensors", sha, "GaitGL", "cos", "32x32")
    assert again.meta["iteration"] == 7 and again.meta["dataset_name"] == "CASIA-B"
    assert again.digest_list == feats.digest_list and len(again.digest_list[0]) == 64
    np.testing.assert_array_equal(again.embeddings, feats.embeddings)  # stored bytes, read back


@pytest.mark.parametrize(
    "name, sha, model, size",
    [("features_v1_eval.npz", None, None, None), ("features_v1_embed.npz", V1_SHA, "GaitGL", "32x32")],
)
def test_version_1_files_migrate(name, sha, model, size, tmp_path):
    feats = FeatureSet.load(FIXTURES / name)
    assert len(feats) == 6 and feats.embeddings.shape == (6, 2, 4)
    assert feats.provenance == Provenance("run/checkpoints/demo-00040.safetensors", sha, model, "euc", size)
    assert feats.provenance.verified == (sha is not None)
    assert feats.meta["iteration"] == 40 and feats.meta["dataset_name"] == "CASIA-B"
    assert feats.digest_list == [""] * 6  # version 1 did not record frames
    feats.save(tmp_path / "up.npz")  # saved again: version 2, same content
    again = FeatureSet.load(tmp_path / "up.npz")
    assert again.provenance == feats.provenance and again.labels.tolist() == feats.labels.tolist()


def test_a_newer_feature_file_is_one_line(tmp_path):
    small_set().save(tmp_path / "f.npz")
    with np.load(tmp_path / "f.npz", allow_pickle=False) as raw:
        arrays = {k: raw[k] for k in raw.files}
    header = json.loads(str(arrays["header"]))
    header["version"] = VERSION + 1
    arrays["header"] = np.array(json.dumps(header))
    with open(tmp_path / "new.npz", "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(FeatureFileError, match=r"written by a newer gaitcli .*upgrade gaitcli"):
        FeatureSet.load(tmp_path / "new.npz")


def _damaged(tmp_path: Path) -> dict[str, bytes]:
    good = tmp_path / "good.npz"
    small_set().save(good)
    data = good.read_bytes()
    out = {
        "random bytes": np.random.default_rng(1).bytes(300),
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "pickle": pickle.dumps({"embeddings": 1}),
    }
    buf = tmp_path / "obj.npz"
    with open(buf, "wb") as fh:
        np.savez(fh, embeddings=np.zeros((1, 1, 2), np.float32), labels=np.array([object()], dtype=object),
                 types=np.array(["a"]), views=np.array(["b"]))
    out["object array"] = buf.read_bytes()
    one = tmp_path / "one.npy"
    np.save(one, np.zeros(3))
    out["one array"] = one.read_bytes()
    corrupt = bytearray(data)
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("embeddings.npy")
    start = info.header_offset + 30 + len(info.filename) + 60
    corrupt[start : start + 8] = b"\xff" * 8  # a member whose bytes no longer match its CRC
    out["bad member"] = bytes(corrupt)
    header = json.dumps({"format": "gaitcli-features", "version": 2, "provenance": {"metric": "manhattan"}})
    with open(tmp_path / "h.npz", "wb") as fh:
        np.savez(fh, embeddings=np.zeros((1, 1, 2), np.float32), labels=np.array(["a"]),
                 types=np.array(["t"]), views=np.array(["v"]), digests=np.array([""]),
                 header=np.array(header))
    out["bad header field"] = (tmp_path / "h.npz").read_bytes()
    return out


def test_malformed_feature_files_are_one_line(tmp_path):
    for what, data in _damaged(tmp_path).items():
        path = tmp_path / "x.npz"
        path.write_bytes(data)
        with pytest.raises(GaitError) as info:
            FeatureSet.load(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value), what


# ------------------------------------------------------------------------------- calibration


def good_calibration() -> dict:
    return {
        "format": "gaitcli-calibration",
        "version": 2,
        "decision": OPEN_SET,
        "method": "leave-one-identity-out",
        "threshold": 0.5,
        "fpir": 0.01,
        "achieved_fpir": 0.009,
        "fnir": 0.2,
        "non_mated_searches": 300,
        "mated_searches": 300,
        "gallery_identities": 50,
        "dataset": "CASIA-B",
        "split": "test",
        "probe_sets": "ALL",
        "provenance": {"checkpoint": "c.safetensors", "checkpoint_sha256": "ab" * 32, "model": "GaitGL",
                       "metric": "euc", "frame_size": "64x64"},
    }


def test_calibration_round_trip_and_version_1_migrates(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(good_calibration()))
    cal = Calibration.load(path)
    assert cal.open_set and cal.rate == 0.01 and cal.miss_rate == 0.2 and cal.gallery_identities == 50
    assert "FPIR 0.01 for open-set identification" in cal.meaning() and cal.caveat() is None
    cal.save(tmp_path / "again.json")
    assert Calibration.load(tmp_path / "again.json") == cal
    old = Calibration.load(FIXTURES / "calibration_v1.json")
    assert old.decision == PAIRWISE and old.rate == 0.01 and old.negatives == 1728
    assert old.miss_rate == pytest.approx(1 - 0.2153) and old.threshold == 0.05217
    assert old.provenance == Provenance("run/checkpoints/demo-00040.safetensors", V1_SHA, "GaitGL", "euc",
                                        "32x32")
    assert "pairwise FAR 0.01" in old.meaning() and "recalibrate" in (old.caveat() or "")
    old.save(tmp_path / "old-up.json")  # saved again: version 2, still pairwise
    assert json.loads((tmp_path / "old-up.json").read_text())["version"] == 2
    assert Calibration.load(tmp_path / "old-up.json") == old


EDITS = [
    ("threshold", math.nan, "threshold"),
    ("threshold", -1, "threshold"),
    ("threshold", math.inf, "threshold"),
    ("threshold", "0.5", "threshold"),
    ("threshold", True, "threshold"),
    ("fpir", 0, "fpir"),
    ("fpir", 1.5, "fpir"),
    ("achieved_fpir", -0.1, "achieved_fpir"),
    ("fnir", "low", "fnir"),
    ("non_mated_searches", -3, "non_mated_searches"),
    ("non_mated_searches", 2.5, "non_mated_searches"),
    ("gallery_identities", 0, "gallery_identities"),
    ("decision", "verification", "decision"),
    ("split", "", "split"),
    ("dataset", 7, "dataset"),
    ("provenance", "c.safetensors", "provenance"),
    ("version", VERSION + 1, "newer gaitcli"),
    ("format", "something", "not a gaitcli calibration"),
    ("extra", 1, "unknown field extra"),
]


@pytest.mark.parametrize("key, value, named", EDITS)
def test_every_calibration_field_is_checked(tmp_path, key, value, named):
    data = good_calibration()
    data[key] = value
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))  # NaN / Infinity as Python's json writes them
    with pytest.raises(CalibrationError) as info:
        Calibration.load(path)
    assert named in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("key, value", [("checkpoint_sha256", "xyz"), ("metric", "l1"), ("frame_size", "64"),
                                        ("colour", "red")])
def test_calibration_provenance_fields_are_checked(tmp_path, key, value):
    data = good_calibration()
    data["provenance"][key] = value
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match=key):
        Calibration.load(path)


def test_missing_calibration_field_is_named(tmp_path):
    data = good_calibration()
    del data["fnir"]
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match="field fnir is missing"):
        Calibration.load(tmp_path / "c.json")
