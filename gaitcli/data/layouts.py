"""The raw download layouts ``gait prepare --layout`` reads, mapped to ``id/type/view``.

Each data set ships its silhouette frames in its own folder layout; OpenGait first rearranges
them into ``id/type/view/*.png`` (its ``datasets/<NAME>/`` scripts) and then pretreats them.
This module does the rearranging part without copying or linking anything: it finds the
sequence folders of one layout and gives each the ``(id, type, view)`` OpenGait's scripts would
give it. docs/prepare-layouts.md describes every layout and where it comes from:

* ``default``: ``id/type/view/*.png``, any depth (the walker's rules, docs/prepare.md);
* ``grew``: ``train/ID/SEQ``, ``test/gallery/ID/SEQ``, ``test/probe/SEQ`` (GREW's unpacked
  download; OpenGait's ``datasets/GREW/rearrange_GREW.py``). Frames are kept as they are, as
  OpenGait's ``pretreatment.py --dataset GREW`` keeps them;
* ``gait3d``: ``2D_Silhouettes/ID/camidC_videoidV/seqS`` (Gait3D's download);
* ``ccpg``: ``CCPG_G_SIL/ID/STATUS/VIEW`` (CCPG's download; OpenGait's
  ``datasets/CCPG/organize_ccpg.py`` reads its silhouettes there);
* ``oumvlp``: ``Silhouette_VIEW-SEQ/ID`` (OU-MVLP's extracted archives; OpenGait's
  ``datasets/OUMVLP/rearrange_OUMVLP.py``).

Folders are walked with the one walker (:mod:`gaitcli.data.walker`), so hidden names, directory
links (``follow_links``) and unlistable folders are handled as everywhere else. What does not fit
a layout is listed, not guessed at; a tree in which nothing fits is a one-line error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from gaitcli.data.walker import SequenceFolder, walk_sequences
from gaitcli.errors import DataError, option

__all__ = ["CCPG_STATUSES", "FRAMES_AS_IS", "FRAMES_PRETREATED", "LAYOUTS", "LAYOUT_NAMES", "Layout",
           "LayoutScan", "get_layout", "scan_layout", "suggest_layout"]

#: Frames go through the OpenGait pretreatment (gaitcli.data.pretreat).
FRAMES_PRETREATED = "pretreated"
#: Frames are stored as they are read (GREW: already 64x64, OpenGait keeps them as they are).
FRAMES_AS_IS = "as-is"


@dataclass(frozen=True)
class Layout:
    """One raw layout ``gait prepare`` can read."""

    name: str
    """The ``--layout`` value."""
    expected: str
    """Where the frames sit, for messages (e.g. ``Silhouette_VIEW-SEQ/ID/*.png``)."""
    source: str
    """Where the layout is documented (the data set's own page and OpenGait's script)."""
    frames: str
    """:data:`FRAMES_PRETREATED` or :data:`FRAMES_AS_IS`."""


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("default", "IN/id/type-seq/view/*.png", "docs/prepare.md", FRAMES_PRETREATED),
        Layout("grew", "train/ID/SEQ/*.png, test/gallery/ID/SEQ/*.png and test/probe/SEQ/*.png",
               "GREW-Benchmark README; OpenGait datasets/GREW/rearrange_GREW.py", FRAMES_AS_IS),
        Layout("gait3d", "2D_Silhouettes/ID/camidC_videoidV/seqS/*.png",
               "Gait3D-Benchmark docs/pretreatment.md; OpenGait datasets/Gait3D/README.md",
               FRAMES_PRETREATED),
        Layout("ccpg", "CCPG_G_SIL/ID/STATUS/VIEW/*.png",
               "OpenGait datasets/CCPG/organize_ccpg.py and evaluate_CCPG", FRAMES_PRETREATED),
        Layout("oumvlp", "Silhouette_VIEW-SEQ/ID/*.png",
               "OpenGait datasets/OUMVLP/README.md and rearrange_OUMVLP.py", FRAMES_PRETREATED),
    )
}
LAYOUT_NAMES = tuple(LAYOUTS)

#: CCPG's seven cloth statuses (Up / Down garment numbers, BG = with a bag): the types that
#: OpenGait's evaluate_CCPG uses as gallery and probe.
CCPG_STATUSES = frozenset({"U0_D0", "U0_D0_BG", "U1_D0", "U1_D1", "U2_D2", "U3_D3", "U0_D3"})

_GAIT3D_TYPE = re.compile(r"camid\d+_videoid\d+")
_GAIT3D_VIEW = re.compile(r"seq\d+")
_DIGITS = re.compile(r"\d+")
_OUMVLP_FOLDER = re.compile(r"Silhouette_(\d{3})-(\d{2})")
#: GREW ships 2-D / 3-D poses beside every frame and a GEI beside every sequence folder.
_GREW_COMPANION = re.compile(r".*(_2d_pose\.txt|_3d_pose\.txt|_gei\.png)", re.IGNORECASE)
_GREW_GALLERY_TYPES = 2
_PAD = ("", "", "")  # no folder has an empty name: keys of folders up to 3 levels deep stay exact


def get_layout(name: str) -> Layout:
    """The layout called ``name``; a one-line error for an unknown name."""
    try:
        return LAYOUTS[name.lower()]
    except KeyError:
        raise DataError(f"{option('layout', name)}: unknown layout; choose one of "
                        f"{', '.join(LAYOUT_NAMES)} (docs/prepare-layouts.md)") from None


@dataclass
class LayoutScan:
    """What one scan of a raw layout found."""

    layout: Layout
    """The layout."""
    root: str
    """The folder the frames were read from (``IN``, or e.g. ``IN/2D_Silhouettes``)."""
    sequences: list[SequenceFolder] = field(default_factory=list)
    """Sequence folders with the ``(id, type, view)`` of the prepared tree, sorted by it."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """Files and folders that do not fit the layout or cannot be read: ``(path, reason)``."""
    skipped_links: list[tuple[str, str]] = field(default_factory=list)
    """Directory links not followed: ``(path, reason)``."""
    empty: list[str] = field(default_factory=list)
    """Sequences (``id/type/view``) whose folder holds no image."""
    not_read: list[tuple[str, str]] = field(default_factory=list)
    """Folders the layout leaves out on purpose (GREW's distractors, Gait3D's SMPLs): ``(path, why)``."""
    companions: int = 0
    """Companion files not read (GREW's pose text files and GEIs)."""
    pkls: int = 0
    """``.pkl`` files seen (the tree may be prepared already)."""


Placer = Callable[[tuple[str, ...]], "tuple[str, str, str] | str"]
"""Relative folder parts → the ``(id, type, view)`` of the sequence, or why it does not fit."""


@dataclass
class _Context:
    scan: LayoutScan
    suffixes: Collection[str]
    follow_links: bool
    companion: re.Pattern[str] | None = None


def _child(ctx: _Context, parent: str, name: str) -> str | None:
    """``parent/name`` when it is a folder to read; a directory link is read only with ``follow_links``."""
    path = os.path.join(parent, name)
    if not os.path.isdir(path):
        return None
    if os.path.islink(path) and not ctx.follow_links:
        target = os.path.realpath(path)
        ctx.scan.skipped_links.append(
            (path, f"directory link to {target} not followed (pass {option('follow_links')} to follow it)"))
        return None
    return path


def _subfolders(folder: str) -> list[str]:
    """Names of the folders (and folder links) in ``folder``, sorted; hidden names left out."""
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())
    except OSError:
        return []


def _split(ctx: _Context, names: tuple[str, ...]) -> tuple[list[str], int]:
    if ctx.companion is None:
        return list(names), 0
    kept = [name for name in names if not ctx.companion.fullmatch(name)]
    return kept, len(names) - len(kept)


_Placed = list[tuple[SequenceFolder, tuple[str, ...]]]


def _walk(ctx: _Context, folder: str, depth: int, place: Placer) -> _Placed:
    """Walk ``folder``; the sequence folders ``depth`` levels below it are placed by ``place``.

    Returns ``(sequence with its final key, relative parts)``; everything else goes to the scan."""
    scan = ctx.scan
    try:
        tree = walk_sequences(folder, ctx.suffixes, follow_links=ctx.follow_links, key_prefix=_PAD)
    except DataError:  # only folders more than 3 levels down can share a padded key
        raise DataError(f"{folder} holds image folders far deeper than the {scan.layout.name} layout "
                        f"puts them ({scan.layout.expected}); pass the folder the data set unpacked "
                        "into") from None
    scan.skipped.extend(tree.unlisted)
    scan.skipped_links.extend(tree.skipped_links)
    scan.pkls += tree.suffix_counts.get(".pkl", 0)
    placed: _Placed = []
    for seq in tree.sequences:
        files, n_files = _split(ctx, seq.files)
        others, n_others = _split(ctx, seq.others)
        scan.companions += n_files + n_others
        parts = tuple(os.path.relpath(seq.path, folder).split(os.sep))
        if seq.depth != depth:
            if files:
                scan.skipped.append((seq.path, f"{len(files)} image(s) at a depth where the "
                                               f"{scan.layout.name} layout has no frames"))
            continue
        key = place(parts)
        if isinstance(key, str):
            scan.skipped.append((seq.path, key))
            continue
        if not files:
            scan.empty.append("/".join(key))
        else:
            placed.append((SequenceFolder(key, seq.path, tuple(files), tuple(others), seq.depth), parts))
        scan.skipped.extend((os.path.join(seq.path, name), "not an image file") for name in others)
    for path, leaf_depth, names in tree.leaves:
        if leaf_depth != depth:
            continue
        key = place(tuple(os.path.relpath(path, folder).split(os.sep)))
        if isinstance(key, str):
            continue
        others, n_others = _split(ctx, names)
        scan.companions += n_others
        scan.empty.append("/".join(key))
        scan.skipped.extend((os.path.join(path, name), "not an image file") for name in others)
    return placed


def _add(ctx: _Context, placed: _Placed) -> None:
    ctx.scan.sequences.extend(seq for seq, _ in placed)


def _not_read(ctx: _Context, parent: str, used: Collection[str], why: Callable[[str], str]) -> None:
    for name in _subfolders(parent):
        if name not in used:
            ctx.scan.not_read.append((os.path.join(parent, name), why(name)))


# --------------------------------------------------------------------------- the layouts
def _enter(ctx: _Context, inp: str, inner: str, why: str) -> str | None:
    """The folder the frames are under: ``IN/inner`` when IN is the data set's folder (its other
    entries listed as not read, for ``why``), else IN itself; None when ``inner`` cannot be
    entered. Sets the scan's root."""
    root: str | None = inp
    if os.path.isdir(os.path.join(inp, inner)):
        root = _child(ctx, inp, inner)
        _not_read(ctx, inp, {inner}, lambda name: why)
    if root is not None:
        ctx.scan.root = root
    return root


def _scan_gait3d(ctx: _Context, inp: str) -> None:
    """``2D_Silhouettes/ID/camidC_videoidV/seqS/*.png``; IN may be the Gait3D folder or 2D_Silhouettes."""
    root = _enter(ctx, inp, "2D_Silhouettes", "the gait3d layout reads 2D_Silhouettes")
    if root is None:
        return

    def place(parts: tuple[str, ...]) -> tuple[str, str, str] | str:
        sid, typ, view = parts
        if not _DIGITS.fullmatch(sid):
            return f"'{sid}' is not a Gait3D subject id (digits)"
        if not _GAIT3D_TYPE.fullmatch(typ):
            return f"'{typ}' is not a Gait3D camidC_videoidV folder"
        if not _GAIT3D_VIEW.fullmatch(view):
            return f"'{view}' is not a Gait3D seqS folder"
        return sid, typ, view

    _add(ctx, _walk(ctx, root, 3, place))


def _scan_ccpg(ctx: _Context, inp: str) -> None:
    """``CCPG_G_SIL/ID/STATUS/VIEW/*.png``; IN may be the CCPG folder or CCPG_G_SIL."""
    root = _enter(ctx, inp, "CCPG_G_SIL", "the ccpg layout reads the silhouettes of CCPG_G_SIL")
    if root is None:
        return

    def place(parts: tuple[str, ...]) -> tuple[str, str, str] | str:
        sid, status, view = parts
        if not _DIGITS.fullmatch(sid):
            return f"'{sid}' is not a CCPG subject id (digits)"
        if status not in CCPG_STATUSES:
            return f"'{status}' is not a CCPG cloth status ({', '.join(sorted(CCPG_STATUSES))})"
        return sid, status, view

    _add(ctx, _walk(ctx, root, 3, place))


def _scan_oumvlp(ctx: _Context, inp: str) -> None:
    """``Silhouette_VIEW-SEQ/ID/*.png`` → ``ID/SEQ/VIEW``."""
    for name in _subfolders(inp):
        match = _OUMVLP_FOLDER.fullmatch(name)
        if match is None:
            ctx.scan.skipped.append((os.path.join(inp, name), "not a Silhouette_VIEW-SEQ folder of OU-MVLP"))
            continue
        folder = _child(ctx, inp, name)
        if folder is None:
            continue
        view, seq = match.groups()

        def place(parts: tuple[str, ...], seq: str = seq, view: str = view) -> tuple[str, str, str]:
            return parts[0], seq, view

        _add(ctx, _walk(ctx, folder, 1, place))


def _scan_grew(ctx: _Context, inp: str) -> None:
    """``train/ID/SEQ`` → ``IDtrain/00/SEQ``; ``test/gallery/ID/SEQ`` → ``ID/01|02/SEQ``;
    ``test/probe/SEQ`` → ``probe/03/SEQ`` (OpenGait's rearrange_GREW.py)."""
    ctx.companion = _GREW_COMPANION
    found = {"train", "test"} & set(_subfolders(inp))
    _not_read(ctx, inp, found, lambda name: (
        "GREW's distractors are not in OpenGait's GREW protocol (rearrange_GREW.py leaves them out)"
        if name.startswith("distractor") else "not a folder of the grew layout"))
    train = _child(ctx, inp, "train") if "train" in found else None
    if train is not None:
        _add(ctx, _walk(ctx, train, 2, lambda parts: (parts[0] + "train", "00", parts[1])))
    test = _child(ctx, inp, "test") if "test" in found else None
    if test is None:
        return
    _not_read(ctx, test, {"gallery", "probe"}, lambda name: "not a folder of the grew layout")
    gallery = _child(ctx, test, "gallery")
    if gallery is not None:
        _add(ctx, _number_gallery(ctx, gallery, _walk(ctx, gallery, 2, lambda p: (p[0], "gallery", p[1]))))
    probe = _child(ctx, test, "probe")
    if probe is not None:
        _add(ctx, _walk(ctx, probe, 1, lambda parts: ("probe", "03", parts[0])))


def _number_gallery(ctx: _Context, gallery: str, placed: _Placed) -> _Placed:
    """Gallery types ``01``, ``02`` by sequence name within each subject (empty folders count too)."""
    empty = [key.split("/") for key in ctx.scan.empty if key.split("/")[1:2] == ["gallery"]]
    ctx.scan.empty = [key for key in ctx.scan.empty if key.split("/")[1:2] != ["gallery"]]
    by_subject: dict[str, list[str]] = {}
    for sid, seq in [(s.key[0], s.key[2]) for s, _ in placed] + [(k[0], k[2]) for k in empty]:
        by_subject.setdefault(sid, []).append(seq)
    numbers: dict[tuple[str, str], str] = {}
    for sid, seqs in by_subject.items():
        if len(seqs) > _GREW_GALLERY_TYPES:
            raise DataError(
                f"{os.path.join(gallery, sid)} holds {len(seqs)} sequence folders; GREW's gallery has two "
                "per subject (types 01 and 02; 03 is the probe type), so this is not GREW's test/gallery: "
                "move the extra folders out")
        for number, seq in enumerate(sorted(seqs), start=1):
            numbers[sid, seq] = f"{number:02d}"
    ctx.scan.empty.extend(f"{sid}/{numbers[sid, seq]}/{seq}" for sid, _, seq in empty)
    out: _Placed = []
    for folder, parts in placed:
        sid, _, name = folder.key
        key = (sid, numbers[sid, name], name)
        out.append((SequenceFolder(key, folder.path, folder.files, folder.others, folder.depth), parts))
    return out


_SCANNERS: dict[str, Callable[[_Context, str], None]] = {
    "grew": _scan_grew, "gait3d": _scan_gait3d, "ccpg": _scan_ccpg, "oumvlp": _scan_oumvlp,
}


def _check_clashes(scan: LayoutScan) -> None:
    seen: dict[tuple[str, str, str], str] = {}
    for seq in scan.sequences:
        if seq.key in seen:
            raise DataError(f"{seen[seq.key]} and {seq.path} both map to sequence {seq.key_text} in the "
                            f"{scan.layout.name} layout; keep one of them")
        seen[seq.key] = seq.path


def scan_layout(layout: Layout, inp: str, suffixes: Collection[str], *,
                follow_links: bool = False) -> LayoutScan:
    """Find the sequence folders of ``layout`` (not ``default``) under ``inp``.

    Files with a suffix in ``suffixes`` are frames. Raises :class:`DataError` when nothing under
    ``inp`` fits the layout, or when it cannot be read as that layout (two folders mapping to one
    sequence, a GREW gallery subject with more than two sequences).
    """
    if layout.name not in _SCANNERS:
        raise ValueError(f"scan_layout reads the named layouts, not {layout.name!r}")
    scan = LayoutScan(layout, inp)
    ctx = _Context(scan, frozenset(s.lower() for s in suffixes), follow_links)
    _SCANNERS[layout.name](ctx, inp)
    scan.sequences.sort(key=lambda s: s.key)
    scan.skipped.sort()
    scan.skipped_links.sort()
    scan.empty.sort()
    scan.not_read.sort()
    _check_clashes(scan)
    if not scan.sequences:
        raise DataError(_nothing_found(scan, inp))
    return scan


def suggest_layout(inp: str) -> str | None:
    """The named layout whose top folders ``inp`` holds (for hints), or ``None``."""
    names = set(_subfolders(inp))
    if "train" in names and "test" in names:
        return "grew"
    if "2D_Silhouettes" in names:
        return "gait3d"
    if "CCPG_G_SIL" in names:
        return "ccpg"
    if any(_OUMVLP_FOLDER.fullmatch(name) for name in names):
        return "oumvlp"
    return None


def _nothing_found(scan: LayoutScan, inp: str) -> str:
    hints = ""
    if scan.skipped_links:
        hints += f" {scan.skipped_links[0][0]} is a directory link: pass {option('follow_links')} to read it."
    elif scan.skipped:
        path, reason = scan.skipped[0]
        hints += f" {len(scan.skipped)} folder(s) do not fit it (e.g. {path}: {reason})."
    if scan.pkls:
        hints += f" It holds {scan.pkls} .pkl files: is it already prepared?"
    return (f"no {scan.layout.name} sequences under {inp}: {option('layout', scan.layout.name)} reads "
            f"{scan.layout.expected} (docs/prepare-layouts.md).{hints}")
