"""bench/gpu.py's pieces, run on the CPU at tiny sizes (the kit itself needs a CUDA machine)."""

from __future__ import annotations

import importlib
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"
pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"channels": [4, 8, 8], "pk": (2, 2), "frames": 4, "hw": (32, 22), "class_num": 3, "steps": 1}


@pytest.fixture(scope="module")
def gpu():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("gpu")
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize(("precision", "channels_last"), [("fp32", False), ("bf16", True)])
def test_train_step_runs_each_variant(gpu, precision, channels_last):
    result = gpu.train_step("cpu", precision, channels_last=channels_last, **TINY)
    assert result.precision == precision and result.channels_last is channels_last
    assert result.seconds_per_step > 0 and math.isfinite(result.loss) and result.peak_memory_mb is None
    assert set(result.to_json()) >= {"seconds_per_step", "sequences_per_s", "peak_memory_mb"}
    with pytest.raises(ValueError):
        gpu.train_step("cpu", "fp8", **TINY)


def test_channels_last_converts_only_the_3d_weights(gpu):
    model = gpu.build([4, 8, 8], 3, torch.device("cpu"))
    gpu.to_channels_last(model)
    five = [p for p in model.parameters() if p.dim() == 5]
    assert five and all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in five)


def test_extraction_and_matching_and_process_group(gpu):
    ext = gpu.extraction("cpu", channels=[4, 8, 8], sequences=3, lengths=(4, 7), hw=(32, 22), batch_size=2)
    assert ext["sequences"] == 3 and ext["sequences_per_s"] > 0 and ext["embedding_shape"][1] == 8
    emb, labels, types, views = gpu.synthetic_features(0.002, torch.device("cpu"), parts=4, channels=8)
    assert emb.shape[0] == len(labels) == len(types) == len(views) and set(types) == {"00", "01"}
    match = gpu.matching("cpu", scale=0.0005)
    assert match["probes"] + match["gallery"] == match["sequences"] and match["rank1_NM"] is not None
    group = gpu.process_group_startup("cpu")
    assert group["backend"] == "gloo" and group["all_reduce_value"] == 1.0 and group["init_seconds"] >= 0


@pytest.mark.skipif(
    torch.cuda.is_available(),
    reason="asserts the one-line refusal that only a machine without CUDA gives; on a GPU the kit runs",
)
def test_refuses_without_cuda_in_one_line():
    done = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "CUDA" in done.stderr
