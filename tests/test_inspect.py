"""Tests for ``gait inspect`` (gaitcli.data.inspect) and the pickle header reader."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.data.inspect import histogram, inspect_dataset, load_partition
from gaitcli.data.inspect_render import compact_ids, render_report
from gaitcli.data.pkl_header import HeaderProblem, parse_array_header, read_array_header
from gaitcli.errors import DataError

IDS = ["001", "002", "003"]
TYPES = ["bg-01", "nm-01", "nm-02"]
VIEWS = ["000", "090"]


class Evil:
    """Unpickling this would run a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def sil(frames: int, size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((frames, size, size)) > 0.7).astype(np.uint8) * 255


def write(path: Path, obj, protocol: int = 4) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = pickle.dumps(obj, protocol=protocol)
    path.write_bytes(data)
    return data


# Lengths of the sequences that are written whole (id, type, view) -> frames.
FRAMES = {}
for i, ident in enumerate(IDS):
    for j, typ in enumerate(TYPES):
        for k, view in enumerate(VIEWS):
            FRAMES[(ident, typ, view)] = 20 + 7 * i + 3 * j + k
MISSING = [("002", "bg-01", "090"), ("003", "nm-02", "000")]
SHORT = {("001", "nm-02", "090"): 3, ("002", "nm-01", "000"): 7}
TRUNCATED = ("003", "bg-01", "000")
MALICIOUS = ("003", "bg-01", "090")
for cell in MISSING + [TRUNCATED, MALICIOUS]:
    del FRAMES[cell]
FRAMES.update(SHORT)


