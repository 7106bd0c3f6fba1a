"""User-facing errors.

Every mistake a user can make (a bad path, a typo in a config, a corrupt file) is raised as a
:class:`GaitError`; the CLI prints its message as one line and exits with ``exit_code``. Bugs
stay ordinary exceptions so they keep their traceback.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class GaitError(Exception):
    """A problem the user can fix; the message says what, where, and what to do. Options are
    named with :func:`option`, so the message reads right from Python and from the shell."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return render(super().__str__())


class ConfigError(GaitError):
    """An invalid configuration file or ``--set`` override."""


class DataError(GaitError):
    """Missing, unreadable or inconsistent data on disk."""


class UnsafePickleError(DataError):
    """A pickle that tried to rebuild something other than numpy arrays."""


# ------------------------------------------------------------------------------ naming options
# A message names one of the caller's options by its parameter name, never by a command-line
# flag: the layers below cli.py do not know how an option is spelt on the command line. The
# marked name is rendered when the message is shown: as the Python keyword (``batch_size=0``) by
# default, and as the flag (``--batch-size 0``) once cli.py installs its renderer.
_OPEN, _SEP, _CLOSE = "\ue000", "\ue001", "\ue002"
_MARKED = re.compile(f"{_OPEN}([A-Za-z_][A-Za-z0-9_]*)(?:{_SEP}([^{_CLOSE}]*))?{_CLOSE}")

OptionRenderer = Callable[[str, "str | None"], str]
"""``(parameter name, value or None) -> text`` for a marked option."""


def _python_spelling(name: str, value: str | None) -> str:
    return name if value is None else f"{name}={value}"


_renderer: list[OptionRenderer] = [_python_spelling]


def option(name: str, value: object = None) -> str:
    """``name`` (a parameter of the function the user called, e.g. ``overwrite``), with
    ``value`` when given, marked for rendering in a user-facing message."""
    if value is None:
        return f"{_OPEN}{name}{_CLOSE}"
    return f"{_OPEN}{name}{_SEP}{value}{_CLOSE}"


def set_option_renderer(renderer: OptionRenderer) -> OptionRenderer:
    """How marked options are shown from now on; returns the renderer it replaces."""
    previous, _renderer[0] = _renderer[0], renderer
    return previous


@contextmanager
def options_rendered_by(renderer: OptionRenderer) -> Iterator[None]:
    """Within the block, marked options are shown by ``renderer`` (cli.py: as flags, while a
    command runs); the previous renderer comes back after it."""
    previous = set_option_renderer(renderer)
    try:
        yield
    finally:
        set_option_renderer(previous)


def render(message: str) -> str:
    """``message`` with every marked option spelt by the current renderer."""
    if _OPEN not in message:
        return message
    return _MARKED.sub(lambda m: _renderer[0](m.group(1), m.group(2)), message)
