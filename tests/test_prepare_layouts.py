"""``gait prepare --layout grew|gait3d|ccpg|oumvlp`` (gaitcli/data/layouts.py, docs/prepare-layouts.md).

Each test builds a tiny tree in a data set's own download layout (a few ids, three 16x16 PNG
frames per sequence) and checks the ``id/type/view`` OpenGait's own scripts would give each
sequence. The pixels are checked against the default layout: the same frames copied by hand
into ``id/type/view`` folders and prepared without ``--layout`` must give byte-identical pkls
(GREW: the frames exactly as stored, which is what OpenGait's ``--dataset GREW`` keeps).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from gaitcli.data.layouts import LAYOUT_NAMES, get_layout
from gaitcli.data.pickle_io import load_array
from gaitcli.data.prepare import MANIFEST_NAME, prepare_dataset
from gaitcli.data.prepare_output import pkls_in
from gaitcli.errors import DataError

SIZE = 16
_rng = np.random.default_rng(20)


def _frame(blank: bool = False) -> np.ndarray:
    """A 16x16 silhouette: a filled blob with grey edges (more than 40 white pixels)."""
    img = np.zeros((SIZE, SIZE), np.uint8)
    if blank:
        return img
    top, left = int(_rng.integers(0, 4)), int(_rng.integers(0, 8))
    height, width = int(_rng.integers(10, SIZE - top + 1)), int(_rng.integers(5, 9))
    img[top : top + height, left : left + width] = 255
    img[top : top + height, left + width - 1] = int(_rng.integers(60, 200))
    return img


def _frames(folder: Path, n: int = 3, names: str = "{:05d}.png", blank_at: int | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        assert cv2.imwrite(str(folder / names.format(i)), _frame(blank=i == blank_at))


def _prepare(inp: Path, out: Path, layout: str = "default", **kw: object):  # type: ignore[no-untyped-def]
    return prepare_dataset(inp, out, img_size=SIZE, workers=1, layout=layout, **kw)  # type: ignore[arg-type]


def _keys(out: Path) -> set[str]:
    return {rel.rsplit("/", 1)[0] for rel in pkls_in(out)}


def _as_default(raw: Path, mapping: dict[str, str], tmp: Path) -> Path:
    """The same frames copied into id/type/view folders (OpenGait's rearranging, done by hand)."""
    tree = tmp / "by-hand"
    for source, key in mapping.items():
        target = tree / key
        target.mkdir(parents=True)
        for png in sorted((raw / source).glob("*.png")):
            shutil.copyfile(png, target / png.name)
    return tree


def _same_pixels(out: Path, reference: Path) -> None:
    assert pkls_in(out) == pkls_in(reference)
    for rel in pkls_in(out):
        assert np.array_equal(load_array(out / rel), load_array(reference / rel)), rel


def _manifest(out: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((out / MANIFEST_NAME).read_text())
    return data


# --------------------------------------------------------------------------- OU-MVLP
OUMVLP = {"Silhouette_000-00/00001": "00001/00/000", "Silhouette_000-00/00002": "00002/00/000",
          "Silhouette_090-01/00001": "00001/01/090", "Silhouette_270-00/00002": "00002/00/270"}


def _oumvlp(root: Path) -> Path:
    for folder in OUMVLP:
        _frames(root / folder, names="{:04d}.png")
    (root / "Silhouette_000-00.7z").write_bytes(b"7z archive")  # the download next to its folder
    (root / "readme").mkdir()
    return root


def test_oumvlp_maps_view_and_sequence_and_matches_the_default_pretreatment(tmp_path):
    raw = _oumvlp(tmp_path / "OUMVLP-raw")
    summary = _prepare(raw, tmp_path / "out", "oumvlp")
    assert _keys(tmp_path / "out") == set(OUMVLP.values())
    assert summary.sequences_written == 4 and summary.layout == "oumvlp"
    assert [u.path for u in summary.unreadable] == [str(raw / "readme")]  # the stray folder is listed
    assert _manifest(tmp_path / "out")["layout"] == "oumvlp"
    assert _manifest(tmp_path / "out")["frames"] == "pretreated"
    reference = tmp_path / "ref"
    _prepare(_as_default(raw, OUMVLP, tmp_path), reference)
    _same_pixels(tmp_path / "out", reference)


# --------------------------------------------------------------------------- Gait3D
GAIT3D = {"0000/camid0_videoid2/seq0": "0000/camid0_videoid2/seq0",
          "0000/camid9_videoid1/seq1": "0000/camid9_videoid1/seq1",
          "0011/camid34_videoid2/seq0": "0011/camid34_videoid2/seq0"}


def _gait3d(root: Path) -> Path:
    for folder in GAIT3D:
        _frames(root / "2D_Silhouettes" / folder, names="human_crop_f{:05d}.png")
    smpl = root / "3D_SMPLs" / "0000" / "camid0_videoid2" / "seq0"
    smpl.mkdir(parents=True)
    (smpl / "human_crop_f00001.npz").write_bytes(b"npz")
    _frames(root / "2D_Parsings" / "0000" / "camid0_videoid2" / "seq0", n=1)  # PNGs, but not silhouettes
    return root


def test_gait3d_reads_2d_silhouettes_only_and_matches_the_default_pretreatment(tmp_path):
    raw = _gait3d(tmp_path / "Gait3D")
    summary = _prepare(raw, tmp_path / "out", "gait3d")
    assert _keys(tmp_path / "out") == set(GAIT3D.values())
    assert summary.layout_root == str(raw / "2D_Silhouettes")
    assert {n.path for n in summary.not_read} == {str(raw / "2D_Parsings"), str(raw / "3D_SMPLs")}
    assert not summary.unreadable
    reference = tmp_path / "ref"
    _prepare(_as_default(raw / "2D_Silhouettes", GAIT3D, tmp_path), reference)
    _same_pixels(tmp_path / "out", reference)
    # IN may also be 2D_Silhouettes itself
    again = _prepare(raw / "2D_Silhouettes", tmp_path / "out2", "gait3d")
    assert again.sequences_written == 3 and not again.not_read
    _same_pixels(tmp_path / "out2", reference)


def test_gait3d_lists_folders_that_are_not_gait3d_names(tmp_path):
    raw = _gait3d(tmp_path / "Gait3D")
    _frames(raw / "2D_Silhouettes" / "0001" / "nm-01" / "090")
    _frames(raw / "2D_Silhouettes" / "0001" / "camid1_videoid1" / "seq0" / "extra")  # one level too deep
    summary = _prepare(raw, tmp_path / "out", "gait3d")
    assert _keys(tmp_path / "out") == set(GAIT3D.values())
    sils = raw / "2D_Silhouettes" / "0001"
    reasons = {u.path: u.reason for u in summary.unreadable}
    assert "not a Gait3D camidC_videoidV folder" in reasons[str(sils / "nm-01" / "090")]
    assert "has no frames" in reasons[str(sils / "camid1_videoid1" / "seq0" / "extra")]


# --------------------------------------------------------------------------- CCPG
CCPG = {"000/U0_D0_BG/01_0": "000/U0_D0_BG/01_0", "000/U1_D1/02_0": "000/U1_D1/02_0",
        "100/U3_D3/01_1": "100/U3_D3/01_1"}


def test_ccpg_reads_ccpg_g_sil_and_matches_the_default_pretreatment(tmp_path):
    raw = tmp_path / "CCPG"
    for folder in CCPG:
        _frames(raw / "CCPG_G_SIL" / folder)
    _frames(raw / "CCPG_D_MASK_FACE_SHOE" / "000" / "U0_D0_BG" / "01_0", n=1)
    _frames(raw / "CCPG_G_SIL" / "000" / "U9_D9" / "01_0")  # not one of the seven statuses
    summary = _prepare(raw, tmp_path / "out", "ccpg")
    assert _keys(tmp_path / "out") == set(CCPG.values())
    assert [n.path for n in summary.not_read] == [str(raw / "CCPG_D_MASK_FACE_SHOE")]
    assert [u.path for u in summary.unreadable] == [str(raw / "CCPG_G_SIL" / "000" / "U9_D9" / "01_0")]
    assert "cloth status" in summary.unreadable[0].reason
    shutil.rmtree(raw / "CCPG_G_SIL" / "000" / "U9_D9")
    reference = tmp_path / "ref"
    _prepare(_as_default(raw / "CCPG_G_SIL", CCPG, tmp_path), reference)
    _same_pixels(tmp_path / "out", reference)


# --------------------------------------------------------------------------- GREW
GREW = {"train/00001/4XPn5Z28": "00001train/00/4XPn5Z28", "train/00002/5TXe8svE": "00002train/00/5TXe8svE",
        "test/gallery/00001/79XJefi8": "00001/01/79XJefi8",
        "test/gallery/00001/t16VLaQf": "00001/02/t16VLaQf",
        "test/gallery/00002/AbCdEfGh": "00002/01/AbCdEfGh",
        "test/probe/etaGVnWf": "probe/03/etaGVnWf", "test/probe/eT1EXpgZ": "probe/03/eT1EXpgZ"}


def _grew(root: Path) -> Path:
    """GREW's unpacked download (GREW-Benchmark README): poses beside frames, GEIs beside folders."""
    for folder in GREW:
        seq = root / folder
        _frames(seq, blank_at=2)  # GREW frames are kept as they are, even an empty one
        for i in range(1, 4):
            (seq / f"{i:05d}_2d_pose.txt").write_text("w,h,x,y,c")
            (seq / f"{i:05d}_3d_pose.txt").write_text("w,h,x,y,z")
        assert cv2.imwrite(str(seq.parent / f"{seq.name}_gei.png"), _frame())
    _frames(root / "distractor" / "edXJefi8")
    return root


def test_grew_types_follow_openGait_and_frames_are_kept_as_they_are(tmp_path):
    raw = _grew(tmp_path / "GREW")
    summary = _prepare(raw, tmp_path / "out", "grew")
    out = tmp_path / "out"
    assert _keys(out) == set(GREW.values())
    assert not summary.unreadable and not summary.empty_sequences  # poses and GEIs are not "unreadable"
    assert summary.companions_ignored == len(GREW) * 7  # 6 pose files + 1 GEI per sequence
    assert [n.path for n in summary.not_read] == [str(raw / "distractor")]
    assert summary.frames_kept == len(GREW) * 3 and summary.frames_dropped == 0
    assert _manifest(out)["frames"] == "as-is"
    for folder, key in GREW.items():
        pngs = sorted((raw / folder).glob("*.png"))
        stored = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in pngs])
        view = key.rsplit("/", 1)[1]
        assert np.array_equal(load_array(out / key / f"{view}.pkl"), stored), key


