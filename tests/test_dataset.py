"""The dataset over a prepared tree plus a partition (SPEC §3)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from gaitcli.data.dataset import GaitDataset, load_partition
from gaitcli.errors import DataError


def make_tree(root, ids=("001", "002", "003"), types=("nm-01", "bg-01"), views=("000", "090"), length=12):
    for i in ids:
        for t in types:
            for v in views:
                folder = root / i / t / v
                folder.mkdir(parents=True)
                n = 3 if (i, t, v) == ("002", "bg-01", "090") else length
                (folder / f"{v}.pkl").write_bytes(pickle.dumps(np.full((n, 64, 64), int(i), np.uint8)))


def partition(tmp_path, train, test):
    path = tmp_path / "part.json"
    path.write_text(json.dumps({"TRAIN_SET": list(train), "TEST_SET": list(test)}))
    return path


def test_items_labels_and_missing_ids(tmp_path):
    make_tree(tmp_path / "data")
    ds = GaitDataset(tmp_path / "data", partition(tmp_path, ["001", "002", "009"], ["003"]), "train")
    assert len(ds) == 8 and ds.label_set == ["001", "002"] and ds.missing_ids == ["009"]
    arrays, label, seq_type, view = ds[0]
    assert (label, seq_type, view) == ("001", "bg-01", "000") and arrays[0].shape == (12, 64, 64)
    assert ds.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_min_frames_leaves_short_sequences_out(tmp_path):
    make_tree(tmp_path / "data")
    ds = GaitDataset(tmp_path / "data", partition(tmp_path, ["001", "002"], ["003"]), "train", min_frames=5)
    assert len(ds) == 7 and ds.skipped_short == [("002/bg-01/090", 3)]


def test_cache_returns_same_arrays(tmp_path):
    make_tree(tmp_path / "data")
    ds = GaitDataset(tmp_path / "data", partition(tmp_path, ["001"], ["003"]), "train", cache=True)
    assert ds.load(0) is ds.load(0)


def test_errors(tmp_path):
    make_tree(tmp_path / "data")
    with pytest.raises(DataError, match="data folder not found"):
        GaitDataset(tmp_path / "nope", partition(tmp_path, ["001"], ["003"]))
    with pytest.raises(DataError, match="no sequences of the train split"):
        GaitDataset(tmp_path / "data", partition(tmp_path, ["100"], ["003"]))
    with pytest.raises(DataError, match="partition file not found"):
        load_partition(tmp_path / "nothing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(DataError, match="not a partition file"):
        load_partition(bad)
    # two pkls of one sequence with different lengths: refused when the dataset is built
    folder = tmp_path / "data" / "001" / "nm-01" / "000"
    (folder / "zz.pkl").write_bytes(pickle.dumps(np.zeros((5, 64, 64), np.uint8)))
    with pytest.raises(DataError, match="001/nm-01/000: its pkl files hold different frame counts"):
        GaitDataset(tmp_path / "data", partition(tmp_path, ["001"], ["003"]))


def test_packaged_partition_by_name(tmp_path):
    part = load_partition(tmp_path / "CASIA-B.json")
    assert len(part.train) == 74 and len(part.test) == 50
