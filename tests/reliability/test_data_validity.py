"""Malformed arrays never reach training (issue 9, item 4), and inspect and the dataset see the
same sequences on any tree (issue 10: one walker).

Each fault (float64 frames in [0, 1], 2-D arrays, 0-frame pkls, mixed frame sizes) is refused
when the dataset is built, with one line that names the file, exit 2 from ``gait train``; and
``gait inspect --strict`` fails on exactly that file with the same reason text."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.data.dataset import GaitDataset
from gaitcli.data.inspect import inspect_dataset
from gaitcli.errors import DataError
from tests.conftest import tiny_config, write_tiny_tree

BAD = "003/nm-02/090/090.pkl"


def _float(arr: np.ndarray) -> np.ndarray:
    return arr.astype(np.float64) / 255.0


def _flat(arr: np.ndarray) -> np.ndarray:
    return arr[0]


def _empty(arr: np.ndarray) -> np.ndarray:
    return arr[:0]


def _small(arr: np.ndarray) -> np.ndarray:
    return arr[:, :16, :16].copy()


FAULTS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    "float64": (_float, "holds float64 values, expected uint8"),
    "2-D": (_flat, "holds a 2-D array of shape 32×32, expected a 3-D array"),
    "0 frames": (_empty, "holds 0 frames"),
    "mixed sizes": (_small, "frame size 16×16 differs from the majority 32×32"),
}


def _tree(tmp_path: Path, fault: str) -> tuple[Path, Path]:
    root = tmp_path / "pkl"
    write_tiny_tree(root, ids=4, types=("nm-01", "nm-02"), frames=6)
    if fault == "float64":  # the whole tree, as a user who saved normalised frames would
        pkls = sorted(root.rglob("*.pkl"))
    else:
        pkls = [root / BAD]
    for pkl in pkls:
        pkl.write_bytes(pickle.dumps(FAULTS[fault][0](pickle.loads(pkl.read_bytes()))))
    partition = tmp_path / "partition.json"
    partition.write_text(json.dumps({"TRAIN_SET": ["001", "002", "003", "004"], "TEST_SET": []}))
    return root, partition


@pytest.mark.parametrize("fault", list(FAULTS))
def test_dataset_refuses_with_one_line_and_inspect_agrees(tmp_path: Path, fault: str) -> None:
    root, partition = _tree(tmp_path, fault)
    with pytest.raises(DataError) as info:
        GaitDataset(root, partition, "train")
    message = str(info.value)
    assert "\n" not in message and FAULTS[fault][1] in message
    first = "001/nm-01/000/000.pkl" if fault == "float64" else BAD
    assert message.startswith(f"{root / first}: ")

    report = inspect_dataset(root).to_json()
    reasons = {row["path"]: row["reason"] for row in report["shape_problems"]}
    assert first in reasons and message.startswith(f"{root / first}: {reasons[first]}")
    result = CliRunner().invoke(app, ["inspect", str(root), "--strict"])
    assert result.exit_code == 1


@pytest.mark.parametrize("fault", list(FAULTS))
def test_train_cli_exits_2_naming_the_file(tmp_path: Path, fault: str) -> None:
    root, partition = _tree(tmp_path, fault)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(root, partition)))
    result = CliRunner().invoke(app, ["train", "-c", str(config), "--device", "cpu",
                                      "--output", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    first = "001/nm-01/000/000.pkl" if fault == "float64" else BAD
    assert len(lines) == 1 and first in lines[0] and FAULTS[fault][1] in lines[0]
    assert "Traceback" not in result.output and not (tmp_path / "run" / "checkpoints").exists()


def test_inspect_and_dataset_agree_on_a_deeper_tree(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_tiny_tree(root / "CASIA-B" / "pkl", ids=3, types=("nm-01",), views=("000",), frames=6)
    partition = tmp_path / "p.json"
    partition.write_text(json.dumps({"TRAIN_SET": ["001", "002", "003"], "TEST_SET": []}))
    report = inspect_dataset(root)
    dataset = GaitDataset(root, partition, "train")
    assert report.problems == 0
    assert [s.key for s in dataset.sequences] == ["/".join(k) for k in
                                                  [(i, "nm-01", "000") for i in report.id_list]]
