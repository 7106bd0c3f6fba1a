"""Faults during training: SIGKILL, a second run on the same folder, a full disk.
Each case asserts that nothing already written is lost."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import tiny_config
from train_helpers import ENV, assert_same_tensors, gait_train, metric_lines, run_cli
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.config import resolve_config
from gaitcli.models import CheckpointError, read_checkpoint
from gaitcli.training import trainer as trainer_module
from gaitcli.training.run_folder import acquire_output_lock
from gaitcli.training.state import state_path
from gaitcli.training.trainer import TrainingStopped, list_checkpoints, train


def start_training(tmp_path, tiny_data, out, total_iter=400):
    cfg = tiny_config(*tiny_data, total_iter=total_iter, save_iter=2, log_iter=2)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [
        sys.executable,
        "-m",
        "gaitcli",
        "train",
        "--config",
        str(path),
        "--output",
        str(out),
        "--device",
        "cpu",
    ]
    return path, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)


def lock_owner(out):
    """The owner a run folder's lock file records: set while a run holds it, empty once released
    (read, never probed: probing with flock would race the run taking it)."""
    try:
        return (out / ".train.lock").read_text().strip()
    except FileNotFoundError:
        return ""


def wait_for(predicate, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_sigkill_during_training_then_resume_latest(tiny_data, tmp_path):
    """SIGKILL, possibly mid-write; --resume latest then continues exactly what was saved: its end
    state equals an uninterrupted run's in every tensor (not just the iteration number)."""
    out = tmp_path / "run"
    cfg_path, proc = start_training(tmp_path, tiny_data, out)
    try:
        assert wait_for(lambda: len(list_checkpoints(out / "checkpoints")) >= 3), "no checkpoints appeared"
        time.sleep(0.3)  # land the kill somewhere inside the loop, possibly mid-write
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    acquire_output_lock(out)()  # the kernel dropped the dead run's lock: taken and released at once
    # every complete-looking checkpoint loads: no truncated file under a final name
    for path in (out / "checkpoints").glob("*.safetensors"):
        if not path.name.startswith("."):
            read_checkpoint(path) if not path.name.endswith(".state.safetensors") else path.read_bytes()
    last = list_checkpoints(out / "checkpoints")[-1][0]
    end = str(last + 4)
    resumed = run_cli(gait_train(cfg_path, out, "--resume", "latest", "--iters", end))
    assert resumed.returncode == 0, resumed.stderr
    assert list_checkpoints(out / "checkpoints")[-1][0] == last + 4
    full = run_cli(gait_train(cfg_path, tmp_path / "full", "--iters", end))
    assert full.returncode == 0, full.stderr
    name = f"tiny-{last + 4:05d}.safetensors"
    a, b = out / "checkpoints" / name, tmp_path / "full" / "checkpoints" / name
    assert_same_tensors(a, b)
    assert_same_tensors(state_path(a), state_path(b))
    assert metric_lines(out) == metric_lines(tmp_path / "full")  # the killed run's extra lines are gone


_HOLD_RUN = (
    "import sys, pathlib\n"
    "from gaitcli.training.run_folder import acquire_output_lock\n"
    "release = acquire_output_lock(pathlib.Path(sys.argv[1]))  # held while referenced\n"
    "print('held', flush=True)\n"
    "sys.stdin.read()\n"
)


def test_run_folder_lock_names_its_owner_and_sigkill_leaves_none(tmp_path):
    """The trainer's lock is the runtime's flock: a second run is refused naming the holder, and a
    SIGKILLed holder leaves nothing stale (the folder is usable at once)."""
    from gaitcli.errors import GaitError

    out = tmp_path / "run"
    cmd = [sys.executable, "-c", _HOLD_RUN, str(out)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(GaitError) as info:
            acquire_output_lock(out)
        message = str(info.value)
        assert "another gait train is using" in message and f"pid {proc.pid}" in message
        assert "\n" not in message
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert f'"pid": {proc.pid}' in lock_owner(out)  # the dead owner's record is still there
    release = acquire_output_lock(out)  # yet no stale lock after SIGKILL
    assert f'"pid": {os.getpid()}' in lock_owner(out)
    release()
    assert lock_owner(out) == ""


def test_loader_rejects_partial_checkpoint(tiny_data, tmp_path):
    train(
        resolve_config(tiny_config(*tiny_data, total_iter=2, save_iter=2)),
        output=tmp_path / "run",
        device="cpu",
        progress=False,
    )
    good = tmp_path / "run" / "checkpoints" / "tiny-00002.safetensors"
    data = good.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 7):
        partial = tmp_path / f"partial-{cut}.safetensors"
        partial.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(partial)
        assert "\n" not in str(info.value) and str(partial) in str(info.value)
        result = CliRunner().invoke(app, ["eval", str(partial)])
        assert result.exit_code == 2 and "Traceback" not in result.output


@pytest.mark.slow
def test_second_run_on_same_folder_is_refused_first_unharmed(tiny_data, tmp_path):
    out = tmp_path / "run"
    # long enough that the first run still holds the folder when the second (in-process, slow to
    # start on a busy machine) asks for it
    cfg_path, proc = start_training(tmp_path, tiny_data, out, total_iter=400)
    try:
        assert wait_for(lambda: lock_owner(out))
        second = CliRunner().invoke(
            app,
            [
                "train",
                "--config",
                str(cfg_path),
                "--output",
                str(out),
                "--device",
                "cpu",
                "--resume",
                "latest",
            ],
        )
        assert second.exit_code == 2, second.output
        assert "another gait train is using" in second.output and f"pid {proc.pid}" in second.output
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list_checkpoints(out / "checkpoints")[-1][0] == 400
    assert lock_owner(out) == ""  # released


def test_full_disk_while_saving_keeps_previous_checkpoint(tiny_data, tmp_path, monkeypatch):
    from gaitcli.models import checkpoint as checkpoint_module

    real_write = checkpoint_module.atomic_write_bytes
    calls = {"n": 0}

    def write(path, data):
        calls["n"] += 1
        if calls["n"] == 2:  # the second weights file: the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(path, data)

    monkeypatch.setattr(checkpoint_module, "atomic_write_bytes", write)
    with pytest.raises(TrainingStopped) as info:
        train(
            resolve_config(tiny_config(*tiny_data, total_iter=4, save_iter=2)),
            output=tmp_path / "run",
            device="cpu",
            progress=False,
        )
    message = str(info.value)
    assert (
        "No space left on device" in message and "tiny-00002.safetensors" in message and "\n" not in message
    )
    ckpts = tmp_path / "run" / "checkpoints"
    assert [i for i, _ in list_checkpoints(ckpts)] == [2]
    read_checkpoint(ckpts / "tiny-00002.safetensors")
    assert not (ckpts / "tiny-00004.state.safetensors").exists()
    assert not [p for p in ckpts.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(checkpoint_module, "atomic_write_bytes", real_write)
    assert (
        train(
            resolve_config(tiny_config(*tiny_data, total_iter=4, save_iter=2)),
            output=tmp_path / "run",
            device="cpu",
            progress=False,
            resume="latest",
        ).iteration
        == 4
    )


def test_keyboard_interrupt_reaches_cli_as_exit_130(tiny_data, tmp_path, monkeypatch):
    def step(self, batch):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module.Trainer, "step", step)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_config(*tiny_data)))
    result = CliRunner().invoke(
        app, ["train", "--config", str(path), "--output", str(tmp_path / "run"), "--device", "cpu"]
    )
    assert result.exit_code == 130 and "interrupted at iteration 0" in result.output
