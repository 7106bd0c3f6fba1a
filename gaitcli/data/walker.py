"""The one sequence walker: finds ``id/type/view`` sequence folders under a root.

``gait prepare`` (PNG frames), ``gait inspect`` and the training / evaluation dataset (pkls)
all find sequences here, with the same rules (docs/inspect.md, "Layout"):

* a *sequence folder* is a folder that directly holds files of the wanted kind; its key is its
  last three folder levels below the root (id / type-seq / view), however deep it sits;
  files less than three levels below the root belong to no sequence and are listed (``prepare``
  passes the root's own folder names as ``key_prefix``, so IN may be one subject's folder);
* two folders with the same key are an error (their output would be one file);
* names starting with ``.`` are skipped;
* directory links are not followed unless ``follow_links``; then a link whose target lies
  inside the root (already walked on its own) or was visited before is skipped, so no folder
  is ever visited twice and no id is invented. Every skipped link is listed.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field

from gaitcli.errors import DataError, option

__all__ = ["SequenceFolder", "TreeScan", "walk_sequences"]


@dataclass(frozen=True)
class SequenceFolder:
    """One sequence folder."""

    key: tuple[str, str, str]
    """``(id, type, view)``: the last three folder levels."""
    path: str
    """The folder, below the root as given (not resolved)."""
    files: tuple[str, ...]
    """Names of the wanted files in it, sorted."""
    others: tuple[str, ...]
    """Names of the other files in it, sorted."""
    depth: int
    """Folder levels below the root."""

    @property
    def key_text(self) -> str:
        return "/".join(self.key)


@dataclass
class TreeScan:
    """Everything one walk of a tree found: its sequence folders and what did not fit."""

    sequences: list[SequenceFolder] = field(default_factory=list)
    """Sequence folders, sorted by key."""
    shallow: list[str] = field(default_factory=list)
    """Wanted files less than three levels below the root (paths relative to it)."""
    leaves: list[tuple[str, int, tuple[str, ...]]] = field(default_factory=list)
    """Folders without sub-folders and without wanted files: ``(path, depth, other files)``."""
    unlisted: list[tuple[str, str]] = field(default_factory=list)
    """Folders that could not be listed: ``(path, reason)``."""
    skipped_links: list[tuple[str, str]] = field(default_factory=list)
    """Directory links not followed: ``(path, reason)``."""
    suffix_counts: dict[str, int] = field(default_factory=dict)
    """How many unwanted files were seen per lower-case suffix (e.g. ``.pkl`` in a PNG walk)."""


@dataclass
class _State:
    root_real: str
    follow_links: bool
    suffixes: Collection[str]
    prefix: tuple[str, ...] = ()
    walk: TreeScan = field(default_factory=TreeScan)
    seen: set[str] = field(default_factory=set)


def _link_skip(entry: os.DirEntry[str], state: _State) -> str | None:
    """Why the directory link ``entry`` is not followed, or ``None`` to follow it."""
    target = os.path.realpath(entry.path)
    if not state.follow_links:
        return f"directory link to {target} not followed (pass {option('follow_links')} to follow it)"
    inside = target == state.root_real or target.startswith(state.root_real.rstrip(os.sep) + os.sep)
    if inside:
        return f"link to {target}, which is inside the tree and walked once on its own"
    if target in state.seen:
        return f"link to {target}, which was already visited"
    state.seen.add(target)
    return None


def _list(folder: str, state: _State) -> tuple[list[str], list[str], list[str]] | None:
    """``(wanted files, other files, sub-folders)`` of ``folder``; None when it cannot be listed."""
    wanted: list[str] = []
    others: list[str] = []
    subdirs: list[str] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                if is_dir:
                    reason = _link_skip(entry, state) if entry.is_symlink() else None
                    if reason is None:
                        subdirs.append(entry.name)
                    else:
                        state.walk.skipped_links.append((entry.path, reason))
                    continue
                suffix = os.path.splitext(entry.name)[1].lower()
                if suffix in state.suffixes:
                    wanted.append(entry.name)
                else:
                    others.append(entry.name)
                    state.walk.suffix_counts[suffix] = state.walk.suffix_counts.get(suffix, 0) + 1
    except OSError as exc:
        state.walk.unlisted.append((folder, f"cannot list folder ({exc.strerror or exc})"))
        return None
    return sorted(wanted), sorted(others), sorted(subdirs)


_Stack = list[tuple[str, tuple[str, ...]]]


def _visit(folder: str, parts: tuple[str, ...], state: _State, stack: _Stack) -> None:
    listed = _list(folder, state)
    if listed is None:
        return
    wanted, others, subdirs = listed
    named = state.prefix + parts
    if wanted and len(named) >= 3:
        key = (named[-3], named[-2], named[-1])
        state.walk.sequences.append(SequenceFolder(key, folder, tuple(wanted), tuple(others), len(parts)))
    elif wanted:
        state.walk.shallow.extend("/".join(parts + (name,)) for name in wanted)
    elif not subdirs and parts:
        state.walk.leaves.append((folder, len(parts), tuple(others)))
    stack.extend((os.path.join(folder, name), parts + (name,)) for name in reversed(subdirs))


def _check_clashes(sequences: list[SequenceFolder]) -> None:
    by_key: dict[tuple[str, str, str], list[str]] = {}
    for seq in sequences:
        by_key.setdefault(seq.key, []).append(seq.path)
    clashes = sorted((k, v) for k, v in by_key.items() if len(v) > 1)
    if clashes:
        key, folders = clashes[0]
        text = "/".join(key)
        more = f" (and {len(clashes) - 1} more keys)" if len(clashes) > 1 else ""
        raise DataError(
            f"{folders[0]} and {folders[1]} both map to sequence {text}{more}; a sequence is named by "
            "its last three folders (id/type-seq/view), so keep one of them or use one root per data set"
        )


def walk_sequences(root: str | os.PathLike[str], suffixes: Collection[str], *,
                   follow_links: bool = False, key_prefix: tuple[str, ...] = ()) -> TreeScan:
    """Walk ``root`` once and return its sequence folders (files ending in one of ``suffixes``).

    ``key_prefix``: folder names that stand above the root when keys are formed (default none).

    Raises :class:`DataError` when two folders map to the same ``(id, type, view)``.
    """
    top = os.fspath(root)
    real = os.path.realpath(top)
    state = _State(root_real=real, follow_links=follow_links, suffixes=frozenset(s.lower() for s in suffixes),
                   prefix=key_prefix)
    state.seen.add(real)
    stack: _Stack = [(top, ())]
    while stack:
        folder, parts = stack.pop()
        _visit(folder, parts, state, stack)
    state.walk.sequences.sort(key=lambda s: s.key)
    state.walk.shallow.sort()
    _check_clashes(state.walk.sequences)
    return state.walk
