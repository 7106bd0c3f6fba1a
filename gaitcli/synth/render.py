"""Camera, rasteriser and segmentation-noise model behind ``gait synth``.

A CASIA-B camera is a fixed pinhole looking horizontally at a straight walking track; the view
angle is the angle between the walking direction and the line of sight (0 = walking toward the
camera, 90 = side view, 180 = walking away). We place the track centre at the world origin and
the camera on a circle around it, so frontal and back views see the walker grow or shrink with
distance (true perspective), while side views see them cross the image.

Silhouettes are drawn as filled convex polygons with OpenCV (sub-pixel precision via the
``shift`` argument). Since a silhouette is a union of white solids, no depth ordering is needed.
Real silhouettes come from background subtraction, so :func:`add_segmentation_noise` then
damages the clean mask the way such masks are damaged: ragged boundaries, holes, speckle,
occasional lost limb chunks or camouflaged bands, and (per view) a foot shadow.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gaitcli.synth.body import (
    FPS,
    Identity,
    RecordedWalk,
    Shapes,
    body_shapes,
    skeleton,
    walking_speed,
    with_offset,
)

WIDTH = 320
HEIGHT = 240
FOCAL = 380.0
"""Focal length in pixels: a 1.7 m person 5.5 m away is ~120 px tall, like CASIA-B."""

SHIFT = 4
"""Fractional bits for OpenCV drawing: coordinates are given in 1/16 pixel."""

_SCALE = float(1 << SHIFT)
_ARC = 7  # points per capsule end cap
_NEAREST_M = 3.6  # closest a walker may come to a frontal camera and still fit in the frame
_MIN_DISTANCE_M = 5.5
_KERNELS = {k: cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)) for k in (3, 5)}


@dataclass(frozen=True)
class Camera:
    """A horizontal pinhole camera (world metres in, pixels out)."""

    position: np.ndarray
    forward: np.ndarray
    right: np.ndarray
    focal: float = FOCAL
    cx: float = WIDTH / 2.0
    cy: float = HEIGHT / 2.0


def view_camera(view_deg: float, distance: float, height: float) -> Camera:
    """The camera that sees the track (through the origin, along +x) under ``view_deg``."""
    th = np.deg2rad(view_deg)
    forward = np.array([-np.cos(th), -np.sin(th), 0.0])
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right)
    position = -distance * forward + np.array([0.0, 0.0, height])
    return Camera(position=position, forward=forward, right=right)


def project(points: np.ndarray, cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``[..., 2]`` and depth ``[...]`` of world points ``[..., 3]``."""
    q = points - cam.position
    depth = q @ cam.forward
    x = q @ cam.right
    y = -q[..., 2]
    uv = np.stack([cam.cx + cam.focal * x / depth, cam.cy + cam.focal * y / depth], axis=-1)
    return uv, depth


@dataclass(frozen=True)
class ViewPlan:
    """Per-view choices for one sequence: its length, where the walk lies, camera and noise."""

    visible: int
    lead_in: int
    lead_out: int
    phase0: float  # gait phase at the first visible frame: each camera starts at its own moment
    start: float
    lateral: float
    distance: float
    cam_height: float
    noise: float
    shadow: tuple[float, float] | None


