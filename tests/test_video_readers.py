"""gaitcli.video.readers: files, folders, subsampling, cuts, rotation and every bad input."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from gaitcli.errors import DataError
from gaitcli.video import readers
from gaitcli.video.readers import (
    Frame,
    ReadOptions,
    VideoInfo,
    _CaptureSource,
    image_header_size,
    is_camera,
    is_stream_url,
    is_video_file,
    natural_key,
    open_video,
    rotate_image,
)

W, H = 160, 96


def _level(index: int) -> int:
    return 20 + 7 * index


def _frame(index: int) -> np.ndarray:
    """A frame whose left block's grey level encodes its index (robust to compression)."""
    image = np.zeros((H, W, 3), np.uint8)
    image[:, : W // 2] = _level(index)
    image[:24, W // 2:] = (0, 0, 255)  # an asymmetric mark, to tell rotations apart
    return image


def _index_of(image: np.ndarray) -> int:
    return round((float(image[8:-8, 8: W // 2 - 8].mean()) - 20) / 7)


def _write(path: Path, frames: int = 30, fps: float = 25.0, fourcc: str = "mp4v") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(_frame(i))
    writer.release()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("vids") / "my walks #2"
    folder.mkdir()
    return _write(folder / "walk #1 (a).mp4")


def _read(path: Path | str, options: ReadOptions = ReadOptions()) -> list[Frame]:
    with open_video(path, options) as reader:
        return list(reader)


# ------------------------------------------------------------------------------------ files
def test_file_with_spaces_and_hash(video: Path) -> None:
    with open_video(video) as reader:
        info = reader.info
        frames = list(reader)
        assert reader.decoded == 30 and reader.warning is None
    assert info == VideoInfo(source=str(video), stem="walk__1__a_", fps=25.0, width=W, height=H, frames=30,
                             rotation=0, live=False)
    assert [f.index for f in frames] == list(range(30))
    assert [_index_of(f.image) for f in frames] == list(range(30))
    assert frames[10].time == pytest.approx(0.4)
    image = frames[0].image
    assert image.dtype == np.uint8 and image.shape == (H, W, 3) and image.flags["C_CONTIGUOUS"]
    assert is_video_file(video) and not is_video_file(video.with_suffix(".txt"))


def test_stride_keeps_every_nth(video: Path) -> None:
    frames = _read(video, ReadOptions(stride=4))
    assert [f.index for f in frames] == [0, 4, 8, 12, 16, 20, 24, 28]
    assert [_index_of(f.image) for f in frames] == [f.index for f in frames]


def test_fps_subsamples_to_the_rate(video: Path) -> None:
    frames = _read(video, ReadOptions(fps=10.0))
    indices = [f.index for f in frames]
    assert indices[:5] == [0, 3, 5, 8, 10]  # the first frame of each 0.1 s slot
    assert len(indices) == 12  # 1.2 s at 10 frames/s
    assert [f.index for f in _read(video, ReadOptions(fps=50.0))] == list(range(30))


def test_start_end_cut_by_time(video: Path) -> None:
    frames = _read(video, ReadOptions(start=0.4, end=0.8))
    assert [f.index for f in frames] == list(range(10, 20))
    # stride counts from the first frame of the cut
    assert [f.index for f in _read(video, ReadOptions(start=0.42, stride=5))] == [11, 16, 21, 26]


def test_start_seeks_to_the_right_frame(video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "SEEK_MIN_FRAMES", 1)
    with open_video(video, ReadOptions(start=0.8, end=1.0)) as reader:
        frames = list(reader)
        assert reader.decoded < 20  # it sought instead of decoding the first 20 frames
    assert [f.index for f in frames] == list(range(20, 25))
    assert [_index_of(f.image) for f in frames] == list(range(20, 25))


def test_start_past_the_end_is_refused(video: Path) -> None:
    with pytest.raises(DataError, match=r"start=5.0 is past the end of .*1.20 s"):
        open_video(video, ReadOptions(start=5.0))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"stride": 0}, r"stride=0 must be a whole number ≥ 1"),
    ({"fps": 0.0}, r"fps=0.0 must be a positive"),
    ({"fps": -2.0}, r"fps=-2.0 must be a positive"),
    ({"start": -1.0}, r"start=-1.0 must be a number of seconds ≥ 0"),
    ({"end": -0.5}, r"end=-0.5 must be"),
    ({"start": 2.0, "end": 1.0}, r"start=2.0 must be before end=1.0"),
    ({"start": 1.0, "end": 1.0}, r"start=1.0 must be before end=1.0"),
    ({"fps": 5.0, "stride": 2}, r"fps and stride both subsample frames"),
])
def test_bad_options(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(DataError, match=message) as caught:
        ReadOptions(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


# ------------------------------------------------------------------------------ bad files
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no such file or folder: .*nope\.mp4; check the path"):
        open_video(tmp_path / "nope.mp4")


def test_zero_length_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.mp4 is an empty file"):
        open_video(empty)


def test_not_a_video(tmp_path: Path) -> None:
    junk = tmp_path / "notes.mp4"
    junk.write_bytes(b"hello world " * 200)
    with pytest.raises(DataError, match=r"cannot open .*notes\.mp4 as a video: .*damaged") as caught:
        open_video(junk)
    assert "\n" not in str(caught.value)


def test_truncated_mp4_is_refused(tmp_path: Path) -> None:
    data = _write(tmp_path / "whole.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: nothing can be read
    with pytest.raises(DataError, match=r"cut\.mp4"):
        open_video(cut)


def test_truncated_avi_stops_at_the_last_good_frame(tmp_path: Path) -> None:
    data = _write(tmp_path / "whole.avi", fourcc="MJPG").read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with open_video(cut) as reader:
        frames = list(reader)
        warning = reader.warning
    assert 5 <= len(frames) < 30
    assert [_index_of(f.image) for f in frames] == list(range(len(frames)))
    assert warning is not None and "cut.avi" in warning and f"after {len(frames)} of the 30 frames" in warning
    assert "\n" not in warning


def test_a_cut_is_not_a_truncation(video: Path) -> None:
    with open_video(video, ReadOptions(end=0.5)) as reader:
        assert len(list(reader)) == 13
        assert reader.warning is None


def test_decoder_error_midway_ends_the_video() -> None:
    class Failing:
        def __init__(self) -> None:
            self.calls = 0

        def get(self, prop: int) -> float:
            return {cv2.CAP_PROP_FPS: 10.0, cv2.CAP_PROP_FRAME_COUNT: 8.0}.get(prop, 0.0)

        def set(self, prop: int, value: float) -> bool:
            return False

        def read(self) -> tuple[bool, np.ndarray | None]:
            self.calls += 1
            if self.calls > 3:
                raise cv2.error("decoder exploded")
            return True, _frame(self.calls - 1)

        def release(self) -> None:
            pass

    source = _CaptureSource(Failing(), live=False)
    reader = readers.VideoReader(source, "x.mp4", "x", ReadOptions(), live=False)
    assert [f.index for f in reader] == [0, 1, 2]
    assert reader.warning is not None and "after 3 of the 8 frames" in reader.warning


# ------------------------------------------------------------------------------- rotation
def _rotated_copy(source: Path, target: Path, matrix: tuple[int, ...]) -> Path:
    """``source`` (an mp4) with its track's display matrix replaced: a rotation flag as phones write it."""
    data = bytearray(source.read_bytes())

    def find(path: list[str], start: int, end: int) -> int:
        at = start
        while at + 8 <= end:
            size, kind = struct.unpack(">I4s", data[at: at + 8])
            if kind.decode("latin1") == path[0]:
                return at if len(path) == 1 else find(path[1:], at + 8, at + size)
            at += size
        raise AssertionError(f"no {path[0]} box")

    tkhd = find(["moov", "trak", "tkhd"], 0, len(data))
    version = data[tkhd + 8]
    at = tkhd + 8 + 4 + (32 if version == 1 else 20) + 8 + 8  # the 3×3 matrix
    data[at: at + 36] = struct.pack(">9i", *matrix)
    target.write_bytes(bytes(data))
    return target


def test_rotation_metadata_is_honoured(tmp_path: Path) -> None:
    plain = _write(tmp_path / "plain.mp4", frames=5)
    turned = _rotated_copy(plain, tmp_path / "turned.mp4", (0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30))
    with open_video(turned) as reader:
        info = reader.info
        frames = list(reader)
    assert info.rotation == 90 and (info.width, info.height) == (H, W)
    assert frames[0].image.shape == (W, H, 3)
    expected = cv2.rotate(_frame(0), cv2.ROTATE_90_CLOCKWISE).astype(int)
    assert np.abs(frames[0].image.astype(int) - expected).mean() < 4
    assert frames[0].image.flags["C_CONTIGUOUS"]


def test_rotation_is_applied_when_the_back_end_cannot() -> None:
    class NoAuto:
        def get(self, prop: int) -> float:
            return {cv2.CAP_PROP_FPS: 25.0, cv2.CAP_PROP_FRAME_COUNT: 1.0,
                    cv2.CAP_PROP_ORIENTATION_META: -90.0}.get(prop, 0.0)

        def set(self, prop: int, value: float) -> bool:
            return False

        def read(self) -> tuple[bool, np.ndarray]:
            return True, _frame(0)

        def release(self) -> None:
            pass

    source = _CaptureSource(NoAuto(), live=False)
    assert source.rotation == 270
    got = source.read()
    assert got is not None
    assert np.array_equal(got[0], cv2.rotate(_frame(0), cv2.ROTATE_90_COUNTERCLOCKWISE))


def test_rotate_image_turns_clockwise() -> None:
    image = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert rotate_image(image, 0) is image
    assert rotate_image(image, 90).tolist() == [[3, 0], [4, 1], [5, 2]]
    assert rotate_image(image, 180).tolist() == [[5, 4, 3], [2, 1, 0]]
    assert rotate_image(image, 270).tolist() == [[2, 5], [1, 4], [0, 3]]


# --------------------------------------------------------------------------------- folders
def test_folder_natural_order_grey_and_colour(tmp_path: Path) -> None:
    folder = tmp_path / "seq 01#x"
    folder.mkdir()
    for i in (0, 1, 2, 10, 11):
        grey = _frame(i)[:, :, 0]
        cv2.imwrite(str(folder / f"frame{i}.png"), grey if i % 2 else _frame(i))
    (folder / "notes.txt").write_text("not a frame")
    with open_video(folder) as reader:
        info = reader.info
        frames = list(reader)
    assert info.stem == "seq_01_x" and info.frames == 5 and info.fps == 25.0 and not info.live
    assert [_index_of(f.image) for f in frames] == [0, 1, 2, 10, 11]  # frame2 before frame10
    assert all(f.image.shape == (H, W, 3) for f in frames)
    assert [f.index for f in frames] == list(range(5))
    assert frames[2].time == pytest.approx(2 / 25)
    # for a folder, fps is its frame rate: every image is kept
    with open_video(folder, ReadOptions(fps=10.0)) as reader:
        assert reader.info.fps == 10.0
        assert [f.time for f in reader] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert [f.index for f in _read(folder, ReadOptions(start=0.08))] == [2, 3, 4]


def test_folder_of_mixed_sizes_names_the_odd_file(tmp_path: Path) -> None:
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"f{i:02d}.jpg"), _frame(i))
    cv2.imwrite(str(tmp_path / "f02.jpg"), cv2.resize(_frame(2), (W // 2, H // 2)))
    with pytest.raises(DataError, match=r"f02\.jpg is 80×48 but f00\.jpg is 160×96") as caught:
        open_video(tmp_path)
    assert "\n" not in str(caught.value)


def test_mixed_sizes_found_while_decoding(tmp_path: Path) -> None:
    for i in range(3):  # TIFF headers are not read ahead: the odd frame is found when decoded
        cv2.imwrite(str(tmp_path / f"f{i}.tif"), _frame(i) if i != 1 else _frame(i)[:50])
    with open_video(tmp_path) as reader, pytest.raises(DataError, match=r"f1\.tif is 160×50 but f0\.tif"):
        list(reader)


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DataError, match=r"folder without images"):
        open_video(tmp_path)


def test_undecodable_image(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "f0.png"), _frame(0))
    (tmp_path / "f1.png").write_bytes(b"not a png at all")
    with open_video(tmp_path) as reader, pytest.raises(DataError, match=r"cannot decode .*f1\.png"):
        list(reader)


def test_image_header_sizes(tmp_path: Path) -> None:
    image = np.zeros((37, 53, 3), np.uint8)
    for suffix in (".png", ".jpg", ".bmp"):
        cv2.imwrite(str(tmp_path / f"a{suffix}"), image)
        assert image_header_size(tmp_path / f"a{suffix}") == (53, 37)
    cv2.imwrite(str(tmp_path / "a.tif"), image)
    assert image_header_size(tmp_path / "a.tif") is None


def test_natural_key() -> None:
    names = ["f10.png", "f2.png", "F1.png", "f2b.png", "f01.png"]
    assert sorted(names, key=natural_key) == ["F1.png", "f01.png", "f2.png", "f2b.png", "f10.png"]


# ----------------------------------------------------------------------- cameras and URLs
def test_camera_and_stream_recognition() -> None:
    assert is_camera("0") and is_camera("12") and not is_camera("-1") and not is_camera("cam")
    assert is_stream_url("rtsp://host:554/live/cam 1") and is_stream_url("HTTPS://x/y.m3u8")
    assert is_stream_url("udp://@:1234") and not is_stream_url("file.mp4") and not is_stream_url("ftp://x")
    assert readers._url_stem("rtsp://host:554/live/front door.sdp") == "front_door"
    assert readers._url_stem("udp://239.0.0.1:1234") == "239.0.0.1"


def test_missing_camera_is_one_line() -> None:
    with pytest.raises(DataError, match=r"cannot open camera 57: check it is connected"):
        open_video("57", stream=True)


def test_existing_file_named_like_a_camera_is_a_file(video: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "0").write_bytes(video.read_bytes())
    monkeypatch.chdir(tmp_path)
    with open_video("0") as reader:
        assert not reader.info.live and reader.info.frames == 30 and reader.info.stem == "0"
