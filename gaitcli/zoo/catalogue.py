"""The zoo's catalogue: OpenGait's released checkpoints as typed records (docs/zoo.md).

The catalogue is a YAML data file shipped in the package (``gaitcli/zoo/catalogue.yaml``); a
copy can replace it (``GAIT_ZOO_CATALOGUE`` or the ``catalogue`` argument), which is how tests
point it at a loopback server and how a user fixes an address or pins a hash before a new
gaitcli release does. Every mistake in it is one line naming the file, the entry and the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gaitcli.errors import GaitError
from gaitcli.fileio import JSONValue

CATALOGUE_ENV = "GAIT_ZOO_CATALOGUE"
"""The environment variable naming a catalogue file to use instead of the packaged one."""
PACKAGED = Path(__file__).with_name("catalogue.yaml")
"""The catalogue shipped with gaitcli."""
FORMAT = 1
"""The ``format`` this gaitcli reads."""
UNKNOWN = "unknown"
"""How the catalogue spells a SHA-256 nobody has pinned yet."""
URL_SOURCES = ("docs", "release", "derived", "local")
"""Where an address comes from: a link in OpenGait's docs, a release archive OpenGait's download
script names, an address derived from OpenGait's output layout (not published: it may be wrong),
or a file the catalogue's author serves (tests, mirrors)."""
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


class CatalogueError(GaitError):
    """A catalogue file that cannot be read or holds a malformed entry."""


@dataclass(frozen=True)
class PublishedRow:
    """One number of a published table."""

    metric: str
    """``rank1``, ``rank5``, ``mAP`` or ``mINP`` (in %)."""
    probe_set: str | None
    """The probe set (``NM``, ``BG``, ``CL``...), None where the protocol has one set."""
    value: float
    """The number OpenGait publishes for its own run (docs/1.model_zoo.md)."""
    paper: float | None = None
    """The number in the model's paper, where OpenGait quotes it in parentheses."""
    protocol: str | None = None
    """The ``gait eval`` protocol that computes it, when it is not the entry's own (OpenGait's
    CASIA-B / OU-MVLP mAP is the cross-view evaluation)."""

    def label(self) -> str:
        return self.metric if self.probe_set is None else f"{self.metric} {self.probe_set}"

    def to_json(self) -> dict[str, JSONValue]:
        return {"metric": self.metric, "set": self.probe_set, "value": self.value, "paper": self.paper,
                "protocol": self.protocol}


