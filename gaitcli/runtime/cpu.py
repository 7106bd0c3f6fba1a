"""The CPU this process runs on, and the per-CPU cache of start-up measurements.

Some choices are made by measuring rather than by rule (docs/train.md, "Kernel choice"): whether bf16
autocast and the channels-last 3-D layout pay for a training step on this CPU. A measurement takes
seconds; its result is kept in ``$GAIT_CACHE_DIR/measurements.json`` (default
``$XDG_CACHE_HOME/gaitcli``, i.e. ``~/.cache/gaitcli``) under a key naming the CPU model, its bf16
hardware, the thread count and the torch version, so the next run on the same kind of machine
skips it. The file says what wrote it; a file in that place that gaitcli did not write is left
alone (the measurement is then simply not kept).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from gaitcli import __version__
from gaitcli.fileio import JSONValue, WriteError, atomic_write_bytes

CACHE_ENV = "GAIT_CACHE_DIR"
"""The environment variable naming the measurement cache folder."""
CACHE_FILE = "measurements.json"
CACHE_FORMAT = 1
_MAX_CACHE_BYTES = 1 << 20  # a bounded read: the file holds a few dozen small entries


@dataclass(frozen=True)
class CpuIdentity:
    """What a measurement on this CPU depends on."""

    model_name: str
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    avx512_bf16: bool
    """AVX-512-BF16 instructions (native bf16 dot products)."""
    amx: bool
    """AMX tiles (Intel's bf16 matrix unit)."""
    threads: int
    """torch's intra-op threads in this process."""
    torch_version: str
    """torch's version (its kernels are what is measured)."""

    @property
    def native_bf16(self) -> bool:
        """bf16 runs in hardware; without it oneDNN emulates bf16, several times slower than fp32."""
        return self.avx512_bf16 or self.amx

    @property
    def isa(self) -> str:
        """The bf16 hardware in words: ``AMX``, ``AVX-512-BF16`` or ``no bf16 hardware``."""
        return "AMX" if self.amx else "AVX-512-BF16" if self.avx512_bf16 else "no bf16 hardware"

    def key(self) -> str:
        """The cache key of this CPU."""
        return f"{self.model_name} | {self.isa} | {self.threads} threads | torch {self.torch_version}"

    def describe(self) -> str:
        """One phrase for a log line."""
        return f"{self.model_name} ({self.isa}, {self.threads} threads)"


def _model_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_identity() -> CpuIdentity:
    """This process's CPU."""
    return CpuIdentity(
        model_name=_model_name(),
        avx512_bf16=bool(torch.cpu._is_avx512_bf16_supported()),
        amx=bool(torch.cpu._is_amx_tile_supported()),
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
    )


def cache_dir() -> Path:
    """``$GAIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/gaitcli``, else ``~/.cache/gaitcli``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gaitcli"


class MeasurementCache:
    """``measurements.json``: ``{"format", "written_by", "entries": {kind: {key: value}}}``."""

    def __init__(self, folder: Path | None = None) -> None:
        self.path = (folder if folder is not None else cache_dir()) / CACHE_FILE

    def _read(self) -> tuple[dict[str, JSONValue] | None, str | None]:
        """(the file's content, None), ({}, None) when there is none, (None, why) when the file
        is not gaitcli's or cannot be read."""
        try:
            if self.path.stat().st_size > _MAX_CACHE_BYTES:
                return None, f"{self.path} is larger than a measurement cache can be"
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}, None
        except ValueError:
            return None, f"{self.path} is not a gaitcli measurement cache (not JSON)"
        except OSError as exc:
            return None, f"{self.path} cannot be read ({exc.strerror or exc.__class__.__name__})"
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or not isinstance(
            data.get("entries"), dict
        ):
            return None, f"{self.path} is not a gaitcli measurement cache of format {CACHE_FORMAT}"
        return data, None

    def get(self, kind: str, key: str) -> Mapping[str, JSONValue] | None:
        """The stored value, or None."""
        data, _ = self._read()
        entries = data.get("entries") if data else None
        section = entries.get(kind) if isinstance(entries, dict) else None
        value = section.get(key) if isinstance(section, dict) else None
        return value if isinstance(value, dict) else None

    def put(self, kind: str, key: str, value: Mapping[str, JSONValue]) -> str | None:
        """Store ``value`` with today's date as ``measured`` (atomically); returns why it was
        not kept, or None."""
        data, why = self._read()
        if data is None:
            return why
        entries = data.get("entries")
        entries = dict(entries) if isinstance(entries, dict) else {}
        section = entries.get(kind)
        section = dict(section) if isinstance(section, dict) else {}
        section[key] = {**value, "measured": datetime.now(timezone.utc).strftime("%Y-%m-%d")}
        entries[kind] = section
        out = {"format": CACHE_FORMAT, "written_by": f"gaitcli {__version__}", "entries": entries}
        try:
            atomic_write_bytes(self.path, (json.dumps(out, indent=1, sort_keys=True) + "\n").encode())
        except WriteError as exc:
            return str(exc)
        return None
