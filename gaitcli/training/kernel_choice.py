"""Kernel choice for training on a CPU (docs/train.md, "Kernel choice").

With ``trainer_cfg.kernel_choice: auto`` a run on the CPU measures, before its first iteration,
the training step of its own model at its own batch shape in each candidate setting — fp32 or
bf16 autocast, the contiguous or the channels-last 3-D memory format — and trains with the
fastest. bf16 is a candidate only on a CPU with bf16 hardware (AVX-512-BF16 or AMX; elsewhere
oneDNN emulates it, several times slower than fp32) and is taken only when it beats the best fp32
setting by :data:`BF16_MARGIN` (it rounds activations: it must pay for that); channels-last only
for the 3-D networks and when it beats the contiguous layout by :data:`LAYOUT_MARGIN`. The
candidates run interleaved (a busy machine slows them alike) on copies of the model with
synthetic silhouettes, and the random state is restored afterwards, so a seeded run trains the
same batches with the same initial weights whatever was measured. The result is cached per CPU
model, bf16 hardware, thread count, torch version, model settings and batch shape
(:class:`gaitcli.runtime.cpu.MeasurementCache`): the next run on such a machine reuses it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace

import torch

from gaitcli.config_types import GaitConfig
from gaitcli.data.transforms import build_transform
from gaitcli.models.base import GaitModel
from gaitcli.runtime.cpu import CpuIdentity, MeasurementCache, cpu_identity
from gaitcli.training.losses import LossAggregator

KIND = "training-kernels"
"""The measurement cache's section for these choices."""
BF16_MARGIN = 1.15
"""bf16 is taken when the best fp32 step takes at least this many times the best bf16 step."""
LAYOUT_MARGIN = 1.03
"""Channels-last is taken when the contiguous step takes at least this many times its step."""
ROUNDS = 3
"""Timed rounds (each candidate once per round, after one untimed warm-up round)."""
MAX_SECONDS = 40.0
"""Stop adding rounds once the measurement has run this long (at least one timed round)."""
DEFAULT_FRAMES = 30
"""Frames per probe sequence when the sampler has no fixed frame count."""


@dataclass(frozen=True)
class Candidate:
    """One setting the choice measures."""

    bf16: bool
    """bf16 autocast."""
    channels_last: bool
    """Channels-last 3-D weights and inputs."""

    @property
    def label(self) -> str:
        return ("bf16" if self.bf16 else "fp32") + ("+channels-last" if self.channels_last else "")


@dataclass(frozen=True)
class KernelChoice:
    """What a run trains with, and how that was decided."""

    bf16: bool
    """bf16 autocast."""
    channels_last: bool
    """Channels-last 3-D memory format."""
    seconds: Mapping[str, float]
    """Median seconds per training step of every measured candidate (empty when not measured)."""
    cpu: str
    """The CPU in words."""
    source: str
    """``measured in 6.1 s``, ``cached (measured 2026-12-06)`` or ``config``."""
    reason: str
    """Why this candidate: one clause."""
    note: str | None = None
    """Something the user should know (e.g. the cache could not be written), or None."""

    @property
    def label(self) -> str:
        return Candidate(self.bf16, self.channels_last).label

    def log_line(self) -> str:
        """One line for train.log."""
        times = ", ".join(f"{k} {v:.3f} s" for k, v in self.seconds.items())
        measured = f"; seconds per step: {times}" if times else ""
        return f"kernel choice: {self.label} on {self.cpu} ({self.source}): {self.reason}{measured}"

    def record(self) -> dict[str, object]:
        """What the cache stores."""
        return {
            "bf16": self.bf16,
            "channels_last": self.channels_last,
            "seconds": dict(self.seconds),
            "reason": self.reason,
        }


def candidates(identity: CpuIdentity, supports_channels_last: bool) -> list[Candidate]:
    """The settings worth measuring on this CPU for this model."""
    precisions = [False, True] if identity.native_bf16 else [False]
    layouts = [False, True] if supports_channels_last else [False]
    return [Candidate(bf16, cl) for bf16 in precisions for cl in layouts]


def decide(seconds: Mapping[str, float], identity: CpuIdentity) -> tuple[Candidate, str]:
    """The chosen candidate from the measured medians (keys are :attr:`Candidate.label`), and why."""
    measured = {c: seconds[c.label] for c in _all() if c.label in seconds}
    fp32 = {c: t for c, t in measured.items() if not c.bf16}
    bf16 = {c: t for c, t in measured.items() if c.bf16}
    best32 = min(fp32, key=fp32.__getitem__)
    if not bf16:
        why = ("bf16 is emulated on this CPU (no AVX-512-BF16 or AMX)" if not identity.native_bf16
               else "bf16 not measured")
        precision, pool = False, fp32
    else:
        best16 = min(bf16, key=bf16.__getitem__)
        ratio = fp32[best32] / bf16[best16]
        if ratio >= BF16_MARGIN:
            why, precision, pool = f"bf16 is {ratio:.2f}x the fp32 step", True, bf16
        else:
            why = f"bf16 is only {ratio:.2f}x the fp32 step (under {BF16_MARGIN}x)"
            precision, pool = False, fp32
    plain = pool.get(Candidate(precision, False))
    last = pool.get(Candidate(precision, True))
    if plain is None or last is None:
        return Candidate(precision, last is not None and plain is None), why
    gain = plain / last
    if gain >= LAYOUT_MARGIN:
        return Candidate(precision, True), f"{why}; channels-last {gain:.2f}x the contiguous layout"
    return Candidate(precision, False), f"{why}; channels-last {gain:.2f}x (under {LAYOUT_MARGIN}x)"


def _all() -> list[Candidate]:
    return [Candidate(b, c) for b in (False, True) for c in (False, True)]


