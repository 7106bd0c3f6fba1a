"""Person masks from frames: the silhouette backends of ``gait silhouettes`` (docs/video.md).

:func:`make_segmenter` builds one from a spec:

- ``mog2`` (default) and ``knn``: OpenCV background subtraction for a static camera, no weights.
  The first ``warmup`` frames only teach the background model. Shadow pixels are background;
  an opening removes speckle, a closing joins limbs, holes are filled and small blobs dropped.
- ``mediapipe``: MediaPipe's Pose solution with segmentation (the model ships in its wheel, so
  it runs offline); one person per frame. An optional install (docs/video.md says how).
- ``onnx:MODEL.onnx``: a user's own person-segmentation network through onnxruntime, with the
  input / output conventions of :class:`OnnxSegmenter`.

Every segmenter maps a BGR ``H × W × 3`` ``uint8`` frame to an ``H × W`` ``uint8`` mask,
255 = person, 0 = background.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from gaitcli.errors import DataError, GaitError, option

__all__ = [
    "BACKENDS",
    "MEDIAPIPE_INSTALL",
    "MEDIAPIPE_VERSION",
    "BackendOptions",
    "LEARNING_RATES",
    "BackgroundSegmenter",
    "MediaPipeSegmenter",
    "OnnxSegmenter",
    "Segmenter",
    "auto_min_blob_area",
    "clean_mask",
    "make_segmenter",
]

BACKENDS: tuple[str, ...] = ("mog2", "knn", "mediapipe", "onnx:MODEL.onnx")
"""The backend specs, as help text shows them."""

MEDIAPIPE_VERSION = "0.10.21"
"""The MediaPipe release the ``mediapipe`` backend runs on: the last one that ships the Pose
solution (later releases dropped ``mediapipe.solutions``)."""

MEDIAPIPE_INSTALL = f"pip install -e '.[video]' && pip install --no-deps mediapipe=={MEDIAPIPE_VERSION}"
"""How the ``mediapipe`` backend is installed (``--no-deps``: its declared requirements would
downgrade numpy and protobuf and add a second OpenCV; see docs/video.md)."""

LEARNING_RATES: dict[str, float] = {"mog2": 0.005, "knn": -1.0}
"""``learning_rate`` = None means this rate for each background subtractor: tuned on synthetic
walkers with lighting drift (docs/video.md). MOG2's automatic rate keeps learning fast for
hundreds of frames and soon takes a slow walker for background; KNN's rate works differently
(it sets how often its samples are replaced) and its automatic one scored best."""

AUTO_BLOB_SHARE = 0.0002
"""``min_blob_area`` = 0 means this share of the frame's pixels (46 pixels at 640×360)."""


