"""trainer_cfg.kernel_choice: auto (docs/train.md, "Kernel choice"): the decision rule, the
per-CPU cache, a measurement that leaves the model and the random state as they were, and a run
that logs what it chose."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from conftest import tiny_config

from gaitcli.build import build_model
from gaitcli.config import resolve_config
from gaitcli.models import read_checkpoint
from gaitcli.runtime.cpu import CpuIdentity, MeasurementCache
from gaitcli.training import kernel_choice as kc
from gaitcli.training.kernel_choice import Candidate, candidates, choose_kernels, decide
from gaitcli.training.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")

AMX = CpuIdentity("Test CPU", avx512_bf16=True, amx=True, threads=1, torch_version="t")
PLAIN = replace(AMX, avx512_bf16=False, amx=False)


def test_candidates_follow_the_hardware_and_the_model():
    assert [c.label for c in candidates(AMX, True)] == [
        "fp32", "fp32+channels-last", "bf16", "bf16+channels-last"]
    # bf16 is emulated without AVX-512-BF16 / AMX: never a candidate there
    assert [c.label for c in candidates(PLAIN, True)] == ["fp32", "fp32+channels-last"]
    # a 2-D network (GaitSet, GaitPart, GaitBase, DeepGaitV2) refuses channels-last
    assert [c.label for c in candidates(AMX, False)] == ["fp32", "bf16"]


@pytest.mark.parametrize("seconds, chosen", [
    ({"fp32": 0.40, "fp32+channels-last": 0.36, "bf16": 0.20, "bf16+channels-last": 0.16},
     Candidate(True, True)),
    # bf16 barely faster: it rounds activations, so fp32 is kept
    ({"fp32": 0.40, "fp32+channels-last": 0.45, "bf16": 0.37, "bf16+channels-last": 0.39},
     Candidate(False, False)),
    # channels-last within the margin: the contiguous layout is kept
    ({"fp32": 0.40, "fp32+channels-last": 0.45, "bf16": 0.20, "bf16+channels-last": 0.198},
     Candidate(True, False)),
    ({"fp32": 0.40, "bf16": 0.10}, Candidate(True, False)),
])
def test_decide_takes_the_fastest_within_margins(seconds, chosen):
    assert decide(seconds, AMX)[0] == chosen


def test_decide_says_why_fp32_without_bf16_hardware():
    chosen, reason = decide({"fp32": 0.4, "fp32+channels-last": 0.3}, PLAIN)
    assert chosen == Candidate(False, True) and "emulated" in reason


def _tiny(tiny_data, **trainer):
    return resolve_config(tiny_config(*tiny_data, **trainer), "<test>")


def test_measuring_leaves_the_model_and_the_random_state_alone_and_is_cached(tiny_data, tmp_path):
    cfg = _tiny(tiny_data, kernel_choice="auto")
    torch.manual_seed(3)
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.get_rng_state()
    cache = MeasurementCache(tmp_path / "cache")
    choice = choose_kernels(cfg, model, "32x32", cache=cache, identity=AMX, rounds=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.channels_last is False and all(p.grad is None for p in model.parameters())
    assert set(choice.seconds) == {"fp32", "fp32+channels-last", "bf16", "bf16+channels-last"}
    assert choice.source.startswith("measured") and choice.note is None
    stored = json.loads(cache.path.read_text())
    assert stored["format"] == 1 and stored["written_by"].startswith("gaitcli")
    (entry,) = stored["entries"]["training-kernels"].values()
    assert (entry["bf16"], entry["channels_last"]) == (choice.bf16, choice.channels_last)
    # the same CPU, model and batch: recalled, not measured again
    again = choose_kernels(cfg, model, "32x32", cache=cache, identity=AMX)
    assert again.source.startswith("cached") and (again.bf16, again.channels_last) == (choice.bf16,
                                                                                         choice.channels_last)
    # another CPU or another batch shape: measured afresh
    other = choose_kernels(cfg, model, "32x32", cache=cache, identity=PLAIN, rounds=1)
    assert other.source.startswith("measured") and not other.bf16
    wider = _tiny(tiny_data, kernel_choice="auto", sampler={
        "batch_size": [2, 2], "sample_type": "fixed_ordered", "frames_num_fixed": 8})
    assert choose_kernels(wider, model, "32x32", cache=cache, identity=AMX, rounds=1).source.startswith(
        "measured")


def test_a_cache_file_gaitcli_did_not_write_is_left_alone(tiny_data, tmp_path):
    cfg = _tiny(tiny_data, kernel_choice="auto")
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "measurements.json").write_text("someone else's notes\n")
    choice = choose_kernels(cfg, build_model(cfg), "32x32", cache=MeasurementCache(folder),
                            identity=PLAIN, rounds=1)
    assert choice.note is not None and "not a gaitcli measurement cache" in choice.note
    assert (folder / "measurements.json").read_text() == "someone else's notes\n"


def test_probe_shape_is_the_batch_after_the_transforms(tiny_data):
    cfg = _tiny(tiny_data, transform=[{"type": "BaseSilCuttingTransform", "cutting": 5}])
    assert kc.probe_shape(cfg, "32x32") == (8, 8, 32, 22)


def test_an_auto_run_logs_its_choice_and_trains_what_the_config_run_trains(tiny_data, tmp_path, monkeypatch):
    # no bf16 hardware and a 2-D model: the one candidate is fp32 contiguous, so the auto run
    # (which measures first) must train exactly the weights the plain run trains
    monkeypatch.setattr(kc, "cpu_identity", lambda: PLAIN)
    base = tiny_config(*tiny_data, total_iter=2, save_iter=2, log_iter=1)
    base["model_cfg"] = {"model": "GaitSet", "in_channels": [1, 4, 8, 8], "bin_num": [4, 1],
                         "SeparateFCs": {"in_channels": 8, "out_channels": 8, "parts_num": 10}}
    base["loss_cfg"] = [{"type": "TripletLoss", "margin": 0.2, "loss_term_weight": 1.0,
                         "log_prefix": "triplet"}]
    weights = {}
    for choice in ("config", "auto"):
        cfg = json.loads(json.dumps(base))
        cfg["trainer_cfg"]["kernel_choice"] = choice
        train(resolve_config(cfg, "<test>"), output=tmp_path / choice, device="cpu", progress=False)
        weights[choice], _ = read_checkpoint(tmp_path / choice / "checkpoints" / "tiny-00002.safetensors")
    log = (tmp_path / "auto" / "train.log").read_text()
    assert "kernel choice: fp32 on Test CPU" in log and "emulated" in log
    assert "kernel choice" not in (tmp_path / "config" / "train.log").read_text()
    assert weights["auto"].keys() == weights["config"].keys()
    assert all(torch.equal(weights["auto"][k], weights["config"][k]) for k in weights["auto"])
