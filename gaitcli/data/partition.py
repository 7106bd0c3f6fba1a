"""Partition files: ``{"TRAIN_SET": [ids...], "TEST_SET": [ids...]}`` (OpenGait's format).

One reader for every command (training, evaluation, ``gait inspect --partition``). A path that
does not exist but is named like a packaged partition (``CASIA-B.json``, ``OUMVLP.json``, ...)
reads the packaged file, as configs do.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from gaitcli.errors import DataError
from gaitcli.paths import packaged_partition

_SHAPE = '{"TRAIN_SET": [...], "TEST_SET": [...]}'


@dataclass(frozen=True)
class Partition:
    train: tuple[str, ...]
    test: tuple[str, ...]
    path: str

    def ids(self, split: str) -> tuple[str, ...]:
        return self.train if split == "train" else self.test


def _is_id(value: object) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def load_partition(path: str | os.PathLike[str]) -> Partition:
    """Read and check a partition file; every problem is one :class:`DataError` line."""
    path = Path(path).expanduser()
    if not path.is_file():
        packaged = packaged_partition(path.name)
        if packaged is None:
            raise DataError(f"{path}: partition file not found; pass a JSON file with TRAIN_SET and TEST_SET "
                            "id lists (e.g. configs/partitions/CASIA-B.json, or set "
                            "data_cfg.dataset_partition)")
        path = packaged
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the partition file ({exc}); check its permissions "
                        "and encoding (UTF-8 JSON)") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                        f"fix it, expected {_SHAPE}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object {_SHAPE}, found a {type(data).__name__}")
    sets = []
    for key in ("TRAIN_SET", "TEST_SET"):
        ids = data.get(key)
        if not isinstance(ids, list) or not all(_is_id(i) for i in ids):
            raise DataError(f"{path}: not a partition file: '{key}' must be a list of id strings "
                            f'(e.g. "{key}": ["001", "002"]); found {type(ids).__name__}')
        sets.append(tuple(str(i) for i in ids))
    return Partition(sets[0], sets[1], str(path))