@dataclass(frozen=True)
class BackendOptions:
    """How frames become person masks. Every field is plain data (it is stored with the output)."""

    warmup: int = 15
    """mog2 / knn: the first ``warmup`` frames only teach the background model; their masks are
    empty and must not be used. More frames give a steadier model when the scene starts busy."""
    history: int = 500
    """mog2 / knn: frames of the background model's memory (OpenCV's ``history``); it also sets
    the learning rate while warming up (1/min(2·n, history) at frame n)."""
    learning_rate: float | None = None
    """mog2 / knn: how fast the background model follows the scene after the warm-up (share of
    a frame learnt per frame; -1 = OpenCV's automatic rate, 1/min(2·n, history) at frame n).
    Higher follows lighting changes sooner but absorbs someone who stands still sooner; lower is
    the other way round. None = the backend's tuned default (LEARNING_RATES: mog2 0.005, knn -1)."""
    var_threshold: float = 16.0
    """mog2: squared Mahalanobis distance from the background model above which a pixel is
    foreground. Lower finds more of the body and more noise; higher the other way round."""
    dist2_threshold: float = 400.0
    """knn: squared distance to the nearest background samples above which a pixel is foreground
    (the same trade-off as ``var_threshold``)."""
    shadows: bool = True
    """mog2 / knn: detect shadows and count them as background. Off, a walker's shadow on the
    floor becomes part of the silhouette."""
    shadow_threshold: float = 0.4
    """mog2 / knn: a pixel darker than the background by a factor between this and 1 (with the
    same colour) is shadow. Lower drops darker shadows, and may drop dark clothing too."""
    open_size: int = 3
    """Diameter in pixels of the opening (erode, then dilate) that removes speckle; 0 = off."""
    close_size: int = 7
    """Diameter in pixels of the closing (dilate, then erode) that joins limbs cut apart; 0 = off."""
    fill_holes: bool = True
    """Fill the background regions a person's mask encloses (parts of the body that matched the
    background)."""
    min_blob_area: int = 0
    """Blobs of fewer pixels (the area inside their outline) are removed; 0 = automatic
    (0.02% of the frame, 46 pixels at 640×360); 1 keeps every blob."""
    threshold: float = 0.5
    """mediapipe / onnx: the person probability above which a pixel is person."""

    def __post_init__(self) -> None:
        for name in ("warmup", "history", "open_size", "close_size", "min_blob_area"):
            value = getattr(self, name)
            least = 1 if name == "history" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise GaitError(f"{option(name, value)} must be a whole number ≥ {least}")
        for name in ("var_threshold", "dist2_threshold"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise GaitError(f"{option(name, value)} must be a positive number")
        if not (0 < self.shadow_threshold < 1):
            raise GaitError(f"{option('shadow_threshold', self.shadow_threshold)} must lie between 0 and 1")
        if not (0 < self.threshold < 1):
            raise GaitError(f"{option('threshold', self.threshold)} must lie between 0 and 1")
        if self.learning_rate is not None and not (self.learning_rate == -1 or 0 <= self.learning_rate <= 1):
            raise GaitError(f"{option('learning_rate', self.learning_rate)} must lie in [0, 1] "
                            "(or -1 for OpenCV's automatic rate)")


class Segmenter(Protocol):
    """A person-mask maker, fed the frames of one video in order."""

    name: str
    """The backend spec it was made from."""
    warmup: int
    """The number of leading frames whose masks must not be used (the background is being learnt)."""

    def segment(self, image: np.ndarray) -> np.ndarray:
        """BGR ``H × W × 3`` ``uint8`` → ``H × W`` ``uint8``: 255 = person, 0 = background."""
        ...

    def close(self) -> None:
        """Free what the segmenter holds (models, sessions)."""
        ...


def make_segmenter(spec: str, options: BackendOptions = BackendOptions()) -> Segmenter:
    """The segmenter ``spec`` names: ``mog2``, ``knn``, ``mediapipe`` or ``onnx:PATH.onnx``.
    A fresh one for every video: the background models learn one scene."""
    name = spec.strip()
    lowered = name.lower()
    if lowered in ("mog2", "knn"):
        return BackgroundSegmenter(lowered, options)
    if lowered == "mediapipe":
        return MediaPipeSegmenter(options)
    if lowered.startswith("onnx:"):
        return OnnxSegmenter(Path(name[5:]), options)
    raise GaitError(f"unknown {option('backend', spec)}: choose one of {', '.join(BACKENDS)}")


# ------------------------------------------------------------------------------ mask clean-up
def auto_min_blob_area(shape: tuple[int, ...]) -> int:
    """The automatic ``min_blob_area`` of a frame of ``shape``."""
    return max(1, round(AUTO_BLOB_SHARE * shape[0] * shape[1]))


def _disc(size: int) -> np.ndarray | None:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)) if size > 0 else None


def clean_mask(mask: np.ndarray, options: BackendOptions, *,
               kernels: tuple[np.ndarray | None, ...] = ()) -> np.ndarray:
    """A binary ``uint8`` mask (0 / 255) opened, closed, with small blobs removed and holes
    filled as ``options`` say. Blobs are the outer outlines of the mask: one contour pass does
    both the removal and the filling (several times faster than labelling components)."""
    given = mask
    opening, closing = kernels if kernels else (_disc(options.open_size), _disc(options.close_size))
    if opening is not None:
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, opening)
    if closing is not None:
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, closing)
    least = options.min_blob_area or auto_min_blob_area(mask.shape)
    if not options.fill_holes and least <= 1:
        return mask
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if options.fill_holes:
        kept = [c for c in contours if least <= 1 or _blob_area(c) >= least]
        out = np.zeros_like(mask)
        if kept:
            cv2.drawContours(out, kept, -1, 255, cv2.FILLED)
        return out
    small = [c for c in contours if _blob_area(c) < least]
    if small:
        mask = mask.copy() if mask is given else mask  # never the caller's array
        cv2.drawContours(mask, small, -1, 0, cv2.FILLED)
    return mask


def _blob_area(contour: np.ndarray) -> float:
    """The area inside an outline, counting its boundary pixels (a lone pixel has area 1)."""
    return float(cv2.contourArea(contour)) + 0.5 * float(cv2.arcLength(contour, True)) + 1.0


