"""Synthetic videos of ``gait synth`` walkers, with ground-truth person masks (tests, benchmarks).

A video walker is *the same walk* as one ``gait synth`` sequence: the person, the walk and the
camera of ``(seed, subject, type, view)`` with the mean length ``length`` (``gait synth
--frames``) come from the very generators :func:`gaitcli.synth.generate.render_sequence` uses,
so identification from a video can be compared with identification from the silhouettes
``gait synth`` writes for the same walks (:func:`clean_silhouettes`).

How a video frame relates to the synth sequence
    The synth sequence is rendered on a 320x240 canvas: its frame ``k`` (from 0, blank lead-in
    and lead-out frames included) is shown at video frame ``style.lead_in + walker.start + k``,
    with the canvas scaled by ``walker.scale`` and its top-left corner at ``walker.offset``
    (video pixels; the canvas may stick out of the frame, which cuts the walker).
    The ground truth is the walker's *noise-free* rasterisation (:func:`ideal_silhouettes`):
    ``gait synth`` draws the same solids and then damages them like a background subtractor
    would (ragged edges, holes, speckle, sometimes a foot shadow), so its frames agree with the
    ground truth up to that noise (IoU about 0.8-0.95 per frame), and exactly in length and
    timing. At ``scale=1`` the ground truth is :func:`ideal_silhouettes` shifted by ``offset``,
    pixel for pixel.

What the camera sees (:class:`VideoStyle`, every effect can be switched off)
    A static textured background (a wall with posters and a door, a tiled floor, low-frequency
    shading and fine grain), people filled with clothing colours (hair, skin, shirt, trousers,
    shoes by height, with a soft pattern; sometimes trousers only a little different from the
    floor), a soft floor shadow attached to the feet (darker background: never person in the
    ground truth), sensor noise, a slow global lighting drift and the codec's compression.
    Walkers later in the list are in front; a walker's ground truth is what is visible of it.

Everything is drawn from seeds: the same arguments give the same video (up to the codec
library's version).
"""

from __future__ import annotations

import os
import re
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from gaitcli.errors import GaitError
from gaitcli.synth.body import (
    FPS,
    body_shapes,
    draw_identity,
    draw_walk,
    skeleton,
    walking_speed,
    with_offset,
)
from gaitcli.synth.generate import (
    CASIA_B_VIEWS,
    identity_rng,
    render_sequence,
    sequence_rng,
    walk_rng,
)
from gaitcli.synth.render import (
    FOCAL,
    HEIGHT,
    SHIFT,
    WIDTH,
    Projected,
    plan_view,
    project_shapes,
    view_camera,
)

__all__ = [
    "VideoStyle",
    "VideoTruth",
    "VideoWalker",
    "clean_silhouettes",
    "ideal_silhouettes",
    "render_video",
]

_TYPE_RE = re.compile(r"^(nm|bg|cl)-\d{2}$")
_TAG_BACKGROUND = 0xB6
_TAG_CLOTHES = 0xC1
_TAG_NOISE = 0x4E

# Rows of the body (fractions of its height from the top) and the clothing part they show.
_PARTS = ((0.06, 0), (0.13, 1), (0.50, 2), (0.95, 3), (1.01, 4))  # hair, skin, shirt, trousers, shoes
_SKIN = ((90, 120, 170), (120, 160, 210), (60, 90, 140), (140, 180, 225), (80, 110, 150))
_TROUSERS = ((90, 50, 30), (35, 35, 35), (110, 160, 180), (150, 150, 150), (60, 60, 90))
_CONTRAST = 45.0  # least BGR distance of a clothing colour from the mean wall and floor colours


