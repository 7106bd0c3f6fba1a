"""What a valid prepared sequence is, defined once (docs/inspect.md, "What a valid sequence is").

A sequence folder holds one or more pkls (one per modality). Each pkl must hold a ``uint8``
array ``[T, H, W]`` with ``T >= 1``; all pkls of one sequence hold the same ``T``; and every
pkl at the same position (the k-th pkl of its folder, sorted by name) has the same ``H×W``
across the data set (the majority size is the expected one). These checks need only the pickle
header (:mod:`gaitcli.data.pkl_header`), so the dataset runs them on every file before training
and ``gait inspect`` reports exactly the same refusals with the same reason text.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from gaitcli.data.pkl_header import PickledArray

__all__ = ["SHORT_SEQUENCE_FRAMES", "Refusal", "file_reason", "header_reason", "size_reasons",
           "frame_count_reason", "format_shape"]

SHORT_SEQUENCE_FRAMES = 5
"""A sequence with fewer frames is *short*: valid, but ``gait prepare`` warns about it and
``gait inspect`` lists it (the default of ``--short``)."""

_REDO = "re-create it with 'gait prepare' or remove it"


@dataclass(frozen=True)
class Refusal:
    """One file a data set cannot use, and why."""

    path: str
    """The file, as the caller names it (relative to the data root in reports)."""
    reason: str
    """What is wrong and how to fix it, in words (the same text everywhere)."""
    shape: tuple[int, ...] | None = None
    """The array shape from the header, when it could be read."""

    def message(self) -> str:
        return f"{self.path}: {self.reason}"


def format_shape(shape: Sequence[int]) -> str:
    return "×".join(str(d) for d in shape) if shape else "scalar"


def header_reason(problem: str) -> str:
    """The reason for a file whose header could not be read (``problem`` is ``kind: detail``)."""
    return f"{problem}; {_REDO}"


def file_reason(header: PickledArray) -> str | None:
    """Why this one array cannot be a sequence, or ``None`` when it can."""
    shape = header.shape
    if len(shape) != 3:
        return (f"holds a {len(shape)}-D array of shape {format_shape(shape)}, expected a 3-D array "
                f"[frames, height, width]; {_REDO}")
    if header.dtype != "uint8":
        return (f"holds {header.dtype} values, expected uint8 silhouettes (0-255); {_REDO} "
                "(a float array in [0, 1] would train on all-black frames)")
    if shape[0] < 1:
        return f"holds 0 frames; {_REDO}"
    return None


def size_reasons(files: Sequence[tuple[str, int, PickledArray]]) -> list[Refusal]:
    """Files whose ``H×W`` differs from the majority at their pkl position.

    ``files``: ``(path, position, header)`` of every file that passed :func:`file_reason`.
    """
    majority = majority_sizes(files)
    refusals: list[Refusal] = []
    for path, position, header in files:
        expected = majority[position]
        if header.shape[1:] != expected:
            refusals.append(Refusal(path, (
                f"frame size {format_shape(header.shape[1:])} differs from the majority "
                f"{format_shape(expected)} of the data set; prepare every sequence with one frame size "
                "(gait prepare again, starting over)"), header.shape))
    return refusals


def majority_sizes(files: Sequence[tuple[str, int, PickledArray]]) -> dict[int, tuple[int, ...]]:
    """The expected ``H×W`` per pkl position (the most common one)."""
    counts: dict[int, Counter[tuple[int, ...]]] = defaultdict(Counter)
    for _path, position, header in files:
        counts[position][header.shape[1:]] += 1
    return {position: c.most_common(1)[0][0] for position, c in counts.items()}


def frame_count_reason(lengths: dict[str, int]) -> str | None:
    """Why the pkls of one sequence (``{file name: frames}``) cannot be used together."""
    if len(set(lengths.values())) <= 1:
        return None
    listed = ", ".join(f"{name}: {n}" for name, n in lengths.items())
    return f"its pkl files hold different frame counts ({listed}); re-prepare the sequence"