# ----------------------------------------------------------------------- background subtraction
class BackgroundSegmenter:
    """``mog2`` / ``knn``: OpenCV's background subtractors for a static camera (no weights).

    Each frame: the subtractor's foreground (shadow pixels, marked 127, count as background),
    then :func:`clean_mask`. The first ``warmup`` frames teach the model at OpenCV's fast start-up
    rate and give empty masks; afterwards it learns at ``learning_rate``.
    """

    def __init__(self, name: str, options: BackendOptions = BackendOptions()) -> None:
        self.name = name
        self.options = options
        self.warmup = options.warmup
        self.frames = 0
        rate = options.learning_rate
        self._rate = LEARNING_RATES.get(name, -1.0) if rate is None else rate
        if name == "mog2":
            subtractor: Any = cv2.createBackgroundSubtractorMOG2(options.history, options.var_threshold,
                                                                 options.shadows)
        elif name == "knn":
            subtractor = cv2.createBackgroundSubtractorKNN(options.history, options.dist2_threshold,
                                                           options.shadows)
        else:
            raise ValueError(f"not a background subtractor: {name}")
        subtractor.setShadowThreshold(options.shadow_threshold)
        self._subtractor = subtractor
        self._kernels = (_disc(options.open_size), _disc(options.close_size))
        self._shape: tuple[int, ...] | None = None

    def segment(self, image: np.ndarray) -> np.ndarray:
        if self._shape is None:
            self._shape = image.shape
        elif image.shape != self._shape:
            raise DataError(f"frame size changed from {self._shape[1]}×{self._shape[0]} to "
                            f"{image.shape[1]}×{image.shape[0]} within one video; a background model "
                            "needs one frame size")
        self.frames += 1
        rate = -1.0 if self.frames <= self.warmup else self._rate
        foreground = self._subtractor.apply(image, learningRate=rate)
        if self.frames <= self.warmup:
            return np.zeros(image.shape[:2], np.uint8)
        # 255 = foreground, 127 = shadow (background), 0 = background
        _, mask = cv2.threshold(foreground, 200, 255, cv2.THRESH_BINARY)
        return clean_mask(mask, self.options, kernels=self._kernels)

    def close(self) -> None:
        self._subtractor = None