@dataclass(frozen=True)
class VideoWalker:
    """One ``gait synth`` walk placed in a video."""

    seed: int
    """``gait synth --seed``."""
    subject: int
    """Subject number (1 = id ``001``)."""
    type: str = "nm-01"
    """Walk type, ``nm-NN``, ``bg-NN`` or ``cl-NN``."""
    view: str = "090"
    """CASIA-B view, ``000`` ... ``180`` (``090``: the walker crosses the canvas sideways)."""
    start: int = 0
    """Video frame, counted after the style's lead-in, at which the synth sequence starts (its
    first frame is blank, as in ``gait synth``; :meth:`VideoTruth.span` gives the first frame
    with the person in view)."""
    offset: tuple[int, int] = (0, 0)
    """``x, y`` of the canvas's top-left corner in the video frame (may be negative: the part
    of the canvas outside the frame is cut, e.g. a walker who never leaves the border)."""
    scale: float = 1.0
    """Size of the 320x240 canvas in the video (0.5: walkers half as tall, about 60 pixels)."""
    length: int = 60
    """Mean sequence length, ``gait synth --frames`` (the sequence draws its own, +-25 %)."""
    mirror: bool = False
    """Walk the other way: the canvas flipped left-right (two walkers crossing)."""

    def __post_init__(self) -> None:
        if self.view not in CASIA_B_VIEWS:
            raise GaitError(f"unknown view {self.view!r}; CASIA-B views are " + ",".join(CASIA_B_VIEWS))
        if not _TYPE_RE.match(self.type):
            raise GaitError(f"unknown type {self.type!r}; expected nm-NN, bg-NN or cl-NN")
        if self.scale <= 0 or self.length < 8 or self.start < 0:
            raise GaitError(f"walker {self}: scale must be > 0, length >= 8, start >= 0")


@dataclass(frozen=True)
class VideoStyle:
    """The camera, the scene and its effects; each effect off at 0 / False."""

    width: int = 640
    height: int = 360
    fps: float = 25.0
    background_seed: int = 0
    """Seed of the static background (wall, posters, floor tiles, shading, grain) and of the
    sensor noise."""
    floor: float = 0.55
    """Where the floor starts, as a fraction of the frame height from the top."""
    shadow: bool = True
    """A soft floor shadow attached to each walker's feet (the background darkened to about 60 %;
    not person in the ground truth)."""
    noise: float = 3.0
    """Sensor noise sigma (grey levels, per pixel and channel, new in every frame)."""
    light_drift: float = 0.08
    """Global brightness drift: the scene is ``1 + light_drift * sin(pi * t / (frames - 1))``
    times as bright at frame ``t`` (brightest in the middle)."""
    camouflage: float = 0.3
    """Chance that a walker's trousers are only 18-30 grey levels lighter than the floor's mean
    colour (hard for background subtraction, as in real videos); every other clothing colour keeps
    a clear distance from the wall's and floor's mean colours."""
    codec: str = "mp4v"
    """FourCC handed to ``cv2.VideoWriter`` (``mp4v`` for ``.mp4``, ``MJPG`` for ``.avi``)."""
    lead_in: int = 15
    """Frames of empty background before any walker's sequence starts (lets background
    subtraction learn the scene)."""

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16 or self.fps <= 0 or len(self.codec) != 4:
            raise GaitError(f"video style {self}: needs width, height >= 16, fps > 0 and a 4-letter codec")


@dataclass(frozen=True)
class _Crop:
    """One walker's visible pixels in one frame: its box and the bits of the box, packed."""

    x0: int
    y0: int
    w: int
    h: int
    bits: np.ndarray = field(repr=False)

    def unpack(self) -> np.ndarray:
        return np.unpackbits(self.bits, count=self.w * self.h).reshape(self.h, self.w).astype(bool)


def _pack(mask: np.ndarray) -> _Crop | None:
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    if w == 0 or h == 0:
        return None
    return _Crop(x, y, w, h, np.packbits(mask[y : y + h, x : x + w]))


@dataclass(frozen=True)
class VideoTruth:
    """A rendered video and where each walker is in it (masks stored packed, a few KB a frame)."""

    path: Path
    """The video file."""
    frames: int
    """Frames written."""
    walkers: tuple[VideoWalker, ...]
    width: int
    height: int
    starts: tuple[int, ...]
    """Per walker, the video frame of its synth sequence's frame 0 (``lead_in + start``)."""
    lengths: tuple[int, ...]
    """Per walker, the length of its synth sequence (blank lead-in/out frames included)."""
    crops: tuple[tuple[_Crop | None, ...], ...] = field(repr=False, compare=False)

    def mask(self, frame: int, walker: int | None = None) -> np.ndarray:
        """``H x W`` bool: the visible pixels of ``walker`` (index into ``walkers``) at ``frame``;
        ``None``: of every walker."""
        out = np.zeros((self.height, self.width), dtype=bool)
        for w in range(len(self.walkers)) if walker is None else (walker,):
            crop = self.crops[w][frame]
            if crop is not None:
                out[crop.y0 : crop.y0 + crop.h, crop.x0 : crop.x0 + crop.w] |= crop.unpack()
        return out

    def box(self, frame: int, walker: int) -> tuple[int, int, int, int] | None:
        """``x0, y0, x1, y1`` (exclusive) of the walker's visible pixels, or None."""
        crop = self.crops[walker][frame]
        return None if crop is None else (crop.x0, crop.y0, crop.x0 + crop.w, crop.y0 + crop.h)

    def area(self, frame: int, walker: int) -> int:
        crop = self.crops[walker][frame]
        return 0 if crop is None else int(np.unpackbits(crop.bits, count=crop.w * crop.h).sum())

    def span(self, walker: int) -> tuple[int, int] | None:
        """First and last frame in which any of the walker is visible (None: never)."""
        seen = [t for t, crop in enumerate(self.crops[walker]) if crop is not None]
        return (seen[0], seen[-1]) if seen else None

    def sequence_frame(self, frame: int, walker: int) -> int | None:
        """Index into :func:`clean_silhouettes` of the walker shown at video ``frame`` (None when
        its sequence has not started or is over)."""
        k = frame - self.starts[walker]
        return k if 0 <= k < self.lengths[walker] and 0 <= frame < self.frames else None


