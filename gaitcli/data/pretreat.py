"""The OpenGait pretreatment of one frame and one sequence, and reading a frame file.

Pixel-identical to the reference because it uses the same OpenCV calls (the steps are listed
in docs/prepare.md, "What happens to each frame"), with two differences: an unreadable frame is
reported instead of crashing, and a frame whose resized width would be 0 is dropped. These
functions take numpy arrays and touch no files except :func:`read_frame`, so other modules and
tests can use them directly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["MIN_PIXEL_SUM", "check_img_size", "pretreat_frame", "pretreat_sequence", "read_frame"]

#: A frame whose pixel values sum to this or less is dropped (about 40 white pixels).
MIN_PIXEL_SUM = 10000

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_INT32_SAFE_WIDTH = (2**31 - 1) // 255


def check_img_size(img_size: int) -> None:
    if not isinstance(img_size, (int, np.integer)) or isinstance(img_size, bool):
        raise TypeError(f"img_size must be an int, got {type(img_size).__name__}")
    if img_size < 2 or img_size % 2:
        raise ValueError(f"img_size must be an even number >= 2, got {img_size}")


def pretreat_frame(img: np.ndarray, img_size: int = 64) -> np.ndarray | None:
    """Crop, resize and centre one greyscale frame; ``None`` when the frame is dropped.

    ``img`` is a 2-D ``uint8`` array (a silhouette, 0 = background). The steps (docs/prepare.md),
    in order: drop if the pixel sum is <= 10000; keep the rows from the first to the
    last non-zero row; resize with OpenCV bicubic to height ``img_size`` and width
    ``int(img_size * (w / h))``; take as horizontal centre the first column whose cumulative
    column sum exceeds half the total (drop if there is none or it is column 0); cut the
    ``img_size`` columns ``[x - img_size//2, x + img_size//2)``, with zeros where the cut runs
    past an edge. Returns a C-contiguous ``uint8`` array ``[img_size, img_size]``.

    Also dropped (the reference would crash on these): a frame so narrow that the resized
    width would be 0.
    """
    if type(img_size) is not int or img_size < 2 or img_size % 2:
        check_img_size(img_size)
        img_size = int(img_size)
    if not isinstance(img, np.ndarray) or img.ndim != 2:
        raise ValueError(f"expected a 2-D greyscale frame, got shape {getattr(img, 'shape', None)}")
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 frame, got {img.dtype}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        return None
    img = np.ascontiguousarray(img)  # no copy for frames straight from a decoder

    # Step 2: the pixel sum. Row sums fit int32 for any width below 8 million pixels; the
    # total is accumulated in int64 so nothing can overflow.
    if img.shape[1] < _INT32_SAFE_WIDTH:
        row_sums = cv2.reduce(img, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    else:  # pragma: no cover - absurdly wide frames
        row_sums = img.sum(axis=1, dtype=np.int64)
    if int(row_sums.sum(dtype=np.int64)) <= MIN_PIXEL_SUM:
        return None

    # Step 3: rows between the first and the last row holding any non-zero pixel.
    nonzero_rows = np.flatnonzero(row_sums)
    top, bottom = int(nonzero_rows[0]), int(nonzero_rows[-1])
    cropped = img[top : bottom + 1]
    height, width = cropped.shape

    # Step 4: ratio first, then truncate, exactly like the reference.
    new_width = int(img_size * (width / height))
    if new_width < 1:
        return None
    resized = cv2.resize(cropped, (new_width, img_size), interpolation=cv2.INTER_CUBIC)

    return _centre_and_cut(resized, img_size)


def _centre_and_cut(resized: np.ndarray, img_size: int) -> np.ndarray | None:
    """Steps 5 and 6 on a resized frame: find the horizontal centre, cut ``img_size`` columns."""
    new_width = resized.shape[1]
    # Step 5: first column where the cumulative sum exceeds half the total. Comparing
    # 2 * cumsum > total in integers is the same test as cumsum > total / 2.
    col_sums = cv2.reduce(resized, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    cumulative = np.cumsum(col_sums, dtype=np.int64)
    total = int(cumulative[-1])
    if total <= 0:
        return None
    centre = int(np.argmax(2 * cumulative > total))
    if centre == 0:
        return None

    # Step 6: cut [centre - half, centre + half); zero-padding both sides by `half` and cutting
    # the shifted window gives exactly this zero-filled copy of the overlapping columns.
    half = img_size // 2
    left, right = centre - half, centre + half
    if left >= 0 and right <= new_width:
        return np.ascontiguousarray(resized[:, left:right])
    out = np.zeros((img_size, 2 * half), dtype=np.uint8)
    src_left, src_right = max(left, 0), min(right, new_width)
    out[:, src_left - left : src_right - left] = resized[:, src_left:src_right]
    return out


def pretreat_sequence(frames: Sequence[np.ndarray], img_size: int = 64) -> tuple[np.ndarray, int]:
    """Pretreat every frame and stack the kept ones.

    Returns ``(array, dropped)``: ``array`` is ``uint8`` ``[T, img_size, img_size]`` (``T`` may
    be 0) and ``dropped`` is how many frames :func:`pretreat_frame` rejected.
    """
    check_img_size(img_size)
    kept: list[np.ndarray] = []
    dropped = 0
    for frame in frames:
        result = pretreat_frame(frame, img_size)
        if result is None:
            dropped += 1
        else:
            kept.append(result)
    if not kept:
        return np.zeros((0, img_size, img_size), dtype=np.uint8), dropped
    return np.stack(kept), dropped


def read_frame(path: str | os.PathLike[str]) -> tuple[np.ndarray | None, str | None]:
    """Read an image file as 8-bit greyscale: ``(array, None)`` or ``(None, reason)``.

    Decoding is OpenCV's ``IMREAD_GRAYSCALE``, as in the reference; the bytes are read by
    Python so any path works. Never raises for a bad file.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return None, f"cannot read ({exc.strerror or exc})"
    if not data:
        return None, "empty file (0 bytes)"
    # A PNG without its end chunk is truncated; OpenCV would refuse it too, but only after
    # libpng prints a message on stderr for every such file.
    if data.startswith(_PNG_SIGNATURE) and data.rfind(b"IEND") < 0:
        return None, "truncated PNG (no IEND chunk)"
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    except cv2.error as exc:  # pragma: no cover - OpenCV only raises on empty buffers
        return None, f"cannot decode ({str(exc).strip().splitlines()[-1]})"
    if img is None or img.size == 0:
        return None, "cannot decode as an image (corrupt, truncated or not an image)"
    return img, None
