"""Read the shape and dtype of a pickled numpy array without unpickling it.

``gait inspect`` has to look at every sequence of a data set (13,592 files, 4.6 GB for CASIA-B)
and only needs each array's shape. Unpickling would read and copy every byte, and would run
whatever a hostile file asks for. Instead we walk the pickle's opcodes with
:func:`pickletools.genops`, which only decodes them and never executes anything, and replay the
few opcodes a numpy array pickle uses on a small symbolic stack:

* protocols 0-4: ``numpy.(_)core.multiarray._reconstruct(ndarray, (0,), b'b')`` followed by
  ``BUILD`` with the state ``(version, shape, dtype, is_fortran, raw_data)``; protocols 0-2
  store ``raw_data`` as ``_codecs.encode(text, 'latin1')``;
* protocol 5: ``numpy.(_)core.numeric._frombuffer(buffer, dtype, shape, order)``;
* the dtype is ``numpy.dtype(typestr, False, True)`` followed by ``BUILD`` with its state
  (``(3, endian, subarray, names, fields, elsize, alignment, flags)``).

The raw data is the only big argument. When an opcode announces more than ``skip_over`` bytes
we ``seek`` past them instead of reading them, after checking that the file is long enough,
then carry on with the few opcodes after it (so a truncated file is caught, and every global in
the file is still checked). A file therefore costs one or two small reads however big it is.

Every ``GLOBAL`` / ``STACK_GLOBAL`` is checked against the allow-list of
:mod:`gaitcli.data.pickle_io` (plus ``_codecs.encode``, which protocols 0-2 need for the
array bytes and which is only ever *simulated* here); anything else is refused. A legitimate
pickle whose structure this walker does not model (a structured dtype, say) is loaded in full
by :func:`load_full`, through the restricted unpickler.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, NoReturn

import numpy as np

from gaitcli.data.pickle_io import ALLOWED_GLOBALS, RestrictedUnpickler, check_pickle_bounds

__all__ = ["PickledArray", "HeaderProblem", "read_array_header", "parse_array_header", "load_full"]

#: Arguments longer than this are skipped with ``seek`` instead of being read.
SKIP_OVER = 512

_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMPY_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")
# What this walker accepts: the pickle_io allow-list, plus the latin-1 encoder that protocols
# 0-2 use to store the array bytes (never called here, only recognised).
_WALKER_GLOBALS = frozenset(ALLOWED_GLOBALS) | {
    ("_codecs", "encode"),  # protocols 0-2: the array bytes as latin-1 text
    ("__builtin__", "bytes"), ("builtins", "bytes"),  # protocols 0-2: b"" of an empty array
}
_LATIN1 = {"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1"}
_PLAIN_TYPESTR = re.compile(r"[biufc]\d{1,2}")
_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\x93NUMPY", "a .npy file"),
    (b"PK\x03\x04", "a zip archive (.npz or torch.save?)"),
    (b"\x1f\x8b", "a gzip file"),
)
_OPS_BY_CODE = {op.code.encode("latin-1"): op for op in pickletools.opcodes}


@dataclass(frozen=True)
class PickledArray:
    """What the header of an array pickle says."""

    shape: tuple[int, ...]
    dtype: str
    itemsize: int
    protocol: int
    method: str = "header"  # "header" (opcode walk) or "full" (restricted unpickler)

    @property
    def frames(self) -> int | None:
        return self.shape[0] if self.shape else None

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.itemsize


class HeaderProblem(Exception):
    """A file that is not a readable numpy array pickle.

    ``kind`` is ``refused`` (it names a global other than numpy's array rebuilders: never
    executed), ``truncated`` (the file ends early), ``invalid`` (corrupt or not an array) or
    ``unreadable`` (the OS could not read it). ``str()`` gives ``"kind: detail"``.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class _Unsupported(Exception):
    """A structure the walker does not model; the caller falls back to a full safe load."""


class _Skipped(Exception):
    def __init__(self, opname: str, length: int) -> None:
        super().__init__(opname)
        self.opname = opname
        self.length = length


class _Truncated(Exception):
    pass


_MARK = object()


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


@dataclass(eq=False)
class _Call:
    func: _Global
    args: tuple[object, ...]
    state: object = None


@dataclass(frozen=True)
class _BigArg:
    """An argument we seeked over: ``length`` bytes of ``kind`` 'bytes', 'text' or 'other'."""

    kind: str
    length: int