# --------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class _Geometry:
    """A walker's solids in video pixels for the visible frames of its synth sequence."""

    proj: Projected
    lead_in: int  # blank synth frames before the first visible one
    total: int  # synth sequence length (blank frames included)
    top: np.ndarray  # [visible] unclipped body box, pixels
    bottom: np.ndarray
    left: np.ndarray
    right: np.ndarray
    feet: np.ndarray  # [visible, 3]: feet centre x, lowest y, feet span (pixels)


def _geometry(walker: VideoWalker, offset: tuple[int, int] | None = None, scale: float | None = None,
              mirror: bool | None = None) -> _Geometry:
    """The walk of ``gait synth``'s sequence, projected by a camera scaled and moved into the video.

    These are the steps of :func:`gaitcli.synth.render.walker_frames` up to the projection, with
    the same generators in the same order, so the walk, its length and its camera are that
    sequence's (only the noise that ``walker_frames`` draws afterwards is left out).
    """
    ident = draw_identity(identity_rng(walker.seed, walker.subject))
    walk = draw_walk(walk_rng(walker.seed, walker.subject, walker.type), ident, walker.type[:2])
    rng = sequence_rng(walker.seed, walker.subject, walker.type, walker.view)
    view_deg = float(int(walker.view))
    speed = walking_speed(ident, walk)
    plan = plan_view(rng, walker.length, view_deg, speed)
    cycle = FPS * 120.0 / (ident.cadence * walk.cadence_factor)
    i = np.arange(plan.visible, dtype=float)
    p = plan.phase0 + i / cycle
    shapes = body_shapes(ident, walk, skeleton(ident, walk, p), p)
    place = np.zeros((plan.visible, 3))
    place[:, 0] = plan.start + i * speed / FPS
    place[:, 1] = plan.lateral
    shapes = with_offset(shapes, place)

    s = walker.scale if scale is None else scale
    ox, oy = walker.offset if offset is None else offset
    flip = walker.mirror if mirror is None else mirror
    cam = view_camera(view_deg, plan.distance, plan.cam_height)
    # Mirroring flips the camera's x axis; the canvas's pixel columns j -> 319 - j, as np.fliplr.
    cx = ox + s * (WIDTH - 1 - WIDTH / 2.0 if flip else WIDTH / 2.0)
    right = -cam.right if flip else cam.right
    cam = replace(cam, focal=FOCAL * s, cx=cx, cy=oy + s * HEIGHT / 2.0, right=right)
    proj = project_shapes(shapes, cam)

    pts = [proj.outlines.reshape(plan.visible, -1, 2)] + list(proj.hulls)
    every = np.concatenate(pts, axis=1).astype(float) / (1 << SHIFT)
    feet = np.concatenate([proj.cap_a[:, list(shapes.feet)], proj.cap_b[:, list(shapes.feet)]], axis=1)
    foot_info = np.stack([feet[..., 0].mean(axis=1), feet[..., 1].max(axis=1),
                          feet[..., 0].max(axis=1) - feet[..., 0].min(axis=1)], axis=1)
    return _Geometry(proj, plan.lead_in, plan.lead_in + plan.visible + plan.lead_out,
                     every[..., 1].min(axis=1), every[..., 1].max(axis=1),
                     every[..., 0].min(axis=1), every[..., 0].max(axis=1), foot_info)


