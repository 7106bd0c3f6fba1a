"""A full or read-only disk: every writer says so in one line naming the file (no traceback), leaves
no partial file, and long jobs check their targets before they start (issue 19, item 10).

The disk is simulated (tests may run as root, where a read-only folder made with chmod still
accepts writes): :class:`Disk` makes the writes into one folder fail with the ``errno`` a full or
read-only file system gives, at the step where the kernel reports it.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import tiny_config
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.errors import GaitError

pytestmark = pytest.mark.usefixtures("one_thread")


class Disk:
    """Writes into ``folder`` fail once :meth:`fill` (ENOSPC at write / fsync time, as a full
    disk reports it; ``shutil.disk_usage`` says 0 bytes free unless ``free_space_shown``) or
    :meth:`read_only` (EROFS when a file or folder is created or opened for writing)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
        self.folder = os.path.abspath(folder)
        self.mode: str | None = None
        self.free_space_shown = False
        self.spare_locks = False  # writes to *.lock files still succeed
        self.fds: set[int] = set()
        real_open, real_write, real_fsync = os.open, os.write, os.fsync
        real_mkdir, real_builtin_open, real_usage = os.mkdir, builtins.open, shutil.disk_usage

        def inside(path: object) -> bool:
            if isinstance(path, int):
                return False
            text = os.path.abspath(os.fsdecode(os.fspath(path)))  # type: ignore[arg-type]
            return text == self.folder or text.startswith(self.folder + os.sep)

        def fake_open(path, flags, mode=0o777, *args, **kwargs):
            writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if writes and self.mode == "ro" and inside(path):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            fd = real_open(path, flags, mode, *args, **kwargs)
            if writes and inside(path) and not (self.spare_locks and str(path).endswith(".lock")):
                self.fds.add(fd)
            return fd

        def fake_write(fd, data):
            if self.mode == "full" and fd in self.fds:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        def fake_fsync(fd):
            if self.mode == "full" and fd in self.fds:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_fsync(fd)

        def fake_mkdir(path, *args, **kwargs):
            if self.mode == "ro" and inside(path):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real_mkdir(path, *args, **kwargs)

        def fake_builtin_open(file, mode="r", *args, **kwargs):
            if self.mode is not None and any(c in mode for c in "wax+") and inside(file):
                code = errno.ENOSPC if self.mode == "full" else errno.EROFS
                raise OSError(code, os.strerror(code), str(file))
            return real_builtin_open(file, mode, *args, **kwargs)

        def fake_usage(path):
            usage = real_usage(path)
            if self.mode == "full" and not self.free_space_shown and inside(path):
                return type(usage)(usage.total, usage.total, 0)
            return usage

        monkeypatch.setattr(os, "open", fake_open)
        monkeypatch.setattr(os, "write", fake_write)
        monkeypatch.setattr(os, "fsync", fake_fsync)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)
        monkeypatch.setattr(builtins, "open", fake_builtin_open)
        monkeypatch.setattr(shutil, "disk_usage", fake_usage)

    def fill(self, *, free_space_shown: bool = False) -> None:
        self.mode, self.free_space_shown = "full", free_space_shown

    def read_only(self) -> None:
        self.mode = "ro"


