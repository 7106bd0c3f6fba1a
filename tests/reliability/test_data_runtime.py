"""The one lock and the one worker pool (gaitcli.runtime): a SIGKILLed holder leaves no stale
lock, a refusal names its owner, a network file system is refused, and a SIGKILLed worker ends
the run with one line instead of a BrokenProcessPool traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gaitcli.errors import GaitError
from gaitcli.runtime import lock as lock_mod
from gaitcli.runtime.lock import LockError, exclusive_lock, filesystem_type
from gaitcli.runtime.pool import WorkerDied, run_pool

_HOLD = """
import sys, time
from pathlib import Path
from gaitcli.runtime.lock import exclusive_lock
with exclusive_lock(Path(sys.argv[1]), what="test job"):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_refusal_names_the_owner_and_sigkill_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / ".gait.lock"
    proc = _holder(path)
    try:
        with pytest.raises(LockError) as info, exclusive_lock(path, what="test job"):
            pass
        message = str(info.value)
        assert f"pid {proc.pid}" in message and os.uname().nodename in message and "-c" in message
        assert "\n" not in message and issubclass(LockError, GaitError)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with exclusive_lock(path, what="test job") as owner:  # the kernel dropped the lock
        assert owner.pid == os.getpid()
        assert f'"pid": {os.getpid()}' in path.read_text()
    assert path.read_text() == ""  # released: no owner recorded any more


def test_network_file_system_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock_mod, "_mounts", lambda: [("/", "ext4"), (str(tmp_path), "nfs4")])
    assert filesystem_type(tmp_path / "x") == "nfs4"
    with pytest.raises(LockError, match="nfs4 file system.*local disk"), \
            exclusive_lock(tmp_path / ".gait.lock", what="gait prepare"):
        pass
    assert not (tmp_path / ".gait.lock").exists()
    monkeypatch.setattr(lock_mod, "_mounts", lambda: [("/", "ext4"), (str(tmp_path), "fuse.sshfs")])
    with pytest.raises(LockError, match="fuse.sshfs"), exclusive_lock(tmp_path / ".l", what="x"):
        pass
    monkeypatch.setattr(lock_mod, "_mounts", lambda: [("/", "ext4")])
    with exclusive_lock(tmp_path / ".l", what="x"):
        pass


def _slow_or_die(n: int) -> int:
    if n == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
    return n * 10


def test_sigkilled_worker_is_one_line_and_finished_results_arrive() -> None:
    got: list[int] = []
    with pytest.raises(WorkerDied, match="test worker process died") as info:
        run_pool(_slow_or_die, [0, 1, 2, 3, 4, 5], workers=2, on_result=got.append, what="test worker")
    assert info.value.exit_code == 1
    assert set(got) <= {0, 10, 20, 40, 50}


def test_pool_delivers_every_result() -> None:
    got: list[int] = []
    run_pool(abs, [-1, -2, -3], workers=2, on_result=got.append)
    assert sorted(got) == [1, 2, 3]