def _draw(proj: Projected, t: int, out: np.ndarray) -> None:
    """Rasterise visible frame ``t`` into ``out`` (255 = person), as ``render.draw_frame`` does."""
    for outline in proj.outlines[t]:
        cv2.fillConvexPoly(out, outline, 255, cv2.LINE_8, SHIFT)
    for hull in proj.hulls:
        cv2.fillConvexPoly(out, cv2.convexHull(hull[t]), 255, cv2.LINE_8, SHIFT)


def ideal_silhouettes(walker: VideoWalker) -> list[np.ndarray]:
    """The walk's noise-free silhouettes on ``gait synth``'s 320x240 canvas (uint8, 0 / 255), one
    per synth frame, blank lead-in/out included (mirrored when the walker is): the ground truth
    of the video in canvas coordinates."""
    geo = _geometry(walker, offset=(0, 0), scale=1.0)
    visible = geo.proj.outlines.shape[0]
    out = [np.zeros((HEIGHT, WIDTH), np.uint8) for _ in range(geo.total)]
    for t in range(visible):
        _draw(geo.proj, t, out[geo.lead_in + t])
    return out


def clean_silhouettes(walker: VideoWalker) -> list[np.ndarray]:
    """What ``gait synth`` writes for this walk: ``render_sequence(seed, subject, type, view,
    length)`` (uint8 ``[240, 320]`` frames), flipped left-right for a mirrored walker.

    Frame ``k`` is the walker of video frame ``lead_in + start + k``
    (:meth:`VideoTruth.sequence_frame`); see the module docstring for how the two differ.
    """
    frames = render_sequence(walker.seed, walker.subject, walker.type, walker.view, walker.length)
    if walker.mirror:
        return [np.ascontiguousarray(f[:, ::-1]) for f in frames]
    return frames


