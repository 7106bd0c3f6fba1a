"""``convert_checkpoint``: OpenGait / MetaGait ``.pt`` → gaitcli safetensors, safely."""

from __future__ import annotations

import os
import textwrap

import pytest
import torch

from gaitcli.build import build_model
from gaitcli.convert import convert_checkpoint
from gaitcli.errors import GaitError
from gaitcli.models import CheckpointMismatchError, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


AUTHORS_CONFIG = """\
data_cfg:
  dataset_name: CASIA-B
  dataset_root: dataset
  dataset_partition: ./misc/partitions/CASIA-B_include_005.json
  num_workers: 1
  remove_no_gallery: false
  test_dataset_name: CASIA-B
evaluator_cfg:
  enable_distributed: true
  enable_float16: false
  restore_ckpt_strict: true
  restore_hint: 80000
  save_name: GaitGL
  sampler:
    batch_size: 8
    sample_type: all_ordered
    type: InferenceSampler
loss_cfg:
  - loss_term_weight: 1.0
    margin: 0.2
    type: TripletLoss
    log_prefix: triplet
  - loss_term_weight: 1.0
    scale: 1
    type: CrossEntropyLoss
    log_accuracy: true
    label_smooth: false
    log_prefix: softmax
model_cfg:
  model: GaitGL
  channels: [32, 64, 128]
  class_num: 74
optimizer_cfg:
  lr: 3.5e-4
  solver: Adam
  weight_decay: 5.0e-4
scheduler_cfg:
  gamma: 0.1
  milestones: [80000, 100000]
  scheduler: warmup
  warmup_iters: 10000
  warmup_factor: 0.01
trainer_cfg:
  enable_distributed: true
  enable_float16: true
  log_iter: 100
  restore_ckpt_strict: true
  restore_hint: 0
  save_iter: 1000
  with_test: true
  save_name: GaitGL
  sync_BN: true
  total_iter: 120000
  wandb: false
  sampler:
    batch_shuffle: true
    batch_size: [8, 8]
    frames_num_fixed: 30
    frames_skip_num: 0
    sample_type: fixed_ordered
    type: TripletSampler
"""


def seqs():
    g = torch.Generator().manual_seed(7)
    return [(torch.rand(L, 64, 44, generator=g) > 0.5).float() for L in (4, 1)]


def small_seqs():
    g = torch.Generator().manual_seed(7)
    return [(torch.rand(L, 16, 11, generator=g) > 0.5).float() for L in (6, 2)]


