"""The restricted unpickler: numpy arrays load, anything that could run code is refused."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from gaitcli.data.pickle_io import load_array, load_pickle, loads_safe, save_array
from gaitcli.errors import DataError, UnsafePickleError


class _RunsCode:
    """A pickle payload that would create a marker file when unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CallsEval:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("frames", [7, 0])
def test_numpy_arrays_round_trip(tmp_path, protocol, frames):
    array = np.random.default_rng(0).integers(0, 256, size=(frames, 64, 64), dtype=np.uint8)
    path = tmp_path / "seq.pkl"
    path.write_bytes(pickle.dumps(array, protocol=protocol))
    loaded = load_array(path)
    assert loaded.dtype == np.uint8 and np.array_equal(loaded, array)


def test_save_array_is_readable_by_plain_pickle(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "a" / "b" / "000.pkl"
    save_array(path, array)
    with open(path, "rb") as handle:  # what OpenGait does with our files
        assert np.array_equal(pickle.load(handle), array)
    assert [p.name for p in path.parent.iterdir()] == ["000.pkl"]  # no temp file left behind


def test_containers_of_arrays_are_allowed():
    obj = {"sils": np.zeros((2, 2), np.uint8), "meta": [1, 2.5, "x", None]}
    out = loads_safe(pickle.dumps(obj))
    assert np.array_equal(out["sils"], obj["sils"]) and out["meta"] == obj["meta"]


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_RunsCode(str(marker))))
    with pytest.raises(UnsafePickleError) as info:
        load_array(path)
    assert str(path) in str(info.value)
    assert "not allowed" in str(info.value)
    assert not marker.exists()


class _BigBytes:
    def __reduce__(self):
        return (bytes, (10**10,))


@pytest.mark.parametrize(
    "payload", [_CallsEval(), _BigBytes(), np.array([object()], dtype=object), {1.5: np.zeros(1)}])
def test_other_unsafe_payloads_are_refused(payload):
    with pytest.raises(UnsafePickleError):
        loads_safe(pickle.dumps(payload))


def test_truncated_and_garbage_files(tmp_path):
    data = pickle.dumps(np.zeros((10, 64, 64), np.uint8))
    truncated = tmp_path / "t.pkl"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsafePickleError):
        load_array(truncated)
    garbage = tmp_path / "g.pkl"
    garbage.write_bytes(b"\x89PNG not a pickle")
    with pytest.raises(UnsafePickleError):
        load_array(garbage)
    with pytest.raises(DataError, match="cannot read"):
        load_pickle(tmp_path / "missing.pkl")


def test_non_array_top_level_is_reported(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([np.zeros(3)]))
    with pytest.raises(DataError, match="expected a numpy array"):
        load_array(path)


# ----------------------------------------------------------------------------- pickle bombs
def _memo_get(i: int) -> bytes:
    return b"j" + i.to_bytes(4, "little")  # LONG_BINGET


def _memo_put(i: int) -> bytes:
    return b"r" + i.to_bytes(4, "little")  # LONG_BINPUT


def _shared_lists(levels: int = 60, refs: int = 2) -> bytes:
    """Level i is a list of ``refs`` references to level i-1: 2**60 elements once expanded."""
    out = b"\x80\x02]" + _memo_put(0)  # PROTO 2, EMPTY_LIST, memo[0]
    for level in range(1, levels + 1):
        out += b"(" + _memo_get(level - 1) * refs + b"l" + _memo_put(level)  # MARK, GETs, LIST
    return out + b"."


def _shared_tuples(levels: int = 60) -> bytes:
    """``t = (t, t)`` 60 times with DUP / TUPLE2: 125 bytes."""
    return b"\x80\x02)" + b"2\x86" * levels + b"."


def _nested_lists(depth: int = 200_000) -> bytes:
    """``[[[...]]]`` 200,000 deep: EMPTY_LIST ... then APPEND each into the one below."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def _tuple_bomb_as_dict_key(levels: int = 60) -> bytes:
    """A dict whose key is the 2**60 tuple: hashing it is the unpickler's own work."""
    return b"\x80\x02}" + b")" + b"2\x86" * levels + b"Ns" + b"."  # EMPTY_DICT, key, None, SETITEM