# --------------------------------------------------------------------------- appearance
def _smooth_field(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1], ``height x width`` float32, features about ``cell`` pixels."""
    coarse = rng.uniform(-1.0, 1.0, (height // cell + 2, width // cell + 2)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(-1.0, 1.0)


def _background(style: VideoStyle) -> np.ndarray:
    """The static scene, ``H x W x 3`` float32 BGR: wall with posters and a door, tiled floor."""
    rng = np.random.default_rng(np.random.SeedSequence([style.background_seed, _TAG_BACKGROUND]))
    h, w = style.height, style.width
    horizon = int(round(style.floor * h))
    img = np.empty((h, w, 3), np.float32)
    img[:horizon] = rng.uniform(140, 200) + rng.uniform(-15, 15, 3)
    img[horizon:] = rng.uniform(80, 130) + rng.uniform(-12, 12, 3)
    for _ in range(int(rng.integers(3, 6))):  # posters, a door, a window
        rw, rh = int(rng.uniform(0.05, 0.2) * w), int(rng.uniform(0.1, 0.4) * h)
        x, y = int(rng.integers(0, max(1, w - rw))), int(rng.integers(0, max(1, horizon - rh)))
        colour = tuple(float(c) for c in rng.uniform(30, 230, 3))
        cv2.rectangle(img, (x, y), (x + rw, y + rh), colour, -1)
        cv2.rectangle(img, (x, y), (x + rw, y + rh), tuple(0.6 * c for c in colour), max(1, h // 180))
    skirting = max(2, h // 90)
    img[max(0, horizon - skirting) : horizon] *= 0.55
    vanish = (w * rng.uniform(0.3, 0.7), horizon - 0.4 * h)
    for k in range(-8, 9):  # floor tile joints converging to a vanishing point
        x_bottom = w / 2 + k * 0.15 * w
        x_top = vanish[0] + (x_bottom - vanish[0]) * (horizon - vanish[1]) / (h - vanish[1])
        cv2.line(img, (int(x_top), horizon), (int(x_bottom), h), (60, 60, 60), 1, cv2.LINE_AA)
    row = float(horizon)
    step = 0.04 * h
    while row < h:  # tile joints across, wider apart nearer the camera
        cv2.line(img, (0, int(row)), (w, int(row)), (65, 65, 65), 1, cv2.LINE_AA)
        step *= 1.35
        row += step
    shade = _smooth_field(rng, h, w, max(8, w // 12))
    img *= (1.0 + 0.12 * shade)[..., None]
    img += rng.normal(0.0, 3.0, (h, w, 1)).astype(np.float32)  # grain (static)
    return img


@dataclass(frozen=True)
class _Clothes:
    colours: np.ndarray  # [5, 3] float32: hair, skin, shirt, trousers, shoes
    pattern: np.ndarray  # [H, W] float32 grey-level offsets, indexed from the body's box corner
    stripes: float  # amplitude of horizontal stripes on the shirt (grey levels; 0 = none)


def _clothes(walker: VideoWalker, style: VideoStyle, background: np.ndarray,
             size: tuple[int, int]) -> _Clothes:
    """A walker's clothing: colours by part and a soft pattern, drawn from ``(seed, subject, type)``.

    Every part stands out from the mean wall and floor colours (:func:`_stands_out`), except
    camouflaged trousers, which are 18-30 grey levels *lighter* than the floor (darker
    ones would be the background subtractor's shadows, a different difficulty).
    """
    key = [walker.seed, _TAG_CLOTHES, walker.subject, zlib.crc32(walker.type.encode())]
    rng = np.random.default_rng(np.random.SeedSequence(key))
    horizon = min(max(1, int(round(style.floor * style.height))), style.height - 1)
    wall = background[:horizon].reshape(-1, 3).mean(axis=0)
    floor = background[horizon:].reshape(-1, 3).mean(axis=0)

    def distinct(draw: Callable[[], np.ndarray]) -> np.ndarray:
        colour = draw().clip(5, 250)
        for _ in range(50):
            if all(_stands_out(colour, bg) for bg in (wall, floor)):
                break
            colour = draw().clip(5, 250)
        return colour

    hair = distinct(lambda: rng.uniform(15, 90) + rng.normal(0, 5, 3))
    skin = distinct(lambda: np.array(_SKIN[int(rng.integers(len(_SKIN)))], float) + rng.normal(0, 8, 3))
    shirt = distinct(lambda: rng.uniform(20, 235, 3))
    if rng.random() < style.camouflage:
        trousers = (floor + rng.uniform(18, 30) + rng.normal(0, 3, 3)).clip(5, 250)
    else:
        trousers = distinct(lambda: np.array(_TROUSERS[int(rng.integers(len(_TROUSERS)))], float)
                            + rng.normal(0, 10, 3))
    shoes = distinct(lambda: rng.uniform(15, 70) + rng.normal(0, 5, 3))
    colours = np.array([hair, skin, shirt, trousers, shoes], np.float32)
    h, w = size
    pattern = 8.0 * _smooth_field(rng, h, w, max(4, h // 20))
    stripes = 12.0 if rng.random() < 0.3 else 0.0  # a striped shirt
    return _Clothes(colours, pattern.astype(np.float32), stripes)


def _stands_out(colour: np.ndarray, background: np.ndarray) -> bool:
    """``colour`` is at least ``_CONTRAST`` (BGR distance) from ``background`` and is not a
    shadow of it: not the background darkened to 45-100 % with nearly its hue (background
    subtraction would call it shadow; that difficulty is the ``shadow`` effect's)."""
    if np.linalg.norm(colour - background) < _CONTRAST:
        return False
    ratio = float(colour @ background) / max(1e-6, float(background @ background))
    return not (0.45 <= ratio <= 1.0 and np.linalg.norm(colour - ratio * background) < _CONTRAST)


def _part_rows(top: float, bottom: float, y0: int, y1: int) -> np.ndarray:
    """Clothing part index of rows ``y0 .. y1-1`` of a body spanning ``top .. bottom``."""
    frac = (np.arange(y0, y1, dtype=np.float32) - top) / max(1.0, bottom - top)
    return np.searchsorted(np.array([p for p, _ in _PARTS], np.float32), frac, side="right").clip(0, 4)


def _shadow(img: np.ndarray, geo: _Geometry, t: int, side: float) -> None:
    """Darken the floor around the feet of visible frame ``t`` (soft ellipse, to about 60 %)."""
    fx, fy, span = geo.feet[t]
    bh = geo.bottom[t] - geo.top[t]
    ax, ay = 0.5 * span + 0.12 * bh + 2, 0.035 * bh + 1.5
    cx = fx + side * 0.12 * bh
    h, w = img.shape[:2]
    x0, x1 = int(max(0, cx - ax - 4)), int(min(w, cx + ax + 5))
    y0, y1 = int(max(0, fy - ay - 4)), int(min(h, fy + ay + 5))
    if x1 <= x0 or y1 <= y0:
        return
    alpha = np.zeros((y1 - y0, x1 - x0), np.float32)
    centre = (int(round(cx - x0)), int(round(fy - y0)))
    cv2.ellipse(alpha, centre, (int(ax), max(1, int(ay))), 0.0, 0, 360, 1.0, -1)
    soft: np.ndarray = cv2.GaussianBlur(alpha, (5, 5), 0)
    img[y0:y1, x0:x1] *= (1.0 - 0.4 * soft)[..., None]


# --------------------------------------------------------------------------- the video
def render_video(path: Path, walkers: Sequence[VideoWalker], frames: int,
                 style: VideoStyle = VideoStyle()) -> VideoTruth:
    """Render ``frames`` frames of ``walkers`` in ``style`` to the video file ``path`` (written to a
    temporary name in the same folder and renamed into place) and return the ground truth.

    Raises :class:`GaitError` when the file cannot be written with ``style.codec``.
    """
    path = Path(path)
    if frames < 1:
        raise GaitError(f"frames must be at least 1, got {frames}")
    h, w = style.height, style.width
    walkers = tuple(walkers)
    geos = [_geometry(wk) for wk in walkers]
    starts = tuple(style.lead_in + wk.start for wk in walkers)
    background = _background(style)
    size = (int(HEIGHT * max([wk.scale for wk in walkers] + [1.0])) + 8,
            int(WIDTH * max([wk.scale for wk in walkers] + [1.0])) + 8)
    clothes = [_clothes(wk, style, background, size) for wk in walkers]
    noise_rng = np.random.default_rng(np.random.SeedSequence([style.background_seed, _TAG_NOISE]))
    side = 1.0 if style.background_seed % 2 == 0 else -1.0  # where the light comes from

    tmp = path.parent / f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}"
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*style.codec), float(style.fps), (w, h))
    if not writer.isOpened():
        tmp.unlink(missing_ok=True)
        raise GaitError(f"cannot write the video {path} with codec {style.codec!r}; "
                        "check the folder, or use another codec or file extension")
    crops: list[list[_Crop | None]] = [[] for _ in walkers]
    layers = [np.zeros((h, w), np.uint8) for _ in walkers]
    try:
        for f in range(frames):
            img = background.copy()
            active = []
            for n, (geo, start) in enumerate(zip(geos, starts, strict=True)):
                t = f - start - geo.lead_in
                layers[n][:] = 0
                if 0 <= t < geo.proj.outlines.shape[0]:
                    _draw(geo.proj, t, layers[n])
                    active.append((n, t))
            if style.shadow:
                for n, t in active:
                    _shadow(img, geos[n], t, side)
            for n, t in active:
                _paint(img, layers[n], geos[n], t, clothes[n])
            front = np.zeros((h, w), bool)
            for n in reversed(range(len(walkers))):
                own = layers[n] > 0
                crops[n].append(_pack(own & ~front) if own.any() else None)
                front |= own
            if style.light_drift:
                img *= 1.0 + style.light_drift * float(np.sin(np.pi * f / max(1, frames - 1)))
            if style.noise:
                img += noise_rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(style.noise)
            writer.write(np.clip(img, 0, 255).astype(np.uint8))
        writer.release()
        os.replace(tmp, path)
    except BaseException:
        writer.release()
        tmp.unlink(missing_ok=True)
        raise
    return VideoTruth(path, frames, walkers, w, h, starts, tuple(g.total for g in geos),
                      tuple(tuple(c) for c in crops))


