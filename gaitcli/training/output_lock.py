"""The trainer's output-folder lock (O_EXCL + owner pid), until the single run lock of
``gaitcli.runtime.lock`` replaces it; only :func:`gaitcli.training.run_folder.acquire_output_lock`
uses it, so that switch is one line."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from gaitcli.errors import GaitError


class OutputLock:
    """A lock file so that two runs never write into the same output folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / ".train.lock"
        self.held = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if self._stale():
                    self.path.unlink(missing_ok=True)
                    continue
                owner = self.path.read_text().strip() or "another process"
                raise GaitError(
                    f"{self.path.parent} is in use by another gait train ({owner}); wait for it, "
                    f"or use --output to train elsewhere (delete {self.path.name} if that run is gone)"
                ) from None
            with os.fdopen(fd, "w") as handle:
                handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
            self.held = True
            return

    def _stale(self) -> bool:
        try:
            text = self.path.read_text().split()
            pid, host = int(text[1]), text[3]
        except (OSError, ValueError, IndexError):
            return False
        if host != socket.gethostname():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
