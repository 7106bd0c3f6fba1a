"""Where packaged resources (configs, partitions) live.

In a source checkout or editable install they are the repository's top-level ``configs/``;
in a wheel they are copied to ``gaitcli/_configs`` (see ``pyproject.toml``).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def configs_dir() -> Path:
    """The directory holding the packaged YAML configs and ``partitions/``."""
    for candidate in (_PACKAGE_DIR / "_configs", _PACKAGE_DIR.parent / "configs"):
        if (candidate / "partitions").is_dir():
            return candidate
    raise FileNotFoundError("gaitcli's packaged configs are missing; reinstall gaitcli")


def partitions_dir() -> Path:
    return configs_dir() / "partitions"


# Names the reference code base uses for the same splits.
PARTITION_ALIASES = {"CASIA-B_include_005.json": "CASIA-B.json"}


def packaged_partition(name: str) -> Path | None:
    """The packaged partition file for a basename such as ``CASIA-B.json``, if there is one."""
    name = PARTITION_ALIASES.get(name, name)
    path = partitions_dir() / name
    return path if path.is_file() else None