def _paint(img: np.ndarray, layer: np.ndarray, geo: _Geometry, t: int, clothes: _Clothes) -> None:
    """Fill the walker's pixels of ``layer`` with its clothes (parts by height, pattern moving
    with the body)."""
    x, y, bw, bh = cv2.boundingRect(layer)
    if bw == 0 or bh == 0:
        return
    top, left = float(geo.top[t]), float(geo.left[t])
    rows = _part_rows(top, float(geo.bottom[t]), y, y + bh)
    colour = clothes.colours[rows][:, None, :]  # [bh, 1, 3]
    ph, pw = clothes.pattern.shape
    py = np.clip(np.arange(y, y + bh) - int(top), 0, ph - 1)
    px = np.clip(np.arange(x, x + bw) - int(left), 0, pw - 1)
    shade = clothes.pattern[py][:, px]
    if clothes.stripes:
        period = max(2.0, (float(geo.bottom[t]) - top) / 40.0)
        band = np.sign(np.sin((np.arange(y, y + bh) - top) * np.pi / period)).astype(np.float32)
        shade = shade + (clothes.stripes * band * (rows == 2))[:, None]
    paint = colour + shade[..., None]
    roi = img[y : y + bh, x : x + bw]
    inside = layer[y : y + bh, x : x + bw] > 0
    roi[inside] = paint[inside]