def plan_view(rng: np.random.Generator, frames: int, view_deg: float, speed: float) -> ViewPlan:
    """Draw the sequence length (mean ``frames``, +-25 %), empty lead-in/out and the camera set-up.

    The camera distance grows when the walk would otherwise leave the frame (long sequences)
    or come too close to a frontal/back camera, so every view keeps the whole body in sight.
    """
    total = max(6, int(round(frames * rng.uniform(0.75, 1.25))))
    lead_in = int(rng.integers(1, 4))
    lead_out = int(rng.integers(1, 4))
    if total - lead_in - lead_out < 4:
        lead_in = lead_out = 1
    visible = total - lead_in - lead_out
    half = 0.5 * (visible - 1) * speed / FPS
    th = np.deg2rad(view_deg)
    distance = max(
        _MIN_DISTANCE_M,
        _NEAREST_M + half * abs(np.cos(th)),
        FOCAL / (WIDTH / 2.0) * (half * abs(np.sin(th)) + 0.3),
    ) * rng.uniform(0.97, 1.03)
    shadow = None
    if rng.random() < 0.15:
        ang = rng.uniform(0.0, 2 * np.pi)
        length = rng.uniform(0.1, 0.3)
        shadow = (float(length * np.cos(ang)), float(length * np.sin(ang)))
    return ViewPlan(
        visible=visible,
        lead_in=lead_in,
        lead_out=lead_out,
        phase0=float(rng.uniform(0.0, 1.0)),
        start=-half + float(rng.uniform(-0.15, 0.15)),
        lateral=float(rng.normal(0.0, 0.05)),
        distance=float(distance),
        cam_height=float(rng.normal(1.0, 0.02)),
        noise=float(rng.uniform(0.3, 1.2)),
        shadow=shadow,
    )