class _Stream:
    """The file as genops sees it.

    Serves reads from an in-memory window of the file (``block`` bytes at a time, so a
    header costs one ``read`` call and ``tell`` no system call), refuses to read past the end
    of the file (-> truncated), and seeks over any argument longer than ``skip_over``.
    """

    def __init__(self, handle: BinaryIO, size: int, skip_over: int, block: int = 4096) -> None:
        self._f = handle
        self.size = size
        self.skip_over = skip_over
        self.block = block
        self._buf = b""
        self._base = 0  # file offset of _buf[0]
        self._limit = 0  # file offset just past the window
        self._pos = 0
        self.op_pos = 0  # file offset of the opcode being decoded (set by the walker)

    def tell(self) -> int:
        return self._pos

    def _fill(self, offset: int, length: int) -> None:
        """Load ``length`` bytes of the file from ``offset`` into the window."""
        self._f.seek(offset)
        self._buf = self._f.read(length)
        self._base = offset
        self._limit = offset + len(self._buf)

    def read(self, n: int = -1) -> bytes:
        pos = self._pos
        end = pos + n
        if 0 <= n <= self.skip_over and self._base <= pos and end <= self._limit:  # fast path
            self._pos = end
            return self._buf[pos - self._base:end - self._base]
        if n < 0:
            n = self.size - pos
            end = self.size
        if end > self.size:
            raise _Truncated(f"the file has {self.size:,} bytes, the pickle needs at least {end:,}")
        if n > self.skip_over:
            code = b""
            if self._base <= self.op_pos < self._limit:
                code = self._buf[self.op_pos - self._base:self.op_pos - self._base + 1]
            self._pos = end
            op = _OPS_BY_CODE.get(code)
            raise _Skipped(op.name if op else "?", n)
        self._fill(pos, max(n, self.block))
        if end > self._limit:  # the file shrank while we read it
            raise _Truncated(f"the file ends at byte {self._limit:,}")
        self._pos = end
        return self._buf[pos - self._base:end - self._base]

    def readline(self) -> bytes:
        length = self.block
        while True:
            start = self._pos - self._base
            if self._base <= self._pos <= self._limit:
                end = self._buf.find(b"\n", start)
                if end >= 0:
                    self._pos = self._base + end + 1
                    return self._buf[start:end + 1]
                if self._limit >= self.size:
                    raise _Truncated(f"the file ends at byte {self.size:,} inside a text opcode")
                length = max(length, 2 * (self._limit - self._pos))
            # grow the window (text opcodes are rare: protocols 0 and 1 only)
            self._fill(self._pos, length)
            if self._limit < min(self.size, self._pos + length):  # the file shrank meanwhile
                raise _Truncated(f"the file ends at byte {self._limit:,}")


def _check_global(module: object, name: object) -> _Global:
    if not isinstance(module, str) or not isinstance(name, str):
        raise HeaderProblem("invalid", "STACK_GLOBAL without a module and a name")
    if (module, name) not in _WALKER_GLOBALS:
        raise HeaderProblem(
            "refused", f"global '{module}.{name}' is not allowed (only numpy arrays are read; "
            "the file was not executed)")
    return _Global(module, name)


def _pop_mark(stack: list[object]) -> list[object]:
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is _MARK:
            items = stack[i + 1:]
            del stack[i:]
            return items
    raise HeaderProblem("invalid", "corrupt pickle (MARK missing)")


_CONSTANTS = frozenset({
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
    "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
})
_BIG_KIND = {
    "BINBYTES": "bytes", "BINBYTES8": "bytes", "BYTEARRAY8": "bytes", "BINSTRING": "bytes",
    "BINUNICODE": "text", "BINUNICODE8": "text",
}


