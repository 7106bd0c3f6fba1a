"""Incomplete data: missing views, a probe set without gallery, 1-frame sequences. Training and
evaluation still run and say what they skipped."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
from conftest import tiny_config, write_tiny_tree
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.config import resolve_config
from gaitcli.training.trainer import train

TYPES = ("nm-01", "nm-02", "nm-03", "nm-04", "nm-05", "nm-06", "bg-01", "bg-02", "cl-01", "cl-02")


def test_missing_views_no_gallery_and_one_frame_sequences(tmp_path):
    root = tmp_path / "pkl"
    write_tiny_tree(root, ids=6, types=TYPES, views=("000", "090", "180"), frames=10)
    # one-frame sequences, in training and in test
    for key in ("001/nm-01/000", "005/nm-05/090"):
        (root / key / f"{key[-3:]}.pkl").write_bytes(pickle.dumps(np.full((1, 32, 32), 255, np.uint8)))
    # test id 006 has no view 180 at all; nobody has a gallery (nm-01..04) at view 090 in the test set
    shutil.rmtree(root / "006" / "nm-05" / "180")
    for i in ("005", "006"):
        for t in ("nm-01", "nm-02", "nm-03", "nm-04"):
            shutil.rmtree(root / i / t / "090")
        for t in ("bg-01", "bg-02"):  # and no BG probe at view 180
            shutil.rmtree(root / i / t / "180")
    part = tmp_path / "part.json"
    part.write_text(json.dumps({"TRAIN_SET": ["001", "002", "003", "004"], "TEST_SET": ["005", "006"]}))

    cfg = tiny_config(root, part, total_iter=4, save_iter=4)
    cfg["data_cfg"]["min_frames"] = 2
    cfg["evaluator_cfg"] = {"transform": [{"type": "BaseSilTransform"}]}
    summary = train(resolve_config(cfg), output=tmp_path / "run", device="cpu", progress=False)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "left out 1 short sequences" in log  # 001/nm-01/000 had one frame

    result = CliRunner().invoke(app, ["eval", summary.checkpoint, "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "e.json").read_text())
    views = report["views"]
    assert views == ["000", "090", "180"]
    # probes at 090 are matched against the galleries at 000 and 180
    assert report["rank1_exclude"]["NM"]["views"]["090"] is not None
    # no BG probe at 180: n/a in the JSON and the table, and the mean is over the other views
    bg = report["rank1_exclude"]["BG"]
    assert bg["views"]["180"] is None
    assert bg["mean"] == round((bg["views"]["000"] + bg["views"]["090"]) / 2, 2)
    assert "n/a" in result.output
    # no gallery at view 090: that column of the view x view matrix is n/a, never 0 or -1
    column = views.index("090")
    assert all(row[column] is None for row in report["matrix"]["rank1"]["NM"])
