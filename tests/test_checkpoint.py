"""Safetensors checkpoints: round trip, metadata, atomic writes, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from gaitcli import __version__
from gaitcli.build import build_model
from gaitcli.errors import GaitError
from gaitcli.models import (
    CheckpointError,
    CheckpointMismatchError,
    load_checkpoint,
    load_state_dict_checked,
    read_checkpoint_metadata,
    save_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def small(model: str = "MetaGait", **extra):
    torch.manual_seed(0)
    mc = {"model": model, "channels": [4, 8, 8], "class_num": 5, "bin_num": [16], **extra}
    m = build_model({"model_cfg": mc, "data_cfg": {"dataset_name": "CASIA-B"}})
    with torch.no_grad():
        m.Bn.running_mean.uniform_(-0.01, 0.01)
        m.Bn.running_var.uniform_(1e-4, 1e-3)
    return m


def seqs():
    g = torch.Generator().manual_seed(3)
    return [(torch.rand(L, 16, 11, generator=g) > 0.5).float() for L in (5, 2, 9)]


def test_round_trip_identical_embeddings_and_metadata(tmp_path):
    m = small()
    path = tmp_path / "run" / "ckpt.safetensors"
    save_checkpoint(path, m, m.config, iteration=1234, labels=["001", "002", "003"], note="hello")
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.safetensors"]  # no temp file left

    with safe_open(str(path), framework="pt") as fh:
        raw = fh.metadata()
    assert all(isinstance(v, str) for v in raw.values())
    assert raw["format"] == "gaitcli-safetensors-1"
    assert raw["model"] == "MetaGait" and raw["variant"] == "reference"
    assert raw["iteration"] == "1234" and json.loads(raw["labels"]) == ["001", "002", "003"]
    assert raw["gaitcli_version"] == __version__ and raw["note"] == "hello"
    assert "model_cfg:" in raw["config"]

    loaded = load_checkpoint(path)
    assert not loaded.training
    assert loaded.config == m.config
    assert loaded.checkpoint_meta["iteration"] == 1234
    assert loaded.checkpoint_meta["labels"] == ["001", "002", "003"]
    for k, v in m.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert torch.equal(m.embed(seqs()), loaded.embed(seqs()))

    meta = read_checkpoint_metadata(path)
    assert meta["iteration"] == 1234 and meta["config"]["model_cfg"]["model"] == "MetaGait"


def test_gaitgl_round_trip_and_overwrite_is_atomic(tmp_path):
    m = small("GaitGL")
    path = tmp_path / "a.safetensors"
    save_checkpoint(path, m, iteration=1)
    save_checkpoint(path, m, iteration=2)  # replaces in place
    loaded = load_checkpoint(path)
    assert loaded.checkpoint_meta["iteration"] == 2 and loaded.checkpoint_meta["labels"] == []
    assert loaded.checkpoint_meta["variant"] == ""
    assert torch.equal(m.embed(seqs()), loaded.embed(seqs()))
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]


def test_truncated_file_is_one_clear_line(tmp_path):
    m = small()
    path = tmp_path / "full.safetensors"
    save_checkpoint(path, m)
    data = path.read_bytes()
    for cut in (len(data) // 2, 40, 5):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(bad)
        msg = str(err.value)
        assert "\n" not in msg and str(bad) in msg and "truncated or corrupt" in msg
        assert isinstance(err.value, GaitError)


def test_garbage_pt_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors")
    pt = tmp_path / "ref.pt"
    torch.save({"model": {"a": torch.zeros(1)}}, pt)
    with pytest.raises(CheckpointError, match="gait convert"):
        load_checkpoint(pt)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"a": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="without gaitcli metadata"):
        load_checkpoint(foreign)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(junk)


def test_mismatch_lists_names(tmp_path):
    m = small()
    state = dict(m.state_dict())
    del state["eca.conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    state["Head1.fc_bin"] = torch.zeros(16, 8, 7)
    with pytest.raises(CheckpointMismatchError) as err:
        load_state_dict_checked(m, state, source="x.pt")
    msg = str(err.value)
    assert "\n" not in msg
    assert "missing 1: eca.conv1.weight" in msg
    assert "unexpected 1: extra.weight" in msg
    assert "Head1.fc_bin (weights [16,8,7] vs model [16,8,5])" in msg

    # long lists are truncated with a count
    gaitgl = small("GaitGL")
    with pytest.raises(CheckpointMismatchError, match=r"unexpected 10: .*\(\+6 more\)"):
        load_state_dict_checked(gaitgl, m.state_dict())

    # a checkpoint whose stored weights disagree with its stored config
    path = tmp_path / "wrong.safetensors"
    save_checkpoint(path, m, gaitgl.config)
    with pytest.raises(CheckpointMismatchError, match="unexpected 10"):
        load_checkpoint(path)


def test_missing_bn_counter_is_tolerated():
    m = small("GaitGL")
    state = {k: v for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
    load_state_dict_checked(m, state)


def test_paper_variant_round_trip(tmp_path):
    pytest.importorskip("gaitcli.models.meta_modules")
    m = small(
        "MetaGait", variant="paper", mta={"channel": True, "spatial": False, "temporal": True}, mtp=True
    )
    path = tmp_path / "paper.safetensors"
    save_checkpoint(path, m, iteration=3)
    loaded = load_checkpoint(path)
    assert loaded.variant == "paper" and loaded.checkpoint_meta["variant"] == "paper"
    assert loaded.config["model_cfg"]["mta"] == {"channel": True, "spatial": False, "temporal": True}
    assert torch.equal(m.embed(seqs()), loaded.embed(seqs()))


def test_training_state_file_says_so_and_names_the_weights(tmp_path):
    """Issue 9 item 8: a .state.safetensors is not "a file without gaitcli metadata"."""
    state = tmp_path / "tiny-00010.state.safetensors"
    save_file({"s.__empty__": torch.zeros(0)}, str(state), metadata={"state": "{}"})
    for read in (load_checkpoint, read_checkpoint_metadata):
        with pytest.raises(CheckpointError) as err:
            read(state)
        msg = str(err.value)
        assert "training-state file" in msg and "without gaitcli metadata" not in msg
        assert msg.endswith(str(tmp_path / "tiny-00010.safetensors")) and "\n" not in msg


def test_non_finite_weights_are_refused(tmp_path):
    """Issue 9 item 7: a checkpoint of a diverged run embeds everything as NaN; refuse it."""
    m = small("GaitGL")
    with torch.no_grad():
        m.Head1.fc_bin[0, 0, 0] = float("nan")
        m.Bn.running_var[0] = float("inf")
    path = tmp_path / "nan.safetensors"
    save_checkpoint(path, m)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "2 of its" in msg and "NaN or infinite" in msg and "Head1.fc_bin" in msg and "\n" not in msg


def test_stored_config_naming_an_unknown_model_is_one_line(tmp_path):
    """The model is rebuilt from the stored config by the models layer alone; a config it cannot
    build is one CheckpointError line, not a traceback."""
    m = small("GaitGL")
    cfg = {**m.config, "model_cfg": {**m.config["model_cfg"], "model": "NoSuchGait"}}
    path = tmp_path / "unknown.safetensors"
    save_checkpoint(path, m, cfg)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "stored config is not valid here" in msg and "NoSuchGait" in msg and "\n" not in msg
