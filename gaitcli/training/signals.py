"""Ctrl-C during training, deferred to the end of the running iteration (docs/train.md, "Stopping").

The first SIGINT only sets a flag: the trainer finishes the step it is in, then saves the state
of that completed iteration, so interrupt + resume equals an uninterrupted run. A second SIGINT
raises KeyboardInterrupt at once (stop without saving). Outside the main thread (where Python
cannot install handlers) the guard is a no-op and KeyboardInterrupt behaves as usual.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType


class InterruptGuard:
    """``with InterruptGuard() as guard: ... if guard.requested: stop``."""

    def __init__(self, announce: Callable[[], object] | None = None) -> None:
        self.requested = False
        self._announce = announce
        self._previous: Callable[[int, FrameType | None], object] | int | signal.Handlers | None = None
        self._installed = False

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self._announce is not None:
            self._announce()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
