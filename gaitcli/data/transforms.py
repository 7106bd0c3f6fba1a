"""Silhouette transforms under OpenGait's names and argument names (docs/recipes.md, docs/config.md).

A transform takes the uint8 frames of one sequence, ``[s, h, w]``, and an RNG, and returns uint8
frames (division by 255 happens on the device, so ``divsor`` must be 255). Deterministic transforms
(cut, resize) apply in training and evaluation; random ones (flip, erase, rotate, perspective,
affine) apply in training only, drawing from the per-sequence RNG the collator seeds from the batch
seed, so a resumed run and a 2-process run see the same pixels. ``Resize`` uses area averaging
(``area`` interpolation: the mean of each source block, like cv2's INTER_AREA).

The transforms OpenGait has are OpenGait's (opengait/data/transform.py): the same arguments and
defaults, the same ``prob`` test (``uniform(0, 1) >= prob``: skip), the same distributions of
what they draw, the same order in a chain, and the same OpenCV calls with the same matrices for
the warps (frame by frame, bilinear, zeros outside), run on the pixel type OpenGait's version sees
there (:class:`_Warp`). Only the random source differs: numpy's per-sequence generator instead of
Python's global ``random``. Each random transform splits into ``draw`` (the random numbers) and
``apply`` (deterministic), which tests/test_transforms_da.py checks against OpenGait's code.

Every argument is checked when a transform is built (config validation builds them, so ``gait
config`` refuses what ``gait train`` would trip on): its type (a number, a whole number, true /
false, ``[h, w]``), finiteness and range, each refusal one :class:`ConfigError` line naming the
transform and the argument (docs/recipes.md, "Transforms").
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Generic, TypeVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from gaitcli.errors import ConfigError


class SilTransform:
    """Base of every transform: ``__call__(frames, rng)`` and the output frame size."""

    random: bool = False
    """Whether the transform draws from the RNG (training only)."""
    divides: bool = False
    """Whether OpenGait's version returns the frames divided by ``divsor`` (float from there on)."""

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return frames

    def out_size(self, height: int, width: int) -> tuple[int, int]:
        """The frame size this transform produces from ``height`` × ``width`` frames."""
        return height, width


MAX_RESIZE = 4096
"""The largest ``Resize`` height or width (silhouettes are 64 or 128 high)."""


def _show(value: object) -> str:
    """``repr`` for messages: short, and safe for ints too long to print."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's digit limit
        if not isinstance(value, int):
            raise
        return f"an integer of about {int(value.bit_length() * math.log10(2))} digits"
    return text if len(text) <= 40 else text[:37] + "..."


def _bad(owner: str, key: str, want: str, value: object) -> ConfigError:
    got = f"{_show(value)} ({type(value).__name__})" if not isinstance(value, (int, float)) else _show(value)
    return ConfigError(f"transform: {owner}.{key} must be {want}, got {got}")


def _number(owner: str, key: str, value: object, low: float, high: float, *, low_open: bool = False,
            high_open: bool = False) -> float:
    """A real number in the interval (an int or a float, finite; not true / false or text)."""
    low_mark, high_mark = "(" if low_open else "[", ")" if high_open else "]"
    want = f"a number in {low_mark}{low:g}, {high:g}{high_mark}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(owner, key, want, value)
    if isinstance(value, float) and not math.isfinite(value):
        raise _bad(owner, key, want, value)
    # compare before converting: a huge int is out of range, never an OverflowError
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if below or above:
        raise _bad(owner, key, want, value)
    return float(value)


def _whole(owner: str, key: str, value: object, low: int, high: int | None = None) -> int:
    """A whole number (an int, not true / false) in ``[low, high]``."""
    want = f"a whole number >= {low}" if high is None else f"a whole number in [{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(owner, key, want, value)
    if value < low or (high is not None and value > high):
        raise _bad(owner, key, want, value)
    return value


def _flag(owner: str, key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _bad(owner, key, "true or false", value)
    return value


def _check_divisor(owner: str, divsor: object) -> None:
    if isinstance(divsor, bool) or not isinstance(divsor, (int, float)) or divsor != 255:
        raise ConfigError(f"transform: {owner}.divsor must be 255 (frames are always divided by 255), "
                          f"got {_show(divsor)}")


class BaseSilTransform(SilTransform):
    """OpenGait's plain silhouette transform: only the division by ``divsor`` (done on the device)."""

    divides = True

    def __init__(self, divsor: float = 255.0, img_shape: object = None) -> None:
        _check_divisor("BaseSilTransform", divsor)
        if img_shape is not None:  # accepted (OpenGait's argument) and unused
            if not isinstance(img_shape, (list, tuple)) or not 1 <= len(img_shape) <= 3:
                raise _bad("BaseSilTransform", "img_shape", "null or a list of 1 to 3 sizes", img_shape)
            for size in img_shape:
                _whole("BaseSilTransform", "img_shape", size, 1)