class _Machine:
    """Replays the structural opcodes of a pickle on symbolic values."""

    def __init__(self) -> None:
        self.stack: list[object] = []
        self.memo: dict[object, object] = {}
        self.protocol = 0
        self.result: object = None

    def push_big(self, opname: str, length: int) -> None:
        self.stack.append(_BigArg(_BIG_KIND.get(opname, "other"), length))

    def step(self, name: str, arg: object) -> bool:  # noqa: C901 - one branch per opcode
        st = self.stack
        if name in _CONSTANTS:
            st.append(arg)
        elif name == "BYTEARRAY8":
            if not isinstance(arg, (bytes, bytearray)):
                raise HeaderProblem("invalid", "corrupt pickle (BYTEARRAY8 without bytes)")
            st.append(bytes(arg))
        elif name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
            if not st:
                raise HeaderProblem("invalid", "corrupt pickle (memo of an empty stack)")
            self.memo[len(self.memo) if name == "MEMOIZE" else arg] = st[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in self.memo:
                raise HeaderProblem("invalid", f"corrupt pickle (memo key {arg} unset)")
            st.append(self.memo[arg])
        elif name == "MARK":
            st.append(_MARK)
        elif name == "NONE":
            st.append(None)
        elif name == "NEWTRUE":
            st.append(True)
        elif name == "NEWFALSE":
            st.append(False)
        elif name == "EMPTY_TUPLE":
            st.append(())
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            if len(st) < n:
                raise HeaderProblem("invalid", "corrupt pickle (stack underflow)")
            top = tuple(st[-n:])
            del st[-n:]
            st.append(top)
        elif name == "TUPLE":
            st.append(tuple(_pop_mark(st)))
        elif name == "EMPTY_LIST":
            st.append([])
        elif name == "LIST":
            st.append(_pop_mark(st))
        elif name in ("APPEND", "APPENDS"):
            items: list[object] = [st.pop()] if name == "APPEND" else _pop_mark(st)
            appended = st[-1]
            if not isinstance(appended, list):
                raise _Unsupported(name)
            appended.extend(items)
        elif name == "EMPTY_DICT":
            st.append({})
        elif name in ("DICT", "SETITEM", "SETITEMS"):
            pairs: list[object] = _pop_mark(st) if name != "SETITEM" else [st.pop(-2), st.pop()]
            target = {} if name == "DICT" else st[-1]
            if not isinstance(target, dict) or len(pairs) % 2:
                raise _Unsupported(name)
            if not all(isinstance(key, (str, int)) for key in pairs[::2]):
                raise _Unsupported(name)  # hashing a key could cost anything (a tuple bomb)
            try:
                target.update(zip(pairs[::2], pairs[1::2], strict=True))
            except TypeError:
                raise _Unsupported(name) from None
            if name == "DICT":
                st.append(target)
        elif name == "GLOBAL":
            module, _, gname = str(arg).partition(" ")
            st.append(_check_global(module, gname))
        elif name == "STACK_GLOBAL":
            name_value = st.pop()
            st.append(_check_global(st.pop(), name_value))
        elif name == "INST":
            module, _, gname = str(arg).partition(" ")
            _check_global(module, gname)
            raise _Unsupported(name)
        elif name == "REDUCE":
            args = st.pop()
            func = st.pop()
            if not isinstance(func, _Global) or not isinstance(args, tuple):
                raise _Unsupported(name)
            st.append(_Call(func, args))
        elif name == "BUILD":
            state = st.pop()
            built = st[-1]
            if not isinstance(built, _Call) or built.state is not None:
                raise _Unsupported(name)
            built.state = state
        elif name == "POP":
            st.pop()
        elif name == "POP_MARK":
            _pop_mark(st)
        elif name == "DUP":
            st.append(st[-1])
        elif name in ("PROTO",):
            if not isinstance(arg, int):
                raise HeaderProblem("invalid", "corrupt pickle (PROTO without a number)")
            self.protocol = arg
        elif name == "FRAME":
            pass
        elif name == "STOP":
            if not st or st[-1] is _MARK:
                raise HeaderProblem("invalid", "not a valid pickle (nothing to return at STOP)")
            self.result = st.pop()  # like pickle itself, ignore anything left below it
            return True
        elif name in ("PERSID", "BINPERSID"):
            raise HeaderProblem("refused", "persistent ids are not allowed (the file was not executed)")
        elif name in ("EXT1", "EXT2", "EXT4"):
            raise HeaderProblem("refused", "extension-registry globals are not allowed "
                                           "(the file was not executed)")
        elif name in ("NEXT_BUFFER", "READONLY_BUFFER"):
            raise HeaderProblem("invalid", "the pickle refers to out-of-band buffers that a file cannot hold")
        else:  # OBJ, NEWOBJ, NEWOBJ_EX, sets, ...
            raise _Unsupported(name)
        return False


def _walk(stream: _Stream) -> _Machine:
    machine = _Machine()
    while True:
        stream.op_pos = stream.tell()
        try:
            for op, arg, _pos in pickletools.genops(stream):  # type: ignore[arg-type]  # file-like
                if machine.step(op.name, arg):
                    return machine
                stream.op_pos = stream.tell()
        except _Skipped as skip:
            machine.push_big(skip.opname, skip.length)
            continue
        except IndexError:
            raise HeaderProblem("invalid", "not a valid pickle (stack underflow)") from None
        except ValueError as exc:  # unknown opcode, malformed argument
            raise HeaderProblem("invalid", f"not a valid pickle ({exc})") from None
        # genops stops only after STOP, which returned above
        raise HeaderProblem("invalid", "not a valid pickle (no STOP opcode)")


# ----------------------------------------------------------------------------- interpretation
def _dtype_of(obj: object) -> np.dtype:
    if not (isinstance(obj, _Call) and obj.func == _Global("numpy", "dtype")):
        raise _Unsupported("dtype")
    args = obj.args
    if not args or not isinstance(args[0], str):
        raise _Unsupported("dtype")
    typestr = args[0]
    if typestr.startswith("O"):
        raise HeaderProblem("refused", "object arrays are not allowed (the file was not executed)")
    state = obj.state
    endian = "|"
    if isinstance(state, tuple) and len(state) >= 5:
        endian = state[1]
        if state[2] is not None or state[3] is not None:  # sub-array or structured dtype
            raise _Unsupported("dtype")
    elif state is not None:
        raise _Unsupported("dtype")
    if not _PLAIN_TYPESTR.fullmatch(typestr) or endian not in ("<", ">", "|", "="):
        raise _Unsupported("dtype")
    try:
        return np.dtype((endian if endian in "<>" else "") + typestr)
    except TypeError:
        raise HeaderProblem("invalid", f"unknown dtype '{typestr}'") from None


def _data_size(data: object) -> tuple[int, int]:
    """Smallest and largest byte count the stored array data can stand for."""
    if isinstance(data, (bytes, bytearray)):
        return len(data), len(data)
    if isinstance(data, str):  # a Python-2 str read as latin-1: one byte per character
        return len(data), len(data)
    if isinstance(data, _BigArg) and data.kind == "bytes":
        return data.length, data.length
    if isinstance(data, _Call) and data.func == _Global("_codecs", "encode"):
        args = data.args
        if len(args) == 2 and isinstance(args[1], str) and args[1].lower() in _LATIN1:
            text = args[0]
            if isinstance(text, str):
                if any(ord(c) > 255 for c in text):
                    raise HeaderProblem("invalid", "array data is not latin-1 text")
                return len(text), len(text)
            if isinstance(text, _BigArg) and text.kind == "text":
                # UTF-8 of latin-1 text: 1 byte per character below 0x80, 2 above
                return (text.length + 1) // 2, text.length
        raise HeaderProblem("invalid", "_codecs.encode used for something other than array bytes")
    if isinstance(data, _Call) and data.func.name == "bytes" and data.args == () and data.state is None:
        return 0, 0
    if isinstance(data, list):
        raise HeaderProblem("refused", "object arrays are not allowed (the file was not executed)")
    raise _Unsupported("data")


def _shape_of(shape: object) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise HeaderProblem("invalid", f"array shape ({type(shape).__name__}) is not a tuple of sizes")
    return shape


def _interpret(result: object, protocol: int) -> PickledArray:
    if isinstance(result, _Call):
        func = result.func
        if func.module in _NUMPY_CORE and func.name == "_reconstruct":
            if (len(result.args) != 3 or result.args[0] != _Global("numpy", "ndarray")
                    or not isinstance(result.state, tuple)):
                raise _Unsupported("ndarray")
            state = result.state
            if len(state) == 5:
                state = state[1:]
            if len(state) != 4:
                raise _Unsupported("ndarray state")
            shape, dtype_obj, _fortran, data = state
            shape = _shape_of(shape)
            dtype = _dtype_of(dtype_obj)
        elif func.module in _NUMPY_NUMERIC and func.name == "_frombuffer":
            if len(result.args) != 4 or result.state is not None:
                raise _Unsupported("_frombuffer")
            data, dtype_obj, shape, _order = result.args
            shape = _shape_of(shape)
            dtype = _dtype_of(dtype_obj)
        elif func.name == "scalar":
            raise HeaderProblem("invalid", "expected a numpy array, found a numpy scalar")
        else:
            raise _Unsupported(func.name)
        need = math.prod(shape) * dtype.itemsize
        low, high = _data_size(data)
        if not low <= need <= high:
            have = f"{low:,}" if low == high else f"{low:,}-{high:,}"
            raise HeaderProblem(
                "invalid", f"array data holds {have} bytes but shape {shape} of {dtype} needs {need:,}")
        return PickledArray(shape, str(dtype), dtype.itemsize, protocol)
    if isinstance(result, (list, tuple, dict)):
        raise HeaderProblem("invalid", f"expected a numpy array, found a {type(result).__name__}")
    if isinstance(result, _BigArg):
        raise HeaderProblem("invalid", "expected a numpy array, found a bare string")
    if result is None or isinstance(result, (int, float, str, bytes)):
        raise HeaderProblem("invalid", f"expected a numpy array, found {type(result).__name__}")
    raise _Unsupported("result")


# ----------------------------------------------------------------------------- entry points
def parse_array_header(handle: BinaryIO, size: int, *, skip_over: int = SKIP_OVER) -> PickledArray:
    """Read the array header from ``handle`` (a seekable binary file of ``size`` bytes).

    Raises :class:`HeaderProblem`, or :class:`LookupError` when the pickle is legitimate but
    has a layout the opcode walk does not model (then use :func:`load_full`).
    """
    if size == 0:
        raise HeaderProblem("truncated", "the file is empty")
    stream = _Stream(handle, size, max(skip_over, 256))
    stream._fill(0, stream.block)
    for prefix, what in _MAGIC:
        if stream._buf.startswith(prefix):
            raise HeaderProblem("invalid", f"this is {what}, not a pickle")
    try:
        machine = _walk(stream)
        return _interpret(machine.result, machine.protocol)
    except _Truncated as exc:
        raise HeaderProblem("truncated", str(exc)) from None
    except _Unsupported as exc:
        raise LookupError(f"layout not modelled ({exc})") from None


class _RefusingUnpickler(RestrictedUnpickler):
    def find_class(self, module: str, name: str) -> Callable[..., object]:
        if (module, name) not in ALLOWED_GLOBALS:
            raise HeaderProblem("refused", f"global '{module}.{name}' is not allowed "
                                           "(only numpy arrays are read; the file was not executed)")
        return super().find_class(module, name)

    def persistent_load(self, pid: object) -> NoReturn:
        raise HeaderProblem("refused", "persistent ids are not allowed (the file was not executed)")


def load_full(path: str | os.PathLike[str]) -> PickledArray:
    """Load the whole file through the restricted unpickler (the slow, general path)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise HeaderProblem("unreadable", exc.strerror or str(exc)) from None
    try:
        check_pickle_bounds(data)  # before anything runs: a small file cannot cost unbounded work
        obj = _RefusingUnpickler(io.BytesIO(data)).load()
    except HeaderProblem:
        raise
    except EOFError:
        raise HeaderProblem("truncated", "the file ends before the pickle does") from None
    except (pickle.UnpicklingError, AttributeError, ImportError, IndexError, KeyError,
            TypeError, ValueError, MemoryError) as exc:
        raise HeaderProblem("invalid", f"not a valid array pickle ({exc})") from None
    if not isinstance(obj, np.ndarray):
        raise HeaderProblem("invalid", f"expected a numpy array, found a {type(obj).__name__}")
    if obj.dtype.hasobject:
        raise HeaderProblem("refused", "object arrays are not allowed")
    if obj.nbytes > len(data):
        raise HeaderProblem("invalid", f"an array of {obj.nbytes:,} bytes cannot come from a file of "
                                       f"{len(data):,} bytes (its data is missing)")
    protocol = data[1] if data[:1] == b"\x80" and len(data) > 1 else 0
    return PickledArray(tuple(obj.shape), str(obj.dtype), obj.dtype.itemsize, protocol, "full")


def read_array_header(path: str | os.PathLike[str], *, skip_over: int = SKIP_OVER) -> PickledArray:
    """Shape and dtype of the numpy array pickled in ``path``, reading only its opcodes.

    Raises :class:`HeaderProblem` for a file that is unreadable, truncated, not an array
    pickle, or that names any global other than numpy's array rebuilders (``refused``).
    """
    try:
        with open(path, "rb", buffering=0) as handle:
            size = os.fstat(handle.fileno()).st_size
            try:
                return parse_array_header(handle, size, skip_over=skip_over)
            except LookupError:
                pass
    except OSError as exc:
        raise HeaderProblem("unreadable", exc.strerror or str(exc)) from None
    return load_full(path)
