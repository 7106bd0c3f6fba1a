"""The arithmetic of feature extraction: the ``precision`` option (fp32, bf16, auto) of ``gait eval``,
``gait embed`` and ``gait identify`` (docs/eval.md, "Precision").

bf16 runs the network under bfloat16 autocast (weights and activations rounded to 8 bits of
mantissa inside the convolutions; embeddings come out in float32). On a CPU with bf16 hardware
(AVX-512-BF16 or AMX) that is about twice as fast; without it oneDNN emulates bf16 and it is
slower than fp32. ``auto`` takes bf16 exactly where it pays: on a CPU with bf16 hardware. What
it costs in accuracy was measured on real data (docs/eval.md, "Precision").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gaitcli.errors import GaitError, option
from gaitcli.runtime.cpu import cpu_identity

PRECISIONS = ("fp32", "bf16", "auto")
"""The values of the ``precision`` option."""


@dataclass(frozen=True)
class Precision:
    """What extraction runs in, and why."""

    bf16: bool
    """bf16 autocast."""
    reason: str
    """One clause: asked for, or what ``auto`` found."""

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def describe(self) -> str:
        return f"{self.name} ({self.reason})"


def resolve_precision(requested: str | None, device: torch.device | str) -> Precision:
    """``requested`` (None = ``auto``) on ``device``."""
    value = (requested or "auto").lower()
    if value not in PRECISIONS:
        raise GaitError(f"{option('precision', requested)}: give fp32, bf16 or auto")
    dev = torch.device(device)
    if value == "fp32":
        return Precision(False, "asked for")
    if value == "bf16":
        if dev.type == "cpu" and not cpu_identity().native_bf16:
            return Precision(True, "asked for; emulated on this CPU (no AVX-512-BF16 or AMX): "
                                   "slower than fp32")
        return Precision(True, "asked for")
    if dev.type != "cpu":
        return Precision(False, f"auto: fp32 on {dev.type} (evaluator_cfg.enable_float16 gives fp16 there)")
    cpu = cpu_identity()
    if cpu.native_bf16:
        return Precision(True, f"auto: this CPU has {cpu.isa}")
    return Precision(False, "auto: this CPU has no bf16 hardware")
