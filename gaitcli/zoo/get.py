"""``gait zoo get NAME``: download a released checkpoint, check it, convert it safely.

Steps (docs/zoo.md): the checkpoint (or the release archive holding it) is downloaded with
resume into ``HOME/downloads``; its SHA-256 must equal the catalogue's pin or the one the user
gives (``sha256``), else nothing is converted: a mismatch removes the file, an entry nobody has
pinned yet keeps it, prints its hash and says how to pin one. The OpenGait config is downloaded
and checked the same way (the catalogue pins every config). The weights then go through
:func:`gaitcli.convert.convert_checkpoint`, which reads them with ``torch.load(weights_only=True)``:
no code in the file ever runs, pinned or not. The result is ``HOME/NAME/NAME.safetensors`` (the
config embedded) and ``HOME/NAME/zoo.json``, the record of what was fetched and checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from rich.console import Console

from gaitcli import __version__
from gaitcli.convert import ConvertSummary, convert_checkpoint
from gaitcli.errors import GaitError, option
from gaitcli.fileio import JSONValue, atomic_write_bytes

from .archive import extract_member
from .catalogue import ZooEntry
from .download import DEFAULT_TIMEOUT, DownloadResult, download

Warn = Callable[[str], None]
HOME_ENV = "GAIT_ZOO_DIR"
"""The environment variable naming the zoo folder (default ``~/.cache/gaitcli/zoo``)."""
RECORD_FORMAT = 1
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class UnpinnedError(GaitError):
    """A checkpoint whose SHA-256 nobody has pinned: downloaded and kept, not converted."""


def zoo_home(out: str | os.PathLike[str] | None = None) -> Path:
    """``out``, else ``$GAIT_ZOO_DIR``, else ``$XDG_CACHE_HOME/gaitcli/zoo`` (``~/.cache/...``)."""
    if out is not None:
        return Path(out)
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "gaitcli" / "zoo"


@dataclass(frozen=True)
class EntryPaths:
    """Where one entry's files live under the zoo folder."""

    folder: Path
    """``HOME/NAME``."""
    checkpoint: Path
    """``HOME/NAME/NAME.safetensors``: the converted checkpoint, its config embedded."""
    record: Path
    """``HOME/NAME/zoo.json``: what was downloaded, its hashes, the conversion summary."""
    downloads: Path
    """``HOME/downloads``: downloaded files, shared by entries that share an archive."""

    @classmethod
    def of(cls, home: Path, name: str) -> EntryPaths:
        folder = home / name
        return cls(folder, folder / f"{name}.safetensors", folder / "zoo.json", home / "downloads")

    def download_target(self, url: str) -> Path:
        """The local name of ``url``: a short hash of the address, then its file name."""
        base = Path(unquote(urlsplit(url).path)).name or "download"
        key = hashlib.sha256(url.encode()).hexdigest()[:10]
        return self.downloads / f"{key}-{base}"


@dataclass(frozen=True)
class GetOptions:
    """What the user chose besides the entry."""

    out: Path | None = None
    """The zoo folder (default :func:`zoo_home`)."""
    sha256: str | None = None
    """A SHA-256 the user verified, for an entry the catalogue does not pin."""
    url: str | None = None
    """Another address for the same file (a mirror, or where a derived address really is)."""
    config: Path | None = None
    """A local config to convert with instead of the entry's OpenGait config."""
    timeout: float = DEFAULT_TIMEOUT
    """Seconds without an answer before a download gives up."""
    overwrite: bool = False
    """Convert again even when the checkpoint is already there."""


@dataclass
class GetResult:
    """What ``gait zoo get`` did."""

    entry: ZooEntry
    """The catalogue entry."""
    checkpoint: Path
    """The converted checkpoint."""
    record: Path
    """The ``zoo.json`` record beside it."""
    reused: bool
    """The checkpoint was already there (nothing downloaded or converted)."""
    download: DownloadResult | None = None
    """The checkpoint file (or archive) fetched; None when reused."""
    sha256_source: str = ""
    """``catalogue`` or ``user`` (the pin that vouched for the file)."""
    member: str | None = None
    """The archive member converted."""
    config: str = ""
    """The config file converted with."""
    summary: ConvertSummary | None = None
    """The conversion; None when reused."""

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "name": self.entry.name, "checkpoint": str(self.checkpoint), "record": str(self.record),
            "reused": self.reused, "download": self.download.to_json() if self.download else None,
            "sha256_source": self.sha256_source or None, "member": self.member, "config": self.config or None,
            "convert": self.summary.to_json() if self.summary else None,
        }