def test_grew_frames_must_have_the_img_size_they_are_kept_at(tmp_path):
    raw = _grew(tmp_path / "GREW")
    with pytest.raises(DataError) as err:
        prepare_dataset(raw, tmp_path / "out", img_size=64, workers=1, layout="grew")
    message = str(err.value)
    assert "\n" not in message and "img_size=16" in message and "as they are" in message
    assert not (tmp_path / "out").exists()


def test_grew_gallery_subject_with_three_sequences_is_refused(tmp_path):
    raw = _grew(tmp_path / "GREW")
    _frames(raw / "test" / "gallery" / "00001" / "zzzzzzzz")
    with pytest.raises(DataError, match="two per subject"):
        _prepare(raw, tmp_path / "out", "grew")


def test_directory_links_are_followed_only_when_asked(tmp_path):
    raw = _grew(tmp_path / "GREW")
    elsewhere = tmp_path / "disk2" / "train"
    elsewhere.parent.mkdir()
    shutil.move(str(raw / "train"), elsewhere)
    os.symlink(elsewhere, raw / "train")
    summary = _prepare(raw, tmp_path / "out", "grew")
    assert [s.path for s in summary.skipped_links] == [str(raw / "train")]
    assert summary.sequences_written == len(GREW) - 2
    summary = _prepare(raw, tmp_path / "out2", "grew", follow_links=True)
    assert not summary.skipped_links and summary.sequences_written == len(GREW)


