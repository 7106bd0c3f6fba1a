"""User-facing errors.

Every mistake a user can make (a bad path, a typo in a config, a corrupt file) is raised as a
:class:`GaitError`; the CLI prints its message as one line and exits with ``exit_code``. Bugs
stay ordinary exceptions so they keep their traceback.
"""

from __future__ import annotations


class GaitError(Exception):
    """A problem the user can fix; the message says what, where, and what to do."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(GaitError):
    """An invalid configuration file or ``--set`` override."""


class DataError(GaitError):
    """Missing, unreadable or inconsistent data on disk."""


class UnsafePickleError(DataError):
    """A pickle that tried to rebuild something other than numpy arrays."""
