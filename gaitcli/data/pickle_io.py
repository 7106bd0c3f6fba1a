"""Safe reading and atomic writing of OpenGait-style ``.pkl`` sequence files.

A ``.pkl`` from the internet can run arbitrary code when unpickled. Every pkl this project
reads goes through :class:`RestrictedUnpickler`, which can only rebuild numpy arrays (and plain
lists / tuples / dicts of them); any other global, e.g. ``os.system`` smuggled in through
``__reduce__``, is refused before it is called.

Before the unpickler runs, :func:`check_pickle_bounds` replays the pickle's opcodes on a model
of the stack (decoding only, like :mod:`pickletools`; nothing is built or called), so that a
small hostile file cannot make the unpickler, or the code reading its result, do unbounded work:
more than :data:`MAX_OPCODES` operations, containers nested deeper than :data:`MAX_DEPTH`, a
container that holds itself, memo indices past the operations read, or shared references that
expand to more than :data:`ELEMENTS_PER_BYTE` elements per byte of the file (a "billion laughs"
of 200 bytes expands to 2**60). Dict keys must be strings or integers (nothing whose hash costs
more than its size), and no array may hold more bytes than the file.

Files are written with the plain ``pickle`` protocol of a numpy array, so OpenGait reads ours.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from collections.abc import Callable
from pathlib import Path

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


MAX_OPCODES = 1_000_000
"""Pickle operations a file may hold (an array pickle needs a few dozen; a list of 10,000 arrays
about 200,000). Bounds the time of the opcode replay to about a second."""
MAX_DEPTH = 100
"""How deeply containers may nest (a sequence file is one array; a container of arrays is 2-3)."""
ELEMENTS_PER_BYTE = 4
"""Elements that containers may hold in all, counting a shared container once per reference,
per byte of the file (at least :data:`MIN_ELEMENTS`)."""
MIN_ELEMENTS = 100_000
"""The element budget of small files."""
_INT_KEY_LIMIT = 2**61 - 1  # below this an int hashes to itself: no crafted hash collisions


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Protocol-2 pickles spell raw bytes as ``_codecs.encode(text, 'latin1')``; only that use
    of the codec machinery is allowed (other codecs could decompress or transform data)."""
    if encoding not in ("latin1", "latin-1") or errors != "strict" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is not allowed")
    return text.encode("latin1")


