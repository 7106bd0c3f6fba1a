"""Shared pieces of the subprocess training tests: the real CLI, one thread per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def gait_train(cfg_path: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gaitcli",
        "train",
        "--config",
        str(cfg_path),
        "--output",
        str(out),
        "--device",
        "cpu",
        *extra,
    ]


def run_cli(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)


def wait_for(predicate, timeout: float = 180.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def metrics_at(out: Path) -> int:
    """The newest iteration in metrics.jsonl (0 when none)."""
    try:
        lines = (out / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    done = [json.loads(x)["iteration"] for x in lines if x.strip().endswith("}")]
    return max(done, default=0)


def metric_lines(out: Path) -> list[dict]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [
        {k: v for k, v in line.items() if k not in ("seconds", "sequences_per_s", "data_wait")}
        for line in lines
    ]


def assert_same_tensors(a: Path, b: Path) -> int:
    """Every tensor of two safetensors files is bit-identical; returns how many were compared."""
    left, right = load_file(str(a)), load_file(str(b))
    assert sorted(left) == sorted(right)
    for name in left:
        assert torch.equal(left[name], right[name]), f"{a.name}: {name} differs"
    return len(left)
