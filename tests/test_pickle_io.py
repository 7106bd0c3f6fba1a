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
