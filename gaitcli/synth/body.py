"""The articulated 3-D walker behind ``gait synth``: who a synthetic person is and how they move.

A gait recogniser learns identity from two things: the *shape* of a body (proportions, girth)
and the *way* it moves (stride, cadence, arm swing, posture). A synthetic data set is only a
useful test bed if identity lives in exactly those places, so this module separates three
levels of randomness:

* :class:`Identity` -- drawn from ``(seed, id)`` only: body proportions and gait style. Because
  the silhouette pipeline normalises every frame to the same height, absolute height is almost
  invisible downstream; the identity-carrying numbers are therefore mostly *ratios* (leg/torso,
  shoulder/hip width, head size, girth) and *kinematics* (cadence, hip and knee amplitudes, arm
  swing, lean, toe-out, left/right asymmetry).
* :class:`RecordedWalk` -- drawn from ``(seed, id, type)``: one recorded walk. Small jitter on speed,
  stride and arm swing (so two ``nm`` walks of one person are similar, not identical), plus
  the carried bag (``bg``) or the coat (``cl``) -- the covariates that must make recognition
  harder.
* the view and its noise live in :mod:`gaitcli.synth.render`.

Geometry: world metres, ``x`` = walking direction, ``y`` = the walker's left, ``z`` = up, the
ground is ``z = 0``. The body is a set of tapered capsules (limbs, neck, head, feet, shoulders)
and convex "hull" solids (torso segments between horizontal elliptical rings, the coat skirt,
the bag). Everything here is vectorised over frames: joint arrays have shape ``[T, 3]``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

FPS = 25.0
"""Frames per second of the simulated camera (CASIA-B records at 25 fps)."""

RING_POINTS = 12
"""Points per elliptical torso ring; 12 keeps the projected outline smooth at 320x240."""

TWO_PI = 2.0 * np.pi


def _normal(rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float) -> float:
    """A clipped normal draw: realistic spread without the absurd tails of a plain Gaussian."""
    return float(np.clip(rng.normal(mean, sd), lo, hi))


@dataclass(frozen=True)
class Identity:
    """Everything that makes one synthetic person recognisable; drawn from ``(seed, id)`` only.

    Lengths are metres, angles radians, ratios are relative to :attr:`height`.
    """

    height: float
    leg_ratio: float  # hip-joint height / height
    shoulder_ratio: float  # shoulder-joint height / height
    knee_ratio: float  # thigh share of the hip-to-ankle length
    arm_ratio: float  # arm length relative to the anthropometric mean
    head_scale: float
    shoulder_half: float  # half distance between the shoulder joints (m)
    hip_half: float  # half pelvis breadth (m)
    girth: float  # overall body thickness factor
    belly: float  # waist/abdomen factor
    chest: float  # chest factor
    limb_girth: float  # limb thickness factor
    foot_ratio: float  # foot length / height
    hunch: float  # forward shift of the shoulders (m): rounded upper back
    lean: float  # forward trunk lean
    head_pitch: float  # forward tilt of the neck/head
    cadence: float  # steps per minute
    hip_amp: float  # half range of hip flexion/extension
    hip_offset: float  # mean hip flexion
    knee_swing: float  # peak knee flexion in swing
    knee_stance: float  # knee flexion after heel strike
    knee_base: float  # knee flexion that never goes away
    ankle_push: float  # plantar flexion at push-off
    arm_amp: float  # shoulder swing amplitude
    arm_offset: float  # mean shoulder flexion
    elbow_base: float  # resting elbow flexion
    arm_abduct: float  # arms held away from the body
    pelvis_yaw: float  # pelvis rotation amplitude about the vertical
    sway: float  # lateral pelvis sway (m)
    toe_out: float  # foot progression angle
    adduct: float  # legs converging toward the midline (narrow step width)
    leg_asym: float  # left/right hip amplitude ratio
    arm_asym: float  # left/right arm swing ratio
    coat_length: float  # the coat this person owns: hem position as a fraction of the thigh
    coat_ease: float  # how loose it is (m)
    coat_flare: float  # extra width at the hem (m)
    sleeve_ease: float  # sleeve thickness added to the arms (m)


def draw_identity(rng: np.random.Generator) -> Identity:
    """Draw a plausible adult walker.

    Spreads are generous on purpose: after height normalisation only ratios and motion remain,
    and those must vary more between people than between two walks of one person.
    """
    h = _normal(rng, 1.70, 0.09, 1.50, 1.95)
    build = rng.normal()  # shared latent: broad shoulders tend to go with narrower hips
    girth = float(np.clip(np.exp(rng.normal(0.0, 0.13)), 0.75, 1.45))
    return Identity(
        height=h,
        leg_ratio=_normal(rng, 0.530, 0.016, 0.49, 0.57),
        shoulder_ratio=_normal(rng, 0.818, 0.008, 0.795, 0.84),
        knee_ratio=_normal(rng, 0.50, 0.015, 0.46, 0.54),
        arm_ratio=_normal(rng, 1.0, 0.035, 0.91, 1.09),
        head_scale=_normal(rng, 1.0, 0.07, 0.85, 1.18),
        shoulder_half=0.100 * h * (1 + 0.06 * build) * _normal(rng, 1.0, 0.05, 0.88, 1.12),
        hip_half=0.096 * h * (1 - 0.05 * build) * _normal(rng, 1.0, 0.05, 0.88, 1.12),
        girth=girth,
        belly=_normal(rng, 1.0, 0.10, 0.85, 1.35),
        chest=_normal(rng, 1.0, 0.06, 0.88, 1.15),
        limb_girth=girth**0.7 * _normal(rng, 1.0, 0.06, 0.88, 1.15),
        foot_ratio=_normal(rng, 0.152, 0.007, 0.135, 0.17),
        hunch=_normal(rng, 0.0, 0.012, -0.025, 0.035),
        lean=_normal(rng, 0.05, 0.03, -0.03, 0.13),
        head_pitch=_normal(rng, 0.06, 0.05, -0.06, 0.18),
        cadence=_normal(rng, 108.0, 7.0, 90.0, 128.0),
        hip_amp=_normal(rng, 0.38, 0.045, 0.26, 0.50),
        hip_offset=_normal(rng, 0.10, 0.03, 0.03, 0.17),
        knee_swing=_normal(rng, 1.02, 0.09, 0.75, 1.25),
        knee_stance=_normal(rng, 0.24, 0.06, 0.08, 0.40),
        knee_base=_normal(rng, 0.06, 0.03, 0.0, 0.14),
        ankle_push=_normal(rng, 0.32, 0.06, 0.15, 0.45),
        arm_amp=_normal(rng, 0.35, 0.12, 0.08, 0.65),
        arm_offset=_normal(rng, 0.02, 0.05, -0.08, 0.14),
        elbow_base=_normal(rng, 0.25, 0.08, 0.05, 0.50),
        arm_abduct=_normal(rng, 0.12, 0.04, 0.03, 0.25),
        pelvis_yaw=_normal(rng, 0.12, 0.04, 0.03, 0.22),
        sway=_normal(rng, 0.025, 0.008, 0.008, 0.045),
        toe_out=_normal(rng, 0.12, 0.06, -0.04, 0.28),
        adduct=_normal(rng, 0.03, 0.015, 0.0, 0.07),
        leg_asym=_normal(rng, 1.0, 0.04, 0.9, 1.1),
        arm_asym=_normal(rng, 1.0, 0.08, 0.8, 1.2),
        coat_length=float(rng.uniform(0.30, 1.05)),
        coat_ease=_normal(rng, 0.020, 0.006, 0.010, 0.035) * h,
        coat_flare=float(rng.uniform(0.0, 0.025)) * h,
        sleeve_ease=_normal(rng, 0.010, 0.003, 0.005, 0.016) * h,
    )


@dataclass(frozen=True)
class Bag:
    """A carried bag: ``backpack``, ``shoulder`` (messenger bag at the hip) or ``hand``."""

    style: str
    side: int  # +1 = the walker's left, -1 = right
    half: tuple[float, float, float]  # half extents: forward, lateral, up (m)


@dataclass(frozen=True)
class Coat:
    """A coat: looser torso, thicker sleeves and a skirt that covers part of the thighs."""

    length: float  # hem as a fraction of the thigh (1 = at the knee)
    ease: float
    flare: float
    sleeve: float


@dataclass(frozen=True)
class RecordedWalk:
    """One recorded walk of one person (one ``type-seq``), shared by all views of it."""

    cadence_factor: float
    amp_factor: float
    arm_factor: float
    lean_delta: float
    bag: Bag | None
    coat: Coat | None


BAG_STYLES = ("backpack", "shoulder", "hand")


def draw_bag(rng: np.random.Generator) -> Bag:
    """Pick a bag for one walk; the style differs between ``bg-01`` and ``bg-02`` by chance."""
    style = BAG_STYLES[int(rng.choice(3, p=[0.35, 0.40, 0.25]))]
    side = 1 if rng.random() < 0.5 else -1
    if style == "backpack":
        half = (rng.uniform(0.06, 0.10), rng.uniform(0.14, 0.17), rng.uniform(0.18, 0.24))
    elif style == "shoulder":
        half = (rng.uniform(0.13, 0.19), rng.uniform(0.04, 0.06), rng.uniform(0.11, 0.15))
    else:
        half = (rng.uniform(0.12, 0.18), rng.uniform(0.04, 0.07), rng.uniform(0.10, 0.16))
    return Bag(style=style, side=side, half=(float(half[0]), float(half[1]), float(half[2])))


def draw_walk(rng: np.random.Generator, ident: Identity, condition: str) -> RecordedWalk:
    """Per-walk jitter (small next to the spread between people) and the covariate of ``condition``."""
    bag = draw_bag(rng) if condition == "bg" else None
    coat = None
    if condition == "cl":
        coat = Coat(
            length=float(np.clip(ident.coat_length + rng.normal(0, 0.05), 0.25, 1.1)),
            ease=ident.coat_ease * _normal(rng, 1.0, 0.1, 0.8, 1.2),
            flare=ident.coat_flare,
            sleeve=ident.sleeve_ease,
        )
    return RecordedWalk(
        cadence_factor=_normal(rng, 1.0, 0.02, 0.95, 1.05),
        amp_factor=_normal(rng, 1.0, 0.03, 0.92, 1.08),
        arm_factor=_normal(rng, 1.0, 0.08, 0.8, 1.2),
        lean_delta=_normal(rng, 0.0, 0.01, -0.025, 0.025),
        bag=bag,
        coat=coat,
    )


# --------------------------------------------------------------------------- kinematics
def _bump(p: np.ndarray, centre: float, width: float) -> np.ndarray:
    """A periodic Gaussian bump on the gait cycle (``p`` in cycles): the building block of joint curves."""
    d = (p - centre + 0.5) % 1.0 - 0.5
    return np.exp(-0.5 * (d / width) ** 2)


def _leg_angles(ident: Identity, amp: float, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hip flexion, knee flexion and ankle dorsiflexion over the cycle (heel strike at ``p = 0``).

    The shapes follow clinical gait curves: hip flexed at heel strike and extended before
    toe-off; a small knee bend after heel strike and a large one in swing; the ankle plantar-
    flexes at push-off (~62 % of the cycle).
    """
    hip = ident.hip_offset + amp * np.cos(TWO_PI * (p - 0.93))
    knee = (
        ident.knee_base + ident.knee_stance * _bump(p, 0.15, 0.07) + ident.knee_swing * _bump(p, 0.72, 0.10)
    )
    ankle = 0.14 * _bump(p, 0.42, 0.12) - ident.ankle_push * _bump(p, 0.62, 0.06)
    return hip, knee, ankle