def reference_pt(model: torch.nn.Module, path, iteration=1234, prefix="module."):
    """A checkpoint shaped like OpenGait's save_ckpt (DDP prefixes, optimiser, scheduler)."""
    with torch.no_grad():
        model.Bn.running_var.uniform_(1e-4, 1e-3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[70000], gamma=0.1)
    model.zero_grad()
    model.train()
    h, w = (64, 44) if model.parts_num == 64 else (16, 11)
    model(torch.rand(2, 3, h, w))["logits"].sum().backward()
    opt.step()
    sched.step()
    model.eval()
    torch.save(
        {
            "model": {prefix + k: v for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "iteration": iteration,
        },
        path,
    )


def test_opengait_pt_with_module_prefixes(tmp_path):
    torch.manual_seed(0)
    model = build_model({"model_cfg": {"model": "GaitGL"}})
    src, dst = tmp_path / "GaitGL-80000.pt", tmp_path / "gaitgl.safetensors"
    reference_pt(model, src)
    cfg = tmp_path / "gaitgl.yaml"
    cfg.write_text(AUTHORS_CONFIG)
    warnings: list[str] = []
    summary = convert_checkpoint(src, dst, cfg, warn=warnings.append)
    assert summary.model == "GaitGL" and summary.iteration == 1234
    assert summary.channels == [32, 64, 128] and summary.class_num == 74 and summary.parts == 64
    assert summary.tensors == len(model.state_dict()) and summary.parameters == 3_096_673
    assert summary.config_source == str(cfg)
    assert set(summary.to_json()) >= {"src", "dst", "variant", "dataset_name", "warnings"}
    loaded = load_checkpoint(dst)
    assert loaded.checkpoint_meta["iteration"] == 1234
    assert torch.equal(loaded.embed(seqs()), model.embed(seqs()))
    # refuses to overwrite unless asked
    with pytest.raises(GaitError, match="overwrite"):
        convert_checkpoint(src, dst, cfg)
    convert_checkpoint(src, dst, cfg, overwrite=True)


def test_authors_config_quirk_switches_to_metagait(tmp_path):
    torch.manual_seed(1)
    model = build_model({"model_cfg": {"model": "MetaGait"}})
    src, dst = tmp_path / "MetaGait-120000.pt", tmp_path / "metagait.safetensors"
    reference_pt(model, src, iteration=120000, prefix="")
    cfg = tmp_path / "metagait.yaml"
    cfg.write_text(AUTHORS_CONFIG)  # says model: GaitGL
    warnings: list[str] = []
    summary = convert_checkpoint(src, dst, cfg, warn=warnings.append)
    assert summary.model == "MetaGait" and summary.variant == "reference"
    assert any("model_cfg.model is GaitGL" in w and "MetaGait" in w for w in warnings)
    assert summary.warnings == warnings
    loaded = load_checkpoint(dst)
    assert loaded.config["model_cfg"]["model"] == "MetaGait"
    assert loaded.checkpoint_meta["iteration"] == 120000
    assert torch.equal(loaded.embed(seqs()), model.embed(seqs()))


def test_without_config_infers_from_weights(tmp_path):
    torch.manual_seed(2)
    mc = {"model": "MetaGait", "channels": [4, 8, 8], "class_num": 5, "bin_num": [16]}
    model = build_model({"model_cfg": mc})
    src, dst = tmp_path / "small.pt", tmp_path / "small.safetensors"
    torch.save({k: v for k, v in model.state_dict().items()}, src)  # a bare state dict
    warnings: list[str] = []
    summary = convert_checkpoint(src, dst, warn=warnings.append)
    assert summary.config_source == "inferred from the weights"
    assert summary.channels == [4, 8, 8] and summary.class_num == 5 and summary.iteration == 0
    assert any("inferred" in w for w in warnings)
    loaded = load_checkpoint(dst)
    model.eval()
    assert torch.equal(loaded.embed(small_seqs()), model.embed(small_seqs()))


def test_large_branch_inferred(tmp_path):
    mc = {"model": "GaitGL", "channels": [4, 8, 8, 16], "class_num": 9}
    model = build_model({"model_cfg": mc, "data_cfg": {"dataset_name": "GREW"}})
    src, dst = tmp_path / "grew.pt", tmp_path / "grew.safetensors"
    torch.save({"model": model.state_dict(), "iteration": 5}, src)
    summary = convert_checkpoint(src, dst)
    assert summary.channels == [4, 8, 8, 16] and summary.dataset_name == "OUMVLP"
    assert summary.class_num == 9 and summary.iteration == 5


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    src = tmp_path / "evil.pt"
    torch.save({"model": {"a": torch.zeros(1)}, "iteration": _Evil(marker)}, src)
    with pytest.raises(GaitError) as err:
        convert_checkpoint(src, tmp_path / "out.safetensors")
    msg = str(err.value)
    assert "refused" in msg and "\n" not in msg and "system" in msg
    assert not marker.exists()
    assert not (tmp_path / "out.safetensors").exists()


def test_mismatch_and_corrupt_sources(tmp_path):
    torch.manual_seed(3)
    model = build_model({"model_cfg": {"model": "GaitGL"}})
    src = tmp_path / "gaitgl.pt"
    torch.save({"model": model.state_dict(), "iteration": 1}, src)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(AUTHORS_CONFIG.replace("class_num: 74", "class_num: 73"))
    with pytest.raises(CheckpointMismatchError) as err:
        convert_checkpoint(src, tmp_path / "o.safetensors", cfg)
    assert "Head1.fc_bin (weights [64,128,74] vs model [64,128,73])" in str(err.value)
    assert not (tmp_path / "o.safetensors").exists()

    cut = tmp_path / "cut.pt"
    cut.write_bytes(src.read_bytes()[:300])
    with pytest.raises(GaitError, match="truncated or corrupt") as err:
        convert_checkpoint(cut, tmp_path / "o.safetensors")
    assert "\n" not in str(err.value)

    with pytest.raises(GaitError, match="no model weights"):
        junk = tmp_path / "junk.pt"
        torch.save({"something": [1, 2, 3]}, junk)
        convert_checkpoint(junk, tmp_path / "o.safetensors")
    with pytest.raises(GaitError, match="no such file"):
        convert_checkpoint(tmp_path / "nope.pt", tmp_path / "o.safetensors")


def test_authors_yaml_is_parsed_like_the_cli_would(tmp_path):
    """The same YAML with a paths section relative to the config file still converts."""
    torch.manual_seed(4)
    model = build_model({"model_cfg": {"model": "MetaGait"}})
    src = tmp_path / "m.pt"
    torch.save({"model": model.state_dict(), "optimizer": {}, "scheduler": {}, "iteration": 7}, src)
    sub = tmp_path / "configs"
    sub.mkdir()
    (sub / "metagait.yaml").write_text(textwrap.dedent(AUTHORS_CONFIG))
    summary = convert_checkpoint(src, tmp_path / "m.safetensors", sub / "metagait.yaml")
    assert summary.model == "MetaGait" and summary.iteration == 7


# --------------------------------------------------------------------------------------------
# issue 9 item 10: odd inputs and outputs are one clear line


def _tiny_gaitcli_checkpoint(tmp_path):
    from gaitcli.models import save_checkpoint

    torch.manual_seed(5)
    mc = {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 3, "bin_num": [16]}
    model = build_model({"model_cfg": mc, "data_cfg": {"dataset_name": "Mine"}})
    path = tmp_path / "run-00040.safetensors"
    save_checkpoint(path, model, model.config, iteration=40, labels=["a", "b", "c"])
    return model, path


def test_out_that_is_a_folder_is_one_line(tmp_path):
    _, src = _tiny_gaitcli_checkpoint(tmp_path)
    folder = tmp_path / "outdir"
    folder.mkdir()
    for overwrite in (False, True):
        with pytest.raises(GaitError, match="is a folder; give the output file name") as err:
            convert_checkpoint(src, folder, overwrite=overwrite)
        assert "\n" not in str(err.value)
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(
    "content",
    [os.urandom(300), b"\x80\x02" + os.urandom(300), b"PK\x05\x06" + bytes(18)],
    ids=["random", "pickle-magic-then-random", "empty-zip"],
)
def test_random_bytes_or_empty_zip_are_not_a_torch_checkpoint(tmp_path, content):
    src = tmp_path / "x.pt"
    src.write_bytes(content)
    with pytest.raises(GaitError) as err:
        convert_checkpoint(src, tmp_path / "o.safetensors")
    msg = str(err.value)
    assert "not a torch checkpoint" in msg and "\n" not in msg
    assert "could run code" not in msg and "weights_only" not in msg and "Could this error" not in msg
    assert not (tmp_path / "o.safetensors").exists()


def test_torch_boilerplate_never_leaks():
    from gaitcli.convert import torch_detail

    exc = RuntimeError(
        "[enforce fail at inline_container.cc:180] . file in archive is not in a subdirectory: a.txt\n"
        "Could this error message be improved? If so, please report an enhancement request to PyTorch."
    )
    assert torch_detail(exc) == "file in archive is not in a subdirectory: a.txt"
    assert torch_detail(RuntimeError("Could this error message be improved? If so, ...")) == "RuntimeError"


def test_gaitcli_safetensors_keeps_its_config_and_iteration(tmp_path):
    model, src = _tiny_gaitcli_checkpoint(tmp_path)
    dst = tmp_path / "copy.safetensors"
    summary = convert_checkpoint(src, dst)
    assert summary.iteration == 40 and summary.dataset_name == "Mine"
    assert summary.config_source == f"embedded in {src.name}" and summary.warnings == []
    loaded = load_checkpoint(dst)
    assert loaded.config == model.config
    assert loaded.checkpoint_meta["iteration"] == 40 and loaded.checkpoint_meta["labels"] == ["a", "b", "c"]
    assert torch.equal(loaded.embed(small_seqs()), model.embed(small_seqs()))


def test_training_state_file_names_the_weights_beside_it(tmp_path):
    from safetensors.torch import save_file

    state = tmp_path / "run-00010.state.safetensors"
    save_file({"s.optimizer.0": torch.zeros(2)}, str(state), metadata={"state": "{}"})
    with pytest.raises(GaitError) as err:
        convert_checkpoint(state, tmp_path / "o.safetensors")
    msg = str(err.value)
    assert "training-state file" in msg and str(tmp_path / "run-00010.safetensors") in msg and "\n" not in msg


def test_random_bytes_with_a_brace_at_byte_8_are_not_taken_for_safetensors(tmp_path):
    """1 in 256 random files has ``{`` at byte 8; the header length tells them apart (this made
    the random-bytes case above fail now and then)."""
    src = tmp_path / "x.pt"
    src.write_bytes(bytes(range(200, 208)) + b"{" + bytes(300))
    with pytest.raises(GaitError, match="not a torch checkpoint"):
        convert_checkpoint(src, tmp_path / "o.safetensors")
