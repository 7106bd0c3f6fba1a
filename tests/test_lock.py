"""The one lock dies with the process that took it (issue 19 item 22).

After ``kill -9`` of ``gait train`` its DataLoader worker (a forked child) lived on for seconds
holding the run folder's lock, so an immediate ``--resume`` was refused naming the dead process.
Forked children must not hold the lock, and a lock whose recorded owner has exited is never
reported as that owner's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gaitcli.runtime.lock import LockError, exclusive_lock

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork and /proc: Linux only")

# The holder takes the lock, then starts a child the way each kind of worker starts, and
# prints both pids. The child outlives the holder by a minute unless the test kills it.
_HOLDER = """
import os, sys, time
from pathlib import Path
from gaitcli.runtime.lock import exclusive_lock

def linger(*_):
    time.sleep(60)

with exclusive_lock(Path(sys.argv[1]), what="gait train"):
    how = sys.argv[2]
    if how == "os.fork":
        child = os.fork()
        if child == 0:
            linger()
            os._exit(0)
    elif how == "multiprocessing":
        import multiprocessing
        proc = multiprocessing.get_context("fork").Process(target=linger, daemon=False)
        proc.start()
        child = proc.pid
    else:  # what gait train does: DataLoader workers are forked
        import torch
        from torch.utils.data import DataLoader, Dataset

        class Slow(Dataset):
            def __len__(self):
                return 1000
            def __getitem__(self, i):
                time.sleep(60)
                return i

        loader = iter(DataLoader(Slow(), num_workers=1, multiprocessing_context="fork"))
        child = loader._workers[0].pid
        time.sleep(1.0)  # the worker is running __getitem__
    print(os.getpid(), child, flush=True)
    time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.parametrize("how", ["os.fork", "multiprocessing", "dataloader"])
def test_sigkilled_holder_leaves_the_lock_free_while_its_forked_child_lives(tmp_path: Path, how: str) -> None:
    path = tmp_path / ".train.lock"
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), how], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, "the holder did not start"
    holder, child = (int(v) for v in line.split())
    try:
        assert holder == proc.pid and _alive(child)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        started = time.monotonic()
        with exclusive_lock(path, what="gait train") as owner:  # at once: no "held by pid <dead>"
            assert owner.pid == os.getpid()
        assert time.monotonic() - started < 1.0
        assert _alive(child)  # the worker still runs, yet does not hold the lock
    finally:
        for pid in (holder, child):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()


_FORK_AND_LEAVE = """
import json, os, sys
from pathlib import Path
from gaitcli.runtime.lock import LockError, exclusive_lock

path = Path(sys.argv[1])
with exclusive_lock(path, what="test job"):
    child = os.fork()
    if child:
        os.waitpid(child, 0)  # the child has left the with block (its exit code comes below)
        record = json.loads(path.read_text())["pid"]
        try:
            with exclusive_lock(path, what="test job"):
                taken = "taken"
        except LockError:
            taken = "refused"
        print(record == os.getpid(), taken, flush=True)
if child == 0:
    os._exit(0)
"""


def test_a_forked_child_leaving_the_with_block_does_not_empty_or_release_the_parents_lock(
        tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    proc = subprocess.run([sys.executable, "-c", _FORK_AND_LEAVE, str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "refused"]  # still the parent's record, still held
    assert path.read_text() == ""  # released by the parent on exit


_STRANGER = """
import fcntl, json, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
record = {"pid": int(sys.argv[2]), "host": os.uname().nodename, "command": "gait train -c x",
          "started": "2026-12-01T22:00:00Z"}
os.write(fd, (json.dumps(record) + "\\n").encode())
print("held", flush=True)
time.sleep(60)
"""


def test_a_lock_whose_recorded_owner_has_exited_is_not_reported_as_that_owners(tmp_path: Path) -> None:
    """Whatever still holds it (here a process that took it with a record naming an exited pid,
    as a child inheriting the lock would leave it), the refusal names the live holder, not the dead."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path = tmp_path / ".train.lock"
    proc = subprocess.Popen([sys.executable, "-c", _STRANGER, str(path), str(gone.pid)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(LockError) as info, exclusive_lock(path, what="gait train"):
            pass
        message = str(info.value)
        assert "\n" not in message and f"pid {proc.pid}" in message
        assert f"held by pid {gone.pid}" not in message and "exited" in message
    finally:
        proc.kill()
        proc.wait()
