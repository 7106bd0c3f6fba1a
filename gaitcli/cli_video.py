"""The video options of ``gait silhouettes``, ``gait embed`` and ``gait identify`` (argument
parsing only, like :mod:`gaitcli.cli`).

The three commands take the same backend, reading and tracking options; they are declared once
here and added to each command's signature by :func:`with_video_options`, which hands the
command one :class:`~gaitcli.video.silhouettes.SilhouetteOptions` as ``video``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from gaitcli.video.silhouettes import SilhouetteOptions

__all__ = ["VIDEO_PANEL", "VideoOptionsBuilder", "with_video_options"]


VIDEO_PANEL = "Video input (mp4, avi, mov, mkv; see docs/video.md)"


def _opt(help_text: str, *names: str, **kw: Any) -> Any:
    return typer.Option(*names, help=help_text, rich_help_panel=VIDEO_PANEL, **kw)


# name -> (annotation, default); the order is the order of --help.
_PARAMS: dict[str, tuple[Any, Any]] = {
    "backend": (Annotated[str, _opt("mog2 or knn (static camera, no weights), mediapipe (the 'video' extra) "
                                    "or onnx:MODEL.onnx.", metavar="NAME")], "mog2"),
    "warmup": (Annotated[int | None, _opt("Frames that only teach the background model (mog2/knn).",
                                             min=0)], None),
    "var_threshold": (Annotated[float | None, _opt(
        "Background distance above which a pixel is foreground (mog2: variance, knn: squared distance).",
        min=0.0)], None),
    "close_size": (Annotated[int | None, _opt(
        "mog2/knn: closing diameter in pixels [default: 7]; smaller keeps the gap between the legs, "
        "larger joins limbs cut apart.", min=0)], None),
    "seg_threshold": (Annotated[float | None, _opt(
        "Person probability above which a pixel is person (mediapipe, onnx).", "--seg-threshold",
        min=0.0, max=1.0)], None),
    "fps": (Annotated[float | None, _opt("Subsample the video to about this many frames/s.")], None),
    "stride": (Annotated[int | None, _opt("Keep every N-th decoded frame [default: 1] (gait identify "
                                             "--stream: a decision every N frames [default: 10]).",
                                             min=1)], None),
    "start": (Annotated[float | None, _opt("Start at this second of the video.", min=0.0)], None),
    "end": (Annotated[float | None, _opt("Stop at this second of the video.", min=0.0)], None),
    "min_frames": (Annotated[int, _opt("Drop tracks with fewer usable silhouettes.", min=1)], 15),
    "min_area": (Annotated[int | None, _opt("Ignore blobs smaller than this many pixels "
                                               "(default: 0.2 % of the frame).", min=0)], None),
    "max_gap": (Annotated[int | None, _opt("Frames a track survives without a blob.", min=0)], None),
    "track_type": (Annotated[str, _opt("The sequence type every track gets.", "--type")], "00"),
    "track_view": (Annotated[str, _opt("The view every track gets.", "--view")], "000"),
    "names": (Annotated[list[str] | None, _opt(
        "Name a track: STEM-tK=NAME (repeatable), e.g. --name walk-t1=alice.", "--name")], None),
}


class VideoOptionsBuilder:
    """What a command decorated with :func:`with_video_options` receives as ``video``: call it
    with the model's frame size (``gait silhouettes``: ``--img-size``) to get the options (built
    then, so a bad value is a one-line error of the command)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values
        self.stride: int | None = values["stride"]
        """``--stride`` as given (``None``: not given): ``gait identify --stream`` reads it as its
        decision interval."""

    def __call__(self, img_size: int = 64) -> SilhouetteOptions:
        return _build(self._values, img_size)


def _build(values: dict[str, Any], img_size: int = 64) -> SilhouetteOptions:
    from dataclasses import replace

    from gaitcli.video.backends import BackendOptions
    from gaitcli.video.readers import ReadOptions
    from gaitcli.video.silhouettes import SilhouetteOptions, parse_names
    from gaitcli.video.tracking import TrackingOptions

    seg = BackendOptions()
    changes: dict[str, Any] = {}
    if values["warmup"] is not None:
        changes["warmup"] = values["warmup"]
    if values["var_threshold"] is not None:
        key = "dist2_threshold" if values["backend"] == "knn" else "var_threshold"
        changes[key] = values["var_threshold"]
    if values["close_size"] is not None:
        changes["close_size"] = values["close_size"]
    if values["seg_threshold"] is not None:
        changes["threshold"] = values["seg_threshold"]
    seg = replace(seg, **changes)
    reading = ReadOptions(stride=values["stride"] or 1, fps=values["fps"], start=values["start"],
                          end=values["end"])
    track_changes: dict[str, Any] = {"min_frames": values["min_frames"]}
    if values["min_area"] is not None:
        track_changes["min_area"] = values["min_area"]
    if values["max_gap"] is not None:
        track_changes["max_gap"] = values["max_gap"]
    tracking = replace(TrackingOptions(), **track_changes)
    return SilhouetteOptions(backend=values["backend"], segmentation=seg, reading=reading, tracking=tracking,
                             img_size=img_size, type=values["track_type"], view=values["track_view"],
                             names=parse_names(values["names"] or []))


def with_video_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the video options to ``func``'s command line; ``func`` receives ``video`` (a
    :class:`VideoOptionsBuilder`)."""
    sig = inspect.signature(func, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "video"]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=ann, default=default)
             for name, (ann, default) in _PARAMS.items()]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in _PARAMS}
        kwargs["video"] = VideoOptionsBuilder(values)
        return func(*args, **kwargs)

    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + extra
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__  # typer must read the new signature, not the wrapped one
    return wrapper