def _empty_bytes(*args: object) -> bytes:
    """Protocols 0-2 spell the data of an empty array as ``bytes()``; nothing else is allowed
    (``bytes(10**10)`` would allocate 10 GB)."""
    if args:
        raise pickle.UnpicklingError("bytes() with arguments is not allowed")
    return b""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` only admits numpy's array-rebuilding functions."""

    def find_class(self, module: str, name: str) -> Callable[..., object]:
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if (module, name) in (("builtins", "bytes"), ("__builtin__", "bytes")):
            return _empty_bytes
        if (module, name) in ALLOWED_GLOBALS:
            rebuilder: Callable[..., object] = super().find_class(module, name)
            return rebuilder
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")


class _Node:
    """A container or call result of the replay: what it holds (stack values or nodes)."""

    __slots__ = ("kind", "items")

    def __init__(self, kind: str, items: list[object] | None = None) -> None:
        self.kind = kind
        self.items: list[object] = items if items is not None else []


class _Global:
    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


_MARK = object()
_ORDERED_DICT = ("collections", "OrderedDict")
# Opcodes that no pickle of numpy arrays and plain containers uses (objects built through
# __new__ or the extension registry, persistent ids, sets): refused before anything runs.
_NOT_FOR_ARRAYS = frozenset({
    "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID",
    "EMPTY_SET", "ADDITEMS", "FROZENSET",
})
_CONSTANTS = frozenset({
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING",
    "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "UNICODE",
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "FLOAT", "BINFLOAT", "NEXT_BUFFER",
})


class _Replay:
    """The stack effect of each opcode, on :class:`_Node` placeholders (see the module doc)."""

    def __init__(self) -> None:
        self.stack: list[object] = []
        self.memo: dict[int, object] = {}
        self.nodes: list[_Node] = []
        self.ops = 0

    def pop(self) -> object:
        if not self.stack or self.stack[-1] is _MARK:
            raise pickle.UnpicklingError("corrupt pickle (stack underflow)")
        return self.stack.pop()

    def pop_mark(self) -> list[object]:
        st = self.stack
        for i in range(len(st) - 1, -1, -1):
            if st[i] is _MARK:
                items = st[i + 1:]
                del st[i:]
                return items
        raise pickle.UnpicklingError("corrupt pickle (MARK missing)")

    def new(self, kind: str, items: list[object] | None = None) -> _Node:
        node = _Node(kind, items)
        self.nodes.append(node)
        self.stack.append(node)
        return node

    def target(self, kinds: tuple[str, ...], opname: str) -> _Node:
        top = self.stack[-1] if self.stack else None
        if not isinstance(top, _Node) or top.kind not in kinds:
            raise pickle.UnpicklingError(f"corrupt pickle ({opname} without a container)")
        return top

    def add_pairs(self, target: _Node, pairs: list[object]) -> None:
        if len(pairs) % 2:
            raise pickle.UnpicklingError("corrupt pickle (a dict item without its value)")
        for key in pairs[::2]:
            _check_key(key)
        target.items.extend(pairs)

    def step(self, name: str, arg: object) -> bool:  # noqa: C901 - one branch per opcode
        self.ops += 1
        if self.ops > MAX_OPCODES:
            raise pickle.UnpicklingError(f"more than {MAX_OPCODES:,} pickle operations")
        st = self.stack
        if name in _CONSTANTS:
            st.append(arg)
        elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
            st.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
        elif name == "MARK":
            st.append(_MARK)
        elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_TUPLE"):
            self.new(name[6:].lower())
        elif name in ("LIST", "TUPLE"):
            self.new(name.lower(), self.pop_mark())
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            items = [self.pop() for _ in range(int(name[-1]))][::-1]
            self.new("tuple", items)
        elif name == "DICT":
            pairs = self.pop_mark()
            self.add_pairs(self.new("dict"), pairs)
        elif name == "APPEND":
            value = self.pop()
            self.target(("list",), name).items.append(value)
        elif name == "APPENDS":
            items = self.pop_mark()
            self.target(("list",), name).items.extend(items)
        elif name in ("SETITEM", "SETITEMS"):
            if name == "SETITEM":
                value = self.pop()
                pairs = [self.pop(), value]
            else:
                pairs = self.pop_mark()
            self.add_pairs(self.target(("dict", "call"), name), pairs)
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if not isinstance(arg, int) or arg not in self.memo:
                raise pickle.UnpicklingError(f"corrupt pickle (memo entry {arg} unset)")
            st.append(self.memo[arg])
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            index = len(self.memo) if name == "MEMOIZE" else arg
            if not isinstance(index, int) or not 0 <= index <= self.ops:  # the unpickler sizes its
                raise pickle.UnpicklingError(f"memo index {index} out of range")  # memo by the index
            if not st or st[-1] is _MARK:
                raise pickle.UnpicklingError("corrupt pickle (memo of an empty stack)")
            self.memo[index] = st[-1]
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            if name == "GLOBAL":
                module, _, gname = str(arg).partition(" ")
            else:
                gname_value, module_value = self.pop(), self.pop()
                if not isinstance(module_value, str) or not isinstance(gname_value, str):
                    raise pickle.UnpicklingError("corrupt pickle (STACK_GLOBAL without a module and a name)")
                module, gname = module_value, gname_value
            st.append(_Global(module, gname))
        elif name == "REDUCE":
            args, func = self.pop(), self.pop()
            if not isinstance(func, _Global) or not isinstance(args, _Node) or args.kind != "tuple":
                raise pickle.UnpicklingError("corrupt pickle (REDUCE without a global and a tuple)")
            if (func.module, func.name) == _ORDERED_DICT and args.items:
                raise pickle.UnpicklingError("OrderedDict built from arguments is not allowed")
            self.new("call", [args])
        elif name == "BUILD":
            state = self.pop()
            self.target(("call",), name).items.append(state)
        elif name == "POP":
            if st and st[-1] is _MARK:
                st.pop()
            else:
                self.pop()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            if not st or st[-1] is _MARK:
                raise pickle.UnpicklingError("corrupt pickle (DUP of an empty stack)")
            st.append(st[-1])
        elif name == "STOP":
            self.pop()
            return True
        elif name in _NOT_FOR_ARRAYS:
            raise pickle.UnpicklingError(f"pickle operation {name} is not allowed (arrays never use it)")
        # PROTO, FRAME, READONLY_BUFFER: no stack effect
        return False


def _check_key(key: object) -> None:
    if isinstance(key, str):
        return
    if isinstance(key, int):  # bool included
        if -_INT_KEY_LIMIT < key < _INT_KEY_LIMIT:
            return
        raise pickle.UnpicklingError("dict key is an integer too large to be allowed")
    kind = key.kind if isinstance(key, _Node) else type(key).__name__
    raise pickle.UnpicklingError(f"dict key of type {kind} is not allowed")


def _measure(nodes: list[_Node], budget: int) -> None:
    """Refuse when any container nests deeper than MAX_DEPTH, holds itself, or expands (shared
    containers counted once per reference) to more than ``budget`` elements. One visit per
    container and per reference: linear in the pickle's size, whatever it expands to."""
    size: dict[int, int] = {}
    for root in nodes:
        if id(root) in size:
            continue
        path: list[tuple[_Node, int]] = [(root, 0)]
        on_path = {id(root)}
        while path:
            node, at = path[-1]
            items = node.items
            while at < len(items):
                child = items[at]
                at += 1
                if isinstance(child, _Node) and id(child) not in size:
                    if id(child) in on_path:
                        raise pickle.UnpicklingError("a container holds itself")
                    path[-1] = (node, at)
                    path.append((child, 0))
                    on_path.add(id(child))
                    if len(path) > MAX_DEPTH:
                        raise pickle.UnpicklingError(f"containers nested more than {MAX_DEPTH} deep")
                    break
            else:
                total = 1 + sum(size[id(c)] if isinstance(c, _Node) else 1 for c in items)
                if total > budget:
                    raise pickle.UnpicklingError(
                        f"shared references expand to more than {budget:,} elements (a pickle bomb?)")
                size[id(node)] = total
                on_path.discard(id(node))
                path.pop()


def check_pickle_bounds(data: bytes) -> None:
    """Raise :class:`pickle.UnpicklingError` when unpickling ``data`` could take unbounded time
    or memory (see the module doc); decodes the opcodes only, runs nothing."""
    replay = _Replay()
    try:
        for opcode, arg, _pos in pickletools.genops(data):
            if replay.step(opcode.name, arg):
                break
    except ValueError as exc:  # an unknown opcode, a truncated argument, no STOP
        raise pickle.UnpicklingError(f"not a valid pickle ({exc})") from None
    _measure(replay.nodes, max(MIN_ELEMENTS, ELEMENTS_PER_BYTE * len(data)))


def _check_contents(obj: object, file_size: int) -> None:
    """Only arrays (of plain dtypes, no larger than the file) and plain containers of them."""
    seen: set[int] = set()
    array_bytes = 0
    todo: list[object] = [obj]
    while todo:
        item = todo.pop()
        if isinstance(item, (list, tuple, dict, np.ndarray)):
            if id(item) in seen:
                continue
            seen.add(id(item))
        if isinstance(item, np.ndarray):
            if item.dtype.hasobject:
                raise pickle.UnpicklingError("object arrays are not allowed")
            array_bytes += item.nbytes
            if array_bytes > file_size:
                raise pickle.UnpicklingError(
                    f"arrays of {array_bytes:,} bytes cannot come from a file of {file_size:,} bytes")
        elif isinstance(item, (list, tuple)):
            todo.extend(item)
        elif isinstance(item, dict):
            for key in item:
                if not isinstance(key, (str, int)):
                    raise pickle.UnpicklingError(f"dict key of type {type(key).__name__} is not allowed")
            todo.extend(item.values())
        elif not (isinstance(item, (int, float, str, bool, np.generic)) or item is None):
            raise pickle.UnpicklingError(f"object of type {type(item).__name__} is not allowed")


def loads_safe(data: bytes, source: str = "<bytes>") -> object:
    """Unpickle ``data`` allowing only numpy arrays and plain containers of them (the caller
    narrows the result with ``isinstance``)."""
    try:
        check_pickle_bounds(data)
        obj = RestrictedUnpickler(io.BytesIO(data)).load()
        _check_contents(obj, len(data))
    except (pickle.UnpicklingError, AttributeError, ImportError, IndexError, KeyError,
            TypeError, ValueError, EOFError, MemoryError) as exc:
        raise UnsafePickleError(
            f"{source}: refused to load pickle ({exc}); only numpy arrays are accepted"
        ) from None
    return obj


def load_pickle(path: str | os.PathLike[str]) -> object:
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
