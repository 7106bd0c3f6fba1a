"""The one lock of gaitcli: one writer per folder (docs/prepare.md, "One run at a time").

:func:`exclusive_lock` takes an advisory ``flock`` on a small file. The kernel drops it when
the holder exits in any way, SIGKILL included, so a killed run never leaves a stale lock
behind. While held, the file names its owner (pid, host, command, start time); a second run
is refused with that owner in one line. ``flock`` is only trustworthy on a local file system:
on NFS, SMB/CIFS, sshfs and other network or FUSE file systems two machines may both "hold"
it, so there the lock refuses instead of pretending.

The lock dies with the process that took it. A ``flock`` belongs to the open file description,
which a forked child shares (``O_CLOEXEC`` only helps across ``exec``), so a DataLoader worker
forked by ``gait train`` would keep the lock alive after the trainer is killed. Every lock's file
descriptor is therefore registered here, and :func:`os.register_at_fork` closes them in each
child as it starts (``multiprocessing``, DataLoader workers and ``os.fork`` all run that hook);
a child leaving the ``with`` block neither releases nor empties its parent's lock. POSIX record
locks (``F_SETLK``) are not inherited either, but any ``close`` of the file in the holder drops
them, which reading the lock file would do. Should a lock still be held while its recorded owner
has exited (a child forked without the hook), the refusal names the process that holds the file
open, not the dead owner.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from gaitcli.errors import GaitError

__all__ = ["LockError", "LockOwner", "exclusive_lock", "filesystem_type", "NETWORK_FILESYSTEMS"]

NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "sshfs", "9p", "afs", "ceph",
    "glusterfs", "lustre", "gpfs", "beegfs", "davfs", "ncpfs", "coda", "ocfs2", "gfs2", "fuse",
    "fuseblk",
})
"""File-system types whose locks cannot be trusted across machines (``fuse.*`` also counts)."""


class LockError(GaitError):
    """Another run holds the lock, or the folder's file system cannot be locked reliably."""


@dataclass(frozen=True)
class LockOwner:
    """Who holds a lock; written into the lock file while it is held."""

    pid: int
    """Process id of the holder."""
    host: str
    """Host name of the holder's machine."""
    command: str
    """The holder's command line."""
    started: str
    """When the lock was taken (UTC, ISO 8601)."""

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} ({self.command}), since {self.started}"


def _mounts() -> list[tuple[str, str]]:
    """``(mount point, fs type)`` for every mount, from /proc/mounts (empty when unavailable)."""
    try:
        text = Path("/proc/mounts").read_text()
    except OSError:
        return []
    rows: list[tuple[str, str]] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            rows.append((parts[1].replace("\\040", " "), parts[2]))
    return rows


def filesystem_type(folder: Path) -> str | None:
    """The type of the file system holding ``folder`` (its longest mount-point prefix)."""
    real = os.path.realpath(folder)
    best: tuple[int, str] | None = None
    for point, fstype in _mounts():
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > best[0]):
            best = (len(point), fstype)
    return best[1] if best else None


def _is_network(fstype: str | None) -> bool:
    return fstype is not None and (fstype in NETWORK_FILESYSTEMS or fstype.startswith("fuse."))


def _read_owner(path: Path) -> LockOwner | None:
    try:
        data = json.loads(path.read_text())
        return LockOwner(int(data["pid"]), str(data["host"]), str(data["command"]), str(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


_HELD: dict[int, int] = {}
"""File descriptor of every lock this process holds (or is taking) -> the pid that opened it."""


def _close_inherited_locks() -> None:
    """In a freshly forked child: close the lock descriptors inherited from the parent, so the
    parent's locks end with the parent."""
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` (on this host) still runs; a zombie has already let go of its files."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _openers(path: Path) -> list[int]:
    """Pids of the processes (other than this one) that hold ``path`` open, from /proc."""
    target = os.path.realpath(path)
    found: list[int] = []
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return found
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    found.append(pid)
                    break
            except OSError:
                continue
    return sorted(found)


def _holder(path: Path) -> str:
    """Who holds the lock on ``path``, for the refusal: its recorded owner, unless that owner has
    exited (then the live processes that hold the file open)."""
    owner = _read_owner(path)
    if owner is None:
        return "held by another process"
    if owner.host != socket.gethostname() or _alive(owner.pid):
        return f"held by {owner.describe()}"
    openers = _openers(path)
    who = f"pid {', '.join(map(str, openers))}" if openers else "another process"
    return (f"held by {who}, which inherited it from pid {owner.pid} ({owner.command}), "
            "which has exited; it is released when that process ends")


def _me() -> LockOwner:
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return LockOwner(os.getpid(), socket.gethostname(), command, started)


def _check_filesystem(path: Path, what: str) -> None:
    fstype = filesystem_type(path.parent)
    if _is_network(fstype):
        raise LockError(
            f"{path.parent} is on a {fstype} file system, where a lock cannot guarantee a single "
            f"{what}; use a folder on a local disk"
        )


@contextmanager
def exclusive_lock(path: Path, *, what: str) -> Iterator[LockOwner]:
    """Hold ``path`` exclusively for the ``with`` block; yields this process as the owner.

    ``what`` names the job in messages (``"gait prepare"``, ``"training run"``). Raises
    :class:`LockError` when another process holds the lock (naming it) or when the folder is on
    a network file system. The lock file itself is left in place, emptied on release.
    """
    import fcntl

    path = Path(path)
    _check_filesystem(path, what)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        reason = exc.strerror or exc
        raise LockError(f"cannot create {path} ({reason}); check that the folder is writable") from None
    taker = os.getpid()
    _HELD[fd] = taker  # before the flock: a child forked from now on closes it at once
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            message = f"another {what} is using {path.parent} ({_holder(path)}); wait for it to finish"
            raise LockError(message) from None
        owner = _me()
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(owner.to_json()) + "\n").encode())
        try:
            yield owner
        finally:
            if os.getpid() == taker:  # a forked child leaving the block: not its lock (fd closed)
                os.ftruncate(fd, 0)
    finally:
        if os.getpid() == taker:
            _HELD.pop(fd, None)
            os.close(fd)
