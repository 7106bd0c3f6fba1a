"""gaitcli.video.backends: background subtraction, mask clean-up, MediaPipe and ONNX plumbing."""

from __future__ import annotations

import sys
from collections import namedtuple
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from gaitcli.errors import DataError, GaitError
from gaitcli.video import backends
from gaitcli.video.backends import (
    BACKENDS,
    MEDIAPIPE_INSTALL,
    BackendOptions,
    BackgroundSegmenter,
    auto_min_blob_area,
    clean_mask,
    make_segmenter,
)

W, H = 160, 120


def _background(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.normal(128, 35, (H // 6, W // 6, 1)) + rng.normal(0, 8, (H // 6, W // 6, 3))
    image = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 8, (H, W, 3))
    return np.clip(image, 0, 255).astype(np.float32)


def _person_mask(t: int, frames: int) -> np.ndarray:
    """A walker-like shape (head, torso, swinging legs) crossing the frame."""
    mask = np.zeros((H, W), np.uint8)
    x = int(-20 + (W + 40) * t / frames)
    cv2.circle(mask, (x, 30), 7, 255, -1)
    cv2.ellipse(mask, (x, 58), (10, 20), 0, 0, 360, 255, -1)
    swing = int(12 * np.sin(t * 2 * np.pi / 14))
    for side in (1, -1):
        cv2.line(mask, (x, 72), (x + side * swing, 108), 255, 7)
    return mask


def _walk(frames: int = 60, *, start: int = 15, seed: int = 0, shadow: float = 0.45,
          noise: float = 4.0, drift: float = 0.1) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames of a textured walker (entering after ``start`` frames of empty scene) over a textured
    background, with a floor shadow, sensor noise and a lighting drift; and the true masks."""
    rng = np.random.default_rng(seed + 1)
    background = _background(seed)
    cloth = cv2.resize(rng.normal(0, 1, (12, 12, 3)).astype(np.float32), (W, H),
                       interpolation=cv2.INTER_CUBIC)
    images, truths = [], []
    for t in range(frames):
        truth = _person_mask(t - start, frames - start) if t >= start else np.zeros((H, W), np.uint8)
        frame = background.copy()
        if t >= start and shadow:
            dark = np.zeros((H, W), np.float32)
            x = int(-20 + (W + 40) * (t - start) / (frames - start))
            cv2.ellipse(dark, (x + 22, 108), (24, 5), 0, 0, 360, 1.0, -1)
            frame *= (1 - shadow * dark)[..., None]
        alpha = truth.astype(np.float32)[..., None] / 255
        frame = frame * (1 - alpha) + (np.array([60, 50, 160], np.float32) + 35 * cloth) * alpha
        frame *= 1 - drift * t / frames
        frame += rng.normal(0, noise, frame.shape)
        images.append(np.clip(frame, 0, 255).astype(np.uint8))
        truths.append(truth)
    return images, truths


def _iou(mask: np.ndarray, truth: np.ndarray) -> float:
    a, b = mask > 0, truth > 0
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def _mean_iou(spec: str, options: BackendOptions = BackendOptions(), **walk: Any) -> float:
    images, truths = _walk(**walk)
    segmenter = make_segmenter(spec, options)
    scores = []
    for i, (image, truth) in enumerate(zip(images, truths, strict=True)):
        mask = segmenter.segment(image)
        assert mask.shape == (H, W) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        if i >= segmenter.warmup and truth.sum() > 255 * 150:  # the walker well inside the frame
            scores.append(_iou(mask, truth))
    segmenter.close()
    return float(np.mean(scores))


# ------------------------------------------------------------------------ background backends
@pytest.mark.parametrize(("spec", "least"), [("mog2", 0.95), ("knn", 0.95)])
def test_moving_walker_iou(spec: str, least: float) -> None:
    # measured: mog2 0.972, knn 0.975 on this 160×120 scene (the bare MOG2 + morphology loop: 0.947)
    assert _mean_iou(spec) >= least


def test_better_than_a_bare_mog2_loop() -> None:
    images, truths = _walk()
    subtractor = cv2.createBackgroundSubtractorMOG2(500, 16, True)
    disc3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    disc7 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    bare = []
    for i, (image, truth) in enumerate(zip(images, truths, strict=True)):
        _, mask = cv2.threshold(subtractor.apply(image), 200, 255, cv2.THRESH_BINARY)
        mask = cv2.morphologyEx(cv2.morphologyEx(mask, cv2.MORPH_OPEN, disc3), cv2.MORPH_CLOSE, disc7)
        if i >= 15 and truth.sum() > 255 * 150:
            bare.append(_iou(mask, truth))
    assert _mean_iou("mog2") > float(np.mean(bare)) + 0.01  # measured: 0.972 against 0.947


def _scene(person: bool, shadow: bool, hole: bool = False) -> np.ndarray:
    frame = _background(3)
    if shadow:
        frame[90:110, 20:140] *= 0.6  # a darker floor patch of the same colour
    if person:
        body = np.zeros((H, W), np.uint8)
        cv2.rectangle(body, (60, 20), (100, 100), 255, -1)
        if hole:
            cv2.rectangle(body, (72, 40), (88, 70), 0, -1)  # the background shows through
        frame[body > 0] = (40, 200, 60)
    return np.clip(frame + np.random.default_rng(7).normal(0, 2, frame.shape), 0, 255).astype(np.uint8)


def _after_warmup(options: BackendOptions, last: np.ndarray, spec: str = "mog2") -> np.ndarray:
    segmenter = make_segmenter(spec, options)
    empty = _scene(False, False)
    for _ in range(options.warmup + 5):
        segmenter.segment(empty)
    return segmenter.segment(last)


@pytest.mark.parametrize("spec", ["mog2", "knn"])
def test_shadows_are_background(spec: str) -> None:
    frame = _scene(True, True)
    with_shadow = _after_warmup(BackendOptions(), frame, spec)
    assert with_shadow[95:110, 20:55].mean() < 10 and with_shadow[95:110, 105:140].mean() < 10
    assert with_shadow[30:90, 65:95].mean() > 245  # the person is still there
    kept = _after_warmup(BackendOptions(shadows=False), frame, spec)
    assert kept[95:110, 20:55].mean() > 200  # without shadow detection the patch is foreground


def test_holes_are_filled() -> None:
    frame = _scene(True, False, hole=True)
    filled = _after_warmup(BackendOptions(), frame)
    assert filled[45:65, 76:84].mean() > 250
    open_hole = _after_warmup(BackendOptions(fill_holes=False), frame)
    assert open_hole[45:65, 76:84].mean() < 5


def test_speckle_is_removed() -> None:
    frame = _scene(False, False)
    rng = np.random.default_rng(1)
    ys, xs = rng.integers(5, H - 5, 40), rng.integers(5, W - 5, 40)
    frame[ys, xs] = 255 - frame[ys, xs]  # lone wrong pixels
    assert _after_warmup(BackendOptions(), frame).max() == 0
    raw = _after_warmup(BackendOptions(open_size=0, close_size=0, min_blob_area=1, fill_holes=False), frame)
    assert (raw > 0).sum() >= 30


def test_warmup_masks_are_empty() -> None:
    person = _scene(True, False)
    segmenter = make_segmenter("mog2", BackendOptions(warmup=6))
    assert segmenter.warmup == 6
    for _ in range(5):
        assert segmenter.segment(_scene(False, False)).max() == 0
    assert segmenter.segment(person).max() == 0  # the person is there, but the model is still learning
    assert segmenter.segment(person)[30:90, 65:95].mean() > 200


def test_frame_size_change_is_one_line() -> None:
    segmenter = make_segmenter("mog2")
    segmenter.segment(np.zeros((H, W, 3), np.uint8))
    with pytest.raises(DataError, match=r"frame size changed from 160×120 to 80×60"):
        segmenter.segment(np.zeros((60, 80, 3), np.uint8))


# ------------------------------------------------------------------------------- clean_mask
def test_clean_mask_blobs_and_holes() -> None:
    mask = np.zeros((H, W), np.uint8)
    cv2.rectangle(mask, (20, 20), (60, 90), 255, -1)
    cv2.rectangle(mask, (30, 40), (50, 60), 0, -1)  # a hole
    cv2.rectangle(mask, (100, 100), (104, 104), 255, -1)  # a 25-pixel blob
    plain = BackendOptions(open_size=0, close_size=0)
    out = clean_mask(mask, BackendOptions(open_size=0, close_size=0, min_blob_area=30))
    assert out[50, 40] == 255 and out[102, 102] == 0 and out[25, 25] == 255
    out = clean_mask(mask, BackendOptions(open_size=0, close_size=0, min_blob_area=30, fill_holes=False))
    assert out[50, 40] == 0 and out[102, 102] == 0 and out[25, 25] == 255
    assert mask[102, 102] == 255  # the given mask is left alone
    out = clean_mask(mask, BackendOptions(open_size=0, close_size=0, min_blob_area=20, fill_holes=False))
    assert out[102, 102] == 255
    assert clean_mask(mask, plain)[102, 102] == 255  # automatic: 0.02% of 160×120 = 4 pixels
    assert auto_min_blob_area((360, 640)) == 46 and auto_min_blob_area((10, 10)) == 1


def test_clean_mask_closing_joins_a_cut_limb() -> None:
    mask = np.zeros((H, W), np.uint8)
    cv2.rectangle(mask, (40, 20), (60, 60), 255, -1)
    cv2.rectangle(mask, (40, 63), (60, 100), 255, -1)  # cut by a 2-pixel gap
    joined = clean_mask(mask, BackendOptions(open_size=0, close_size=7))
    assert joined[61:63, 45:55].min() == 255
    apart = clean_mask(mask, BackendOptions(open_size=0, close_size=0))
    assert apart[61:63, 45:55].max() == 0


# --------------------------------------------------------------------------- specs and options
def test_specs_and_unknown_backend() -> None:
    assert isinstance(make_segmenter("MOG2"), BackgroundSegmenter)
    assert make_segmenter(" knn ").name == "knn"
    assert BACKENDS[0] == "mog2"
    with pytest.raises(GaitError, match=r"unknown backend=grabcut: choose one of mog2, knn, mediapipe, onnx"):
        make_segmenter("grabcut")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"warmup": -1}, r"warmup=-1 must be a whole number ≥ 0"),
    ({"history": 0}, r"history=0 must be a whole number ≥ 1"),
    ({"open_size": 2.5}, r"open_size=2.5 must be a whole number"),
    ({"var_threshold": 0.0}, r"var_threshold=0.0 must be a positive"),
    ({"threshold": 1.0}, r"threshold=1.0 must lie between 0 and 1"),
    ({"shadow_threshold": 0.0}, r"shadow_threshold=0.0 must lie between 0 and 1"),
    ({"learning_rate": 2.0}, r"learning_rate=2.0 must lie in \[0, 1\]"),
])
def test_bad_options(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(GaitError, match=message):
        BackendOptions(**kwargs)


# ---------------------------------------------------------------------------------- mediapipe
def test_mediapipe_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("mediapipe", "mediapipe.python", "mediapipe.python.solutions"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    with pytest.raises(GaitError) as caught:
        make_segmenter("mediapipe")
    message = str(caught.value)
    assert MEDIAPIPE_INSTALL in message and "mediapipe==0.10.21" in message and "\n" not in message


def test_mediapipe_plumbing_with_a_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    Output = namedtuple("Output", ["segmentation_mask"])
    seen: dict[str, Any] = {}

    class Solution:
        def __init__(self, **kwargs: Any) -> None:
            seen.update(kwargs)
            self.frames: list[np.ndarray] = []

        def process(self, rgb: np.ndarray) -> Any:
            self.frames.append(rgb)
            if len(self.frames) <= 2:  # the start-up frame and a frame without anyone
                return Output(None)
            probability = np.zeros(rgb.shape[:2], np.float32)
            probability[20:100, 60:100] = 0.9
            probability[40:60, 70:90] = 0.2  # a hole in the body
            probability[5:7, 5:7] = 0.8  # a speck
            return Output(probability)

        def close(self) -> None:
            seen["closed"] = True

    class Base:
        SolutionBase = Solution

    monkeypatch.setattr(backends, "_load_mediapipe", lambda: (Base, "graph.binarypb"))
    segmenter = make_segmenter("mediapipe", BackendOptions(min_blob_area=10))
    assert seen["side_inputs"]["enable_segmentation"] is True
    assert seen["binary_graph_path"] == "graph.binarypb"
    image = np.zeros((H, W, 3), np.uint8)
    image[..., 2] = 200  # red in BGR
    assert segmenter.segment(image).max() == 0  # nobody found: an empty mask
    mask = segmenter.segment(image)
    assert mask[50, 80] == 255 and mask[30, 65] == 255 and mask[6, 6] == 0 and mask[110, 20] == 0
    assert segmenter._solution.frames[-1][0, 0, 0] == 200  # the graph is given RGB
    segmenter.close()
    assert seen["closed"]


def test_mediapipe_runs_when_installed() -> None:
    pytest.importorskip("mediapipe.python.solutions.pose", reason="mediapipe backend not installed")
    segmenter = make_segmenter("mediapipe")
    try:
        for image in _walk(frames=4, start=0)[0]:
            mask = segmenter.segment(image)
            assert mask.shape == (H, W) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        assert segmenter.segment(np.zeros((H, W, 3), np.uint8)).max() == 0  # nobody in a black frame
    finally:
        segmenter.close()


# --------------------------------------------------------------------------------------- onnx
@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny networks whose output is a known function of the input: brightness above one half."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    nn = torch.nn
    folder = tmp_path_factory.mktemp("onnx")

    def brightness(channels: int = 1) -> Any:
        conv = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            conv.weight.fill_(20.0 / 3.0)
            conv.bias.fill_(-10.0)  # logit = 20 · (mean RGB − 0.5)
        return conv

    class Logits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = brightness()

        def forward(self, x: Any) -> Any:
            return self.conv(x)

    class Probability(Logits):
        def forward(self, x: Any) -> Any:
            return torch.sigmoid(self.conv(x))[:, 0]  # N×H×W

    class TwoClass(Logits):
        def forward(self, x: Any) -> Any:
            logit = self.conv(x)
            return torch.cat([-logit, logit], dim=1)  # background, person

    class TwoInputs(Logits):
        def forward(self, x: Any, y: Any) -> Any:
            return self.conv(x + y)

    class Flat(Logits):
        def forward(self, x: Any) -> Any:
            return self.conv(x).flatten(1)

    paths: dict[str, Path] = {}

    def export(name: str, model: Any, size: tuple[int, int] | None, inputs: int = 1) -> None:
        h, w = size or (H, W)
        args = tuple(torch.rand(1, 3, h, w) for _ in range(inputs))
        names = ["image", "other"][:inputs]
        dynamic = None if size else {n: {2: "h", 3: "w"} for n in names}
        paths[name] = folder / f"{name}.onnx"
        torch.onnx.export(model.eval(), args, str(paths[name]), input_names=names, output_names=["mask"],
                          dynamic_axes=dynamic, dynamo=False)

    export("logits", Logits(), None)
    export("fixed", Probability(), (30, 40))
    export("two_class", TwoClass(), None)
    export("two_inputs", TwoInputs(), None, inputs=2)
    export("flat", Flat(), (30, 40))
    return paths


def _bright_rectangle() -> tuple[np.ndarray, np.ndarray]:
    image = np.full((H, W, 3), 40, np.uint8)
    truth = np.zeros((H, W), np.uint8)
    truth[24:96, 56:104] = 255
    image[truth > 0] = (220, 230, 210)
    return image, truth


@pytest.mark.parametrize(("name", "least"), [("logits", 0.999), ("two_class", 0.999), ("fixed", 0.9)])
def test_onnx_model_masks(models: dict[str, Path], name: str, least: float) -> None:
    segmenter = make_segmenter(f"onnx:{models[name]}")
    image, truth = _bright_rectangle()
    mask = segmenter.segment(image)
    assert mask.shape == (H, W) and mask.dtype == np.uint8
    assert _iou(mask, truth) >= least  # a fixed 40×30 input is resized there and back
    assert segmenter.segment(np.full((H, W, 3), 30, np.uint8)).max() == 0
    segmenter.close()


def test_onnx_threshold_applies_to_probabilities(models: dict[str, Path]) -> None:
    image = np.full((H, W, 3), 153, np.uint8)  # mean 0.6: logit 2, probability 0.88
    spec = f"onnx:{models['logits']}"
    assert make_segmenter(spec, BackendOptions(threshold=0.85)).segment(image).min() == 255
    assert make_segmenter(spec, BackendOptions(threshold=0.9)).segment(image).max() == 0


def test_onnx_errors(models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match=r"no ONNX model at .*missing\.onnx"):
        make_segmenter(f"onnx:{tmp_path / 'missing.onnx'}")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(DataError, match=r"cannot load .*junk\.onnx as an ONNX model") as caught:
        make_segmenter(f"onnx:{junk}")
    assert "\n" not in str(caught.value)
    with pytest.raises(DataError, match=r"two_inputs\.onnx has 2 inputs"):
        make_segmenter(f"onnx:{models['two_inputs']}")
    with pytest.raises(DataError, match=r"flat\.onnx's output mask has shape .*expected N×1×H×W"):
        make_segmenter(f"onnx:{models['flat']}")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(GaitError, match=r"the onnx backend needs onnxruntime: install it with pip install"):
        make_segmenter(f"onnx:{models['logits']}")
