"""``gait prepare``'s output folder: its manifest, what it refuses, and what ``--overwrite`` removes.

The manifest ``OUT/.gait-prepare.json`` records where the data came from and how it was made
(the resolved IN, ``img_size``, the frame size ``[H, W]`` of every pkl, the frame threshold,
whether directory links were followed, and the raw layout IN was read as). A later run into the
same OUT must agree with it, or OUT would mix two data sets; an OUT without a manifest (prepared
by OpenGait, say) is judged by its first pkl's frame size. The manifest also lists every pkl
gaitcli wrote into OUT, and ``--overwrite`` ("OUT now holds exactly what IN gives") only ever
replaces or removes those: it refuses an OUT holding any pkl the manifest does not list (or an
OUT with pkls and no readable manifest), then removes the listed pkls that IN no longer produces
and lists them. See docs/prepare.md, "The output folder".
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from gaitcli.data.pkl_header import HeaderProblem, read_array_header
from gaitcli.data.pretreat import MIN_PIXEL_SUM
from gaitcli.data.validity import format_shape
from gaitcli.errors import DataError, option
from gaitcli.fileio import JSONValue, atomic_write_bytes

__all__ = ["MANIFEST_NAME", "Manifest", "check_output", "pkls_in", "read_manifest", "remove_foreign_pkls",
           "write_manifest"]

MANIFEST_NAME = ".gait-prepare.json"
_REDO = f"use another OUT, or {option('overwrite')} to make OUT hold exactly what IN gives"


@dataclass(frozen=True)
class Manifest:
    """What ``gait prepare`` records about the data set in OUT."""

    source: str | None
    """The input folder, resolved (``None`` in manifests of older gaitcli versions)."""
    img_size: int
    """``--img-size``."""
    frame_size: list[int]
    """``[H, W]`` of every frame in every pkl."""
    min_pixel_sum: int = MIN_PIXEL_SUM
    """Frames whose pixel sum is at most this were dropped."""
    follow_links: bool = False
    """Whether directory links in IN were followed."""
    complete: bool = True
    """False while an ``--overwrite`` run is under way (a rerun must use --overwrite again)."""
    layout: str = "default"
    """The raw layout IN was read as (``default``, ``grew``, ``gait3d``, ``ccpg``, ``oumvlp``)."""
    frames: str = "pretreated"
    """``pretreated`` (OpenGait's pretreatment) or ``as-is`` (frames stored as read: GREW)."""
    pkls: tuple[str, ...] = ()
    """Every pkl gait prepare wrote into OUT (paths relative to OUT, sorted): all that
    ``--overwrite`` may ever replace or remove. Written before a run writes any pkl."""

    def to_json(self) -> dict[str, JSONValue]:
        """The settings (the summary's ``settings``); the manifest file adds ``pkls``."""
        data: dict[str, JSONValue] = {"tool": "gait prepare", **asdict(self)}
        del data["pkls"]
        return data


def read_manifest(out: Path) -> Manifest | None:
    """The manifest in ``out``; ``None`` when there is none or it cannot be read."""
    try:
        data = json.loads((out / MANIFEST_NAME).read_text())
        size = int(data["img_size"])
        pkls = data.get("pkls", [])  # manifests written before the list: it claims nothing
        if not isinstance(pkls, list) or not all(isinstance(p, str) for p in pkls):
            return None
        return Manifest(
            source=data.get("source"), img_size=size, frame_size=list(data.get("frame_size") or [size, size]),
            min_pixel_sum=int(data.get("min_pixel_sum", MIN_PIXEL_SUM)),
            follow_links=bool(data.get("follow_links", False)), complete=bool(data.get("complete", True)),
            layout=str(data.get("layout", "default")), frames=str(data.get("frames", "pretreated")),
            pkls=tuple(sorted(pkls)),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_manifest(out: Path, manifest: Manifest) -> None:
    data = {**manifest.to_json(), "pkls": sorted(manifest.pkls)}
    atomic_write_bytes(out / MANIFEST_NAME, (json.dumps(data, indent=1) + "\n").encode())


def pkls_in(out: Path) -> list[str]:
    """Every ``*.pkl`` below ``out`` (relative POSIX paths, sorted); dot-names and links are skipped."""
    found: list[str] = []
    for folder, dirs, files in os.walk(out):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(os.path.relpath(folder, out))
        found.extend((rel / name).as_posix() for name in files
                     if name.endswith(".pkl") and not name.startswith("."))
    return sorted(found)


def _check_manifest(out: Path, old: Manifest, new: Manifest) -> None:
    if not old.complete:
        raise DataError(f"{out}: an earlier gait prepare with {option('overwrite')} into it was interrupted; "
                        f"run it again with {option('overwrite')} to finish it")
    if old.source is not None and old.source != new.source:
        raise DataError(f"{out} holds data prepared from {old.source}, not {new.source}; {_REDO}")
    if old.img_size != new.img_size:
        raise DataError(f"{out} was prepared with {option('img_size', old.img_size)}, not {new.img_size}; "
                        f"use the same size, another OUT, or {option('overwrite')} to rewrite every sequence")
    if old.layout != new.layout:
        raise DataError(f"{out} was prepared with {option('layout', old.layout)}, not {new.layout}; "
                        f"use the same layout or {_REDO}")
    if old.follow_links != new.follow_links:
        flag = "with" if old.follow_links else "without"
        raise DataError(
            f"{out} was prepared {flag} {option('follow_links')}; use the same setting or {_REDO}"
        )


def _check_foreign(out: Path, new: Manifest) -> None:
    """An OUT without a manifest: its first pkl must have the frame size this run writes."""
    existing = pkls_in(out)
    if not existing:
        return
    first = existing[0]
    try:
        shape = read_array_header(out / first).shape
    except HeaderProblem as exc:
        raise DataError(f"{out / first}: {exc}; OUT holds pkls this run cannot judge, {_REDO}") from None
    if list(shape[1:]) != new.frame_size:
        raise DataError(
            f"{out} holds pkls of frame size {format_shape(shape[1:])} (e.g. {first}) but no gait prepare "
            f"manifest; this run writes {format_shape(new.frame_size)}: use {option('img_size', shape[-1])} "
            f"or {_REDO}"
        )


def _check_overwrite(out: Path, old: Manifest | None) -> None:
    """``--overwrite`` replaces and removes only pkls gaitcli wrote: every pkl in OUT must be
    listed in its manifest."""
    existing = pkls_in(out)
    if not existing:
        return
    ours = (f" gaitcli did not write them, and {option('overwrite')} only replaces or removes pkls "
            "gaitcli wrote")
    if old is None:
        why = "its gait prepare manifest cannot be read" if (out / MANIFEST_NAME).exists() else \
            f"no gait prepare manifest ({MANIFEST_NAME})"
        raise DataError(f"{out} holds {len(existing)} pkl(s) (e.g. {existing[0]}) and {why}:{ours}; "
                        "choose an empty OUT, or move those pkls out of it")
    listed = set(old.pkls)
    unlisted = [rel for rel in existing if rel not in listed]
    if unlisted:
        raise DataError(f"{out} holds {len(unlisted)} pkl(s) that its gait prepare manifest does not list "
                        f"(e.g. {unlisted[0]}):{ours}; move them out of OUT or choose another OUT")


def check_output(out: Path, new: Manifest, overwrite: bool) -> Manifest | None:
    """Refuse an OUT that holds another data set (unless ``overwrite``), or, with ``overwrite``,
    pkls gaitcli did not write. Returns OUT's manifest (``None`` when it has none)."""
    old = read_manifest(out)
    if overwrite:
        _check_overwrite(out, old)
    elif old is not None:
        _check_manifest(out, old, new)
    elif not (out / MANIFEST_NAME).exists():
        _check_foreign(out, new)
    return old


def remove_foreign_pkls(out: Path, produced: set[str], listed: set[str]) -> list[str]:
    """Delete every pkl under ``out`` that the manifest ``listed`` (gaitcli wrote it) and whose
    relative path is not in ``produced``; returns them."""
    removed: list[str] = []
    for rel in pkls_in(out):
        if rel in produced or rel not in listed:
            continue
        try:
            os.unlink(out / rel)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DataError(f"cannot remove {out / rel} ({exc.strerror or exc}); check permissions") from None
        removed.append(rel)
    return removed
