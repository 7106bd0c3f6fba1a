"""Two CPU processes over gloo: same weights on both ranks, and the same as one process
training on the same global batch.

Why ``fix_BN=True`` + SGD is exact (to float-summation noise): every rank draws the same global
batch and the same frames as one process would (docs/train.md, "Distributed"), DDP averages the
gradients of the two halves, which equals the full batch's gradient up to summation order. What
stays different with BatchNorm in training mode (the default, and no SyncBatchNorm on the CPU) is
that each rank normalises with the statistics of its own half batch, so the forward pass is a
different function; with fix_BN the running statistics are used instead and the forward is the
same. SGD keeps a 1e-7 gradient difference a 1e-7 weight difference; Adam divides by sqrt(v)
and magnifies it on tiny gradients, so it would need a looser bound that proves less."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file, save_file

from gaitcli.config import resolve_config
from gaitcli.errors import ConfigError, GaitError
from gaitcli.runtime.distributed import resolve_devices
from gaitcli.runtime.launch import launch
from gaitcli.training.trainer import Trainer, train


def _worker(info, job):
    cfg, out_dir = job
    trainer = Trainer(cfg, info, out_dir, progress=False)
    try:
        trainer.setup()
        trainer.fit()
    finally:
        trainer.close()
    state = {k: v.contiguous() for k, v in trainer.network.model.state_dict().items()}
    save_file(state, str(out_dir / f"rank{info.rank}.safetensors"))


@pytest.mark.slow
def test_two_gloo_processes_match_one(tiny_data, tmp_path):
    cfg = tiny_config(*tiny_data, total_iter=4, save_iter=4, log_iter=2, fix_BN=True)
    # plain SGD: Adam divides by sqrt(v) and would magnify float-summation-order noise in tiny gradients
    cfg["optimizer_cfg"] = {"solver": "SGD", "lr": 0.05}
    cfg = resolve_config(cfg)
    (tmp_path / "ddp").mkdir()
    (tmp_path / "one").mkdir()
    launch(_worker, (cfg, tmp_path / "ddp"), 2, "cpu")
    launch(_worker, (cfg, tmp_path / "one"), 1, "cpu")
    r0 = load_file(str(tmp_path / "ddp" / "rank0.safetensors"))
    r1 = load_file(str(tmp_path / "ddp" / "rank1.safetensors"))
    one = load_file(str(tmp_path / "one" / "rank0.safetensors"))
    for name in r0:
        assert torch.equal(r0[name], r1[name]), name
        assert torch.allclose(r0[name], one[name], atol=1e-5, rtol=1e-4), name


@pytest.mark.slow
def test_two_processes_with_training_mode_batchnorm_stay_close_to_one(tiny_data, tmp_path):
    """The default (BN in training mode): per-rank batch statistics make the two runs differ by
    a bounded amount, the tolerance docs/train.md states."""
    cfg = tiny_config(*tiny_data, total_iter=4, save_iter=4, log_iter=2)
    cfg["optimizer_cfg"] = {"solver": "SGD", "lr": 0.05}
    cfg = resolve_config(cfg)
    (tmp_path / "ddp").mkdir()
    (tmp_path / "one").mkdir()
    launch(_worker, (cfg, tmp_path / "ddp"), 2, "cpu")
    launch(_worker, (cfg, tmp_path / "one"), 1, "cpu")
    r0 = load_file(str(tmp_path / "ddp" / "rank0.safetensors"))
    one = load_file(str(tmp_path / "one" / "rank0.safetensors"))
    worst = 0.0
    for name in r0:
        if r0[name].is_floating_point() and "running" not in name:
            worst = max(worst, float((r0[name] - one[name]).abs().max()))
    assert 0 < worst < 1e-2, worst  # measured 4.0e-3


def test_cli_path_spawns_and_reports(tiny_data, tmp_path):
    cfg = resolve_config(tiny_config(*tiny_data, total_iter=2, save_iter=2, log_iter=1))
    summary = train(cfg, output=tmp_path / "run", device="cpu", nproc=2, progress=False)
    assert summary.iteration == 2 and summary.checkpoint.endswith("tiny-00002.safetensors")


def test_rank_error_surfaces_as_one_line(tiny_data, tmp_path):
    raw = tiny_config(*tiny_data, total_iter=2)
    raw["data_cfg"]["dataset_root"] = str(tmp_path / "missing")
    cfg = resolve_config(raw)
    with pytest.raises(GaitError, match="data folder not found"):
        train(cfg, output=tmp_path / "run", device="cpu", nproc=2, progress=False)


def test_device_errors():
    if not torch.cuda.is_available():
        with pytest.raises(GaitError, match="device=cpu nproc=2"):
            resolve_devices(None, 2, None)
    assert resolve_devices("cpu", None, 3) == ("cpu", 3)


def test_batch_not_divisible_by_processes(tiny_data, tmp_path):
    raw = tiny_config(*tiny_data)
    raw["trainer_cfg"]["sampler"]["batch_size"] = [3, 1]
    cfg = resolve_config(raw)
    with pytest.raises(ConfigError, match="multiple of the process count"):
        train(cfg, output=tmp_path / "run", device="cpu", nproc=2, progress=False)


def test_triplet_only_loss_under_ddp(tiny_data, tmp_path):
    """Without cross-entropy the classifier head gets no gradient; DDP must still step."""
    cfg = tiny_config(*tiny_data, total_iter=2, save_iter=2)
    cfg["loss_cfg"] = [{"type": "TripletLoss"}]
    summary = train(resolve_config(cfg), output=tmp_path / "run", device="cpu", nproc=2, progress=False)
    assert summary.iteration == 2


def _rank_one_fails(info, payload):
    """Rank 1 makes a user mistake; rank 0 waits in a collective that rank 1 never joins."""
    import torch.distributed as dist

    if info.rank == 1:
        raise GaitError(f"rank 1 says {payload}", exit_code=1)
    dist.barrier()
    return "unreachable"


def _ranks_return(info, payload):
    return {"rank": info.rank, "payload": payload}


def _rank_crashes(info, payload):
    if info.rank == 1:
        raise ValueError("a bug in rank 1")
    return None


def test_launcher_returns_rank0_value_and_reraises_a_rank_error_once():
    from gaitcli.runtime.launch import RankCrashed

    assert launch(_ranks_return, "job", 2, "cpu") == {"rank": 0, "payload": "job"}
    with pytest.raises(GaitError, match="^rank 1 says hello$") as info:
        launch(_rank_one_fails, "hello", 2, "cpu")  # rank 0 is stopped, not left in its barrier
    assert info.value.exit_code == 1
    with pytest.raises(RankCrashed, match="ValueError: a bug in rank 1"):
        launch(_rank_crashes, None, 2, "cpu")


# ------------------------------------------------------------------ evaluation over the launcher
@pytest.fixture
def eval_checkpoint(tmp_path):
    """A tiny GaitGL checkpoint over a 3-id CASIA-B-shaped test split (gallery nm-01, probes
    nm-05 / bg-01 / cl-01), 4-7 frames a sequence."""
    import json

    from conftest import write_tiny_tree

    from gaitcli.build import build_model
    from gaitcli.models import save_checkpoint

    root, part = tmp_path / "pkl", tmp_path / "part.json"
    write_tiny_tree(root, ids=3, types=("nm-01", "nm-05", "bg-01", "cl-01"), frames=4)
    part.write_text(json.dumps({"TRAIN_SET": [], "TEST_SET": ["001", "002", "003"]}))
    torch.manual_seed(0)
    model = build_model(tiny_config(root, part))
    return save_checkpoint(tmp_path / "tiny.safetensors", model, model.config, iteration=1), root


def _eval(*args):
    from typer.testing import CliRunner

    from gaitcli.cli import app

    return CliRunner().invoke(app, ["eval", *[str(a) for a in args], "--device", "cpu"])


def test_eval_with_two_processes_gives_the_features_and_table_of_one(eval_checkpoint, tmp_path):
    """Ranks return their share through the launcher (no files): same features, same table."""
    import numpy as np

    ckpt, _ = eval_checkpoint
    one = _eval(ckpt, "--nproc", 1, "--save-features", tmp_path / "one.npz")
    two = _eval(ckpt, "--nproc", 2, "--save-features", tmp_path / "two.npz")
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    np.testing.assert_allclose(a["embeddings"], b["embeddings"], rtol=1e-4, atol=1e-5)
    for key in ("labels", "types", "views"):
        assert (a[key] == b[key]).all(), key

    def table(text):
        return [line for line in text.splitlines() if line.startswith(("NM ", "BG ", "CL "))]

    assert table(one.output) and table(one.output) == table(two.output)


def test_eval_rank_error_is_one_line(eval_checkpoint):
    """A sequence only rank 1 reads is damaged: its error reaches the user once, as one line."""
    ckpt, root = eval_checkpoint
    (root / "003" / "cl-01" / "090" / "090.pkl").write_bytes(b"not a pickle")
    result = _eval(ckpt, "--nproc", 2)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:") and "090.pkl" in lines[0], result.output
