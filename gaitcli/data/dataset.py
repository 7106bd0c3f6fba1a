"""A prepared tree plus a partition, as a list of sequences (docs/inspect.md).

One item is one sequence: ``(label, type, view, [pkl paths])``. Arrays are read through the
restricted unpickler, optionally cached in memory. Ids the partition names but the disk lacks
are reported (never silently dropped). Every pkl is checked from its header when the dataset is
built (:mod:`gaitcli.data.validity`), so a malformed file is refused with one line naming it
before training starts, never half-way through a run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gaitcli.data.partition import Partition, load_partition
from gaitcli.data.pickle_io import load_array
from gaitcli.data.pkl_header import HeaderProblem, PickledArray, read_array_header
from gaitcli.data.validity import (
    Refusal,
    file_reason,
    format_shape,
    frame_count_reason,
    header_reason,
    size_reasons,
)
from gaitcli.data.walker import SequenceFolder, walk_sequences
from gaitcli.errors import DataError, option


@dataclass(frozen=True)
class SequenceInfo:
    """One sequence of the data set."""

    label: str
    """The subject id (first of the three key folders)."""
    type: str
    """The walk type, e.g. ``nm-01``."""
    view: str
    """The view, e.g. ``090``."""
    paths: tuple[str, ...]
    """Its pkl files (one per modality), sorted by name."""
    frames: int = 0
    """Frames per pkl, from the headers."""

    @property
    def key(self) -> str:
        return f"{self.label}/{self.type}/{self.view}"


def scan_tree(root: str | os.PathLike[str], ids: Sequence[str] | None = None,
              data_in_use: Sequence[bool] | None = None) -> list[SequenceInfo]:
    """Every valid ``id/type/view`` sequence under ``root`` (of ``ids`` when given), sorted.

    Sequences are found by the one walker (:mod:`gaitcli.data.walker`) and every pkl is checked
    from its header against :mod:`gaitcli.data.validity`; the first file that fails is refused
    with one line naming it.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root} (set data_cfg.dataset_root or {option('data')})")
    wanted = set(ids) if ids is not None else None
    found = walk_sequences(root, {".pkl"}, follow_links=True)
    chosen: list[tuple[SequenceFolder, list[str]]] = []
    for seq in found.sequences:
        if wanted is not None and seq.key[0] not in wanted:
            continue
        chosen.append((seq, _select(seq, data_in_use)))
    return _checked(root, chosen)


def _select(seq: SequenceFolder, data_in_use: Sequence[bool] | None) -> list[str]:
    names = list(seq.files)
    if data_in_use is None:
        return names
    if len(data_in_use) != len(names):
        raise DataError(
            f"{seq.path}: {len(names)} pkl files but data_cfg.data_in_use has {len(data_in_use)} entries"
        )
    return [name for name, use in zip(names, data_in_use, strict=True) if use]


def _checked(root: Path, chosen: list[tuple[SequenceFolder, list[str]]]) -> list[SequenceInfo]:
    """Read every header, refuse the first invalid file, return the sequences."""
    refusals: list[Refusal] = []
    valid: list[tuple[str, int, PickledArray]] = []
    out: list[SequenceInfo] = []
    for seq, names in chosen:
        paths = [os.path.join(seq.path, name) for name in names]
        lengths: dict[str, int] = {}
        for position, (name, path) in enumerate(zip(names, paths, strict=True)):
            try:
                header = read_array_header(path)
            except HeaderProblem as exc:
                refusals.append(Refusal(path, header_reason(str(exc))))
                continue
            reason = file_reason(header)
            if reason is not None:
                refusals.append(Refusal(path, reason, header.shape))
                continue
            valid.append((path, position, header))
            lengths[name] = header.shape[0]
        mismatch = frame_count_reason(lengths)
        if mismatch is not None:
            refusals.append(Refusal(seq.path, mismatch))
        if paths:
            out.append(SequenceInfo(*seq.key, tuple(paths), next(iter(lengths.values()), 0)))
    refusals.extend(size_reasons(valid))
    if refusals:
        first = sorted(refusals, key=lambda r: r.path)[0]
        more = ""
        if len(refusals) > 1:
            more = f" ({len(refusals) - 1} more; 'gait inspect {root}' lists them all)"
        raise DataError(first.message() + more)
    return out


class GaitDataset:
    """The sequences of one split. ``dataset[i]`` returns ``(arrays, label, type, view)``."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        partition: str | os.PathLike[str] | Partition,
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
            if info.frames < min_frames:
                self.skipped_short.append((info.key, info.frames))
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
        for path, array in zip(info.paths, arrays, strict=True):
            if array.dtype != np.uint8 or array.ndim != 3 or len(array) != info.frames:
                raise DataError(f"{path}: changed since the data set was read (now {array.dtype} "
                                f"{format_shape(array.shape)}); restart the run")
        lengths = {len(a) for a in arrays}
        if len(lengths) != 1:
            raise DataError(f"{info.key}: its pkl files hold different frame counts {sorted(lengths)}")
        if self._cache is not None:
            self._cache[index] = arrays
        return arrays

    def __getitem__(self, index: int) -> tuple[list[np.ndarray], str, str, str]:
        info = self.sequences[index]
        return self.load(index), info.label, info.type, info.view

