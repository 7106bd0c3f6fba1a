"""gait prepare never mixes two data sets and never invents ids (issue 9, items 5 and 6).

Faults: a directory link back to a parent folder; an OUT prepared from another IN; an OUT
without a manifest at another frame size (e.g. prepared by OpenGait); --overwrite over an OUT
holding sequences the new IN lacks. Each asserts what is on disk afterwards."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.data.pickle_io import load_array, save_array
from gaitcli.data.prepare import prepare_dataset
from gaitcli.data.prepare_output import MANIFEST_NAME, pkls_in
from gaitcli.errors import DataError


def _png(path: Path, shift: int = 0) -> None:
    img = np.zeros((48, 64), np.uint8)
    cv2.ellipse(img, (30 + shift, 28), (6, 16), 0, 0, 360, 255, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cv2.imencode(".png", img)[1].tobytes())


def _raw(root: Path, ids: tuple[str, ...] = ("001", "002")) -> Path:
    for ident in ids:
        for f in range(3):
            _png(root / ident / "nm-01" / "090" / f"{f}.png", f)
    return root


def test_link_to_a_parent_folder_invents_no_id(tmp_path: Path) -> None:
    raw = _raw(tmp_path / "raw")
    os.symlink("..", raw / "001" / "nm-01" / "back")  # ln -s .. 001/nm-01/back
    for follow in (False, True):
        out = tmp_path / f"out-{follow}"
        summary = prepare_dataset(raw, out, workers=1, follow_links=follow)
        assert pkls_in(out) == ["001/nm-01/090/090.pkl", "002/nm-01/090/090.pkl"]
        assert [s.path for s in summary.skipped_links] == [str(raw / "001" / "nm-01" / "back")]
        assert ("follow_links" in summary.skipped_links[0].reason) is not follow
    result = CliRunner().invoke(app, ["prepare", str(raw), str(tmp_path / "o3"), "--workers", "1"])
    assert result.exit_code == 0 and "directory link(s) skipped" in result.stderr


def test_link_outside_the_tree_is_followed_only_with_follow_links(tmp_path: Path) -> None:
    raw = _raw(tmp_path / "raw", ("001",))
    _raw(tmp_path / "elsewhere", ("007",))
    os.symlink(tmp_path / "elsewhere" / "007", raw / "007")
    assert pkls_in_after(prepare_dataset(raw, tmp_path / "a", workers=1).output) == ["001/nm-01/090/090.pkl"]
    summary = prepare_dataset(raw, tmp_path / "b", workers=1, follow_links=True)
    assert pkls_in_after(summary.output) == ["001/nm-01/090/090.pkl", "007/nm-01/090/090.pkl"]
    with pytest.raises(DataError, match="without follow_links"):  # the manifest records the setting
        prepare_dataset(raw, tmp_path / "a", workers=1, follow_links=True)


def pkls_in_after(out: str) -> list[str]:
    return pkls_in(Path(out))


def test_manifest_records_source_settings_and_frame_size(tmp_path: Path) -> None:
    raw = _raw(tmp_path / "raw")
    prepare_dataset(raw, tmp_path / "out", img_size=32, workers=1)
    manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    assert manifest["source"] == os.path.realpath(raw)
    assert manifest["img_size"] == 32 and manifest["frame_size"] == [32, 32]
    assert manifest["min_pixel_sum"] == 10000 and manifest["follow_links"] is False
    assert manifest["complete"] is True


def test_out_prepared_from_another_in_is_refused(tmp_path: Path) -> None:
    first, second = _raw(tmp_path / "a", ("001",)), _raw(tmp_path / "b", ("002",))
    out = tmp_path / "out"
    prepare_dataset(first, out, workers=1)
    before = {p: (out / p).read_bytes() for p in pkls_in(out)}
    with pytest.raises(DataError, match=f"prepared from {first}, not {second}.*overwrite"):
        prepare_dataset(second, out, workers=1)
    assert {p: (out / p).read_bytes() for p in pkls_in(out)} == before  # nothing touched


def test_foreign_out_at_another_size_is_refused(tmp_path: Path) -> None:
    raw = _raw(tmp_path / "raw")
    out = tmp_path / "opengait"
    save_array(out / "009" / "nm-01" / "000" / "000.pkl", np.zeros((4, 64, 64), np.uint8))  # no manifest
    result = CliRunner().invoke(app, ["prepare", str(raw), str(out), "--img-size", "32", "--workers", "1"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "frame size 64×64" in lines[0] and "--img-size 64" in lines[0]
    assert pkls_in(out) == ["009/nm-01/000/000.pkl"]


def test_overwrite_leaves_exactly_what_in_gives(tmp_path: Path) -> None:
    old, new = _raw(tmp_path / "old", ("001", "002", "003")), _raw(tmp_path / "new", ("002", "004"))
    out = tmp_path / "out"
    prepare_dataset(old, out, workers=1)
    (out / "notes.txt").write_text("mine")  # not a pkl: never touched
    summary = prepare_dataset(new, out, workers=1, overwrite=True)
    assert pkls_in(out) == ["002/nm-01/090/090.pkl", "004/nm-01/090/090.pkl"]
    assert summary.stale_removed == ["001/nm-01/090/090.pkl", "003/nm-01/090/090.pkl"]
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / MANIFEST_NAME).read_text())["source"] == os.path.realpath(new)
    fresh = tmp_path / "fresh"
    prepare_dataset(new, fresh, workers=1)
    for rel in pkls_in(fresh):
        np.testing.assert_array_equal(load_array(out / rel), load_array(fresh / rel))


def test_interrupted_overwrite_must_be_finished_with_overwrite(tmp_path: Path) -> None:
    raw = _raw(tmp_path / "raw")
    out = tmp_path / "out"
    prepare_dataset(raw, out, workers=1)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    (out / MANIFEST_NAME).write_text(json.dumps({**manifest, "complete": False}))  # as a killed run leaves it
    with pytest.raises(DataError, match="interrupted; run it again with overwrite"):
        prepare_dataset(raw, out, workers=1)
    assert prepare_dataset(raw, out, workers=1, overwrite=True).sequences_written == 2
    assert prepare_dataset(raw, out, workers=1).skipped_existing == 2