_BOMBS = {
    "shared-lists-60-levels": _shared_lists,
    "billion-laughs-10x9": lambda: _shared_lists(levels=9, refs=10),
    "shared-tuples-60-levels": _shared_tuples,
    "nested-200000": _nested_lists,
    "tuple-bomb-dict-key": _tuple_bomb_as_dict_key,
    "self-reference": lambda: b"\x80\x02]q\x00h\x00a.",  # l = []; l.append(l)
    "memo-index-2**32": lambda: b"\x80\x02Nr\xff\xff\xff\xff.",  # memo array of 2**33 slots
    "top-heavy-array": lambda: b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
                               b"J\x00\xe4\x0bT\x85U\x01b\x87R.",  # a 1.4 GB array made of nothing
}

_LOAD_ONE = """
import sys
from gaitcli.data.pickle_io import load_array
from gaitcli.data.pkl_header import HeaderProblem, read_array_header
from gaitcli.errors import GaitError
try:
    if sys.argv[2] == "header":  # gait inspect's reader: opcode walk, then the full-load fallback
        read_array_header(sys.argv[1])
    else:  # training, gait embed / identify
        load_array(sys.argv[1])
except HeaderProblem as exc:
    print(exc)
    sys.exit(3)
except GaitError as exc:
    print(exc)
    sys.exit(exc.exit_code)
"""


@pytest.mark.parametrize("reader", ["load_array", "header"])
@pytest.mark.parametrize("name", sorted(_BOMBS))
def test_pickle_bombs_are_refused_promptly_in_one_line(tmp_path, name, reader):
    """A small hostile pkl must neither hang (billion laughs, a hash of a huge tuple), nor
    overflow the stack (deep nesting), nor allocate what the file does not hold: one line
    naming the file, at once. Run in a child so that a hang fails the test instead of the suite."""
    import subprocess
    import sys
    import time

    path = tmp_path / f"{name}.pkl"
    path.write_bytes(_BOMBS[name]())
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _LOAD_ONE, str(path), reader], capture_output=True,
                          text=True, timeout=30)
    seconds = time.monotonic() - started
    assert proc.stderr == ""  # no traceback
    message = proc.stdout.strip()
    assert "\n" not in message
    if reader == "header":
        assert proc.returncode == 3 and message.startswith(("invalid:", "refused:")), message
    else:
        assert proc.returncode == 2 and str(path) in message and "refused" in message, message
    assert seconds < 20  # loosely: well under a second on an idle core; it hung without the bounds


def test_real_sequence_pickles_still_load(tmp_path):
    """What OpenGait and gaitcli write (a uint8 array), numpy 1 spellings, and the containers the
    unpickler accepts (lists / dicts / OrderedDicts of arrays, many arrays sharing one dtype)."""
    from collections import OrderedDict

    rng = np.random.default_rng(1)
    seq = rng.integers(0, 256, size=(120, 64, 64), dtype=np.uint8)
    for protocol in range(6):
        assert np.array_equal(loads_safe(pickle.dumps(seq, protocol=protocol)), seq)
    numpy1 = pickle.dumps(seq, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert np.array_equal(loads_safe(numpy1), seq)
    many = [rng.integers(0, 256, size=(2, 4, 4), dtype=np.uint8) for _ in range(3000)]
    for protocol in (2, 4, 5):
        out = loads_safe(pickle.dumps(many, protocol=protocol))
        assert len(out) == 3000 and all(np.array_equal(a, b) for a, b in zip(out, many, strict=True))
    nested = OrderedDict(a=[seq[:3], {"b": seq[:1], 7: (1.5, None, "x")}], c=np.float32(2.5))
    out = loads_safe(pickle.dumps(nested, protocol=2))
    assert list(out) == ["a", "c"] and np.array_equal(out["a"][1]["b"], seq[:1]) and out["c"] == 2.5
    same = [seq[:2]] * 50  # one array referenced 50 times: memo references of a leaf are fine
    assert len(loads_safe(pickle.dumps(same, protocol=4))) == 50