@dataclass
class Skeleton:
    """Joint positions, ``[T, 3]`` each, relative to the pelvis track position (``x`` = 0 at the pelvis)."""

    pelvis: np.ndarray
    trunk_axis: np.ndarray
    pelvis_yaw: np.ndarray
    thorax_yaw: np.ndarray
    hips: tuple[np.ndarray, np.ndarray]  # (right, left)
    knees: tuple[np.ndarray, np.ndarray]
    ankles: tuple[np.ndarray, np.ndarray]
    heels: tuple[np.ndarray, np.ndarray]
    toes: tuple[np.ndarray, np.ndarray]
    shoulders: tuple[np.ndarray, np.ndarray]
    elbows: tuple[np.ndarray, np.ndarray]
    hands: tuple[np.ndarray, np.ndarray]
    shoulder_centre: np.ndarray
    head_centre: np.ndarray
    head_axis: np.ndarray


@dataclass(frozen=True)
class Dimensions:
    """Segment lengths and radii (metres) derived once from an :class:`Identity`."""

    ankle_height: float
    thigh: float
    shank: float
    foot: float
    hip_joint_half: float
    torso: float
    neck: float
    head_radius: float
    head_half: float
    upper_arm: float
    forearm: float
    hand: float
    heel_radius: float
    toe_radius: float