@pytest.fixture()
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "data"
    marker = tmp_path / "marker"
    for (ident, typ, view), frames in FRAMES.items():
        write(root / ident / typ / view / f"{view}.pkl", sil(frames, seed=frames))
    ident, typ, view = TRUNCATED
    data = pickle.dumps(sil(30), protocol=4)
    (root / ident / typ / view).mkdir(parents=True)
    (root / ident / typ / view / f"{view}.pkl").write_bytes(data[: len(data) // 2])
    ident, typ, view = MALICIOUS
    write(root / ident / typ / view / f"{view}.pkl", Evil(f"touch {marker}"))
    # noise that must be ignored: hidden files / folders, a temp file of an atomic write
    (root / ".cache").mkdir()
    write(root / ".cache" / "a" / "b" / "c.pkl", [1, 2])
    (root / "001" / "nm-01" / "000" / ".000.pkl.x1y2.tmp").write_bytes(b"partial")
    return root, marker


@pytest.fixture()
def partition(tmp_path: Path) -> Path:
    path = tmp_path / "part.json"
    path.write_text(json.dumps({"TRAIN_SET": ["001", "004"], "TEST_SET": ["002"]}))
    return path


def test_report_every_key(tree, partition):
    root, marker = tree
    report = inspect_dataset(root, short=10, partition=partition, workers=2).to_json()
    assert not marker.exists()  # the malicious pickle was never executed
    json.dumps(report)  # JSON-able

    assert report["sequences"] == 3 * 3 * 2 - len(MISSING) == 16
    assert report["files"] == 16
    assert report["ids"] == 3 and report["id_list"] == IDS
    assert report["types"] == TYPES
    assert report["views"] == VIEWS
    assert report["frame_size"] == [64, 64]
    assert report["dtypes"] == {"uint8": 14}
    assert report["protocols"] == {"4": 14}

    lengths = np.array(sorted(FRAMES.values()))
    frames = report["frames"]
    assert frames["total"] == lengths.sum()
    assert frames["min"] == lengths.min() == 3
    assert frames["max"] == lengths.max()
    assert frames["median"] == pytest.approx(np.median(lengths))
    assert frames["mean"] == pytest.approx(lengths.mean(), abs=0.01)
    assert frames["p5"] == pytest.approx(np.percentile(lengths, 5), abs=0.01)
    assert frames["p95"] == pytest.approx(np.percentile(lengths, 95), abs=0.01)

    hist = report["histogram"]
    assert len(hist["edges"]) == len(hist["counts"]) + 1
    assert sum(hist["counts"]) == len(lengths)
    assert hist["edges"][0] <= lengths.min() and hist["edges"][-1] > lengths.max()

    expected_grid = {t: {v: 3 for v in VIEWS} for t in TYPES}
    for _i, t, v in MISSING:
        expected_grid[t][v] -= 1
    assert report["per_type_view"] == expected_grid

    assert report["missing"] == [list(c) for c in MISSING]
    assert report["short_threshold"] == 10
    assert report["short"] == [["001", "nm-02", "090", 3], ["002", "nm-01", "000", 7]]

    unreadable = {row["path"]: row["reason"] for row in report["unreadable"]}
    assert set(unreadable) == {"003/bg-01/000/000.pkl", "003/bg-01/090/090.pkl"}
    assert unreadable["003/bg-01/000/000.pkl"].startswith("truncated:")
    assert unreadable["003/bg-01/090/090.pkl"].startswith("refused:")
    assert "posix.system" in unreadable["003/bg-01/090/090.pkl"] or "nt.system" in unreadable[
        "003/bg-01/090/090.pkl"]
    assert report["shape_problems"] == []
    assert report["frame_mismatch"] == []

    part = report["partition"]
    assert part["file"] == str(partition)
    assert part["train_ids"] == 2 and part["test_ids"] == 1
    assert part["missing_on_disk"] == {"TRAIN_SET": ["004"], "TEST_SET": []}
    assert part["not_in_partition"] == ["003"]
    assert part["in_both"] == []

    assert report["problems"] == 2 + 2 + 2 + 2  # missing + short + unreadable + partition


def test_no_partition_key_without_partition(tree):
    report = inspect_dataset(tree[0], short=2).to_json()
    assert "partition" not in report
    assert report["short"] == []
    assert report["problems"] == 2 + 2


def test_workers_do_not_change_the_report(tree):
    one = inspect_dataset(tree[0], workers=1).to_json()
    many = inspect_dataset(tree[0], workers=5).to_json()
    one.pop("workers"), many.pop("workers")
    assert one == many


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("shape", [(3, 4, 5), (40, 64, 64), (0, 64, 64)])
def test_protocols(tmp_path, protocol, shape):
    array = sil(shape[0], seed=1)[:, : shape[1], : shape[2]]
    path = tmp_path / "x.pkl"
    write(path, array, protocol)
    header = read_array_header(path)
    assert header.shape == shape
    assert header.dtype == "uint8"
    assert header.method == "header"
    assert header.protocol == (protocol if protocol >= 2 else 0)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_protocols_in_a_tree(tmp_path, protocol):
    for ident in ("01", "02"):
        write(tmp_path / ident / "nm-01" / "000" / "000.pkl", sil(12), protocol)
    report = inspect_dataset(tmp_path).to_json()
    assert report["unreadable"] == [] and report["problems"] == 0
    assert report["frames"]["total"] == 24
    assert report["protocols"] == {str(protocol): 2}


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(0, 9), min_size=1, max_size=4).map(tuple),
    dtype=st.sampled_from(["uint8", "int16", "float32", "float64", "bool", "<u4", ">i8", "complex64"]),
    protocol=st.integers(0, 5),
    fortran=st.booleans(),
)
def test_header_matches_any_plain_array(shape, dtype, protocol, fortran):
    array = np.zeros(shape, dtype=dtype)
    if fortran:
        array = np.asfortranarray(array)
    data = pickle.dumps(array, protocol=protocol)
    for skip_over in (256, 10**9):
        header = parse_array_header(io.BytesIO(data), len(data), skip_over=skip_over)
        assert header.shape == shape
        assert header.dtype == str(array.dtype)
        assert header.nbytes == array.nbytes


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_every_truncation_is_detected(protocol):
    data = pickle.dumps(sil(9), protocol=protocol)
    for cut in list(range(0, 200)) + [len(data) // 2, len(data) - 2, len(data) - 1]:
        with pytest.raises(HeaderProblem) as info:
            parse_array_header(io.BytesIO(data[:cut]), cut)
        assert info.value.kind == "truncated", (cut, str(info.value))


def test_truncated_file_reads_only_the_head(tmp_path):
    # The array bytes of a large pkl are skipped with seek, not read.
    path = tmp_path / "big.pkl"
    write(path, np.zeros((200, 256, 256), np.uint8))
    reads = []

    class Counting(io.FileIO):
        def read(self, size=-1):
            reads.append(size)
            return super().read(size)

    from gaitcli.data import pkl_header

    with Counting(path, "rb") as handle:
        header = pkl_header.parse_array_header(handle, path.stat().st_size)
    assert header.shape == (200, 256, 256)
    assert sum(reads) <= 3 * 4096


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_malicious_pickle_is_refused_not_run(tmp_path, protocol):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    write(path, Evil(f"touch {marker}"), protocol)
    with pytest.raises(HeaderProblem) as info:
        read_array_header(path)
    assert info.value.kind == "refused"
    assert str(info.value).startswith("refused: ")
    # hidden behind a real array
    write(path, (np.zeros((2, 3), np.uint8), Evil(f"touch {marker}")), protocol)
    with pytest.raises(HeaderProblem) as info:
        read_array_header(path)
    assert info.value.kind == "refused"
    assert not marker.exists()


def test_other_refusals_and_invalid_files(tmp_path):
    path = tmp_path / "x.pkl"
    write(path, np.array([1, "a"], dtype=object))
    with pytest.raises(HeaderProblem, match="^refused: object arrays"):
        read_array_header(path)
    write(path, [np.zeros(3)])
    with pytest.raises(HeaderProblem, match="^invalid: expected a numpy array, found a list"):
        read_array_header(path)
    write(path, np.float32(1.5))
    with pytest.raises(HeaderProblem, match="numpy scalar"):
        read_array_header(path)
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    path.write_bytes(buffer.getvalue())
    with pytest.raises(HeaderProblem, match=r"^invalid: this is a \.npy file"):
        read_array_header(path)
    path.write_bytes(b"")
    with pytest.raises(HeaderProblem, match="^truncated: the file is empty"):
        read_array_header(path)
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(HeaderProblem, match="^invalid: not a valid pickle"):
        read_array_header(path)
    with pytest.raises(HeaderProblem, match="^unreadable:"):
        read_array_header(tmp_path / "absent.pkl")


def test_unmodelled_layout_falls_back_to_the_restricted_unpickler(tmp_path):
    path = tmp_path / "structured.pkl"
    write(path, np.zeros((4, 8, 8), dtype=[("a", "u1"), ("b", "<f4")]))
    header = read_array_header(path)
    assert header.method == "full"
    assert header.shape == (4, 8, 8)


def test_shape_problems_and_frame_mismatch(tmp_path):
    for ident in ("01", "02", "03"):
        write(tmp_path / ident / "nm-01" / "000" / "000.pkl", sil(12))
    write(tmp_path / "04" / "nm-01" / "000" / "000.pkl", sil(12, size=32))  # wrong frame size
    write(tmp_path / "05" / "nm-01" / "000" / "000.pkl", np.zeros((12, 4096), np.uint8))  # 2-D
    # two modalities: the second pkl of every folder is [T, 16, 16]
    for ident in ("01", "02", "03", "04", "05"):
        write(tmp_path / ident / "nm-01" / "000" / "extra.pkl", sil(12, size=16))
    write(tmp_path / "03" / "nm-01" / "000" / "extra.pkl", sil(14, size=16))  # disagrees on T
    report = inspect_dataset(tmp_path).to_json()
    problems = {row["path"]: row for row in report["shape_problems"]}
    assert set(problems) == {"04/nm-01/000/000.pkl", "05/nm-01/000/000.pkl"}
    assert problems["04/nm-01/000/000.pkl"]["shape"] == [12, 32, 32]
    assert "differs from the majority 64×64" in problems["04/nm-01/000/000.pkl"]["reason"]
    assert "3-D" in problems["05/nm-01/000/000.pkl"]["reason"]
    assert report["frame_mismatch"] == [
        {"sequence": ["03", "nm-01", "000"], "frames": {"000.pkl": 12, "extra.pkl": 14},
         "reason": "its pkl files hold different frame counts (000.pkl: 12, extra.pkl: 14); "
                   "re-prepare the sequence"}]
    assert report["frame_size"] == [64, 64]
    assert report["sequences"] == 5 and report["files"] == 10
    assert report["problems"] == 3


def test_ou_mvlp_style_and_deeper_roots(tmp_path):
    # OU-MVLP: {id}/{seq}/{view}; an extra folder level above the ids is fine too.
    for ident in ("00001", "00002"):
        for seq in ("00", "01"):
            for view in ("000", "015", "180"):
                write(tmp_path / "OUMVLP" / ident / seq / view / f"{view}.pkl", sil(6))
    report = inspect_dataset(tmp_path, short=5).to_json()
    assert report["id_list"] == ["00001", "00002"]
    assert report["types"] == ["00", "01"]
    assert report["views"] == ["000", "015", "180"]
    assert report["problems"] == 0 and report["missing"] == []


def test_natural_sort_of_unpadded_ids(tmp_path):
    for ident in ("10", "9", "100"):
        write(tmp_path / ident / "nm-01" / "000" / "000.pkl", sil(11))
    assert inspect_dataset(tmp_path).id_list == ["9", "10", "100"]


def test_pkl_outside_the_layout_is_reported(tmp_path):
    write(tmp_path / "01" / "nm-01" / "000" / "000.pkl", sil(11))
    write(tmp_path / "01" / "stray.pkl", sil(11))
    report = inspect_dataset(tmp_path).to_json()
    assert report["unreadable"] == [
        {"path": "01/stray.pkl", "reason": "not in an id/type/view folder (less than three folders deep)"}]
    assert report["problems"] == 1


def test_errors(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        inspect_dataset(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        inspect_dataset(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .pkl files found"):
        inspect_dataset(tmp_path / "empty")
    write(tmp_path / "seq" / "000.pkl", sil(3))
    with pytest.raises(DataError, match="sequence folder instead of the dataset root"):
        inspect_dataset(tmp_path / "seq")


def test_partition_errors_and_both_sets(tmp_path, tree):
    root = tree[0]
    with pytest.raises(DataError, match="partition file not found"):
        inspect_dataset(root, partition=tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_partition(bad)
    bad.write_text(json.dumps({"TRAIN_SET": "001"}))
    with pytest.raises(DataError, match="'TRAIN_SET' must be a list"):
        load_partition(bad)
    bad.write_text(json.dumps(["001"]))
    with pytest.raises(DataError, match="expected a JSON object"):
        load_partition(bad)
    both = tmp_path / "both.json"
    both.write_text(json.dumps({"TRAIN_SET": ["001", "002", 3], "TEST_SET": ["002", "003"]}))
    part = inspect_dataset(root, partition=both).to_json()["partition"]
    assert part["in_both"] == ["002"]
    assert part["missing_on_disk"] == {"TRAIN_SET": ["3"], "TEST_SET": []}
    assert part["not_in_partition"] == []


def test_packaged_partition_by_name(tree):
    part = inspect_dataset(tree[0], partition="CASIA-B.json").to_json()["partition"]
    assert part["train_ids"] == 74 and part["test_ids"] == 50
    assert part["file"].endswith("CASIA-B.json")


def test_histogram_and_compact_ids():
    hist = histogram(np.array([1, 54, 80, 80, 119, 204])).to_json()
    assert hist["edges"] == list(range(0, 221, 20))
    assert sum(hist["counts"]) == 6 and hist["counts"][4] == 2
    assert histogram(np.array([5, 5])).edges == [5, 6]
    assert histogram(np.array([], dtype=np.int64)).to_json() == {"edges": [], "counts": []}
    assert compact_ids(["001", "002", "003", "005", "007", "008", "x"]) == "001–003, 005, 007, 008, x"


def test_render_fits_80_columns(tree, partition):
    root, _ = tree
    report = inspect_dataset(root, partition=partition, short=10)
    console = Console(width=80, record=True, force_terminal=False, color_system=None)
    render_report(report, console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for needle in ("16 sequences", "3 ids", "sequences per type × view", "frames per sequence",
                   "2 missing sequence(s)", "2 sequence(s) shorter than 10 frames",
                   "2 unreadable file(s)", "truncated", "refused", "partition",
                   "TRAIN_SET id(s) not on disk: 004", "8 problem(s)", "█"):
        assert needle in text, needle


def test_render_summarises_many_missing_cells(tmp_path):
    views = [f"{v:03d}" for v in range(0, 181, 18)]
    types = [f"nm-0{i}" for i in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"]
    data = pickle.dumps(sil(15, 8))
    for ident in [f"{i:03d}" for i in range(5, 9)]:
        for typ in types:
            for view in views:
                if ident == "005" and view == "000":
                    continue
                if ident == "008" and typ == "nm-03":
                    continue
                (tmp_path / ident / typ / view).mkdir(parents=True)
                (tmp_path / ident / typ / view / f"{view}.pkl").write_bytes(data)
    report = inspect_dataset(tmp_path)
    assert len(report.missing) == 10 + 11
    console = Console(width=80, record=True, force_terminal=False, color_system=None)
    render_report(report, console)
    text = console.export_text()
    assert re.search(r"005\s+10\s+view 000 \(all types\)", text)
    assert re.search(r"008\s+11\s+nm-03 \(all views\)", text)
    assert max(len(line) for line in text.splitlines()) <= 80


# ----------------------------------------------------------------------------- CLI
def _json_from(stdout: str) -> dict:
    match = re.search(r"^\{$", stdout, flags=re.M)
    assert match, stdout
    return json.loads(stdout[match.start():])


def test_cli_json_and_strict(tree, partition, tmp_path):
    root, marker = tree
    runner = CliRunner()
    result = runner.invoke(app, ["inspect", str(root), "--json", "-", "--partition", str(partition)])
    assert result.exit_code == 0, result.output
    report = _json_from(result.stdout)
    # the default --short is SHORT_SEQUENCE_FRAMES (5): the 7-frame sequence is not short
    assert report["sequences"] == 16 and report["problems"] == 7 and report["short_threshold"] == 5
    assert report["partition"]["not_in_partition"] == ["003"]

    result = runner.invoke(app, ["inspect", str(root), "--strict", "--workers", "1"])
    assert result.exit_code == 1
    out = tmp_path / "report.json"
    result = runner.invoke(app, ["inspect", str(root), "--short", "2", "--json", str(out)])
    assert result.exit_code == 0
    assert json.loads(out.read_text())["short"] == []
    assert not marker.exists()


def test_cli_strict_clean_tree_exits_0(tmp_path):
    for ident in ("001", "002"):
        for view in ("000", "090"):
            write(tmp_path / ident / "nm-01" / view / f"{view}.pkl", sil(12))
    result = CliRunner().invoke(app, ["inspect", str(tmp_path), "--strict"])
    assert result.exit_code == 0, result.output
    assert "no problems found" in result.stdout


def test_cli_missing_dir_exits_2_with_one_line(tmp_path):
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "absent")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no such directory" in lines[0]
