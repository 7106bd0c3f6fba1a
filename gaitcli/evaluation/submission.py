"""GREW's competition file (``gait eval --protocol grew --submission FILE.csv``).

The format is OpenGait's ``GREW_submission`` byte for byte: the header
``videoId,rank1,rank2,...,rank20``, then one line per probe of type ``03`` in feature order: its
video id (the sequence's view name), then the ids of its 20 nearest gallery sequences (types
``01`` and ``02``), nearest first, each written as an integer (``00001`` → ``1``; an id can
appear twice, once per gallery sequence), ``\\n`` line ends, no trailing blank line.
"""

from __future__ import annotations

import os

import numpy as np

from gaitcli.fileio import atomic_write_bytes

from .protocols import GREW_SUBMISSION_RANKS
from .results import Submission

HEADER = "videoId," + ",".join(f"rank{i}" for i in range(1, GREW_SUBMISSION_RANKS + 1))


def submission_csv(sub: Submission) -> str:
    """The competition file's text."""
    lines = [HEADER]
    if sub.ranked:
        ranked = np.asarray(sub.ranked, dtype=str)
        ids, inverse = np.unique(ranked, return_inverse=True)
        as_int = np.array([str(int(i)) for i in ids.tolist()], dtype=str)  # the reference's int(id)
        cells = as_int[inverse.reshape(ranked.shape)]
        lines += [",".join([vid, *row]) for vid, row in zip(sub.video_ids, cells.tolist(), strict=True)]
    return "\n".join(lines) + "\n"


def write_submission(path: str | os.PathLike[str], sub: Submission) -> None:
    """Write the competition file atomically."""
    atomic_write_bytes(str(path), submission_csv(sub).encode())