def dimensions(ident: Identity) -> Dimensions:
    """Anthropometric segment lengths (Drillis-Contini style fractions of height, per-person ratios)."""
    h = ident.height
    ankle_h = 0.039 * h
    leg = ident.leg_ratio * h - ankle_h
    head_h = 0.13 * h * ident.head_scale
    shoulder_h = ident.shoulder_ratio * h
    return Dimensions(
        ankle_height=ankle_h,
        thigh=ident.knee_ratio * leg,
        shank=(1 - ident.knee_ratio) * leg,
        foot=ident.foot_ratio * h,
        hip_joint_half=0.55 * ident.hip_half,
        torso=shoulder_h - ident.leg_ratio * h,
        neck=max(0.02 * h, h - head_h - shoulder_h),
        head_radius=0.046 * h * ident.head_scale,
        head_half=0.019 * h * ident.head_scale,
        upper_arm=0.186 * h * ident.arm_ratio,
        forearm=0.146 * h * ident.arm_ratio,
        hand=0.108 * h * ident.arm_ratio,
        heel_radius=0.020 * h * ident.limb_girth,
        toe_radius=0.014 * h * ident.limb_girth,
    )


def _yaw_frame(yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward and left unit vectors ``[T, 3]`` of a frame rotated by ``yaw`` about the vertical."""
    zeros = np.zeros_like(yaw)
    fwd = np.stack([np.cos(yaw), np.sin(yaw), zeros], axis=-1)
    left = np.stack([-np.sin(yaw), np.cos(yaw), zeros], axis=-1)
    return fwd, left


def _arm_factors(ident: Identity, walk: RecordedWalk) -> tuple[list[float], list[float], list[float]]:
    """Swing amplitude, abduction and elbow bend per arm (right, left); bags restrain the carrying arm."""
    amp = ident.arm_amp * walk.arm_factor
    swing = [amp, amp * ident.arm_asym]
    abduct = [ident.arm_abduct, ident.arm_abduct]
    elbow = [ident.elbow_base, ident.elbow_base]
    bag = walk.bag
    if walk.coat is not None:
        swing = [s * 0.9 for s in swing]
        abduct = [a + 0.03 for a in abduct]
    if bag is not None:
        i = 0 if bag.side < 0 else 1
        if bag.style == "shoulder":
            swing[i] *= 0.45
            elbow[i] += 0.35
        elif bag.style == "hand":
            swing[i] *= 0.3
            abduct[i] += 0.12
            elbow[i] = 0.05
        else:
            swing = [s * 0.85 for s in swing]
    return swing, abduct, elbow


def _leg(
    ident: Identity, dims: Dimensions, hip: np.ndarray, p: np.ndarray, amp: float, side: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Knee, ankle, heel and toe of one leg (``side`` +1 left, -1 right) hanging from ``hip``."""
    h_ang, k_ang, a_ang = _leg_angles(ident, amp, p)
    cg, sg = np.cos(ident.adduct), np.sin(ident.adduct)

    def direction(angle: np.ndarray) -> np.ndarray:
        return np.stack([np.sin(angle) * cg, np.full_like(angle, -side * sg), -np.cos(angle) * cg], axis=-1)

    knee = hip + dims.thigh * direction(h_ang)
    shank = h_ang - k_ang
    ankle = knee + dims.shank * direction(shank)
    fa = shank + a_ang
    ct, st = np.cos(ident.toe_out), np.sin(ident.toe_out)
    fdir = np.stack([np.cos(fa) * ct, side * np.cos(fa) * st, np.sin(fa)], axis=-1)
    fup = np.stack([-np.sin(fa) * ct, -side * np.sin(fa) * st, np.cos(fa)], axis=-1)
    heel = ankle - 0.20 * dims.foot * fdir - (dims.ankle_height - dims.heel_radius) * fup
    toe = ankle + 0.78 * dims.foot * fdir - (dims.ankle_height - dims.toe_radius) * fup
    return knee, ankle, heel, toe


def _legs(
    ident: Identity, walk: RecordedWalk, dims: Dimensions, pelvis: np.ndarray, p: np.ndarray
) -> tuple[list[np.ndarray], list[tuple[np.ndarray, ...]], np.ndarray]:
    """Both legs for a pelvis track; returns hip joints, (knee, ankle, heel, toe) per leg, pelvis yaw."""
    yaw = ident.pelvis_yaw * np.cos(TWO_PI * p)
    _, left = _yaw_frame(yaw)
    amp = ident.hip_amp * walk.amp_factor
    hips: list[np.ndarray] = []
    legs: list[tuple[np.ndarray, ...]] = []
    for side, phase, a in ((-1, p, amp), (1, p + 0.5, amp * ident.leg_asym)):
        hip = pelvis + side * dims.hip_joint_half * left
        hips.append(hip)
        legs.append(_leg(ident, dims, hip, phase % 1.0, a, side))
    return hips, legs, yaw


def walking_speed(ident: Identity, walk: RecordedWalk) -> float:
    """Forward speed (m/s) at which the stance foot does not slide, given cadence and leg swing.

    Measured on the kinematics themselves: how far the right ankle travels backward relative to
    the pelvis during mid-stance, divided by the time that takes.
    """
    dims = dimensions(ident)
    p = np.array([0.08, 0.42])
    pelvis = np.zeros((2, 3))
    _, legs, _ = _legs(ident, walk, dims, pelvis, p)
    ankle = legs[0][1]
    cycle_s = 120.0 / (ident.cadence * walk.cadence_factor)
    return float((ankle[0, 0] - ankle[1, 0]) / ((p[1] - p[0]) * cycle_s))


Joints = list[np.ndarray]


def _arms(ident: Identity, walk: RecordedWalk, dims: Dimensions, sc: np.ndarray, tleft: np.ndarray,
          p: np.ndarray) -> tuple[Joints, Joints, Joints]:
    """Shoulders, elbows and hands of both arms, hanging from the shoulder centre ``sc``."""
    t = p.shape[0]
    swing, abduct, elbow_base = _arm_factors(ident, walk)
    shoulders: Joints = []
    elbows: Joints = []
    hands: Joints = []
    for i, (side, phase) in enumerate(((-1, p), (1, p + 0.5))):
        sh = sc + side * ident.shoulder_half * tleft
        sigma = ident.arm_offset - swing[i] * np.cos(TWO_PI * (phase - 0.93))
        bend = elbow_base[i] + 0.5 * np.clip(sigma - ident.arm_offset + swing[i], 0.0, None)
        ca, sa = np.cos(abduct[i]), np.sin(abduct[i])
        up_dir = np.stack([np.sin(sigma) * ca, np.full(t, side * sa), -np.cos(sigma) * ca], axis=-1)
        lo = sigma + bend
        lo_dir = np.stack([np.sin(lo) * ca, np.full(t, side * sa), -np.cos(lo) * ca], axis=-1)
        elbow = sh + dims.upper_arm * up_dir
        shoulders.append(sh)
        elbows.append(elbow)
        hands.append(elbow + (dims.forearm + 0.45 * dims.hand) * lo_dir)
    return shoulders, elbows, hands


def skeleton(ident: Identity, walk: RecordedWalk, p: np.ndarray) -> Skeleton:
    """Pose every joint at gait phases ``p`` (cycles; right heel strike at integers).

    The pelvis height is not animated directly: it is whatever keeps the lowest point of either
    foot on the ground, which yields the natural vertical bounce (lowest at double support).
    """
    dims = dimensions(ident)
    t = p.shape[0]
    pelvis = np.zeros((t, 3))
    pelvis[:, 1] = -ident.sway * np.sin(TWO_PI * p)
    hips, legs, pyaw = _legs(ident, walk, dims, pelvis, p)
    lowest = np.min(
        np.stack(
            [legs[i][2][:, 2] - dims.heel_radius for i in (0, 1)]
            + [legs[i][3][:, 2] - dims.toe_radius for i in (0, 1)]
        ),
        axis=0,
    )
    lift = np.array([0.0, 0.0, 1.0]) * (-lowest)[:, None]
    pelvis = pelvis + lift
    hips = [h + lift for h in hips]
    legs = [tuple(j + lift for j in leg) for leg in legs]

    lean = ident.lean + walk.lean_delta + 0.015 * np.cos(2 * TWO_PI * p)
    if walk.bag is not None and walk.bag.style == "backpack":
        lean = lean + 0.05
    zeros = np.zeros(t)
    axis = np.stack([np.sin(lean), zeros, np.cos(lean)], axis=-1)
    tyaw = -0.6 * ident.pelvis_yaw * np.cos(TWO_PI * p)
    tfwd, tleft = _yaw_frame(tyaw)
    sc = pelvis + dims.torso * axis + ident.hunch * tfwd
    head_lean = lean + ident.head_pitch
    head_axis = np.stack([np.sin(head_lean), zeros, np.cos(head_lean)], axis=-1)
    head_centre = sc + (dims.neck + dims.head_half + dims.head_radius) * head_axis

    shoulders, elbows, hands = _arms(ident, walk, dims, sc, tleft, p)
    return Skeleton(
        pelvis=pelvis,
        trunk_axis=axis,
        pelvis_yaw=pyaw,
        thorax_yaw=tyaw,
        hips=(hips[0], hips[1]),
        knees=(legs[0][0], legs[1][0]),
        ankles=(legs[0][1], legs[1][1]),
        heels=(legs[0][2], legs[1][2]),
        toes=(legs[0][3], legs[1][3]),
        shoulders=(shoulders[0], shoulders[1]),
        elbows=(elbows[0], elbows[1]),
        hands=(hands[0], hands[1]),
        shoulder_centre=sc,
        head_centre=head_centre,
        head_axis=head_axis,
    )


# --------------------------------------------------------------------------- body surface
@dataclass
class Shapes:
    """The solids of one walker over ``T`` frames, in world metres.

    ``cap_a``/``cap_b`` ``[T, K, 3]`` are capsule end points with radii ``rad_a``/``rad_b``
    ``[K]``; ``limb`` ``[K]`` marks arms and legs (where the noise model may cut a chunk out).
    ``hulls`` are point clouds ``[T, Q, 3]`` whose projected convex hull is filled.
    """

    cap_a: np.ndarray
    cap_b: np.ndarray
    rad_a: np.ndarray
    rad_b: np.ndarray
    limb: np.ndarray
    hulls: list[np.ndarray]
    feet: tuple[int, int]  # capsule indices of the right and left foot


def _ring(
    centre: np.ndarray, fwd: np.ndarray, left: np.ndarray, half_depth: float, half_width: float
) -> np.ndarray:
    """Points ``[T, RING_POINTS, 3]`` on a horizontal ellipse around ``centre``."""
    ang = np.linspace(0.0, TWO_PI, RING_POINTS, endpoint=False)
    cos = (half_depth * np.cos(ang))[None, :, None]
    sin = (half_width * np.sin(ang))[None, :, None]
    ring: np.ndarray = centre[:, None, :] + cos * fwd[:, None, :] + sin * left[:, None, :]
    return ring


def _torso_hulls(ident: Identity, walk: RecordedWalk, dims: Dimensions, sk: Skeleton) -> list[np.ndarray]:
    """Torso as four convex segments between five rings (crotch, hip, waist, chest, shoulder top).

    A coat adds ease to every ring and a skirt from the hip ring to a hem that spans both thighs.
    """
    h = ident.height
    g = ident.girth
    ease = walk.coat.ease if walk.coat else 0.0
    pf, pl = _yaw_frame(sk.pelvis_yaw)
    tf, tl = _yaw_frame(sk.thorax_yaw)
    wf, wl = _yaw_frame(0.5 * (sk.pelvis_yaw + sk.thorax_yaw))
    ax = sk.trunk_axis
    torso = dims.torso
    hip_depth = 0.060 * h * g * np.sqrt(ident.belly)
    up = np.array([0.0, 0.0, 1.0])
    rings = [
        _ring(sk.pelvis - 0.05 * h * up, pf, pl, 0.85 * hip_depth + ease, 0.85 * ident.hip_half + ease),
        _ring(sk.pelvis, pf, pl, hip_depth + ease, ident.hip_half + ease),
        _ring(
            sk.pelvis + 0.35 * torso * ax + 0.01 * h * (ident.belly - 1) * wf,
            wf,
            wl,
            0.058 * h * g * ident.belly + ease,
            0.083 * h * g * ident.belly**0.5 + ease,
        ),
        _ring(
            sk.pelvis + 0.72 * torso * ax + 0.5 * ident.hunch * tf,
            tf,
            tl,
            0.063 * h * g * ident.chest + ease,
            0.093 * h * g * ident.chest + ease,
        ),
        _ring(
            sk.shoulder_centre + 0.02 * h * ax, tf, tl, 0.045 * h * g + ease, 0.9 * ident.shoulder_half + ease
        ),
    ]
    hulls = [np.concatenate([rings[i], rings[i + 1]], axis=1) for i in range(4)]
    if walk.coat is not None:
        hulls.append(_coat_skirt(ident, walk.coat, dims, sk, rings[1], hip_depth))
    return hulls


def _coat_skirt(
    ident: Identity, coat: Coat, dims: Dimensions, sk: Skeleton, hip_ring: np.ndarray, hip_depth: float
) -> np.ndarray:
    """The part of a coat below the hips: a convex solid from the hip ring to a hem around both thighs."""
    frac = min(coat.length, 1.0)
    below = coat.length - frac  # a hem past the knee continues down the shank
    pts = []
    for i in (0, 1):
        knee_pt = sk.hips[i] + frac * (sk.knees[i] - sk.hips[i])
        pts.append(knee_pt + below * (sk.ankles[i] - sk.knees[i]))
    centre = 0.5 * (pts[0] + pts[1])
    spread = np.abs(pts[0][:, 0] - pts[1][:, 0])
    thigh_r = 0.05 * ident.height * ident.limb_girth * (1 - 0.4 * frac)
    depth = np.maximum(hip_depth + coat.ease, 0.5 * spread + thigh_r + coat.ease)
    width = ident.hip_half + coat.ease + coat.flare
    ang = np.linspace(0.0, TWO_PI, RING_POINTS, endpoint=False)
    hem = np.empty((centre.shape[0], RING_POINTS, 3))
    hem[..., 0] = centre[:, None, 0] + depth[:, None] * np.cos(ang)[None, :]
    hem[..., 1] = centre[:, None, 1] + width * np.sin(ang)[None, :]
    hem[..., 2] = centre[:, None, 2]
    return np.concatenate([hip_ring, hem], axis=1)


def _bag_hull(ident: Identity, dims: Dimensions, bag: Bag, sk: Skeleton, p: np.ndarray) -> list[np.ndarray]:
    """The bag as a box (8 corners ``[T, 8, 3]``) placed by its style; a shoulder bag also gets a strap."""
    h = ident.height
    t = p.shape[0]
    hf, hl, hu = bag.half
    up = np.tile(np.array([0.0, 0.0, 1.0]), (t, 1))
    if bag.style == "backpack":
        fwd, left = _yaw_frame(sk.thorax_yaw)
        back = 0.063 * h * ident.girth * ident.chest
        centre = sk.pelvis + 0.62 * dims.torso * sk.trunk_axis - (back + hf) * fwd
        up = sk.trunk_axis
    elif bag.style == "shoulder":
        fwd, left = _yaw_frame(sk.pelvis_yaw)
        swing = 0.03 * np.sin(TWO_PI * p)
        centre = (
            sk.pelvis
            + bag.side * (ident.hip_half + hl + 0.01) * left
            + (swing[:, None] - 0.02) * fwd
            + 0.02 * up
        )
    else:
        fwd, left = _yaw_frame(np.zeros(t))
        hand = sk.hands[0 if bag.side < 0 else 1]
        centre = hand - (hu + 0.04) * up
    signs = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], dtype=float)
    corners = (
        centre[:, None, :]
        + (signs[None, :, 0:1] * hf) * fwd[:, None, :]
        + (signs[None, :, 1:2] * hl) * left[:, None, :]
        + (signs[None, :, 2:3] * hu) * up[:, None, :]
    )
    return [corners]