# ------------------------------------------------------------------------------------ mediapipe
def _load_mediapipe() -> Any:
    """``mediapipe.python.solution_base`` and the Pose graph's path, or a GaitError saying how
    to install it. MediaPipe's bindings print a harmless protobuf complaint while loading: it is
    kept off the terminal."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            from mediapipe.python import solution_base  # type: ignore[import-untyped,import-not-found,unused-ignore]
            from mediapipe.python.solutions import pose  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as exc:
        raise GaitError(f"the mediapipe backend needs MediaPipe {MEDIAPIPE_VERSION} ({exc}; "
                        f"Python 3.9-3.12): install it with `{MEDIAPIPE_INSTALL}`, "
                        f"or use {option('backend', 'mog2')}") from None
    return solution_base, pose._BINARYPB_FILE_PATH


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Within the block, whatever native code writes on file descriptor 2 is dropped (MediaPipe's
    TensorFlow Lite and absl log lines while its graph starts, which no setting silences)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no usable descriptor 2: nothing to hide
        yield
        return
    try:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 2)
        yield
    finally:
        _flush_c_streams()  # lines still in the C library's buffers go to the sink too
        os.dup2(saved, 2)
        os.close(saved)


def _flush_c_streams() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library to reach (Windows): nothing buffered to hide
        pass


class MediaPipeSegmenter:
    """``mediapipe``: MediaPipe's Pose solution with segmentation, on the CPU, offline.

    The Pose graph (BlazePose full, shipped in the wheel) finds one person, follows them from
    frame to frame and gives a full-body probability mask at the frame's size; a frame without a
    person gives an empty mask. The mask is thresholded at ``threshold``; holes are filled and
    small blobs removed (no opening or closing: the mask is smooth already).

    The graph is run through MediaPipe's ``SolutionBase`` with the graph's default detection
    and tracking confidences (0.5): setting them needs a protobuf API that the protobuf this
    project installs no longer has.
    """

    def __init__(self, options: BackendOptions = BackendOptions()) -> None:
        solution_base, graph = _load_mediapipe()
        self.name = "mediapipe"
        self.warmup = 0
        self.options = options
        with contextlib.redirect_stderr(io.StringIO()), _quiet_native_stderr():
            self._solution = solution_base.SolutionBase(
                binary_graph_path=graph,
                side_inputs={"model_complexity": 1, "smooth_landmarks": True, "enable_segmentation": True,
                             "smooth_segmentation": True, "use_prev_landmarks": True},
                outputs=["segmentation_mask"])
            # The graph loads its models on worker threads once started, each with log lines:
            # one blank frame waits for them (a frame without a person leaves no state behind).
            self._solution.process(np.zeros((256, 256, 3), np.uint8))
        self._clean = BackendOptions(open_size=0, close_size=0, fill_holes=options.fill_holes,
                                     min_blob_area=options.min_blob_area)
        self._found = 0

    def segment(self, image: np.ndarray) -> np.ndarray:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if self._found < 2:  # the first frames with a person log a warning of the graph's own
            with _quiet_native_stderr():
                result = self._solution.process(rgb)
        else:
            result = self._solution.process(rgb)
        probability = result.segmentation_mask
        if probability is None:
            return np.zeros(image.shape[:2], np.uint8)
        self._found += 1
        mask: np.ndarray = np.where(np.asarray(probability) > self.options.threshold, 255, 0).astype(np.uint8)
        if mask.shape != image.shape[:2]:
            mask = cv2.resize(mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
        return clean_mask(mask, self._clean)

    def close(self) -> None:
        if self._solution is not None:
            self._solution.close()
            self._solution = None


# ----------------------------------------------------------------------------------------- onnx
class OnnxSegmenter:
    """``onnx:MODEL.onnx``: a user's person-segmentation network through onnxruntime (CPU).

    Conventions:

    - **input**: exactly one, ``N × 3 × H × W`` float32, RGB scaled to [0, 1] (no mean / std
      normalisation: a network that needs one should carry it in its graph). A fixed ``H × W``
      gets the frame resized to it (bilinear); a dynamic one gets the frame at its own size.
      ``N`` is 1.
    - **output**: the first output, ``N × 1 × H' × W'`` or ``N × H' × W'`` person probability or
      logit, or ``N × 2 × H' × W'`` background / person scores (softmax over the two, person =
      channel 1). Values outside [0, 1] mean logits: from the first frame where any appears, a
      sigmoid is applied to every frame. The result is resized back to the frame (bilinear) and
      thresholded at ``threshold``; holes are filled and small blobs removed.
    """

    def __init__(self, path: Path, options: BackendOptions = BackendOptions()) -> None:
        self.name = f"onnx:{path}"
        self.warmup = 0
        self.options = options
        self._logits = False
        self._clean = BackendOptions(open_size=0, close_size=0, fill_holes=options.fill_holes,
                                     min_blob_area=options.min_blob_area)
        if not path.is_file():
            raise DataError(f"no ONNX model at {path}; give an existing file as "
                            f"{option('backend')} onnx:PATH.onnx")
        try:
            import onnxruntime
        except ImportError:
            raise GaitError("the onnx backend needs onnxruntime: install it with "
                            "pip install -e '.[export]'") from None
        try:
            session_options = onnxruntime.SessionOptions()
            session_options.log_severity_level = 3
            self._session: Any = onnxruntime.InferenceSession(str(path), session_options,
                                                              providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a file that is not a model
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"cannot load {path} as an ONNX model ({first[:160]}); export the network "
                            "with torch.onnx.export or check the file") from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1:
            raise DataError(f"{path} has {len(inputs)} inputs; a segmentation model takes one "
                            "N×3×H×W image")
        if len(outputs) < 1:
            raise DataError(f"{path} has no output; a segmentation model gives an N×1×H×W mask")
        shape = list(inputs[0].shape)
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise DataError(f"{path}'s input {inputs[0].name} has shape {shape}; expected N×3×H×W (RGB)")
        out_shape = list(outputs[0].shape)
        if len(out_shape) not in (3, 4) or (len(out_shape) == 4 and isinstance(out_shape[1], int)
                                            and out_shape[1] not in (1, 2)):
            raise DataError(f"{path}'s output {outputs[0].name} has shape {out_shape}; expected N×1×H×W, "
                            "N×H×W or N×2×H×W")
        self._input = inputs[0].name
        self._output = outputs[0].name
        fixed = all(isinstance(s, int) and s > 0 for s in shape[2:])
        self._size: tuple[int, int] | None = (int(shape[3]), int(shape[2])) if fixed else None

    def segment(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        resized = image if self._size is None else \
            cv2.resize(image, self._size, interpolation=cv2.INTER_LINEAR)
        rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        batch = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)
        try:
            raw = self._session.run([self._output], {self._input: batch})[0]
        except Exception as exc:  # a model that cannot take this input size, or fails inside
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"{self.name} failed on a {width}×{height} frame ({first[:160]}); check the "
                            "model's input size and layout (N×3×H×W RGB in [0, 1])") from None
        scores = np.asarray(raw, dtype=np.float32)
        if scores.ndim == 4 and scores.shape[1] == 2:
            shifted = scores[0] - scores[0].max(axis=0, keepdims=True)
            exp = np.exp(shifted)
            probability = exp[1] / exp.sum(axis=0)
        else:
            probability = scores.reshape(-1, *scores.shape[-2:])[0]  # N×1×H×W or N×H×W: the first image
            if not self._logits and (probability.min() < 0.0 or probability.max() > 1.0):
                self._logits = True
            if self._logits:
                probability = 1.0 / (1.0 + np.exp(-np.clip(probability, -60.0, 60.0)))
        if probability.shape != (height, width):
            probability = cv2.resize(probability, (width, height), interpolation=cv2.INTER_LINEAR)
        mask = np.where(probability > self.options.threshold, 255, 0).astype(np.uint8)
        return clean_mask(mask, self._clean)

    def close(self) -> None:
        self._session = None