def probe_shape(cfg: GaitConfig, frame_size: str) -> tuple[int, int, int, int]:
    """``[P*K, frames, height, width]`` of one training batch after the training transforms."""
    sampler = cfg.trainer.sampler
    frames = sampler.frames_num_fixed if sampler.sample_type.startswith("fixed") else 0
    frames = frames or min(sampler.frames_num_max or DEFAULT_FRAMES, DEFAULT_FRAMES)
    try:
        height, width = (int(v) for v in frame_size.split("x"))
    except ValueError:
        height, width = 64, 64
    transform = build_transform(list(cfg.trainer.transform), training=True)
    out_h, out_w = transform.out_size(height, width)
    return sampler.sequences_per_batch, frames, out_h, out_w


def cache_key(identity: CpuIdentity, cfg: GaitConfig, shape: Sequence[int]) -> str:
    """The CPU, the model's settings (layout and compile aside) and the batch shape."""
    model = {k: v for k, v in cfg.model.as_mapping().items() if k not in ("channels_last", "compile")}
    digest = hashlib.sha256(json.dumps(model, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{identity.key()} | {cfg.model.name} {digest} | batch {'x'.join(map(str, shape))}"


@contextmanager
def _kept_random_state() -> Iterator[None]:
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


Step = Callable[[], None]


def _steps(
    model: GaitModel, losses: LossAggregator, shape: Sequence[int], class_num: int,
    settings: Sequence[Candidate], batch_k: int,
) -> dict[Candidate, Step]:
    """One training step (forward, losses, backward; no optimiser step: it is the same for every
    candidate) per candidate, each on its own copy of ``model``."""
    n, s, h, w = shape
    gen = torch.Generator().manual_seed(0)
    sils = (torch.rand(n, s, h, w, generator=gen) > 0.5).float()
    labels = (torch.arange(n) // max(1, batch_k)) % max(1, class_num)
    copies: dict[bool, GaitModel] = {}
    for layout in sorted({c.channels_last for c in settings}):
        twin = copy.deepcopy(model)
        twin.set_channels_last(layout)
        twin.train()
        copies[layout] = twin

    def make(candidate: Candidate) -> Step:
        net = copies[candidate.channels_last]

        def step() -> None:
            net.zero_grad(set_to_none=True)
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if candidate.bf16 else nullcontext()
            with ctx:
                out = net(sils)
            total, _ = losses(out, labels)
            total.backward()

        return step

    return {c: make(c) for c in settings}


def measure(steps: Mapping[Candidate, Step], rounds: int = ROUNDS,
            max_seconds: float = MAX_SECONDS) -> dict[str, float]:
    """Median seconds per step of each candidate, interleaved round by round."""
    start = time.perf_counter()
    for step in steps.values():  # warm-up: oneDNN builds its primitives on the first call
        step()
    times: dict[Candidate, list[float]] = {c: [] for c in steps}
    for done in range(rounds):
        if done and time.perf_counter() - start > max_seconds:
            break
        for candidate, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[candidate].append(time.perf_counter() - t0)
    return {c.label: round(statistics.median(v), 4) for c, v in times.items()}


def choose_kernels(
    cfg: GaitConfig,
    model: GaitModel,
    frame_size: str,
    *,
    cache: MeasurementCache | None = None,
    identity: CpuIdentity | None = None,
    rounds: int = ROUNDS,
) -> KernelChoice:
    """Measure (or recall) the fastest setting for training ``model`` under ``cfg`` on this CPU.
    ``model`` is not changed (copies are measured)."""
    identity = identity or cpu_identity()
    cache = cache if cache is not None else MeasurementCache()
    shape = probe_shape(cfg, frame_size)
    key = cache_key(identity, cfg, shape)
    settings = candidates(identity, model.supports_channels_last)
    stored = cache.get(KIND, key)
    if stored is not None:
        recorded = stored.get("seconds")
        times = ({str(k): float(v) for k, v in recorded.items() if isinstance(v, (int, float))}
                 if isinstance(recorded, dict) else {})
        bf16, layout = stored.get("bf16"), stored.get("channels_last")
        if isinstance(bf16, bool) and isinstance(layout, bool) and Candidate(bf16, layout) in settings:
            return KernelChoice(bf16, layout, times, identity.describe(),
                                f"cached {stored.get('measured', '')} in {cache.path}".replace("  ", " "),
                                str(stored.get("reason", "")))
    losses = LossAggregator(cfg.losses)
    batch_k = cfg.trainer.sampler.batch_size[1]
    began = time.perf_counter()
    with _kept_random_state():
        steps = _steps(model, losses, shape, cfg.model.settings.class_num, settings, batch_k)
        seconds = measure(steps, rounds)
    del steps
    chosen, reason = decide(seconds, identity)
    choice = KernelChoice(chosen.bf16, chosen.channels_last, seconds, identity.describe(),
                          f"measured in {time.perf_counter() - began:.1f} s", reason)
    why_not = cache.put(KIND, key, choice.record())  # type: ignore[arg-type]
    if why_not is not None:
        choice = replace(choice, note=f"note: the kernel choice is not cached: {why_not}")
    return choice


def config_choice(cfg: GaitConfig, device: torch.device) -> KernelChoice:
    """The config's own settings (``kernel_choice: config``, or any device but the CPU)."""
    where = ("config" if cfg.trainer.kernel_choice == "config"
             else f"config: measured on a CPU only, this is {device.type}")
    return KernelChoice(cfg.trainer.enable_bfloat16, bool(cfg.model.settings.channels_last), {}, device.type,
                        where, "trainer_cfg.enable_bfloat16 and model_cfg.channels_last as written")
