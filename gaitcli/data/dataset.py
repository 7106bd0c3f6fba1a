"""A prepared tree plus a partition, as a list of sequences (SPEC §3).

One item is one sequence: ``(label, type, view, [pkl paths])``. Arrays are read through the
restricted unpickler, optionally cached in memory. Ids the partition names but the disk lacks
are reported (never silently dropped), and all pkls of one sequence must agree on the number
of frames.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gaitcli.data.partition import Partition, load_partition
from gaitcli.data.pickle_io import load_array
from gaitcli.errors import DataError


@dataclass(frozen=True)
class SequenceInfo:
    label: str
    type: str
    view: str
    paths: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.label}/{self.type}/{self.view}"


def scan_tree(root: str | os.PathLike, ids: Sequence[str] | None = None, data_in_use: Sequence[bool] | None = None) -> list[SequenceInfo]:
    """Every ``root/id/type/view/*.pkl`` sequence (of ``ids`` when given), sorted by id, type, view."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root} (set data_cfg.dataset_root or --data)")
    wanted = set(ids) if ids is not None else None
    out: list[SequenceInfo] = []
    for label in sorted(_subdirs(root)):
        if wanted is not None and label not in wanted:
            continue
        for seq_type in sorted(_subdirs(root / label)):
            for view in sorted(_subdirs(root / label / seq_type)):
                folder = root / label / seq_type / view
                pkls = sorted(e.name for e in os.scandir(folder) if e.name.endswith(".pkl") and e.is_file())
                if data_in_use is not None:
                    if len(data_in_use) != len(pkls):
                        raise DataError(
                            f"{folder}: {len(pkls)} pkl files but data_cfg.data_in_use has {len(data_in_use)} entries"
                        )
                    pkls = [p for p, use in zip(pkls, data_in_use, strict=True) if use]
                if pkls:
                    out.append(SequenceInfo(label, seq_type, view, tuple(str(folder / p) for p in pkls)))
    return out


def _subdirs(folder: Path) -> list[str]:
    return [e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")]


class GaitDataset:
    """The sequences of one split. ``dataset[i]`` returns ``(arrays, label, type, view)``."""

    def __init__(
        self,
        root: str | os.PathLike,
        partition: str | os.PathLike | Partition,
        split: str = "train",
        *,
        cache: bool = False,
        data_in_use: Sequence[bool] | None = None,
        min_frames: int | None = None,
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError("split must be 'train' or 'test'")
        self.partition = partition if isinstance(partition, Partition) else load_partition(partition)
        self.split = split
        ids = self.partition.ids(split)
        self.sequences = scan_tree(root, ids, data_in_use)
        present = {s.label for s in self.sequences}
        self.missing_ids = sorted(set(ids) - present)
        self.skipped_short: list[tuple[str, int]] = []
        self._cache: dict[int, list[np.ndarray]] | None = {} if cache else None
        if min_frames:
            self._drop_short(min_frames)
        if not self.sequences:
            raise DataError(
                f"no sequences of the {split} split ({len(ids)} ids in {self.partition.path}) under {root}; "
                "check data_cfg.dataset_root and the partition"
            )
        self.label_set = sorted({s.label for s in self.sequences})
        self.label_index = {label: i for i, label in enumerate(self.label_set)}
        self.labels = np.array([self.label_index[s.label] for s in self.sequences], dtype=np.int64)

    def _drop_short(self, min_frames: int) -> None:
        kept = []
        for info in self.sequences:
            length = sequence_length(info.paths[0])
            if length < min_frames:
                self.skipped_short.append((info.key, length))
            else:
                kept.append(info)
        self.sequences = kept

    def __len__(self) -> int:
        return len(self.sequences)

    def load(self, index: int) -> list[np.ndarray]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        info = self.sequences[index]
        arrays = [load_array(p) for p in info.paths]
        lengths = {len(a) for a in arrays}
        if len(lengths) != 1:
            raise DataError(f"{info.key}: its pkl files hold different frame counts {sorted(lengths)}")
        if self._cache is not None:
            self._cache[index] = arrays
        return arrays

    def __getitem__(self, index: int) -> tuple[list[np.ndarray], str, str, str]:
        info = self.sequences[index]
        return self.load(index), info.label, info.type, info.view


def sequence_length(path: str | os.PathLike) -> int:
    """Frames in one pkl, read from its header (no unpickling, no full read)."""
    from gaitcli.data.pkl_header import HeaderProblem, read_array_header

    try:
        frames = read_array_header(path).frames
    except HeaderProblem as exc:
        raise DataError(f"{path}: {exc}") from None
    return int(frames or 0)