# --------------------------------------------------------------------------- guarantees
def test_rerun_skips_overwrite_removes_and_the_layout_must_match(tmp_path):
    raw = _oumvlp(tmp_path / "raw")
    out = tmp_path / "out"
    _prepare(raw, out, "oumvlp")
    again = _prepare(raw, out, "oumvlp")
    assert again.sequences_written == 0 and again.skipped_existing == 4
    shutil.rmtree(raw / "Silhouette_270-00")
    redone = _prepare(raw, out, "oumvlp", overwrite=True)
    assert redone.sequences_written == 3 and redone.stale_removed == ["00002/00/270/270.pkl"]
    assert _keys(out) == set(OUMVLP.values()) - {"00002/00/270"}
    # the same IN read as another layout is another data set
    gait3d = _gait3d(tmp_path / "Gait3D") / "2D_Silhouettes"
    _prepare(gait3d, tmp_path / "g", "gait3d")
    with pytest.raises(DataError, match="layout=gait3d"):
        _prepare(gait3d, tmp_path / "g")


@pytest.mark.parametrize("layout", [name for name in LAYOUT_NAMES if name != "default"])
def test_a_tree_in_another_layout_is_a_one_line_error(tmp_path, layout):
    casia = tmp_path / "CASIA-B"
    _frames(casia / "001" / "nm-01" / "090")
    with pytest.raises(DataError) as err:
        _prepare(casia, tmp_path / "out", layout)
    message = str(err.value)
    assert "\n" not in message and f"no {layout} sequences under {casia}" in message
    assert get_layout(layout).expected in message
    assert not (tmp_path / "out").exists()


