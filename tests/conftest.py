"""Shared fixtures: tiny prepared trees and configs small enough to train on a CPU in seconds."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch


def write_tiny_tree(root: Path, ids: int = 6, types=("nm-01", "nm-02", "bg-01", "cl-01"),
                    views=("000", "090"), frames: int = 12, size: int = 32) -> None:
    """Pickled uint8 [T, size, size] sequences whose blob shape depends on the id (learnable)."""
    for i in range(1, ids + 1):
        for t_index, seq_type in enumerate(types):
            for v_index, view in enumerate(views):
                rng = np.random.default_rng(i * 1000 + t_index * 10 + v_index)
                arr = np.zeros((frames + int(rng.integers(0, 4)), size, size), np.uint8)
                width = 2 + i % 5 + v_index
                height = size // 2 + (i * 3) % (size // 3)
                for f in range(len(arr)):
                    x = size // 2 - width // 2 + int(2 * np.sin(f * 0.8 + i))
                    arr[f, size - height :, x : x + width] = 255
                    arr[f, size - height : size - height + 3 + i % 3, x - 1 : x + width + 1] = 255  # head
                folder = root / f"{i:03d}" / seq_type / view
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{view}.pkl").write_bytes(pickle.dumps(arr))


def tiny_config(data_root: Path, partition: Path, **trainer) -> dict:
    cfg = {
        "data_cfg": {"dataset_name": "CASIA-B", "dataset_root": str(data_root),
                     "dataset_partition": str(partition), "num_workers": 0},
        "model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 4, "bin_num": [32]},
        "optimizer_cfg": {"solver": "Adam", "lr": 1e-3, "weight_decay": 0.0},
        "scheduler_cfg": {"scheduler": "warmup", "warmup_iters": 4, "warmup_factor": 0.1,
                          "milestones": [100]},
        "trainer_cfg": {
            "enable_float16": False, "log_iter": 2, "save_iter": 4, "total_iter": 8, "save_name": "tiny",
            "sync_BN": False, "seed": 0,
            "sampler": {"batch_size": [4, 2], "sample_type": "fixed_ordered", "frames_num_fixed": 8},
        },
    }
    cfg["trainer_cfg"].update(trainer)
    return cfg


@pytest.fixture
def tiny_data(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "pkl"
    write_tiny_tree(root)
    partition = tmp_path / "partition.json"
    partition.write_text(json.dumps({"TRAIN_SET": ["001", "002", "003", "004"], "TEST_SET": ["005", "006"]}))
    return root, partition


@pytest.fixture
def one_thread():
    """Small shapes gain nothing from threads, and on a shared machine OpenMP barriers cost a
    lot; model tests opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_thread_for_module():
    """``one_thread`` for a whole module, for modules whose module-scoped fixtures (a model built
    and embedded once) must run on one thread too: ``pytestmark =
    pytest.mark.usefixtures("one_thread_for_module")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def private_measurement_cache(tmp_path_factory):
    """Start-up measurements (the training kernel choice) are cached in a folder of the test
    session's own, never in the user's ~/.cache/gaitcli."""
    import os

    folder = tmp_path_factory.mktemp("gait-cache")
    before = os.environ.get("GAIT_CACHE_DIR")
    os.environ["GAIT_CACHE_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("GAIT_CACHE_DIR", None)
    else:
        os.environ["GAIT_CACHE_DIR"] = before
