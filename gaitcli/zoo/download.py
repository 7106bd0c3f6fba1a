"""Downloading one file over HTTP(S): resumable, checksummed, atomic (docs/zoo.md, "Downloads").

The bytes go to ``TARGET.part``; a later call sends ``Range: bytes=N-`` for what is missing and
appends (a server that ignores the range is read from the start again). Only a complete file
whose SHA-256 matches the pin (when there is one) is renamed to ``TARGET``; a file that does not
match is removed. The standard library's ``urllib`` does the HTTP (no new dependency); every
network failure is one :class:`DownloadError` line, and an interrupted transfer keeps its
``.part`` so that the same command resumes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from rich.console import Console

from gaitcli import __version__
from gaitcli.errors import GaitError
from gaitcli.fileio import JSONValue, write_error

CHUNK = 1 << 20
"""Bytes per read."""
DEFAULT_TIMEOUT = 30.0
"""Seconds without an answer (connecting, or between two reads) before a download gives up."""
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class DownloadError(GaitError):
    """The network or the server failed; a partial file stays for the next try."""


class ChecksumError(GaitError):
    """A downloaded file whose SHA-256 is not the pinned one; the file is removed."""


@dataclass(frozen=True)
class DownloadResult:
    """One file fetched (or found complete)."""

    path: Path
    """The complete file."""
    size: int
    """Its size in bytes."""
    sha256: str
    """Its SHA-256 (hex)."""
    reused: bool
    """The complete file was already there; nothing was fetched."""
    resumed_from: int
    """Bytes of a ``.part`` file this call continued (0: a fresh download)."""
    fetched: int
    """Bytes received over the network by this call."""

    def to_json(self) -> dict[str, JSONValue]:
        return {"path": str(self.path), "size": self.size, "sha256": self.sha256, "reused": self.reused,
                "resumed_from": self.resumed_from, "fetched": self.fetched}


def part_path(target: Path) -> Path:
    """Where an unfinished download of ``target`` lives."""
    return target.with_name(target.name + ".part")


def sha256_of(path: Path, *, chunk: int = CHUNK) -> str:
    """The SHA-256 of a file (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _network_error(url: str, exc: BaseException, timeout: float) -> DownloadError:
    """One line for what urllib / http.client / the socket raised."""
    host = _host(url)
    if isinstance(exc, urllib.error.HTTPError):
        advice = {
            404: "the file is not at this address (it may have moved): check the entry's url, or give the "
                 "address you found in a catalogue copy",
            403: "the server refuses the request: the file may need a login, or the address has changed",
            429: "the server asks to slow down: wait a minute and run again",
        }.get(exc.code, "run again later; if it persists the address may be wrong")
        return DownloadError(f"cannot download {url}: HTTP {exc.code} {exc.reason}; {advice}")
    reason: object = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return DownloadError(f"cannot download {url}: {host} did not answer within {timeout:g} s; "
                             "check the network and run again (a partial download resumes)")
    if isinstance(reason, socket.gaierror):
        return DownloadError(f"cannot download {url}: cannot resolve {host} ({reason.strerror or reason}); "
                             "check the network connection")
    if isinstance(reason, OSError):
        text = reason.strerror or str(reason) or type(reason).__name__
    else:
        text = str(reason) or type(reason).__name__
    return DownloadError(f"cannot download {url}: {text} ({host}); check the network and run again")


@dataclass
class _Reply:
    """What a GET answered: where the body starts and the whole file's size (None: unknown)."""

    response: http.client.HTTPResponse | None
    start: int
    total: int | None


def _open(url: str, offset: int, timeout: float) -> _Reply:
    """GET ``url`` from byte ``offset`` (a range request when ``offset > 0``)."""
    headers = {"User-Agent": f"gaitcli/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) only (catalogue)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # nothing left to send: the part may already be the whole file
            found = re.fullmatch(r"bytes\s+\*/(\d+)", (exc.headers.get("Content-Range") or "").strip())
            exc.close()
            if found is not None and int(found.group(1)) == offset:
                return _Reply(None, offset, offset)
            return _open(url, 0, timeout)  # the part is longer than the file: start over
        raise
    status = response.status
    length = response.headers.get("Content-Length")
    if status == 206:
        found = _CONTENT_RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
        if found is None or int(found.group(1)) != offset:
            response.close()  # a range we did not ask for: start over
            return _open(url, 0, timeout)
        total = None if found.group(3) == "*" else int(found.group(3))
        return _Reply(response, offset, total)
    total = int(length) if length and length.isdigit() else None
    return _Reply(response, 0, total)  # 200: the whole file (a server that ignores ranges)


@contextlib.contextmanager
def _part_file(part: Path, start: int) -> Iterator[BinaryIO]:
    """The ``.part`` file, cut to ``start`` bytes and open for appending."""
    try:
        part.parent.mkdir(parents=True, exist_ok=True)
        handle = open(part, "r+b" if part.exists() else "wb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise write_error(part, exc) from None
    try:
        handle.truncate(start)
        handle.seek(start)
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
    except OSError as exc:
        raise write_error(part, exc) from None
    finally:
        handle.close()


def _hash_prefix(part: Path, size: int) -> hashlib._Hash:
    digest = hashlib.sha256()
    with open(part, "rb") as fh:
        left = size
        while left > 0 and (block := fh.read(min(CHUNK, left))):
            digest.update(block)
            left -= len(block)
    return digest


def download(
    url: str,
    target: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    console: Console | None = None,
    label: str | None = None,
) -> DownloadResult:
    """Fetch ``url`` into ``target``: resume a ``.part`` left by an earlier call, check the
    SHA-256 against ``sha256`` when given (a mismatch removes the file and raises
    :class:`ChecksumError`), rename into place. A complete ``target`` already there is checked
    and reused. ``console`` shows a progress bar (bytes, speed, ETA) when it is a terminal."""
    target = Path(target)
    if target.is_file():
        found = sha256_of(target)
        _check(url, target, found, sha256, resumed=False)
        return DownloadResult(target, target.stat().st_size, found, True, 0, 0)
    part = part_path(target)
    have = part.stat().st_size if part.is_file() else 0
    try:
        reply = _open(url, have, timeout)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise _network_error(url, exc, timeout) from None
    start = reply.start
    digest = _hash_prefix(part, start) if start else hashlib.sha256()
    fetched = 0
    if reply.response is not None:
        fetched = _receive(url, reply, part, digest, timeout, console, label or target.name)
    size = start + fetched
    if reply.total is not None and size < reply.total:
        raise DownloadError(
            f"download of {url} stopped after {size} of {reply.total} bytes; run the same command again to "
            f"resume ({part} is kept)"
        )
    hexdigest = digest.hexdigest()
    _check(url, part, hexdigest, sha256, resumed=start > 0)
    try:
        os.replace(part, target)
    except OSError as exc:
        raise write_error(target, exc) from None
    return DownloadResult(target, size, hexdigest, False, start, fetched)


def _receive(url: str, reply: _Reply, part: Path, digest: hashlib._Hash, timeout: float,
             console: Console | None, label: str) -> int:
    """Append the response body to ``part`` (cut to ``reply.start``); the bytes received."""
    from rich.progress import DownloadColumn, TransferSpeedColumn

    from gaitcli.progress import make_progress

    response = reply.response
    assert response is not None
    fetched = 0
    progress = make_progress(label, console, DownloadColumn(), TransferSpeedColumn(), unit=None, count=False,
                             transient=True, disable=console is None or not console.is_terminal)
    try:
        with progress, _part_file(part, reply.start) as out:
            task = progress.add_task("download", total=reply.total, completed=reply.start)
            while True:
                try:
                    block = response.read(CHUNK)
                except (http.client.HTTPException, OSError) as exc:
                    raise _interrupted(url, reply, fetched, part, exc, timeout) from None
                if not block:
                    break
                out.write(block)
                digest.update(block)
                fetched += len(block)
                progress.update(task, advance=len(block))
    finally:
        response.close()
    return fetched


def _interrupted(url: str, reply: _Reply, fetched: int, part: Path, exc: BaseException,
                 timeout: float) -> DownloadError:
    got = reply.start + fetched
    of = f" of {reply.total}" if reply.total is not None else ""
    if isinstance(exc, (socket.timeout, TimeoutError)):
        why = f"no data for {timeout:g} s"
    elif isinstance(exc, http.client.IncompleteRead):
        why = "the connection closed early"
    else:
        why = (exc.strerror if isinstance(exc, OSError) else None) or type(exc).__name__
    return DownloadError(
        f"download of {url} stopped after {got}{of} bytes ({why}); run the same command again to resume "
        f"({part} is kept)"
    )


def _check(url: str, path: Path, digest: str, pinned: str | None, *, resumed: bool) -> None:
    if pinned is None or digest == pinned.lower():
        return
    with contextlib.suppress(OSError):
        path.unlink()
    how = " (it continued an earlier partial download; run again to download it whole)" if resumed else ""
    raise ChecksumError(
        f"{url}: the file's SHA-256 is {digest}, not the pinned {pinned.lower()}{how}; the file was removed. "
        "If the publisher changed the file, check the new hash against their listing before pinning it"
    )