def check_sha256(value: str | None) -> str | None:
    """A user's SHA-256, lower-cased; one line when it is not 64 hex digits."""
    if value is None:
        return None
    text = value.strip()
    if not _HEX64.fullmatch(text):
        raise GaitError(f"{option('sha256', value)}: a SHA-256 is 64 hex digits (as sha256sum prints it)")
    return text.lower()


def _pin(entry: ZooEntry, given: str | None) -> tuple[str | None, str]:
    if entry.sha256 is not None and given is not None and given != entry.sha256:
        raise GaitError(
            f"{entry.name}: the catalogue pins SHA-256 {entry.sha256}, {option('sha256', given)} differs; "
            "drop the option (the catalogue's pin is checked), or use a catalogue copy if the file really "
            "changed"
        )
    if entry.sha256 is not None:
        return entry.sha256, "catalogue"
    return given, "user" if given is not None else ""


def _url(entry: ZooEntry, given: str | None) -> str:
    if given is None:
        return entry.url
    if not given.startswith(("https://", "http://")):
        raise GaitError(f"{option('url', given)}: give an http(s) address")
    return given


def get_checkpoint(
    entry: ZooEntry,
    options: GetOptions = GetOptions(),
    *,
    console: Console | None = None,
    warn: Warn | None = None,
) -> GetResult:
    """Download, check and convert ``entry`` (see the module docstring)."""
    given = check_sha256(options.sha256)
    pin, pin_source = _pin(entry, given)
    url = _url(entry, options.url)
    paths = EntryPaths.of(zoo_home(options.out), entry.name)
    if options.config is not None and not Path(options.config).is_file():
        raise GaitError(f"{option('config', options.config)}: no such file")
    if paths.checkpoint.exists() and not options.overwrite:
        return GetResult(entry, paths.checkpoint, paths.record, reused=True)
    fetched = download(url, paths.download_target(url), sha256=pin, timeout=options.timeout, console=console,
                       label=entry.name)
    if pin is None:
        raise _unpinned(entry, fetched)
    config = _config(entry, paths, options)
    member = None
    source = fetched.path
    if entry.member is not None:
        source = paths.folder / f".{entry.name}.member.pt"
        member = extract_member(fetched.path, entry.member, source)
    try:
        summary = convert_checkpoint(source, paths.checkpoint, config_path=config, overwrite=True, warn=warn)
    finally:
        if entry.member is not None:
            with contextlib.suppress(OSError):
                source.unlink()
    result = GetResult(entry, paths.checkpoint, paths.record, False, fetched, pin_source, member, str(config),
                       summary)
    _write_record(result, url)
    return result


def _unpinned(entry: ZooEntry, fetched: DownloadResult) -> UnpinnedError:
    where = {"docs": "the file's Hugging Face page lists its SHA-256",
             "release": "the GitHub release page lists each asset's SHA-256",
             }.get(entry.url_source, "ask the publisher for its SHA-256")
    return UnpinnedError(
        f"{entry.name}: no SHA-256 is pinned for this checkpoint yet (the catalogue says unknown), so "
        f"nothing vouches for the file and it was not converted. It is downloaded to {fetched.path} (SHA-256 "
        f"{fetched.sha256}): compare that hash with the publisher's ({where}), then pin the one you checked "
        f"with {option('sha256', 'HEX')}. Pinned or not, the file is only ever read as weights, never run"
    )


def _config(entry: ZooEntry, paths: EntryPaths, options: GetOptions) -> Path:
    """The config to convert with: the user's file, else the entry's OpenGait config (downloaded
    into the entry's folder and checked against its pin)."""
    if options.config is not None:
        return Path(options.config)
    name = Path(urlsplit(entry.config_url).path).name or "config.yaml"
    got = download(entry.config_url, paths.folder / name, sha256=entry.config_sha256, timeout=options.timeout)
    return got.path


def _write_record(result: GetResult, url: str) -> None:
    entry = result.entry
    assert result.download is not None
    record: dict[str, JSONValue] = {
        "format": RECORD_FORMAT,
        "gaitcli": __version__,
        "name": entry.name,
        "model": entry.model,
        "dataset": entry.dataset,
        "url": url,
        "file": str(result.download.path),
        "sha256": result.download.sha256,
        "sha256_source": result.sha256_source,
        "member": result.member,
        "config": result.config,
        "config_url": entry.config_url,
        "convert": result.summary.to_json() if result.summary else None,
        "published": [r.to_json() for r in entry.published],
    }
    atomic_write_bytes(result.record, (json.dumps(record, indent=2) + "\n").encode())