@dataclass(frozen=True)
class ZooEntry:
    """One released checkpoint."""

    name: str
    """What ``gait zoo get NAME`` takes, e.g. ``gaitgl-casiab``."""
    model: str
    """OpenGait's model class (``GaitGL``, ``Baseline`` = GaitBase, ``DeepGaitV2``...)."""
    title: str
    """How the model zoo table names the row, e.g. ``GaitBase (CVPR 2023)``."""
    dataset: str
    """The training and test set (``CASIA-B``, ``OUMVLP``, ``GREW``, ``Gait3D``, ``SUSTech1K``)."""
    url: str
    """The download address: the checkpoint itself, or an archive holding it (``member``)."""
    url_source: str
    """One of :data:`URL_SOURCES`."""
    config: str
    """OpenGait's config for it, as a path in OpenGait's tree (``configs/gaitgl/gaitgl.yaml``)."""
    config_url: str
    """Where that config is downloaded from (pinned to one OpenGait commit)."""
    sha256: str | None = None
    """The SHA-256 of the file at ``url``; None while nobody has pinned it."""
    member: str | None = None
    """For an archive (zip): the checkpoint inside it, as a glob (``*GaitGL/checkpoints/GaitGL-80000.pt``)
    that must match exactly one member."""
    config_sha256: str | None = None
    """The SHA-256 of the config file at ``config_url``."""
    protocol: str | None = "auto"
    """The ``gait eval`` protocol ``gait zoo verify`` runs; None where gaitcli cannot score the
    data set (the reason is in ``notes``)."""
    published: tuple[PublishedRow, ...] = ()
    """The published table."""
    published_source: str = ""
    """Where the numbers come from."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    """What a user should know (an unpublished address, a config that differs from the row...)."""

    @property
    def headline(self) -> str:
        """The published rank-1 numbers, ``97.6/94.0/77.4`` (a longer table: its ``ALL`` set)."""
        rows = [r for r in self.published if r.metric == "rank1" and r.protocol is None]
        if len(rows) > 3:
            rows = [r for r in rows if r.probe_set == "ALL"] or rows[:3]
            return " ".join(f"{r.probe_set or ''} {r.value:.1f}".strip() for r in rows)
        return "/".join(f"{r.value:.1f}" for r in rows)

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "name": self.name, "model": self.model, "title": self.title, "dataset": self.dataset,
            "url": self.url, "url_source": self.url_source, "member": self.member,
            "sha256": self.sha256 or UNKNOWN, "config": self.config, "config_url": self.config_url,
            "config_sha256": self.config_sha256 or UNKNOWN, "protocol": self.protocol,
            "published": [r.to_json() for r in self.published], "published_source": self.published_source,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Catalogue:
    """The whole catalogue."""

    path: Path
    """The file it was read from."""
    entries: tuple[ZooEntry, ...]
    """In file order."""
    opengait_commit: str = ""
    """The OpenGait commit the config addresses and table numbers were read at."""

    def get(self, name: str) -> ZooEntry:
        """The entry called ``name`` (one line naming the closest names when there is none)."""
        for entry in self.entries:
            if entry.name == name:
                return entry
        import difflib

        names = [e.name for e in self.entries]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise CatalogueError(
            f"no zoo entry called {name!r} in {self.path}; {hint}gait zoo list shows the {len(names)} entries"
        )


def catalogue_path(path: str | os.PathLike[str] | None = None) -> Path:
    """``path``, else ``$GAIT_ZOO_CATALOGUE``, else the packaged catalogue."""
    if path is not None:
        return Path(path)
    env = os.environ.get(CATALOGUE_ENV)
    return Path(env) if env else PACKAGED


def load_catalogue(path: str | os.PathLike[str] | None = None) -> Catalogue:
    """Read and check a catalogue (see :func:`catalogue_path` for which one)."""
    file = catalogue_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        where = f" (from {CATALOGUE_ENV})" if path is None and os.environ.get(CATALOGUE_ENV) else ""
        reason = exc.strerror or exc
        raise CatalogueError(f"{file}{where}: cannot read the zoo catalogue ({reason})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark else ""
        raise CatalogueError(f"{file}: not valid YAML{at}; fix the catalogue file") from None
    if not isinstance(data, Mapping):
        raise CatalogueError(f"{file}: a zoo catalogue is a mapping with 'format' and 'entries'")
    fmt = data.get("format")
    if fmt != FORMAT:
        raise CatalogueError(
            f"{file}: catalogue format {fmt!r}, this gaitcli reads format {FORMAT}; "
            "update gaitcli or use a catalogue written for it"
        )
    raw_entries = data.get("entries")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise CatalogueError(f"{file}: 'entries' must be a non-empty list of checkpoints")
    entries = tuple(_entry(file, i, raw) for i, raw in enumerate(raw_entries))
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise CatalogueError(f"{file}: entry name {entry.name!r} appears twice; names must be unique")
        seen.add(entry.name)
    return Catalogue(file, entries, str(data.get("opengait_commit") or ""))


# ----------------------------------------------------------------------------------------------
# reading one entry
# ----------------------------------------------------------------------------------------------


class _Reader:
    """Typed access to one entry's keys; each mistake is one line naming file, entry and key."""

    def __init__(self, file: Path, index: int, raw: Mapping[str, object]) -> None:
        self.file, self.raw = file, raw
        name = raw.get("name")
        self.where = f"{file}: entries[{index}]" + (f" ({name})" if isinstance(name, str) else "")

    def fail(self, key: str, what: str) -> CatalogueError:
        return CatalogueError(f"{self.where}: {key}: {what}; fix the catalogue file")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.raw.get(key, default)
        if not isinstance(value, str) or not value.strip():
            missing = " (required)" if key not in self.raw else ""
            raise self.fail(key, "expected a non-empty string" + missing)
        return value.strip()

    def optional_text(self, key: str) -> str | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "expected a non-empty string or nothing")
        return value.strip()

    def sha(self, key: str) -> str | None:
        value = self.raw.get(key, UNKNOWN)
        if value is None or (isinstance(value, str) and value.strip().lower() == UNKNOWN):
            return None
        if not isinstance(value, str):
            raise self.fail(key, "YAML read the hash as a number: put it in quotes")
        text = str(value).strip().lower()
        if not _HEX64.fullmatch(text):
            raise self.fail(key, f"expected 64 hex digits or {UNKNOWN!r}, got {str(value)[:20]!r}")
        return text

    def url(self, key: str) -> str:
        value = self.text(key)
        if not value.startswith(("https://", "http://")):
            raise self.fail(key, f"expected an http(s) address, got {value[:40]!r}")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.raw.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "expected a list of strings")
        return tuple(v.strip() for v in value)


