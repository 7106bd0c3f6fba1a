"""The walks ``gait embed`` / ``gait identify`` take: PNG folders, sequence pkls, prepared trees.

* A folder holding image files is one walk of silhouette frames. It is pretreated on the fly by
  the very functions ``gait prepare`` uses (:func:`gaitcli.data.prepare.read_frame`,
  :func:`~gaitcli.data.prepare.pretreat_sequence`), at the checkpoint's frame size. A bad frame is
  listed and skipped; a folder without any usable frame is listed and skipped.
* A ``.pkl`` file is one walk, read through the restricted unpickler; a malformed one is listed
  and skipped.
* A video file (mp4, avi, mov, mkv, ...) gives one walk per kept track, found and normalised
  exactly as ``gait silhouettes`` does (:func:`gaitcli.video.silhouettes.extract_video`) with the
  video options given; its label is the track's id (``<stem>-t<k>`` or its ``--name``).
* Any other folder is a prepared tree ``id/type/view/*.pkl``: every sequence, or with
  ``--partition P`` the ids of ``--split train|test|all`` (the same listing ``gait eval`` reads).

A walk's label / type / view come from its ``id/type/view`` path when the path, made absolute,
has that shape (the view a number, the type such as ``nm-01`` or ``00``); otherwise the label is the
walk's resolved path (absolute, symlinks followed) and the type and view are empty. So ``./x``,
``x`` and ``.`` typed inside ``x`` are one walk, and two folders named ``walk`` are two. Where a
name could stand for two walks (``--append`` finds the name in the gallery, or an input is given
twice), the SHA-256 of the frames decides (docs/deploy.md, "Which walk is which").
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console

from gaitcli.data.dataset import scan_tree
from gaitcli.data.partition import load_partition
from gaitcli.data.pickle_io import load_array
from gaitcli.data.prepare import IMAGE_EXTENSIONS, pretreat_sequence, read_frame
from gaitcli.errors import DataError, GaitError, option, render
from gaitcli.evaluation.features import frames_digest
from gaitcli.video.readers import is_video_file
from gaitcli.video.silhouettes import SilhouetteOptions, extract_video

VideoOptions = Callable[[int], SilhouetteOptions]
"""The video options of the command, given the silhouette size the checkpoint needs."""

SPLITS = ("train", "test", "all")
_VIEW = re.compile(r"^\d+(_\d+)?$")
_TYPE = re.compile(r"^[A-Za-z]*-?\d+$")


@dataclass(frozen=True)
class Problem:
    """An input that was listed and skipped."""

    path: str
    """The file or folder."""
    reason: str
    """Why it was skipped."""

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": render(self.reason)}


@dataclass(frozen=True)
class Walk:
    """One walk to embed: its identity and how to get its frames ``[T, H, W]`` uint8."""

    label: str
    """Subject id (from the path, or the path itself)."""
    type: str
    """Sequence type such as ``nm-01`` (empty when the path does not say)."""
    view: str
    """View such as ``090`` (empty when the path does not say)."""
    source: str
    """Where the frames came from."""
    read: Callable[[], list[np.ndarray]] = field(compare=False, repr=False)
    """Returns the walk's arrays (one per pkl of a prepared sequence)."""
    track: int | None = None
    """For a track of a video: its number in the video (``source`` is the video)."""
    frames: tuple[int, int] | None = None
    """For a track of a video: the first and last decoded frame index (from 0) of its silhouettes."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.label, self.type, self.view)


@dataclass
class WalkSet:
    """Walks in input order, with the inputs that were skipped. Has the ``sequences`` / ``load``
    interface of :class:`gaitcli.data.dataset.GaitDataset`, so ``extract_features`` embeds it
    exactly as it embeds a test split."""

    sequences: list[Walk] = field(default_factory=list)
    """The walks to embed."""
    skipped: list[Problem] = field(default_factory=list)
    """Inputs (walks or single frames) that were listed and skipped."""
    from_tree: bool = False
    """True when every walk came from a prepared tree."""
    digests: dict[int, str] = field(default_factory=dict, repr=False)
    """SHA-256 of the frames of the walks read so far (by index)."""

    def __len__(self) -> int:
        return len(self.sequences)

    def load(self, index: int) -> list[np.ndarray]:
        arrays = self.sequences[index].read()
        self.digests[index] = frames_digest(arrays)
        return arrays

    def digest(self, index: int) -> str:
        """SHA-256 of walk ``index``'s frames (read when not read yet)."""
        if index not in self.digests:
            self.load(index)
        return self.digests[index]

    def subset(self, rows: Sequence[int]) -> WalkSet:
        """The walks at ``rows`` (digests already known travel with them)."""
        out = WalkSet([self.sequences[i] for i in rows], list(self.skipped), self.from_tree)
        out.digests = {j: self.digests[i] for j, i in enumerate(rows) if i in self.digests}
        return out

    def unique(self) -> WalkSet:
        """Without the walks given twice (same name and same frames, e.g. ``x`` and ``./x``, or a
        walk and the tree holding it); each repeat is listed in ``skipped``."""
        by_key: dict[tuple[str, str, str], list[int]] = {}
        for i, walk in enumerate(self.sequences):
            by_key.setdefault(walk.key, []).append(i)
        drop: set[int] = set()
        for rows in by_key.values():
            seen: dict[str, int] = {}
            for i in rows if len(rows) > 1 else ():
                first = seen.setdefault(self.digest(i), i)
                if first != i:
                    drop.add(i)
                    self.skipped.append(
                        Problem(self.sequences[i].source, f"the same walk as {self.sequences[first].source}")
                    )
        return self if not drop else self.subset([i for i in range(len(self)) if i not in drop])


