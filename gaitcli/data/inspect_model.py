"""The typed result of ``gait inspect`` (:class:`InspectReport`) and its JSON form.

Counting lives in :mod:`gaitcli.data.inspect`, drawing in :mod:`gaitcli.data.inspect_render`;
``to_json()`` gives the ``--json`` document described in docs/inspect.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from gaitcli.fileio import JSONValue

__all__ = ["FileProblem", "FrameMismatch", "FrameStats", "Histogram", "InspectReport", "PartitionCheck",
           "ShortSequence"]


@dataclass(frozen=True)
class FileProblem:
    """A file the data set cannot use."""

    path: str
    """The file, relative to the data root."""
    reason: str
    """Why, and how to fix it (the text the dataset refuses it with)."""
    shape: list[int] | None = None
    """The array shape from its header, for files whose header could be read."""

    def to_json(self) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {"path": self.path}
        if self.shape is not None:
            out["shape"] = list(self.shape)
        out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class FrameMismatch:
    """A sequence whose pkls disagree on the number of frames."""

    sequence: list[str]
    """``[id, type, view]``."""
    frames: dict[str, int]
    """Frames per pkl file name."""
    reason: str
    """The text the dataset refuses the sequence with."""

    def to_json(self) -> dict[str, JSONValue]:
        return {"sequence": list(self.sequence), "frames": dict(self.frames), "reason": self.reason}


@dataclass(frozen=True)
class ShortSequence:
    """A sequence with fewer frames than the ``short`` threshold."""

    id: str
    """Subject id."""
    type: str
    """Walk type."""
    view: str
    """View."""
    frames: int
    """Its number of frames."""

    def to_json(self) -> list[str | int]:
        return [self.id, self.type, self.view, self.frames]


@dataclass(frozen=True)
class FrameStats:
    """Frames per sequence over the whole data set (``None`` when there is no readable sequence)."""

    total: int
    """All frames together."""
    min: int | None = None
    """Shortest sequence."""
    p5: float | None = None
    """5th percentile."""
    median: float | None = None
    """Median."""
    mean: float | None = None
    """Mean."""
    p95: float | None = None
    """95th percentile."""
    max: int | None = None
    """Longest sequence."""

    def to_json(self) -> dict[str, JSONValue]:
        return {"total": self.total, "min": self.min, "p5": self.p5, "median": self.median,
                "mean": self.mean, "p95": self.p95, "max": self.max}


@dataclass(frozen=True)
class Histogram:
    """Sequence lengths in bins of a 'nice' width."""

    edges: list[int]
    """Bin edges (one more than counts); bin ``i`` is ``[edges[i], edges[i+1])``."""
    counts: list[int]
    """Sequences per bin."""

    def to_json(self) -> dict[str, JSONValue]:
        return {"edges": list(self.edges), "counts": list(self.counts)}


@dataclass(frozen=True)
class PartitionCheck:
    """How a partition file and the ids on disk agree."""

    file: str
    """The partition file read."""
    train_ids: int
    """Ids in TRAIN_SET."""
    test_ids: int
    """Ids in TEST_SET."""
    missing_train: list[str]
    """TRAIN_SET ids with no sequence on disk."""
    missing_test: list[str]
    """TEST_SET ids with no sequence on disk."""
    not_in_partition: list[str]
    """Ids on disk in neither set."""
    in_both: list[str]
    """Ids in both sets."""

    @property
    def problems(self) -> int:
        return (len(self.missing_train) + len(self.missing_test) + len(self.not_in_partition)
                + len(self.in_both))

    def to_json(self) -> dict[str, JSONValue]:
        return {"file": self.file, "train_ids": self.train_ids, "test_ids": self.test_ids,
                "missing_on_disk": {"TRAIN_SET": list(self.missing_train),
                                    "TEST_SET": list(self.missing_test)},
                "not_in_partition": list(self.not_in_partition), "in_both": list(self.in_both)}


@dataclass(frozen=True)
class InspectReport:
    """Everything ``gait inspect`` found in one prepared tree."""

    directory: str
    """The data root inspected."""
    sequences: int
    """Sequence folders found."""
    files: int
    """``.pkl`` files found (inside sequence folders or not)."""
    id_list: list[str]
    """Subject ids, naturally sorted."""
    types: list[str]
    """Walk types seen."""
    views: list[str]
    """Views seen."""
    frame_size: list[int] | None
    """The majority ``[H, W]`` of the first pkl of each sequence."""
    dtypes: dict[str, int]
    """Files per array dtype."""
    protocols: dict[str, int]
    """Files per pickle protocol."""
    frames: FrameStats
    """Frames per sequence."""
    histogram: Histogram
    """Sequence lengths, binned."""
    per_type_view: dict[str, dict[str, int]]
    """Sequence count per type and view."""
    missing: list[list[str]]
    """``[id, type, view]`` cells of the id × type × view grid with no sequence."""
    short_threshold: int
    """Sequences with fewer frames than this are listed in ``short``."""
    short: list[ShortSequence]
    """Short sequences, shortest first."""
    unreadable: list[FileProblem]
    """Files whose header cannot be read, or that sit outside the layout."""
    shape_problems: list[FileProblem]
    """Readable files that are not a valid sequence (dimensions, dtype, 0 frames, frame size)."""
    frame_mismatch: list[FrameMismatch]
    """Sequences whose pkls disagree on the number of frames."""
    workers: int
    """Threads that read headers."""
    full_loads: int = 0
    """Files whose layout needed a full (restricted) load instead of the header walk."""
    partition: PartitionCheck | None = None
    """The partition cross-check, when a partition was given."""

    @property
    def ids(self) -> int:
        return len(self.id_list)

    @property
    def problems(self) -> int:
        """Every problem counted: what ``--strict`` fails on."""
        part = self.partition.problems if self.partition is not None else 0
        return (len(self.missing) + len(self.short) + len(self.unreadable) + len(self.shape_problems)
                + len(self.frame_mismatch) + part)

    def to_json(self) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {
            "directory": self.directory, "sequences": self.sequences, "files": self.files, "ids": self.ids,
            "id_list": list(self.id_list), "types": list(self.types), "views": list(self.views),
            "frame_size": None if self.frame_size is None else list(self.frame_size),
            "dtypes": dict(self.dtypes), "protocols": dict(self.protocols), "frames": self.frames.to_json(),
            "histogram": self.histogram.to_json(),
            "per_type_view": {kind: dict(views) for kind, views in self.per_type_view.items()},
            "missing": [list(cell) for cell in self.missing], "short_threshold": self.short_threshold,
            "short": [list(row.to_json()) for row in self.short],
            "unreadable": [row.to_json() for row in self.unreadable],
            "shape_problems": [row.to_json() for row in self.shape_problems],
            "frame_mismatch": [row.to_json() for row in self.frame_mismatch], "workers": self.workers,
        }
        if self.full_loads:
            out["full_loads"] = self.full_loads
        if self.partition is not None:
            out["partition"] = self.partition.to_json()
        out["problems"] = self.problems
        return out