def body_shapes(ident: Identity, walk: RecordedWalk, sk: Skeleton, p: np.ndarray) -> Shapes:
    """Dress a skeleton in solids: capsules for limbs/head/neck/feet, hulls for torso, coat and bag."""
    dims = dimensions(ident)
    h = ident.height
    lg = ident.limb_girth
    sleeve = walk.coat.sleeve if walk.coat else 0.0
    collar = 0.5 * walk.coat.ease if walk.coat else 0.0
    caps: list[tuple[np.ndarray, np.ndarray, float, float, bool]] = []
    feet = []
    for i in (0, 1):
        feet.append(len(caps) + 2)
        caps += [
            (sk.hips[i], sk.knees[i], 0.050 * h * lg, 0.030 * h * lg, True),
            (sk.knees[i], sk.ankles[i], 0.031 * h * lg, 0.019 * h * lg, True),
            (sk.heels[i], sk.toes[i], dims.heel_radius, dims.toe_radius, False),
            (sk.shoulders[i], sk.elbows[i], 0.027 * h * lg + sleeve, 0.021 * h * lg + sleeve, True),
            (sk.elbows[i], sk.hands[i], 0.020 * h * lg + sleeve, 0.017 * h * lg, True),
        ]
    neck_top = sk.head_centre - dims.head_half * sk.head_axis
    head_top = sk.head_centre + dims.head_half * sk.head_axis
    caps += [
        (
            sk.shoulders[0],
            sk.shoulders[1],
            0.032 * h * ident.girth + sleeve,
            0.032 * h * ident.girth + sleeve,
            False,
        ),
        (sk.shoulder_centre, neck_top, 0.030 * h * ident.girth**0.5 + collar, 0.028 * h + collar, False),
        (neck_top, head_top, dims.head_radius, dims.head_radius, False),
    ]
    hulls = _torso_hulls(ident, walk, dims, sk)
    if walk.bag is not None:
        box = _bag_hull(ident, dims, walk.bag, sk, p)
        hulls += box
        if walk.bag.style == "shoulder":
            # The strap runs from the opposite shoulder to the top of the bag, across the chest.
            other = sk.shoulders[1 if walk.bag.side < 0 else 0]
            caps.append((other, box[0][:, 1::2].mean(axis=1), 0.012, 0.012, False))
    return Shapes(
        cap_a=np.stack([c[0] for c in caps], axis=1),
        cap_b=np.stack([c[1] for c in caps], axis=1),
        rad_a=np.array([c[2] for c in caps]),
        rad_b=np.array([c[3] for c in caps]),
        limb=np.array([c[4] for c in caps]),
        hulls=hulls,
        feet=(feet[0], feet[1]),
    )


def with_offset(shapes: Shapes, offset: np.ndarray) -> Shapes:
    """Move all solids by a per-frame translation ``[T, 3]`` (the walker's place on the track)."""
    return replace(
        shapes,
        cap_a=shapes.cap_a + offset[:, None, :],
        cap_b=shapes.cap_b + offset[:, None, :],
        hulls=[hull + offset[:, None, :] for hull in shapes.hulls],
    )