# --------------------------------------------------------------------------- rasterising
def capsule_outline(a: np.ndarray, b: np.ndarray, ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Convex outline ``[..., 2*_ARC, 2]`` of tapered 2-D capsules from ``a`` to ``b`` (pixels).

    A half circle around each end joined by the (near) tangent lines; vectorised over any
    leading shape so a whole sequence is outlined in one call.
    """
    d = b - a
    length = np.linalg.norm(d, axis=-1, keepdims=True)
    u = np.where(length > 1e-6, d / np.maximum(length, 1e-6), np.array([0.0, -1.0]))
    n = np.stack([-u[..., 1], u[..., 0]], axis=-1)
    th = np.linspace(-np.pi / 2, np.pi / 2, _ARC)
    cos, sin = np.cos(th)[:, None], np.sin(th)[:, None]
    cap_b = b[..., None, :] + rb[..., None, None] * (cos * u[..., None, :] + sin * n[..., None, :])
    cap_a = a[..., None, :] + ra[..., None, None] * (-cos * u[..., None, :] - sin * n[..., None, :])
    return np.concatenate([cap_b, cap_a], axis=-2)


def _fixed(points: np.ndarray) -> np.ndarray:
    """Pixel coordinates as OpenCV fixed-point ``int32`` (``SHIFT`` fractional bits)."""
    return np.ascontiguousarray(np.rint(points * _SCALE).astype(np.int32))


@dataclass
class Projected:
    """A walker's solids in pixel space for every frame of a sequence."""

    cap_a: np.ndarray  # [T, K, 2]
    cap_b: np.ndarray
    rad_a: np.ndarray  # [T, K] pixels
    rad_b: np.ndarray
    limb: np.ndarray  # [K]
    outlines: np.ndarray  # [T, K, 2*_ARC, 2] int32 fixed point
    hulls: list[np.ndarray]  # [T, Q, 2] int32 fixed point


def project_shapes(shapes: Shapes, cam: Camera) -> Projected:
    """Project capsules (end points and radii) and hull points with the camera."""
    a, da = project(shapes.cap_a, cam)
    b, db = project(shapes.cap_b, cam)
    ra = cam.focal * shapes.rad_a[None, :] / da
    rb = cam.focal * shapes.rad_b[None, :] / db
    return Projected(
        cap_a=a,
        cap_b=b,
        rad_a=ra,
        rad_b=rb,
        limb=shapes.limb,
        outlines=_fixed(capsule_outline(a, b, ra, rb)),
        hulls=[_fixed(project(h, cam)[0]) for h in shapes.hulls],
    )


def draw_frame(proj: Projected, t: int) -> np.ndarray:
    """Rasterise frame ``t``: the white union of all capsules and hulls on black."""
    img = np.zeros((HEIGHT, WIDTH), np.uint8)
    for outline in proj.outlines[t]:
        cv2.fillConvexPoly(img, outline, 255, cv2.LINE_8, SHIFT)
    for hull in proj.hulls:
        cv2.fillConvexPoly(img, cv2.convexHull(hull[t]), 255, cv2.LINE_8, SHIFT)
    return img


# --------------------------------------------------------------------------- noise
def _speckle(img: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Isolated false-positive pixels anywhere in the frame (sensor noise, flicker)."""
    if count:
        ys = rng.integers(0, HEIGHT, count)
        xs = rng.integers(0, WIDTH, count)
        img[ys, xs] = 255


def _speckle_near(
    img: np.ndarray, rng: np.random.Generator, count: int, box: tuple[int, int, int, int]
) -> None:
    """False-positive pixels beside the walker, within the rows the body spans.

    Background subtraction flickers most where the scene changes, i.e. around the person; noise
    far above or below them would stretch the pretreatment's row crop on nearly every frame,
    which real, cleaned silhouettes rarely do (that case is the rare far blob below).
    """
    if count:
        x0, y0, x1, y1 = box
        ys = rng.integers(y0, y1, count)
        xs = rng.integers(max(0, x0 - 12), min(WIDTH, x1 + 12), count)
        img[ys, xs] = 255


def blank_frame(rng: np.random.Generator, level: float) -> np.ndarray:
    """A lead-in/out frame: nobody in view, at most a dozen speckle pixels.

    Kept well under the pretreatment's 10000 pixel-sum threshold, so ``prepare`` drops it like
    the empty frames at both ends of real CASIA-B sequences.
    """
    img = np.zeros((HEIGHT, WIDTH), np.uint8)
    _speckle(img, rng, min(12, int(rng.poisson(2.0 * level))))
    return img


def _roi(img: np.ndarray, margin: int) -> tuple[int, int, int, int] | None:
    """Bounding box of the white pixels grown by ``margin`` (clipped), or None for an empty frame."""
    x, y, w, h = cv2.boundingRect(img)
    if w == 0 or h == 0:
        return None
    return max(x - margin, 0), max(y - margin, 0), min(x + w + margin, WIDTH), min(y + h + margin, HEIGHT)


def _ragged_edges(
    img: np.ndarray, rng: np.random.Generator, level: float, box: tuple[int, int, int, int]
) -> None:
    """Flip pixels in a band around the boundary where a coarse random field is extreme.

    The field is low-resolution noise upsampled bilinearly, so the flips come in small clumps
    (bumps and bites along the outline) rather than salt-and-pepper.
    """
    x0, y0, x1, y1 = box
    roi = img[y0:y1, x0:x1]
    kernel = _KERNELS[5 if rng.random() < 0.2 * level else 3]
    band = cv2.dilate(roi, kernel) != cv2.erode(roi, kernel)
    coarse = rng.random(((y1 - y0) // 3 + 2, (x1 - x0) // 3 + 2), dtype=np.float32)
    field = cv2.resize(coarse, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    p = 0.18 * level
    roi[band & (field > 1.0 - p)] = 255
    roi[band & (field < p)] = 0
    r = rng.random()
    if r < 0.08 * level:
        roi[:] = cv2.erode(roi, _KERNELS[3])
    elif r < 0.16 * level:
        roi[:] = cv2.dilate(roi, _KERNELS[3])


def _holes(img: np.ndarray, rng: np.random.Generator, level: float, box: tuple[int, int, int, int]) -> None:
    """Small false-negative blobs inside the body (clothing that matches the background)."""
    x0, y0, x1, y1 = box
    for _ in range(int(rng.poisson(1.2 * level))):
        x = int(rng.integers(x0, x1))
        y = int(rng.integers(y0, y1))
        axes = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        if img[y, x]:
            cv2.ellipse(img, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, 0, -1)


def _lost_limb_chunk(img: np.ndarray, rng: np.random.Generator, proj: Projected, t: int) -> None:
    """Erase a stretch of one arm or leg, as when a limb crosses a background of the same colour."""
    limbs = np.flatnonzero(proj.limb)
    k = int(limbs[rng.integers(0, limbs.size)])
    t0 = rng.uniform(0.0, 0.6)
    t1 = min(1.0, t0 + rng.uniform(0.2, 0.5))
    a, b = proj.cap_a[t, k], proj.cap_b[t, k]
    ra, rb = proj.rad_a[t, k], proj.rad_b[t, k]
    pa, pb = a + t0 * (b - a), a + t1 * (b - a)
    rpa, rpb = ra + t0 * (rb - ra) + 1.5, ra + t1 * (rb - ra) + 1.5
    outline = _fixed(capsule_outline(pa, pb, np.asarray(rpa), np.asarray(rpb)))
    cv2.fillConvexPoly(img, outline, 0, cv2.LINE_8, SHIFT)


def _camouflage_band(img: np.ndarray, rng: np.random.Generator, box: tuple[int, int, int, int]) -> None:
    """Cut a thin horizontal stripe out of part of the body (a background edge at the same grey)."""
    x0, y0, x1, y1 = box
    h = y1 - y0
    y = int(y0 + rng.uniform(0.3, 0.9) * h)
    thick = int(rng.integers(1, 5))
    xa = int(rng.integers(x0, x1))
    xb = int(min(x1, xa + rng.integers(4, max(5, x1 - x0))))
    img[y : y + thick, xa:xb] = 0


def add_segmentation_noise(
    img: np.ndarray, rng: np.random.Generator, level: float, proj: Projected, t: int
) -> None:
    """Damage a clean silhouette in place like background subtraction does; ``level`` ~0.3..1.2."""
    box = _roi(img, 3)
    if box is None:
        return
    _ragged_edges(img, rng, level, box)
    _holes(img, rng, level, box)
    if rng.random() < 0.05 * level:
        _lost_limb_chunk(img, rng, proj, t)
    if rng.random() < 0.04 * level:
        _camouflage_band(img, rng, box)
    _speckle_near(img, rng, int(rng.poisson(2.0 * level)), box)
    _speckle(img, rng, int(rng.poisson(0.03 * level)))
    if rng.random() < 0.005 * level:
        centre = (int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT)))
        axes = (int(rng.integers(2, 6)), int(rng.integers(2, 6)))
        cv2.ellipse(img, centre, axes, 0.0, 0, 360, 255, -1)


# --------------------------------------------------------------------------- sequences
def _shadow_hulls(shapes: Shapes, shadow: tuple[float, float]) -> list[np.ndarray]:
    """One ground-plane blob per foot (``[T, 4, 3]`` each): the short cast shadow that
    background subtraction keeps attached to the soles."""
    hulls = []
    for k in shapes.feet:
        foot = np.stack([shapes.cap_a[:, k], shapes.cap_b[:, k]], axis=1)
        foot[..., 2] = 0.0
        hulls.append(np.concatenate([foot, foot + np.array([shadow[0], shadow[1], 0.0])], axis=1))
    return hulls


def walker_frames(
    ident: Identity, walk: RecordedWalk, view_deg: float, frames: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """All frames (uint8 ``[240, 320]``, 0/255) of one walk seen from one view.

    ``rng`` is the per-sequence generator: it decides length, camera jitter and every noise
    pixel, so the result depends only on the seeds that built its arguments.
    """
    speed = walking_speed(ident, walk)
    plan = plan_view(rng, frames, view_deg, speed)
    cycle = FPS * 120.0 / (ident.cadence * walk.cadence_factor)
    i = np.arange(plan.visible, dtype=float)
    p = plan.phase0 + i / cycle
    shapes = body_shapes(ident, walk, skeleton(ident, walk, p), p)
    offset = np.zeros((plan.visible, 3))
    offset[:, 0] = plan.start + i * speed / FPS
    offset[:, 1] = plan.lateral
    shapes = with_offset(shapes, offset)
    if plan.shadow is not None:
        shapes.hulls.extend(_shadow_hulls(shapes, plan.shadow))
    proj = project_shapes(shapes, view_camera(view_deg, plan.distance, plan.cam_height))

    out = [blank_frame(rng, plan.noise) for _ in range(plan.lead_in)]
    for t in range(plan.visible):
        img = draw_frame(proj, t)
        add_segmentation_noise(img, rng, plan.noise, proj, t)
        out.append(img)
    out += [blank_frame(rng, plan.noise) for _ in range(plan.lead_out)]
    return out
