"""Silhouette transforms under OpenGait's names and argument names (docs/recipes.md, docs/config.md).

A transform takes the uint8 frames of one sequence, ``[s, h, w]``, and an RNG, and returns uint8
frames (division by 255 happens on the device, so ``divsor`` must be 255). Deterministic transforms
(cut, resize) apply in training and evaluation; random ones (flip, erase, rotate, perspective,
affine) apply in training only, drawing from the per-sequence RNG the collator seeds from the batch
seed, so a resumed run and a 2-process run see the same pixels. Warps are one ``grid_sample`` per
sequence with the frames as channels (bilinear); ``Resize`` uses area averaging (``area``
interpolation: the mean of each source block, like cv2's INTER_AREA).

Every argument is checked when a transform is built (config validation builds them, so ``gait
config`` refuses what ``gait train`` would trip on): its type (a number, a whole number, true /
false, ``[h, w]``), finiteness and range, each refusal one :class:`ConfigError` line naming the
transform and the argument (docs/recipes.md, "Transforms").
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gaitcli.errors import ConfigError


class SilTransform:
    """Base of every transform: ``__call__(frames, rng)`` and the output frame size."""

    random: bool = False
    """Whether the transform draws from the RNG (training only)."""

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
    """Removes ``cutting`` columns from each side; ``cutting: null`` means ``10 * (W // 64)``."""

    def __init__(self, divsor: float = 255.0, cutting: int | None = None) -> None:
        _check_divisor("BaseSilCuttingTransform", divsor)
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


def _warp(frames: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """All frames through one projective map (3×3, output → source, normalised coordinates)."""
    s, h, w = frames.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(-1, 3).double()
    src = points @ torch.from_numpy(matrix).double().T
    grid = (src[:, :2] / src[:, 2:3]).reshape(1, h, w, 2).float()
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().unsqueeze(0)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return _to_uint8(y[0])


class _Random(SilTransform):
    random = True

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = _number(type(self).__name__, "prob", prob, 0.0, 1.0)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.prob:
            return frames
        return self.apply(frames, rng)

    def apply(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The transform itself, once the ``prob`` draw said to apply it."""
        raise NotImplementedError


class RandomHorizontalFlip(_Random):
    """Mirrors the whole sequence left-right with probability ``prob``."""

    def apply(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.ascontiguousarray(frames[..., ::-1])


class RandomErasing(_Random):
    """Zeroes a rectangle of area ``sl..sh`` of the frame and aspect ``r1..1/r1``: one rectangle for
    the sequence with probability ``prob``, or with ``per_frame`` each frame on its own draw."""

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

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s, h, w = frames.shape
        n = s if self.per_frame else 1
        chosen = rng.random(n) < self.prob
        if not chosen.any():
            return frames
        area = rng.uniform(self.sl, self.sh, n) * h * w
        aspect = rng.uniform(self.r1, 1 / self.r1, n)
        eh = np.clip(np.round(np.sqrt(area * aspect)), 1, h - 1).astype(int)
        ew = np.clip(np.round(np.sqrt(area / aspect)), 1, w - 1).astype(int)
        top = (rng.random(n) * (h - eh + 1)).astype(int)
        left = (rng.random(n) * (w - ew + 1)).astype(int)
        rows, cols = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
        inside = ((rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None])
                  & (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None]))
        return np.where(inside & chosen[:, None, None], np.uint8(0), frames)


class RandomRotate(_Random):
    """Rotates the sequence by an angle uniform in ``[-degree, degree]`` about the frame centre."""

    def __init__(self, prob: float = 0.5, degree: float = 10) -> None:
        super().__init__(prob)
        self.degree = _number("RandomRotate", "degree", degree, 0.0, 180.0)

    def apply(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = math.radians(rng.uniform(-self.degree, self.degree))
        rot = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
        return _warp(frames, rot)


def _shift(pixels: np.ndarray, size: int) -> np.ndarray:
    """Pixel offsets as offsets of normalised [-1, 1] coordinates."""
    out: np.ndarray = 2.0 * pixels / max(size - 1, 1)
    return out


class RandomAffine(_Random):
    """A random affine map: three corners each moved by up to ``10 * (H // 64)`` pixels (OpenGait's
    rule; ``degree`` is accepted and, as there, unused)."""

    def __init__(self, prob: float = 0.5, degree: float = 10) -> None:
        super().__init__(prob)
        self.degree = _number("RandomAffine", "degree", degree, 0.0, 180.0)  # accepted, unused

    def apply(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _, h, w = frames.shape
        reach = 10 * (h // 64)
        if reach < 1:
            return frames
        corners = np.array([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
        inward = np.array([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]])
        moved = [corners + inward * _shift(rng.integers(0, reach, (3, 2)), h) for _ in range(2)]
        out_pts, src_pts = (np.hstack([m, np.ones((3, 1))]) for m in moved)
        affine = np.linalg.solve(out_pts, src_pts).T  # out -> source
        return _warp(frames, np.vstack([affine[:2], [0.0, 0.0, 1.0]]))


class RandomPerspective(_Random):
    """A random perspective stretch: the four corners of the source move inwards horizontally by up
    to ``10 * (W // 44)`` pixels and are mapped onto the whole frame (OpenGait's rule)."""

    def apply(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _, h, w = frames.shape
        reach = 10 * (w // 44)
        if reach < 1:
            return frames
        corners = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
        inward = _shift(rng.integers(0, reach, 4), w) * np.array([1.0, -1.0, -1.0, 1.0])
        moved = corners + np.stack([inward, np.zeros(4)], axis=1)
        return _warp(frames, _homography(corners, moved))


def _homography(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """The 3×3 map taking the four ``dst`` points to the four ``src`` points."""
    rows = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, v])
    a = np.array(rows)
    h = np.linalg.solve(a[:, :8], a[:, 8])
    out: np.ndarray = np.append(h, 1.0).reshape(3, 3)
    return out


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
