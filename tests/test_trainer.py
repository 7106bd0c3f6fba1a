"""The trainer: checkpoints and state, exact resume, interrupts, non-finite loss, locks."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from conftest import tiny_config

from gaitcli.config import resolve_config
from gaitcli.errors import GaitError
from gaitcli.models import read_checkpoint
from gaitcli.training import losses as losses_module
from gaitcli.training import trainer as trainer_module
from gaitcli.training.trainer import TrainingStopped, list_checkpoints, train

TIMING = ("seconds", "sequences_per_s", "data_wait")


def metrics(folder):
    lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [{k: v for k, v in line.items() if k not in TIMING} for line in lines]


def run(cfg, out, **kwargs):
    return train(resolve_config(cfg), output=out, device="cpu", progress=False, **kwargs)


def test_run_writes_config_checkpoints_state_and_metrics(tiny_data, tmp_path):
    out = tmp_path / "run"
    summary = run(tiny_config(*tiny_data), out)
    assert summary.iteration == 8
    assert (out / "config.yaml").exists() and (out / "train.log").exists()
    assert [i for i, _ in list_checkpoints(out / "checkpoints")] == [4, 8]
    assert (out / "checkpoints" / "tiny-00008.state.safetensors").exists()
    lines = metrics(out)
    assert [line["iteration"] for line in lines] == [2, 4, 6, 8]
    for key in ("lr", "triplet/loss", "triplet/loss_num", "triplet/hard_loss", "triplet/mean_dist",
                "softmax/loss", "softmax/accuracy", "total_loss"):
        assert key in lines[0]
    raw = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert raw["seconds"] > 0 and raw["sequences_per_s"] > 0
    _, meta = read_checkpoint(out / "checkpoints" / "tiny-00008.safetensors")
    assert meta["iteration"] == "8" and json.loads(meta["labels"]) == ["001", "002", "003", "004"]


def test_resume_equals_uninterrupted(tiny_data, tmp_path):
    cfg = tiny_config(*tiny_data, log_iter=4, save_iter=6, total_iter=12)
    run(cfg, tmp_path / "full")
    stopped = tiny_config(*tiny_data, log_iter=4, save_iter=6, total_iter=6)
    run(stopped, tmp_path / "split")
    run(cfg, tmp_path / "split", resume="latest")
    assert metrics(tmp_path / "split") == metrics(tmp_path / "full")
    a, _ = read_checkpoint(tmp_path / "full" / "checkpoints" / "tiny-00012.safetensors")
    b, _ = read_checkpoint(tmp_path / "split" / "checkpoints" / "tiny-00012.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_reduces_loss_num(tiny_data, tmp_path):
    cfg = tiny_config(*tiny_data, log_iter=10, save_iter=60, total_iter=60)
    cfg["optimizer_cfg"]["lr"] = 3e-3
    run(cfg, tmp_path / "run")
    lines = metrics(tmp_path / "run")
    assert lines[-1]["triplet/loss_num"] < 0.6 * lines[0]["triplet/loss_num"]


def test_ctrl_c_saves_and_exits_130(tiny_data, tmp_path, monkeypatch):
    """A SIGINT inside the 3rd step: that step completes, iteration 3 is saved."""
    real_step = trainer_module.Trainer.step

    def step(self, batch):
        if self.state.iteration == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, batch)

    monkeypatch.setattr(trainer_module.Trainer, "step", step)
    with pytest.raises(TrainingStopped) as info:
        run(tiny_config(*tiny_data), tmp_path / "run")
    assert info.value.exit_code == 130 and "--resume latest" in str(info.value)
    assert [i for i, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [3]
    monkeypatch.setattr(trainer_module.Trainer, "step", real_step)
    assert run(tiny_config(*tiny_data), tmp_path / "run", resume="latest").iteration == 8


def test_non_finite_loss_stops_with_one_line(tiny_data, tmp_path, monkeypatch):
    real_forward = losses_module.LossAggregator.forward

    def forward(self, outputs, labels):
        total, logged = real_forward(self, outputs, labels)
        return total * float("nan"), logged

    run(tiny_config(*tiny_data, total_iter=4), tmp_path / "run")
    monkeypatch.setattr(losses_module.LossAggregator, "forward", forward)
    with pytest.raises(TrainingStopped) as info:
        run(tiny_config(*tiny_data, total_iter=8), tmp_path / "run", resume="latest")
    message = str(info.value)
    assert "iteration 5" in message and "tiny-00004.safetensors" in message and "\n" not in message
    assert info.value.exit_code == 1


def test_refuses_to_overwrite_and_locks(tiny_data, tmp_path):
    out = tmp_path / "run"
    run(tiny_config(*tiny_data, total_iter=2, save_iter=2), out)
    with pytest.raises(GaitError, match="already holds checkpoints"):
        run(tiny_config(*tiny_data, total_iter=2, save_iter=2), out)
    assert run(tiny_config(*tiny_data, total_iter=2, save_iter=2), out, overwrite=True).iteration == 2
    lock = out / ".train.lock"
    import os
    import socket

    lock.write_text(f"pid {os.getppid()} on {socket.gethostname()}")  # a live process holds it
    with pytest.raises(GaitError, match="in use by another gait train"):
        run(tiny_config(*tiny_data, total_iter=2, save_iter=2), out, resume="latest")
    lock.write_text(f"pid 999999 on {socket.gethostname()}")  # a dead one: taken over
    run(tiny_config(*tiny_data, total_iter=4, save_iter=2), out, resume="latest")
    assert not lock.exists()


def test_keep_last_bounds_checkpoints(tiny_data, tmp_path):
    run(tiny_config(*tiny_data, total_iter=8, save_iter=2, keep_last=2), tmp_path / "run")
    assert [i for i, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [6, 8]
    assert len(list((tmp_path / "run" / "checkpoints").iterdir())) == 4


def test_resume_errors(tiny_data, tmp_path):
    with pytest.raises(GaitError, match="no checkpoint in"):
        run(tiny_config(*tiny_data), tmp_path / "run", resume="latest")
    run(tiny_config(*tiny_data, total_iter=4), tmp_path / "run2")
    with pytest.raises(GaitError, match=r"available: 4"):
        run(tiny_config(*tiny_data), tmp_path / "run2", resume="2")
