"""Safe reading and atomic writing of OpenGait-style ``.pkl`` sequence files.

A ``.pkl`` from the internet can run arbitrary code when unpickled. Every pkl this project
reads goes through :class:`RestrictedUnpickler`, which can only rebuild numpy arrays (and plain
lists / tuples / dicts of them); any other global, e.g. ``os.system`` smuggled in through
``__reduce__``, is refused before it is called.

Files are written with the plain ``pickle`` protocol of a numpy array, so OpenGait reads ours.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from gaitcli.errors import DataError, UnsafePickleError
from gaitcli.fileio import atomic_write_bytes

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
})
"""The ``(module, name)`` globals a pickled numpy array legitimately needs; every reader of pkls
(the restricted unpickler, the header walker) admits these and nothing else. numpy 2 moved the
reconstruct helpers to ``numpy._core``; pickles written by numpy 1 say ``numpy.core``."""


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Protocol-2 pickles spell raw bytes as ``_codecs.encode(text, 'latin1')``; only that use
    of the codec machinery is allowed (other codecs could decompress or transform data)."""
    if encoding not in ("latin1", "latin-1") or errors != "strict" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is not allowed")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    """Protocols 0-2 spell the data of an empty array as ``bytes()``; nothing else is allowed
    (``bytes(10**10)`` would allocate 10 GB)."""
    if args:
        raise pickle.UnpicklingError("bytes() with arguments is not allowed")
    return b""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` only admits numpy's array-rebuilding functions."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) in (("builtins", "bytes"), ("__builtin__", "bytes")):
            return _empty_bytes
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")


def _check_contents(obj: Any) -> None:
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise pickle.UnpicklingError("object arrays are not allowed")
        return
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _check_contents(item)
        return
    if isinstance(obj, dict):
        for key, item in obj.items():
            if not isinstance(key, (str, int)):
                raise pickle.UnpicklingError(f"dict key of type {type(key).__name__} is not allowed")
            _check_contents(item)
        return
    if isinstance(obj, (int, float, str, bool, np.generic)) or obj is None:
        return
    raise pickle.UnpicklingError(f"object of type {type(obj).__name__} is not allowed")


def loads_safe(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` allowing only numpy arrays and plain containers of them."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data)).load()
        _check_contents(obj)
    except (pickle.UnpicklingError, AttributeError, ImportError, IndexError, KeyError,
            TypeError, ValueError, EOFError, MemoryError) as exc:
        raise UnsafePickleError(
            f"{source}: refused to load pickle ({exc}); only numpy arrays are accepted"
        ) from None
    return obj


def load_pickle(path: str | os.PathLike[str]) -> Any:
    """Load a pkl file through the restricted unpickler (arrays and containers of arrays)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return loads_safe(data, str(path))


def load_array(path: str | os.PathLike[str]) -> np.ndarray:
    """Load one sequence pkl and return its array (``[T, H, W]`` uint8 for silhouettes)."""
    obj = load_pickle(path)
    if not isinstance(obj, np.ndarray):
        raise DataError(f"{path}: expected a numpy array, found {type(obj).__name__}")
    return obj


def save_array(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Atomically write ``array`` as a pickle OpenGait can read."""
    atomic_write_bytes(path, pickle.dumps(np.ascontiguousarray(array), protocol=4))