def _entry(file: Path, index: int, raw: object) -> ZooEntry:
    if not isinstance(raw, Mapping):
        raise CatalogueError(f"{file}: entries[{index}]: expected a mapping of keys; fix the catalogue file")
    r = _Reader(file, index, raw)
    known = {"name", "model", "title", "dataset", "url", "url_source", "member", "sha256", "config",
             "config_url", "config_sha256", "protocol", "published", "published_source", "notes"}
    unknown = sorted(set(map(str, raw)) - known)
    if unknown:
        raise r.fail(unknown[0], f"unknown key (known: {', '.join(sorted(known))})")
    name = r.text("name")
    if not _NAME.fullmatch(name):
        raise r.fail("name", f"{name!r}: use lower-case letters, digits, '.', '_' and '-'")
    source = r.text("url_source")
    if source not in URL_SOURCES:
        raise r.fail("url_source", f"{source!r}: expected one of {', '.join(URL_SOURCES)}")
    protocol = raw.get("protocol", "auto")
    if protocol is not None and not isinstance(protocol, str):
        raise r.fail("protocol", "expected a protocol name or null")
    return ZooEntry(
        name=name, model=r.text("model"), title=r.text("title", name), dataset=r.text("dataset"),
        url=r.url("url"), url_source=source, config=r.text("config"), config_url=r.url("config_url"),
        sha256=r.sha("sha256"), member=r.optional_text("member"), config_sha256=r.sha("config_sha256"),
        protocol=protocol, published=_published(r), published_source=str(raw.get("published_source") or ""),
        notes=r.texts("notes"),
    )


def _published(r: _Reader) -> tuple[PublishedRow, ...]:
    rows = r.raw.get("published", [])
    if not isinstance(rows, list):
        raise r.fail("published", "expected a list of {metric, set, value} rows")
    out = []
    for i, row in enumerate(rows):
        key = f"published[{i}]"
        if not isinstance(row, Mapping):
            raise r.fail(key, "expected a mapping with metric, set and value")
        metric, value, paper = row.get("metric"), row.get("value"), row.get("paper")
        probe_set, protocol = row.get("set"), row.get("protocol")
        if not isinstance(metric, str) or not metric:
            raise r.fail(key, "metric: expected a name such as rank1 or mAP")
        if not _is_number(value) or (paper is not None and not _is_number(paper)):
            raise r.fail(key, "value and paper must be numbers (in %)")
        if probe_set is not None and not isinstance(probe_set, str):
            raise r.fail(key, "set: expected a probe set name or null")
        if protocol is not None and not isinstance(protocol, str):
            raise r.fail(key, "protocol: expected a protocol name or null")
        assert isinstance(value, (int, float))
        out.append(PublishedRow(metric, probe_set, float(value),
                                float(paper) if isinstance(paper, (int, float)) else None, protocol))
    return tuple(out)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
