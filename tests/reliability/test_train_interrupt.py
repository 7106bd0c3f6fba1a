"""Ctrl-C (a real SIGINT) in the middle of a run, then --resume latest: the result equals a run
that was never interrupted, bit for bit, weights, BatchNorm buffers and optimiser state alike.

Before the fix the checkpoint written on SIGINT carried the half-done step's side effects (BN
running statistics and num_batches_tracked already advanced), so the buffers differed."""

from __future__ import annotations

import signal
import subprocess

import pytest
from conftest import tiny_config
from train_helpers import (
    ENV,
    assert_same_tensors,
    gait_train,
    metric_lines,
    metrics_at,
    run_cli,
    wait_for,
    write_config,
)

from gaitcli.training.run_folder import list_checkpoints
from gaitcli.training.state import state_path


@pytest.mark.slow
def test_sigint_mid_run_then_resume_equals_uninterrupted(tiny_data, tmp_path):
    cfg = write_config(
        tmp_path / "cfg.yaml", tiny_config(*tiny_data, total_iter=400, save_iter=1000, log_iter=1)
    )
    out = tmp_path / "split"
    proc = subprocess.Popen(
        gait_train(cfg, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    try:
        assert wait_for(lambda: metrics_at(out) >= 5 or proc.poll() is not None), "training did not start"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.count("interrupted at iteration") == 1 and "Traceback" not in err
    ((stopped, _),) = list_checkpoints(out / "checkpoints")
    assert stopped >= 5 and f"interrupted at iteration {stopped}; saved" in err
    end = str(stopped + 3)
    resumed = run_cli(gait_train(cfg, out, "--resume", "latest", "--iters", end))
    assert resumed.returncode == 0, resumed.stderr
    full = run_cli(gait_train(cfg, tmp_path / "full", "--iters", end))
    assert full.returncode == 0, full.stderr
    name = f"tiny-{int(end):05d}.safetensors"
    a, b = out / "checkpoints" / name, tmp_path / "full" / "checkpoints" / name
    assert assert_same_tensors(a, b) > 10  # weights and every BN buffer (running stats, num_batches_tracked)
    assert_same_tensors(state_path(a), state_path(b))  # optimiser moments, RNG
    assert metric_lines(out) == metric_lines(tmp_path / "full")