def parse_frame_size(text: str, source: str) -> tuple[int, int]:
    """``"64x64"`` or ``"64"`` → ``(64, 64)``; anything else is a one-line error."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", str(text))
    if not match:
        raise GaitError(f"{source}: frame size {text!r} is not HxW or N (e.g. 64x64 or 64)")
    height = int(match.group(1))
    width = int(match.group(2) or height)
    if height < 2 or width < 2:
        raise GaitError(f"{source}: frame size {text!r} is too small")
    return height, width


def _shaped(path: Path) -> tuple[str, str, str] | None:
    parts = path.parts
    if len(parts) >= 4 and _VIEW.match(parts[-1]) and _TYPE.match(parts[-2]):
        return parts[-3], parts[-2], parts[-1]
    return None


def path_identity(path: Path, walk: Path | None = None) -> tuple[str, str, str]:
    """``(label, type, view)`` from ``.../id/type/view`` when ``path`` (made absolute, ``.`` and
    ``..`` removed) has that shape, else ``(resolved walk, "", "")``: the resolved path of
    ``walk`` (default ``path``), symlinks followed."""
    shaped = _shaped(Path(os.path.abspath(path))) or _shaped(path.resolve())
    if shaped is not None:
        return shaped
    return str((walk or path).resolve()), "", ""


def _check_frames(array: np.ndarray, source: str, frame_size: tuple[int, int]) -> str | None:
    if array.ndim != 3 or len(array) == 0:
        return f"expected frames [T, H, W] with T >= 1, found shape {list(array.shape)}"
    if tuple(array.shape[1:]) != frame_size:
        return (
            f"frames are {array.shape[1]}x{array.shape[2]} but the checkpoint expects "
            f"{frame_size[0]}x{frame_size[1]} (prepare with {option('img_size', frame_size[0])})"
        )
    return None


def png_walk(
    folder: Path, images: Sequence[str], frame_size: tuple[int, int], problems: list[Problem]
) -> Walk | None:
    """Read and pretreat one PNG folder (as ``gait prepare`` does); None when nothing is usable."""
    if frame_size[0] != frame_size[1]:
        raise GaitError(
            f"{folder}: PNG frames are pretreated to square frames, but the checkpoint expects "
            f"{frame_size[0]}x{frame_size[1]}; prepare such data yourself and pass pkls"
        )
    frames: list[np.ndarray] = []
    for name in images:
        image, reason = read_frame(folder / name)
        if image is None:
            problems.append(Problem(str(folder / name), reason or "unreadable"))
        else:
            frames.append(image)
    array, dropped = pretreat_sequence(frames, frame_size[0])
    if len(array) == 0:
        problems.append(
            Problem(
                str(folder),
                f"no usable frame ({len(images)} images, {dropped} dropped as "
                "empty or off-centre, the rest unreadable)",
            )
        )
        return None
    label, seq_type, view = path_identity(folder)
    return Walk(label, seq_type, view, str(folder), lambda: [array])


def pkl_walk(path: Path, frame_size: tuple[int, int], problems: list[Problem]) -> Walk | None:
    """One sequence pkl (restricted unpickler); None when it is malformed."""
    try:
        array = load_array(path)
    except DataError as exc:
        problems.append(Problem(str(path), str(exc).replace(f"{path}: ", "", 1)))
        return None
    reason = _check_frames(array, str(path), frame_size)
    if reason is not None:
        problems.append(Problem(str(path), reason))
        return None
    label, seq_type, view = path_identity(path.parent, walk=path)
    return Walk(label, seq_type, view, str(path), lambda: [array])


def _tree_reader(
    paths: tuple[str, ...], key: str, frame_size: tuple[int, int]
) -> Callable[[], list[np.ndarray]]:
    def read() -> list[np.ndarray]:
        arrays = [load_array(p) for p in paths]
        for path, array in zip(paths, arrays, strict=True):
            reason = _check_frames(array, path, frame_size)
            if reason is not None:
                raise DataError(f"{path}: {reason}")
        if len({len(a) for a in arrays}) != 1:
            raise DataError(f"{key}: its pkl files hold different frame counts")
        return arrays

    return read


def tree_walks(
    root: Path,
    frame_size: tuple[int, int],
    partition: Path | None,
    split: str,
    data_in_use: Sequence[bool] | None = None,
) -> list[Walk]:
    """The sequences of a prepared tree, in the order ``gait eval`` lists them."""
    if split not in SPLITS:
        raise GaitError(f"{option('split', repr(split))}: use train, test or all")
    ids: list[str] | None = None
    if partition is not None:
        part = load_partition(partition)
        ids = list(part.train) + list(part.test) if split == "all" else list(part.ids(split))
    infos = scan_tree(root, ids, data_in_use)
    if not infos:
        raise DataError(
            f"{root}: no sequences (id/type/view/*.pkl) found"
            + (f" for the {split} split of {partition}" if partition is not None else "")
        )
    walks = [
        Walk(i.label, i.type, i.view, os.path.dirname(i.paths[0]), _tree_reader(i.paths, i.key, frame_size))
        for i in infos
    ]
    walks[0].read()  # a tree of another frame size fails here, before any embedding
    return walks


def _images_of(folder: Path) -> list[str]:
    return sorted(
        e.name
        for e in os.scandir(folder)
        if e.is_file()
        and not e.name.startswith(".")
        and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
    )


def _pkls_of(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_file() and e.name.endswith(".pkl"))


def _nested_pkls(folder: Path, frame_size: tuple[int, int], out: WalkSet) -> None:
    """A folder inside a prepared tree (e.g. one id): every pkl below it, one walk each."""
    found = sorted(
        p for p in folder.rglob("*.pkl") if not any(x.startswith(".") for x in p.relative_to(folder).parts)
    )
    if not found:
        raise GaitError(f"{folder}: no PNG frames, no .pkl and no prepared tree (id/type/view/*.pkl) in it")
    out.from_tree = False
    for path in found:
        walk = pkl_walk(path, frame_size, out.skipped)
        out.sequences.extend([walk] if walk else [])


def video_walks(path: Path, frame_size: tuple[int, int], video: VideoOptions | None,
                problems: list[Problem], console: Console | None = None) -> list[Walk]:
    """One walk per kept track of the video ``path``; dropped tracks are listed in ``problems``."""
    if frame_size[0] != frame_size[1]:
        raise GaitError(f"{path}: video tracks are normalised to square silhouettes, and this checkpoint "
                        f"takes {frame_size[0]}x{frame_size[1]} frames")
    options = video(frame_size[0]) if video is not None else SilhouetteOptions(img_size=frame_size[0])
    result = extract_video(path, options, console=console)
    if result.warning:
        problems.append(Problem(str(path), result.warning))
    walks: list[Walk] = []
    for track in result.tracks:
        if not track.kept:
            problems.append(Problem(f"{path} track {track.number}", track.reason or "dropped"))
            continue
        array = track.frames.array()
        walks.append(Walk(track.id, options.type, options.view, str(path), functools.partial(_one, array),
                          track=track.number, frames=track.span))
    if not result.tracks:
        problems.append(Problem(str(path), f"no walker found in {result.decoded} frames"))
    return walks


def _one(array: np.ndarray) -> list[np.ndarray]:
    return [array]


def resolve_inputs(
    inputs: Sequence[str | os.PathLike[str]],
    frame_size: tuple[int, int],
    *,
    partition: Path | None = None,
    split: str = "test",
    data_in_use: Sequence[bool] | None = None,
    video: VideoOptions | None = None,
    console: Console | None = None,
) -> WalkSet:
    """Turn INPUT arguments into walks (see the module docstring). A path that does not exist is
    a one-line error; bad walks inside the inputs are listed in ``skipped``."""
    if not inputs:
        raise GaitError("no INPUT given: pass PNG walk folders, sequence pkls or a prepared tree")
    out = WalkSet(from_tree=True)
    used_tree = False
    for raw in inputs:
        path = Path(raw).expanduser()
        if not path.exists():
            raise GaitError(
                f"{path}: no such file or folder (INPUT is a PNG walk folder, a .pkl or a prepared tree)"
            )
        if path.is_file() and is_video_file(path):
            out.sequences.extend(video_walks(path, frame_size, video, out.skipped, console))
            out.from_tree = False
            continue
        if path.is_file():
            if path.suffix.lower() != ".pkl":
                raise GaitError(
                    f"{path}: not a sequence .pkl or a video; pass a folder of PNG frames, a .pkl, a video "
                    "or a prepared tree"
                )
            walk = pkl_walk(path, frame_size, out.skipped)
            out.from_tree = False
            out.sequences.extend([walk] if walk else [])
            continue
        images, pkls = _images_of(path), _pkls_of(path)
        if images:
            walk = png_walk(path, images, frame_size, out.skipped)
            out.from_tree = False
            out.sequences.extend([walk] if walk else [])
        elif pkls and partition is None:
            for name in pkls:
                walk = pkl_walk(path / name, frame_size, out.skipped)
                out.sequences.extend([walk] if walk else [])
            out.from_tree = False
        elif partition is None and not scan_tree(path):
            _nested_pkls(path, frame_size, out)
        else:
            used_tree = True
            out.sequences.extend(tree_walks(path, frame_size, partition, split, data_in_use))
    if partition is not None and not used_tree:
        raise GaitError(
            f"{option('partition')} applies to a prepared tree, and no INPUT is one; "
            f"drop {option('partition')}"
        )
    out = out.unique()
    if not out.sequences:
        raise GaitError(
            f"nothing to embed: every input was skipped ({len(out.skipped)} problems, "
            f"first: {out.skipped[0].path}: {out.skipped[0].reason})"
            if out.skipped
            else "nothing to embed"
        )
    return out
