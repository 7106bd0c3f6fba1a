"""One checkpoint out of a release archive (OpenGait's GitHub releases are zip files of its
``output/`` tree, several checkpoints each).

Only the one member is read, by name, into a file we name: nothing is extracted to a path the
archive chooses (no ``../`` escapes), and a member larger than :data:`MAX_MEMBER` is refused.
"""

from __future__ import annotations

import fnmatch
import shutil
import zipfile
from pathlib import Path

from gaitcli.errors import GaitError
from gaitcli.fileio import atomic_writer

MAX_MEMBER = 16 << 30
"""The largest member read (16 GiB; OpenGait's checkpoints are well under 1 GiB)."""


class ArchiveError(GaitError):
    """An archive that is not a zip file, or that lacks the member."""


def find_member(names: list[str], pattern: str) -> str | None:
    """The one name matching ``pattern`` (a glob; ``*`` also matches ``/``); None when none does.
    More than one match is an error: the catalogue must name one checkpoint."""
    found = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    if len(found) > 1:
        raise ArchiveError(
            f"{len(found)} members match {pattern!r} ({', '.join(found[:4])}); the catalogue entry must "
            "name one: make its member more specific in a catalogue copy"
        )
    return found[0] if found else None


def extract_member(archive: Path, pattern: str, dest: Path) -> str:
    """Copy the member of ``archive`` matching ``pattern`` to ``dest`` (atomically); its name."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = {i.filename: i for i in zf.infolist() if not i.is_dir()}
            name = find_member(sorted(infos), pattern)
            if name is None:
                checkpoints = [n for n in sorted(infos) if n.endswith((".pt", ".pth", ".safetensors"))]
                shown = ", ".join(checkpoints[:6]) + (" ..." if len(checkpoints) > 6 else "")
                raise ArchiveError(
                    f"{archive}: no member matches {pattern!r} (checkpoints in it: {shown or 'none'}); "
                    "give the right member in a catalogue copy"
                )
            info = infos[name]
            if info.file_size > MAX_MEMBER:
                raise ArchiveError(
                    f"{archive}: member {name} claims {info.file_size} bytes; refused as too large"
                )
            with zf.open(info) as src, atomic_writer(dest) as out:
                shutil.copyfileobj(src, out, 1 << 20)
            return name
    except zipfile.BadZipFile as exc:
        raise ArchiveError(
            f"{archive}: not a readable zip archive ({exc}); remove it and run again"
        ) from None
    except (zipfile.LargeZipFile, NotImplementedError, RuntimeError) as exc:
        raise ArchiveError(f"{archive}: cannot read the archive ({exc})") from None