def test_without_layout_an_oumvlp_download_is_refused_not_misread(tmp_path):
    raw = _oumvlp(tmp_path / "OUMVLP-raw")
    with pytest.raises(DataError, match="pass layout=oumvlp"):
        _prepare(raw, tmp_path / "out")  # it would have made ids such as Silhouette_000-00
    empty_gait3d = tmp_path / "Gait3D"
    (empty_gait3d / "2D_Silhouettes").mkdir(parents=True)
    with pytest.raises(DataError, match="looks like a gait3d download: pass layout=gait3d"):
        _prepare(empty_gait3d, tmp_path / "out")


def test_unknown_layout_is_refused(tmp_path):
    with pytest.raises(DataError, match="unknown layout; choose one of default, grew, gait3d, ccpg, oumvlp"):
        get_layout("casia")


def test_cli_layout_summary_and_one_line_errors(tmp_path):
    from gaitcli.cli import app

    runner = CliRunner()
    raw = _oumvlp(tmp_path / "raw")
    out = tmp_path / "out"
    result = runner.invoke(app, ["prepare", str(raw), str(out), "--layout", "oumvlp", "--img-size", "16",
                                 "--workers", "1", "--json", "-"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["layout"] == "oumvlp" and summary["settings"]["layout"] == "oumvlp"
    assert summary["sequences_written"] == 4
    assert "layout" in result.stderr and "oumvlp" in result.stderr  # the table names it

    result = runner.invoke(app, ["prepare", str(raw), str(tmp_path / "o2"), "--layout", "grew"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--layout grew" in lines[0] and "Traceback" not in result.output

    result = runner.invoke(app, ["prepare", str(raw), str(tmp_path / "o3"), "--layout", "casia"])
    assert result.exit_code == 2 and "--layout casia: unknown layout" in result.stderr
