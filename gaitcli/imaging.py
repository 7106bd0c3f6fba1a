"""Image writing: the one place that loads matplotlib, checks an image target and saves a figure.

``gait lr-plot --out`` and ``gait eval --heatmap`` both draw with matplotlib (the ``plot``
extra): it writes PNG, SVG and PDF from one code path without a browser or a GUI. A target is
checked before any work starts (matplotlib missing, an image type it does not write, a folder
given as the file), and a figure is rendered in memory and then written atomically, so an
interrupted run never leaves half an image (see docs/eval.md and docs/lr-plot.md).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from gaitcli.errors import GaitError, option
from gaitcli.fileio import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_INSTALL = "pip install matplotlib (the gaitcli 'plot' extra)"


def figure_class(name: str) -> type[Figure]:
    """matplotlib's ``Figure`` (no pyplot, no GUI backend); one line naming the option ``name``
    that asked for an image when it is not installed."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise GaitError(f"{option(name)} needs matplotlib, which is not installed: {_INSTALL}") from None
    return Figure


def supported_suffixes(name: str) -> list[str]:
    """The file types matplotlib writes (png, svg, pdf, ...)."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise GaitError(f"{option(name)} needs matplotlib, which is not installed: {_INSTALL}") from None
    return sorted(FigureCanvasBase.get_supported_filetypes())


def check_image_target(path: str | os.PathLike[str], name: str = "out") -> None:
    """Fail before any work when the image cannot be written: matplotlib missing, a file
    extension matplotlib does not write, or a folder where the file should go. ``name`` is the
    option that gave ``path`` (messages name it)."""
    supported = supported_suffixes(name)
    target = Path(path)
    if target.is_dir():
        raise GaitError(
            f"{option(name, path)}: is a folder; give an image file name such as {target / 'plot.png'}"
        )
    suffix = target.suffix.lower().lstrip(".")
    if suffix not in supported:
        raise GaitError(
            f"{option(name, path)}: unknown image type {suffix or '(none)'!r}; "
            f"use one of {', '.join(supported)}"
        )


def save_figure(fig: Figure, path: str | os.PathLike[str], name: str, *, dpi: int = 150) -> Path:
    """Render ``fig`` in the format of ``path``'s extension and write it atomically."""
    target = Path(path)
    check_image_target(target, name)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format=target.suffix.lower().lstrip("."), dpi=dpi)
    except ValueError as exc:  # a format matplotlib lists but cannot write here
        raise GaitError(f"{option(name, target)}: {str(exc).splitlines()[0]}") from None
    try:
        atomic_write_bytes(target, buffer.getvalue())
    except OSError as exc:
        raise GaitError(f"{option(name, target)}: cannot write the image ({exc.strerror or exc})") from None
    return target
