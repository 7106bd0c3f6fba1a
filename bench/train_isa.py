"""The training step per instruction set: gaitcli's candidate kernels against the reference loop,
in one run on the machine it runs on, and what ``trainer_cfg.kernel_choice: auto`` picks. Prints JSON.

    python bench/train_isa.py [--shapes recipe|real] [--rounds 5]

One training step is forward, losses (batch-all triplet + cross-entropy), backward and the Adam
step, on synthetic binary silhouettes:

* ``reference``: the reference loop's arithmetic — the straightforward model
  (``gaitcli/models/straightforward.py``: the local convolutions strip by strip, GeM per bin, one
  matrix product per part), the masked ``[p, n, n, n]`` triplet cube, fp32, contiguous tensors.
* ``fp32``, ``fp32+channels-last``, ``bf16``, ``bf16+channels-last``: gaitcli's model and losses
  in each setting the kernel choice measures (bf16 only on a CPU with AVX-512-BF16 or AMX).
* ``auto``: what :func:`gaitcli.training.kernel_choice.choose_kernels` picks here (measured with
  a private cache, so the figure is this run's own).

Shapes: ``recipe`` is ``configs/casia-b-cpu.yaml`` (MetaGait reference [16, 32, 64], bin_num [32],
P×K 8×4, 20 frames, 32×22 after the transform); ``real`` is 64×44 frames at widths [8, 16, 32]
(bench/train.py --real-shapes). The variants run interleaved round by round (a busy machine
slows them alike); medians are reported, with the ratio against the reference and the recipe's
iterations per hour at that step time (the loop adds data loading and logging on top). The sgemm
and bf16 matmul peaks of the same run are included.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peak import measure_peak  # noqa: E402

from gaitcli.config import load_config  # noqa: E402
from gaitcli.models.straightforward import straightforward_forward  # noqa: E402
from gaitcli.runtime.cpu import MeasurementCache, cpu_identity  # noqa: E402
from gaitcli.training.kernel_choice import Candidate, candidates, choose_kernels  # noqa: E402
from gaitcli.training.losses import LossAggregator, dense_triplet_terms, pairwise_distance  # noqa: E402

SHAPES = {
    "recipe": {"overrides": [], "frames": 20, "size": (32, 22)},
    "real": {"overrides": ["model_cfg.channels=[8, 16, 32]", "model_cfg.bin_num=[64]",
                           "trainer_cfg.transform=[{type: BaseSilCuttingTransform}]"],
             "frames": 20, "size": (64, 44)},
}


def reference_loss(out: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """Batch-all triplet over the dense cube (margin 0.2) + cross-entropy (scale 16, smoothing 0.1)."""
    feats = out["embeddings"].float().permute(2, 0, 1)  # [p, n, c]
    dist = pairwise_distance(feats, feats)
    terms = dense_triplet_terms(dist, labels.unsqueeze(0) == labels.unsqueeze(1))
    num = (terms != 0).sum(-1)
    triplet = (terms.sum(-1) / (num + 1e-9)).mean()
    logits = out["logits"].float()
    n, c, p = logits.shape[0], logits.shape[-1], logits.shape[1]
    ce = F.cross_entropy(16 * logits.reshape(n * p, c), labels.repeat_interleave(p), label_smoothing=0.1)
    return triplet + ce


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shapes", choices=sorted(SHAPES), default="recipe")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    shape = SHAPES[args.shapes]
    cfg = load_config("casia-b-cpu", ["model_cfg.channels_last=false", *shape["overrides"]])
    from gaitcli.build import build_model

    torch.manual_seed(0)
    base = build_model(cfg)
    p, k = cfg.trainer.sampler.batch_size
    n, s, (h, w) = p * k, shape["frames"], shape["size"]
    gen = torch.Generator().manual_seed(0)
    sils = (torch.rand(n, s, h, w, generator=gen) > 0.5).float()
    labels = torch.arange(n) // k
    identity = cpu_identity()
    peak = measure_peak("cpu")

    def make(candidate: Candidate | None) -> Callable[[], None]:
        model = copy.deepcopy(base)
        if candidate is not None and candidate.channels_last:
            model.set_channels_last(True)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        losses = LossAggregator(cfg.losses)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            if candidate is None:
                loss = reference_loss(straightforward_forward(model, sils), labels)
            else:
                ctx = torch.autocast("cpu", dtype=torch.bfloat16) if candidate.bf16 else nullcontext()
                with ctx:
                    out = model(sils)
                loss, _ = losses(out, labels)
            loss.backward()
            opt.step()

        return step

    variants: dict[str, Callable[[], None]] = {"reference": make(None)}
    for c in candidates(identity, base.supports_channels_last):
        variants[c.label] = make(c)
    for step in variants.values():  # warm-up
        step()
    times: dict[str, list[float]] = {key: [] for key in variants}
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for key, step in variants.items():
            t0 = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - t0)
    load.append(os.getloadavg()[0])
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        choice = choose_kernels(cfg, base, f"{h}x{w}" if args.shapes == "recipe" else "64x64",
                                cache=MeasurementCache(Path(tmp)))
        choice_seconds = time.perf_counter() - began
    median = {key: statistics.median(v) for key, v in times.items()}
    ref = median["reference"]
    result = {
        "cpu": identity.describe(),
        "torch": identity.torch_version,
        "shapes": {"name": args.shapes, "batch": [p, k], "frames": s, "frame": [h, w],
                   "channels": list(cfg.model.values["channels"])},  # type: ignore[arg-type]
        "sgemm_gflops": round(peak.sgemm_gflops, 1),
        "bf16_gflops": round(peak.bf16_gflops, 1) if peak.bf16_gflops else None,
        "rounds": args.rounds,
        "load_average": load,
        "seconds_per_step": {key: round(v, 4) for key, v in median.items()},
        "ratio_vs_reference": {key: round(ref / v, 2) for key, v in median.items()},
        "steps_per_hour": {key: int(3600 / v) for key, v in median.items()},
        "auto": {"chose": choice.label, "reason": choice.reason, "measured_seconds": round(choice_seconds, 1),
                 "ratio_vs_reference": round(ref / median[choice.label], 2)},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