class NoOperation(SilTransform):
    """Leaves the frames as they are."""


class BaseSilCuttingTransform(SilTransform):
    """Removes ``cutting`` columns from each side; ``cutting: null`` means ``10 * (W // 64)``.
    ``img_w`` (in some OpenGait configs) is accepted and unused, as OpenGait drops it."""

    divides = True

    def __init__(self, divsor: float = 255.0, cutting: int | None = None, img_w: int | None = None) -> None:
        _check_divisor("BaseSilCuttingTransform", divsor)
        if img_w is not None:
            _whole("BaseSilCuttingTransform", "img_w", img_w, 1)
        self.cutting = None if cutting is None else _whole("BaseSilCuttingTransform", "cutting", cutting, 0)

    def cut(self, width: int) -> int:
        """Columns removed from each side of ``width``-wide frames."""
        cut = 10 * (width // 64) if self.cutting is None else self.cutting
        if 2 * cut >= width:
            raise ConfigError(
                f"transform: cutting {cut} columns per side leaves nothing of {width}-wide frames"
            )
        return cut

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cut = self.cut(frames.shape[-1])
        return frames[..., cut : frames.shape[-1] - cut] if cut else frames

    def out_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width - 2 * self.cut(width)


class Resize(SilTransform):
    """Resizes every frame to ``size`` ``[h, w]`` by area averaging (deterministic)."""

    def __init__(self, size: Sequence[int]) -> None:
        want = f"[height, width], whole numbers in [1, {MAX_RESIZE}]"
        if not isinstance(size, (list, tuple)) or len(size) != 2:
            raise _bad("Resize", "size", want, size)
        for value in size:
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RESIZE:
                raise _bad("Resize", "size", want, list(size))
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if frames.shape[-2:] == self.size:
            return frames
        x = torch.from_numpy(np.ascontiguousarray(frames)).float().unsqueeze(0)
        y = F.interpolate(x, size=self.size, mode="area")
        return _to_uint8(y[0])

    def out_size(self, height: int, width: int) -> tuple[int, int]:
        return self.size


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    out: np.ndarray = x.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out


P = TypeVar("P")


class _Random(SilTransform, Generic[P]):
    """A random transform: :meth:`draw` takes what OpenGait's version draws from Python's
    ``random`` (the ``prob`` draw first; None: not applied), :meth:`apply` does the rest."""

    random = True

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = _number(type(self).__name__, "prob", prob, 0.0, 1.0)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        params = self.draw(rng, frames.shape)
        return frames if params is None else self.apply(frames, params)

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> P | None:
        """The random parameters for frames of ``shape`` ``[s, h, w]``; None when the ``prob``
        draw (``uniform(0, 1) >= prob``: skip) says not to apply the transform."""
        raise NotImplementedError

    def apply(self, frames: np.ndarray, params: P) -> np.ndarray:
        """The transform with the parameters :meth:`draw` gave (deterministic)."""
        raise NotImplementedError


class RandomHorizontalFlip(_Random[bool]):
    """Mirrors the whole sequence left-right with probability ``prob``."""

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> bool | None:
        return None if rng.random() >= self.prob else True

    def apply(self, frames: np.ndarray, params: bool) -> np.ndarray:
        return np.ascontiguousarray(frames[..., ::-1])


Rect = tuple[int, int, int, int]
"""An erased rectangle: top row, left column, height, width."""


class RandomErasing(_Random[list["Rect | None"]]):
    """OpenGait's random erasing: with probability ``prob``, up to 100 tries of an area uniform in
    ``sl..sh`` of the frame and an aspect uniform in ``r1..1/r1`` (height ``round(sqrt(area ·
    aspect))``, width ``round(sqrt(area / aspect))``, Python's rounding); the first that fits
    (height < H and width < W) is placed uniformly and zeroed in every frame. With ``per_frame``
    each frame makes its own ``prob`` draw and rectangle."""

    def __init__(self, prob: float = 0.5, sl: float = 0.05, sh: float = 0.2, r1: float = 0.3,
                 per_frame: bool = False) -> None:
        super().__init__(prob)
        self.sl = _number("RandomErasing", "sl", sl, 0.0, 1.0, low_open=True, high_open=True)
        self.sh = _number("RandomErasing", "sh", sh, 0.0, 1.0, low_open=True, high_open=True)
        if self.sl > self.sh:
            raise ConfigError(f"transform: RandomErasing needs sl <= sh (the smallest erased area "
                              f"first), got sl {_show(sl)} and sh {_show(sh)}")
        self.r1 = _number("RandomErasing", "r1", r1, 0.0, 1.0, low_open=True)
        self.per_frame = _flag("RandomErasing", "per_frame", per_frame)

    def rectangle(self, rng: np.random.Generator, h: int, w: int) -> Rect | None:
        """One ``prob`` draw and, when it says so, the first of up to 100 rectangles that fits."""
        if rng.random() >= self.prob:
            return None
        for _ in range(100):
            area = rng.uniform(self.sl, self.sh) * h * w
            aspect = rng.uniform(self.r1, 1 / self.r1)
            eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if ew < w and eh < h:
                top = int(rng.integers(0, h - eh + 1))
                left = int(rng.integers(0, w - ew + 1))
                return top, left, eh, ew
        return None

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> list[Rect | None] | None:
        s, h, w = shape
        rects = [self.rectangle(rng, h, w) for _ in range(s if self.per_frame else 1)]
        return None if all(r is None for r in rects) else rects

    def apply(self, frames: np.ndarray, params: list[Rect | None]) -> np.ndarray:
        out: np.ndarray = frames.copy()
        for i, rect in enumerate(params):
            if rect is not None:
                top, left, eh, ew = rect
                rows = slice(None) if len(params) == 1 else slice(i, i + 1)
                out[rows, top : top + eh, left : left + ew] = 0
        return out


class _Warp(_Random[P]):
    """A geometric warp through OpenCV (bilinear, zeros outside), frame by frame, with OpenGait's
    matrices. OpenCV's arithmetic depends on the pixel type, so a warp runs on what OpenGait's
    version sees at that place in the chain: the uint8 frames, or after a dividing transform
    (``BaseSilCuttingTransform``, ``BaseSilTransform``) the float64 frames / 255 (the result is
    then rounded back to uint8: within half a grey level of OpenGait's). :class:`Compose` sets
    :attr:`after_division`."""

    after_division: bool = False
    """Whether a dividing transform comes before this one in its chain."""

    def warp(self, frames: np.ndarray, one: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        if not self.after_division:
            same: np.ndarray = np.stack([one(frame) for frame in frames])
            return same
        scaled = frames.astype(np.float64) / 255.0
        out = np.stack([one(frame) for frame in scaled]) * 255.0
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class RandomRotate(_Warp[float]):
    """Rotates the sequence by an angle uniform in ``[-degree, degree]`` (OpenCV's sign:
    counter-clockwise on screen). As OpenGait, the pivot is ``(H // 2, W // 2)`` given as
    OpenCV's (x, y): column 32, row 22 of a 64×44 frame, not its centre."""

    def __init__(self, prob: float = 0.5, degree: float = 10) -> None:
        super().__init__(prob)
        self.degree = _number("RandomRotate", "degree", degree, 0.0, 180.0)

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> float | None:
        return None if rng.random() >= self.prob else float(rng.uniform(-self.degree, self.degree))

    def matrix(self, h: int, w: int, degree: float) -> np.ndarray:
        """The 2×3 map OpenGait builds for ``h``×``w`` frames."""
        out: np.ndarray = cv2.getRotationMatrix2D((h // 2, w // 2), degree, 1)
        return out

    def apply(self, frames: np.ndarray, params: float) -> np.ndarray:
        h, w = frames.shape[-2:]
        m = self.matrix(h, w, params)
        return self.warp(frames, lambda f: cv2.warpAffine(f, m, (w, h)))


Corners = tuple[int, int, int, int]
"""RandomPerspective's draws: the x of the top-left, top-right, bottom-left, bottom-right corners."""


class RandomPerspective(_Warp[Corners]):
    """OpenGait's random perspective stretch: with ``c = 10 * (W // 44)``, the source corners
    (x in ``[0, c)`` on the left, ``[W - c, W)`` on the right; y 0 and H) are mapped onto the frame's
    corners ``(0, 0), (W, 0), (W, H), (0, H)``. Frames under 44 wide are left as they are (OpenGait
    has no corner to draw there and fails)."""

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> Corners | None:
        if rng.random() >= self.prob:
            return None
        w = shape[-1]
        c = 10 * (w // 44)
        if c < 1:
            return None
        tl, tr = int(rng.integers(0, c)), int(rng.integers(w - c, w))
        bl, br = int(rng.integers(0, c)), int(rng.integers(w - c, w))
        return tl, tr, bl, br

    @staticmethod
    def matrix(h: int, w: int, corners: Corners) -> np.ndarray:
        """The 3×3 source → frame map of OpenGait for the drawn corners."""
        tl, tr, bl, br = corners
        src = np.array([[tl, 0], [tr, 0], [br, h], [bl, h]], dtype=np.float32)
        dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
        out: np.ndarray = cv2.getPerspectiveTransform(src, dst)
        return out

    def apply(self, frames: np.ndarray, params: Corners) -> np.ndarray:
        h, w = frames.shape[-2:]
        m = self.matrix(h, w, params)
        return self.warp(frames, lambda f: cv2.warpPerspective(f, m, (w, h)))


Shifts = tuple[int, ...]
"""RandomAffine's twelve draws, in OpenGait's order."""


class RandomAffine(_Warp[Shifts]):
    """OpenGait's random affine map: with ``c = 10 * (H // 64)`` and twelve shifts in ``[0, c)``,
    the points ``(a, b), (H - c, d), (e, W - f)`` (OpenGait's (x, y), H and W as it writes them)
    of two such triples define the map. ``degree`` is accepted and, as there, unused. Frames under
    64 high are left as they are (OpenGait fails there)."""

    def __init__(self, prob: float = 0.5, degree: float = 10) -> None:
        super().__init__(prob)
        self.degree = _number("RandomAffine", "degree", degree, 0.0, 180.0)  # accepted, unused

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> Shifts | None:
        if rng.random() >= self.prob:
            return None
        c = 10 * (shape[-2] // 64)
        if c < 1:
            return None
        return tuple(int(rng.integers(0, c)) for _ in range(12))

    @staticmethod
    def matrix(h: int, w: int, shifts: Shifts) -> np.ndarray:
        """The 2×3 map of OpenGait for the drawn shifts."""
        pts = [
            np.array([[a, b], [h - c, d], [e, w - f]], dtype=np.float32)
            for a, b, c, d, e, f in (shifts[:6], shifts[6:])
        ]
        out: np.ndarray = cv2.getAffineTransform(pts[0], pts[1])
        return out

    def apply(self, frames: np.ndarray, params: Shifts) -> np.ndarray:
        h, w = frames.shape[-2:]
        m = self.matrix(h, w, params)
        return self.warp(frames, lambda f: cv2.warpAffine(f, m, (w, h)))


TRANSFORM_TYPES: dict[str, type[SilTransform]] = {
    cls.__name__: cls
    for cls in (BaseSilTransform, BaseSilCuttingTransform, NoOperation, Resize, RandomHorizontalFlip,
                RandomErasing, RandomRotate, RandomPerspective, RandomAffine)
}
"""Every transform by its config ``type`` (``Compose`` nests a list of them)."""

TRANSFORM_NAMES: tuple[str, ...] = (*TRANSFORM_TYPES, "Compose")
"""Every accepted ``type``."""


class Compose(SilTransform):
    """The transforms of ``trf_cfg`` in order (:func:`build_transform` builds one from a config)."""

    def __init__(self, trf_cfg: Sequence[SilTransform]) -> None:
        self.items = list(trf_cfg)
        self.random = any(t.random for t in self.items)
        divided = False
        for item in self.items:  # OpenGait's warps see float frames after a dividing transform
            if isinstance(item, _Warp):
                item.after_division = divided
            divided = divided or item.divides

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for item in self.items:
            frames = item(frames, rng)
        return frames

    def out_size(self, height: int, width: int) -> tuple[int, int]:
        for item in self.items:
            height, width = item.out_size(height, width)
        return height, width

    def total_cut(self, width: int) -> int:
        """Columns cut from each side by the cutting transforms (0 when there are none)."""
        cut = 0
        for item in self.items:
            if isinstance(item, BaseSilCuttingTransform):
                cut += item.cut(width)
            width = item.out_size(64, width)[1]
        return cut


def flat_transforms(spec: object) -> list[Mapping[str, object]]:
    """The ``{type: ...}`` items of a ``transform`` value, ``Compose`` nesting removed (``None``:
    the default cutting transform; a bare name stands for ``{type: name}``)."""
    if spec is None:
        return [{"type": "BaseSilCuttingTransform"}]
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    out: list[Mapping[str, object]] = []
    for item in items:
        if isinstance(item, str):
            item = {"type": item}
        if not isinstance(item, Mapping):
            raise ConfigError(f"transform: each transform must be a {{type: ..., arguments}} mapping, "
                              f"got {_show(item)} ({type(item).__name__})")
        if item.get("type") == "Compose":
            trf_cfg = item.get("trf_cfg")
            if trf_cfg is not None and not isinstance(trf_cfg, (list, tuple)):
                raise _bad("Compose", "trf_cfg", "a list of transforms", trf_cfg)
            out += flat_transforms(list(trf_cfg or []))
        else:
            out.append(item)
    return out


def _build_one(item: Mapping[str, object]) -> SilTransform:
    kind = item.get("type")
    if not isinstance(kind, str):
        raise ConfigError(f"transform: a transform's type must be one of {', '.join(TRANSFORM_NAMES)}, "
                          f"got {_show(kind)}")
    cls = TRANSFORM_TYPES.get(kind)
    if cls is None:
        close = difflib.get_close_matches(kind, TRANSFORM_NAMES, n=1, cutoff=0.4)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"transform: unknown transform type {_show(kind)}{hint}")
    args = {k: v for k, v in item.items() if k != "type"}
    try:
        return cls(**args)
    except TypeError as exc:  # an argument it does not take (or a key that is not a name)
        raise ConfigError(f"transform: {kind} does not take these arguments: {exc}") from None


def build_transform(spec: object, *, training: bool, section: str | None = None) -> Compose:
    """The :class:`Compose` of a ``transform`` value: a list, one mapping or a ``Compose``;
    ``None`` means the default ``[BaseSilCuttingTransform]``. Every argument's type and range is
    checked (:class:`ConfigError` naming ``section`` and the argument); with ``training=False`` a
    random transform is refused with one line (evaluation applies only deterministic ones)."""
    section = section or ("trainer_cfg.transform" if training else "evaluator_cfg.transform")
    try:
        built = Compose([_build_one(item) for item in flat_transforms(spec)])
    except ConfigError as exc:
        raise ConfigError(f"{section}: {str(exc).removeprefix('transform: ')}") from None
    if not training and built.random:
        name = next(type(t).__name__ for t in built.items if t.random)
        raise ConfigError(f"{section}: {name} is random and evaluation applies only deterministic "
                          "transforms; move it to trainer_cfg.transform")
    return built
