"""Crash-safe file writes shared by every module that writes user-visible files.

Every file goes to a temporary file in its target folder and is renamed into place
(:func:`atomic_writer`); log lines are appended whole or not at all (:func:`append_line`). A write
that fails — a full disk, a used-up quota, a read-only file system, a folder the user may not
write to — is one :class:`WriteError` line naming the file and what to do, and leaves no partial
file behind. :func:`check_writable` asks the same question before a long job starts, so that its
result is not lost at the end.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gaitcli.errors import GaitError

_ADVICE = {
    errno.ENOSPC: "free disk space or write to another disk",
    errno.EDQUOT: "free space within your quota or write to another disk",
    errno.EFBIG: "write to another file system",
    errno.EROFS: "the file system is read-only: write to another folder",
    errno.EACCES: "write to a folder you may write to",
    errno.EPERM: "write to a folder you may write to",
    errno.EISDIR: "give a file name, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder: give another path",
}
_DEFAULT_ADVICE = "check the disk and the folder's permissions"


class WriteError(GaitError):
    """A file could not be written (full disk, read-only file system, permissions); nothing
    partial is left behind."""

    def __init__(self, message: str, errno_code: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_code
        """The ``errno`` of the failed operation (``errno.ENOSPC``, ...), when there was one."""


def write_error(path: str | os.PathLike[str], exc: OSError) -> WriteError:
    """The one-line :class:`WriteError` for ``exc``, raised while writing ``path``."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    advice = _ADVICE.get(exc.errno or 0, _DEFAULT_ADVICE)
    return WriteError(f"cannot write {path} ({reason}); {advice}", exc.errno)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file handle whose content replaces ``path`` when the ``with`` block ends.

    The data goes to a temp file in the same folder, is flushed to disk, then renamed over
    ``path``. A reader (or a re-run after SIGKILL) sees either the old file, the complete new
    one, or nothing: never a truncated file. An exception in the block leaves ``path`` as it
    was and removes the temp file; an ``OSError`` (in the block too: it writes to the handle)
    becomes a :class:`WriteError`. Temp files are named ``.{name}.*.tmp`` so they are easy to
    recognise and clean up.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise write_error(path, exc) from None
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as handle:
        handle.write(data)


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append ``line`` and a newline to ``path`` (created when missing). An append that fails
    (a full disk) is cut back off, so the file keeps only whole lines, and raises
    :class:`WriteError`."""
    data = memoryview((line + "\n").encode("utf-8"))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        size = os.fstat(fd).st_size
        try:
            while data:
                data = data[os.write(fd, data) :]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # shrinking a file needs no free space
            raise write_error(path, exc) from None
    finally:
        os.close(fd)


def check_writable(path: str | os.PathLike[str], option: str | None = None, *, folder: bool = False) -> None:
    """Fail now, in one line, when ``path`` (a file, or with ``folder`` a folder to write into)
    could not be written later: a file where a folder should be (or the other way round), a
    folder the user may not write to, a read-only file system, a full disk. A temporary file is
    created and removed in the nearest existing folder on the way, which is the surest test
    (permission bits say nothing for root or on a read-only mount). Call it before long work."""
    target = Path(path)
    where = f"{option} {target}" if option else str(target)
    if folder:
        if target.exists() and not target.is_dir():
            raise WriteError(f"{where}: is a file; give a folder")
        parent = target
    else:
        if target.is_dir():
            raise WriteError(f"{where}: is a folder; give a file name")
        parent = target.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise WriteError(f"{where}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".gaitcli-write-test.", suffix=".tmp", dir=existing)
        os.close(fd)
        os.unlink(probe)
        free = shutil.disk_usage(existing).free
    except OSError as exc:
        raise WriteError(
            f"{where}: cannot write in {existing} ({exc.strerror or exc}); "
            f"{_ADVICE.get(exc.errno or 0, _DEFAULT_ADVICE)}",
            exc.errno,
        ) from None
    if free <= 0:
        raise WriteError(
            f"{where}: the disk holding {existing} is full; {_ADVICE[errno.ENOSPC]}", errno.ENOSPC
        )


JSONValue = str | int | float | bool | None | list["JSONValue"] | dict[str, "JSONValue"]
"""A value as JSON holds it (what every JSON file gaitcli writes is made of)."""