@pytest.fixture
def disk(tmp_path, monkeypatch):
    (tmp_path / "disk").mkdir()
    return Disk(monkeypatch, tmp_path / "disk")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def one_error_line(result, code: int = 2) -> bool:
    """The command ended with one ``error:`` line and ``code`` (tables or progress may come first)."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return result.exit_code == code and errors == lines[-1:]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------------------ the writer itself
def test_a_full_disk_is_one_line_naming_the_file_and_leaves_the_old_file(disk):
    from gaitcli.fileio import atomic_write_bytes

    target = Path(disk.folder) / "r.json"
    target.write_text("old")
    disk.fill()
    with pytest.raises(GaitError) as info:
        atomic_write_bytes(target, b"new")
    message = str(info.value)
    assert "\n" not in message and str(target) in message and "free disk space" in message
    assert target.read_text() == "old" and leftovers(target.parent) == []


def test_a_read_only_folder_is_one_line(disk):
    from gaitcli.fileio import atomic_write_bytes

    disk.read_only()
    with pytest.raises(GaitError, match=r"r\.json .*read-only"):
        atomic_write_bytes(Path(disk.folder) / "sub" / "r.json", b"x")


def test_a_failed_append_leaves_only_whole_lines(disk):
    from gaitcli.fileio import append_line

    log = Path(disk.folder) / "train.log"
    append_line(log, "first")
    real_write = os.write

    def half_then_full(fd, data):  # the disk fills in the middle of the line
        if fd in disk.fds and len(data) > 3:
            return real_write(fd, bytes(data[:3]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    os.write = half_then_full
    try:
        with pytest.raises(GaitError, match="train.log"):
            append_line(log, "second line")
    finally:
        os.write = real_write
    assert log.read_text() == "first\n"


def test_check_writable_refuses_before_the_work(disk):
    from gaitcli.fileio import check_writable

    folder = Path(disk.folder)
    check_writable(folder / "new" / "r.json", "--json")  # fine: nothing is left behind
    assert list(folder.iterdir()) == []
    (folder / "file").write_text("x")
    with pytest.raises(GaitError, match=r"--json .*file is a file, not a folder"):
        check_writable(folder / "file" / "r.json", "--json")
    with pytest.raises(GaitError, match="is a folder"):
        check_writable(folder, "--json")
    disk.fill()
    with pytest.raises(GaitError, match=r"--json .*r\.json: the disk holding .* is full"):
        check_writable(folder / "r.json", "--json")
    disk.read_only()
    with pytest.raises(GaitError, match="read-only"):
        check_writable(folder / "run", "--output", folder=True)


# ------------------------------------------------------------------------------ gait eval
@pytest.fixture
def checkpoint(tiny_data, tmp_path):
    from gaitcli.config import resolve_config
    from gaitcli.training.trainer import train

    cfg = resolve_config(tiny_config(*tiny_data, total_iter=1, save_iter=1, log_iter=1))
    summary = train(cfg, output=tmp_path / "run", device="cpu", progress=False)
    return summary.checkpoint


def test_eval_json_on_a_disk_that_filled_during_extraction_is_one_line(checkpoint, disk):
    target = Path(disk.folder) / "r.json"
    disk.fill(free_space_shown=True)  # the check before extraction sees space; the write fails
    result = run("eval", checkpoint, "--device", "cpu", "--json", target)
    assert one_error_line(result), result.output
    assert str(target) in result.output and not target.exists() and leftovers(target.parent) == []


@pytest.mark.parametrize("option", ["--json", "--csv", "--save-features", "--calibration-out"])
def test_eval_refuses_an_unwritable_target_before_extracting(checkpoint, disk, monkeypatch, option):
    from gaitcli.evaluation import api

    def never(*args, **kwargs):
        raise AssertionError("extraction started")

    monkeypatch.setattr(api, "extract", never)
    target = Path(disk.folder) / ("f.npz" if option == "--save-features" else "out.json")
    extra = ["--verification", "--calibrate", "0.1"] if option == "--calibration-out" else []
    disk.fill()
    result = run("eval", checkpoint, "--device", "cpu", option, target, *extra)
    assert one_error_line(result), result.output
    assert "is full" in result.output
    disk.read_only()
    result = run("eval", checkpoint, "--device", "cpu", option, target, *extra)
    assert one_error_line(result) and "read-only" in result.output, result.output


# ------------------------------------------------------------------------------ embed, identify
def test_embed_out_and_identify_json_on_a_full_disk(checkpoint, tiny_data, disk):
    root, partition = tiny_data
    gallery = Path(disk.folder).parent / "gallery.npz"
    # embed --out holds a lock beside the file, whose owner line runtime/lock.py writes with a
    # bare os.write (its own one-line error on a full disk is that module's business)
    disk.spare_locks = True
    assert run("embed", checkpoint, root, "--partition", partition, "--out", gallery,
               "--device", "cpu").exit_code == 0
    disk.fill(free_space_shown=True)
    result = run("embed", checkpoint, root, "--partition", partition, "--out", Path(disk.folder) / "g.npz",
                 "--device", "cpu")
    assert one_error_line(result), result.output
    assert "g.npz" in result.output and leftovers(Path(disk.folder)) == []
    result = run("identify", gallery, "--gallery", gallery, "--json", Path(disk.folder) / "a.json")
    assert one_error_line(result) and "a.json" in result.output, result.output


def test_export_onto_a_full_disk_is_one_line(checkpoint, disk):
    pytest.importorskip("onnxruntime")
    disk.fill(free_space_shown=True)
    target = Path(disk.folder) / "m.onnx"
    result = run("export", checkpoint, target, "--no-check")
    assert one_error_line(result), result.output
    assert "m.onnx" in result.output and not target.exists() and leftovers(target.parent) == []


# ------------------------------------------------------------------------------ gait train
def write_config(tmp_path, cfg) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_output_on_a_read_only_disk_is_one_line(tiny_data, tmp_path, disk):
    config = write_config(tmp_path, tiny_config(*tiny_data, total_iter=2))
    disk.read_only()
    result = run("train", "-c", config, "--device", "cpu", "--output", Path(disk.folder) / "run")
    assert one_error_line(result), result.output
    assert "read-only" in result.output
    disk.fill()
    result = run("train", "-c", config, "--device", "cpu", "--output", Path(disk.folder) / "run")
    assert one_error_line(result) and "is full" in result.output, result.output


@pytest.mark.parametrize("fills", ["log", "checkpoint"])
def test_train_stops_on_a_full_disk_naming_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch, fills):
    """The disk fills after the checkpoint of iteration 4: the next append to metrics.jsonl /
    train.log (or, with only the checkpoint folder full, the next save) stops the run in one
    line naming tiny-00004 and --resume latest; no partial checkpoint or temp file is left."""
    from gaitcli.training import checkpointing

    out = tmp_path / "run"
    disk = Disk(monkeypatch, out if fills == "log" else out / "checkpoints")
    real_save = checkpointing.CheckpointConnector.save

    def save_then_fill(self, *args, **kwargs):
        path = real_save(self, *args, **kwargs)
        disk.fill(free_space_shown=True)
        return path

    monkeypatch.setattr(checkpointing.CheckpointConnector, "save", save_then_fill)
    config = write_config(tmp_path, tiny_config(*tiny_data, total_iter=8, save_iter=4, log_iter=2))
    result = run("train", "-c", config, "--device", "cpu", "--output", out)
    assert one_error_line(result, code=1), result.output
    assert "tiny-00004.safetensors" in result.output and "--resume latest" in result.output
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "tiny-00004.safetensors", "tiny-00004.state.safetensors"]
    assert leftovers(out) == []
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # whole lines only
    disk.mode = None  # space freed: the run continues from the last good checkpoint
    monkeypatch.setattr(checkpointing.CheckpointConnector, "save", real_save)
    result = run("train", "-c", config, "--device", "cpu", "--output", out, "--resume", "latest")
    assert result.exit_code == 0, result.output
    assert (out / "checkpoints" / "tiny-00008.safetensors").exists()


def test_demo_json_target_is_checked_before_the_stages(tmp_path, disk, monkeypatch):
    from gaitcli import demo

    def never(*args, **kwargs):
        raise AssertionError("the demo started")

    monkeypatch.setattr(demo, "run_demo", never)
    disk.read_only()
    result = run("demo", "--workdir", tmp_path / "w", "--json", Path(disk.folder) / "d.json")
    assert one_error_line(result) and "read-only" in result.output, result.output
