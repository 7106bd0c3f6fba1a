"""The trainer: checkpoints and state, exact resume, interrupts, non-finite loss, locks."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
import yaml
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
    for key in (
        "lr",
        "triplet/loss",
        "triplet/loss_num",
        "triplet/hard_loss",
        "triplet/mean_dist",
        "softmax/loss",
        "softmax/accuracy",
        "total_loss",
    ):
        assert key in lines[0]
    raw = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert raw["seconds"] > 0 and raw["sequences_per_s"] > 0
    _, meta = read_checkpoint(out / "checkpoints" / "tiny-00008.safetensors")
    assert meta["iteration"] == "8" and json.loads(meta["labels"]) == ["001", "002", "003", "004"]
    assert meta["frame_size"] == "32x32"  # the prepared frames, for gait export


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
    assert info.value.exit_code == 130 and "resume=latest" in str(info.value)
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
    from gaitcli.training.run_folder import acquire_output_lock

    release = acquire_output_lock(out)  # another run holds the folder
    try:
        with pytest.raises(GaitError, match="another gait train is using"):
            run(tiny_config(*tiny_data, total_iter=2, save_iter=2), out, resume="latest")
    finally:
        release()
    run(tiny_config(*tiny_data, total_iter=4, save_iter=2), out, resume="latest")
    assert (out / ".train.lock").read_text() == ""  # released: no owner recorded


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


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_overwrite_after_a_longer_run_leaves_exactly_the_new_run(tiny_data, tmp_path):
    """Before: the old 00008/00012 survived, the new 00004 was pruned at once (pruning by iteration
    number), the closing line named a deleted file and --resume latest resumed the old run."""
    out = tmp_path / "run"
    run(tiny_config(*tiny_data, total_iter=12, save_iter=4, keep_last=2), out)
    (out / "notes.txt").write_text("mine")  # not the run's: must survive
    summary = run(tiny_config(*tiny_data, total_iter=4, save_iter=4, keep_last=2), out, overwrite=True)
    assert files_under(out) == [
        ".gaitcli-run.json",  # the digest of the config.yaml gaitcli wrote (item 20 of issue 19)
        ".train.lock",  # the run folder's lock file stays, empty once released
        "checkpoints/tiny-00004.safetensors",
        "checkpoints/tiny-00004.state.safetensors",
        "config.yaml",
        "metrics.jsonl",
        "notes.txt",
        "train.log",
    ]
    assert summary.checkpoint.endswith("tiny-00004.safetensors") and os.path.exists(summary.checkpoint)
    log = (out / "train.log").read_text()
    assert log.splitlines()[0].split(" ", 2)[2].startswith("overwrite: removed the previous run's")
    assert "iteration 12" not in log
    assert [line["iteration"] for line in metrics(out)] == [2, 4]
    assert (
        run(tiny_config(*tiny_data, total_iter=6, save_iter=4, keep_last=2), out, resume="latest").iteration
        == 6
    )
    assert [line["iteration"] for line in metrics(out)] == [2, 4, 6]


def test_overwrite_with_resume_is_refused(tiny_data, tmp_path):
    with pytest.raises(GaitError, match="overwrite starts over and resume=latest"):
        run(tiny_config(*tiny_data), tmp_path / "run", overwrite=True, resume="latest")
    assert not (tmp_path / "run").exists()


def test_resume_refuses_a_changed_config_and_states_harmless_changes(tiny_data, tmp_path):
    out = tmp_path / "run"
    run(tiny_config(*tiny_data, total_iter=4), out)
    changed = tiny_config(*tiny_data, total_iter=8, seed=3)
    changed["optimizer_cfg"]["lr"] = 0.01
    before = (out / "config.yaml").read_text()
    with pytest.raises(
        GaitError,
        match=r"differs from the run's stored .*config.yaml in optimizer_cfg.lr, "
        r"trainer_cfg.seed",
    ):
        run(changed, out, resume="latest")
    assert (out / "config.yaml").read_text() == before
    assert run(tiny_config(*tiny_data, total_iter=6), out, resume="latest").iteration == 6
    assert "note: resuming with trainer_cfg.total_iter: 4 -> 6" in (out / "train.log").read_text()
    assert "total_iter: 6" in (out / "config.yaml").read_text()


def test_resume_past_the_end_is_an_error_and_zero_iterations_save_nothing(tiny_data, tmp_path):
    out = tmp_path / "run"
    run(tiny_config(*tiny_data, total_iter=4), out)
    with pytest.raises(GaitError, match="at iteration 4, past total_iter 2: nothing to train") as info:
        run(tiny_config(*tiny_data, total_iter=2), out, resume="latest")
    assert info.value.exit_code == 2
    same = run(tiny_config(*tiny_data, total_iter=4), out, resume="latest")  # already there: a no-op
    assert same.iteration == 4 and same.checkpoint.endswith("tiny-00004.safetensors")
    zero = run(tiny_config(*tiny_data, total_iter=0), tmp_path / "zero")
    assert zero.iteration == 0 and zero.checkpoint is None


def test_cli_iters_zero_says_no_checkpoint(tiny_data, tmp_path):
    from typer.testing import CliRunner

    from gaitcli.cli import app

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_config(*tiny_data)))
    result = CliRunner().invoke(
        app, ["train", "-c", str(path), "--output", str(tmp_path / "run"), "--device", "cpu", "--iters", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "None" not in result.output and "no checkpoint written" in result.output


def test_summary_is_a_dataclass_with_json(tiny_data, tmp_path):
    summary = run(tiny_config(*tiny_data, total_iter=2, save_iter=2), tmp_path / "run")
    payload = summary.to_json()
    assert payload["iteration"] == 2 and payload["checkpoint"] == summary.checkpoint
    assert json.loads(json.dumps(payload))["metrics"]["iteration"] == 2


def terminal_console(width=80):
    import io

    from rich.console import Console

    return Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)


def test_terminal_shows_a_short_summary_and_the_bar_not_the_log_windows(tiny_data, tmp_path):
    console = terminal_console()
    train(resolve_config(tiny_config(*tiny_data)), output=tmp_path / "run", device="cpu", console=console)
    text = console.file.getvalue()
    assert "model   GaitGL [4, 8, 8]" in text and "frames 32x32" in text and "loss_num" in text
    assert "resolved config" not in text and "iteration 2  lr=" not in text  # windows: train.log only
    assert "iteration 2  lr=" in (tmp_path / "run" / "train.log").read_text()
    summary = [line for line in text.splitlines() if line.startswith(("model ", "data ", "batch ", "optim "))]
    assert len(summary) == 4 and all(len(line) <= 80 for line in summary)


def test_verbose_prints_the_full_config_and_every_window(tiny_data, tmp_path):
    console = terminal_console()
    cfg = resolve_config(tiny_config(*tiny_data))
    train(cfg, output=tmp_path / "run", device="cpu", console=console, verbose=True)
    text = console.file.getvalue()
    assert "resolved config" in text and "dataset_partition" in text
    assert all(f"iteration {i}  lr=" in text for i in (2, 4, 6, 8))


def test_config_summary_names_the_decay_that_runs():
    """A warm-up + cosine run used to be summarised with the default milestones it never uses."""
    from gaitcli.training.display import _schedule_words

    cosine = {"scheduler": "warmup", "warmup_iters": 200, "decay": "cosine", "cosine_iters": 4000,
              "milestones": [80000, 100000]}
    assert _schedule_words(cosine) == "warmup 200 + cosine 4000"
    steps = {"scheduler": "warmup", "warmup_iters": 10, "milestones": [80, 100]}
    assert _schedule_words(steps) == "warmup 10 + milestones [80, 100]"
    assert _schedule_words({"scheduler": "CosineAnnealingLR"}) == "CosineAnnealingLR"
