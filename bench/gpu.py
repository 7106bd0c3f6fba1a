"""The GPU kit: one command on a CUDA machine that prints every GPU figure as one JSON object.

    python bench/gpu.py [--steps 10] [--scale 1.0] [--extract-seqs 64] [--skip-match]

1. **Training step** at the published shapes (MetaGait [32, 64, 128], P×K 8×8 = 64 sequences ×
   30 frames × 64×44, triplet + cross-entropy losses, Adam) in fp32, fp16 AMP (with a gradient
   scaler) and bf16 autocast, each with and without ``cudnn.benchmark`` and channels-last 3-D
   weights: seconds per step, sequences/s and peak memory.
2. **Extraction**: ``model.embed`` over ``--extract-seqs`` sequences of 60–100 frames
   (sequences/s, peak memory).
3. **Matching**: full OU-MVLP size (``--scale 1``: 133,780 sequences × 64 parts × 128
   channels, synthetic, made on the GPU) through the ``ou-mvlp`` protocol: seconds, GFLOP/s.
4. **Process group**: start-up time of a single-GPU NCCL process group (``world_size`` 1, a
   TCP store on a free loopback port), and one all-reduce.
5. **Peak**: fp32 and bf16 matmul rates of the GPU (``bench/peak.py``).

On a machine without CUDA it refuses with one line and exit status 2. Each piece is a function
taking the device, so the CPU-side tests (``tests/test_bench_gpu.py``) run them at tiny sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak import measure_peak, sync  # noqa: E402

PRECISIONS = ("fp32", "fp16", "bf16")
PUBLISHED = {"channels": [32, 64, 128], "pk": (8, 8), "frames": 30, "hw": (64, 44), "class_num": 74}


@dataclass
class StepResult:
    """One training-step variant."""

    precision: str
    """``fp32``, ``fp16`` (AMP with a gradient scaler) or ``bf16`` (autocast)."""
    cudnn_benchmark: bool
    """whether ``torch.backends.cudnn.benchmark`` was on."""
    channels_last: bool
    """whether the 3-D convolution weights and the input were channels-last."""
    seconds_per_step: float
    """best of the timed steps (after two warm-ups)."""
    sequences_per_s: float
    """batch size / seconds per step."""
    peak_memory_mb: float | None
    """``torch.cuda.max_memory_allocated`` during the variant (None on a CPU)."""
    loss: float
    """the last step's total loss (a finite number: the step really ran)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def build(channels: list[int], class_num: int, device: torch.device, height: int = 64) -> torch.nn.Module:
    """MetaGait at ``channels`` widths for ``height``-pixel-high inputs (one part per row)."""
    from gaitcli.build import build_model

    cfg = {
        "model_cfg": {"model": "MetaGait", "channels": channels, "class_num": class_num, "bin_num": [height]},
        "data_cfg": {"dataset_name": "CASIA-B"},
    }
    torch.manual_seed(0)
    return build_model(cfg).to(device)


def to_channels_last(model: torch.nn.Module) -> None:
    """Channels-last 3-D layout for every 5-D weight (the 3-D convolutions)."""
    for param in model.parameters():
        if param.dim() == 5:
            param.data = param.data.contiguous(memory_format=torch.channels_last_3d)


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def train_step(
    device: torch.device | str,
    precision: str = "fp32",
    *,
    benchmark: bool = False,
    channels_last: bool = False,
    channels: list[int] | None = None,
    pk: tuple[int, int] = (8, 8),
    frames: int = 30,
    hw: tuple[int, int] = (64, 44),
    class_num: int = 74,
    steps: int = 5,
) -> StepResult:
    """Time full training steps (forward, triplet + cross-entropy, backward, Adam) of MetaGait."""
    from gaitcli.config_types import CrossEntropyLossConfig, TripletLossConfig
    from gaitcli.training.losses import LossAggregator

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}")
    dev = torch.device(device)
    reset_peak_memory(dev)
    model = build(channels or PUBLISHED["channels"], class_num, dev, hw[0])
    if channels_last:
        to_channels_last(model)
    model.train()
    losses = LossAggregator(
        [
            TripletLossConfig(loss_term_weight=1.0, margin=0.2, log_prefix="triplet"),
            CrossEntropyLossConfig(loss_term_weight=1.0, scale=16.0, label_smooth=True, eps=0.1,
                                   log_accuracy=False, log_prefix="softmax"),
        ]
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")
    n = pk[0] * pk[1]
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(n, frames, *hw, generator=gen) > 0.5).float().to(dev)
    labels = torch.arange(pk[0]).repeat_interleave(pk[1]).to(dev)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    best, total = float("inf"), torch.zeros(())
    with cudnn_benchmark(benchmark):
        for step in range(steps + 2):  # two warm-ups (cudnn.benchmark tunes in the first)
            sync(dev)
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                out = model(x)
            total, _ = losses(out, labels)
            scaler.scale(total).backward()
            scaler.step(opt)
            scaler.update()
            sync(dev)
            if step >= 2:
                best = min(best, time.perf_counter() - start)
    return StepResult(
        precision=precision,
        cudnn_benchmark=benchmark,
        channels_last=channels_last,
        seconds_per_step=round(best, 4),
        sequences_per_s=round(n / best, 1),
        peak_memory_mb=peak_memory_mb(dev),
        loss=float(total.detach()),
    )


def training_matrix(device: torch.device | str, **shape: Any) -> list[dict[str, Any]]:
    """:func:`train_step` for every precision × cudnn.benchmark × channels-last."""
    return [
        train_step(device, p, benchmark=b, channels_last=c, **shape).to_json()
        for p in PRECISIONS
        for b in (False, True)
        for c in (False, True)
    ]


def extraction(
    device: torch.device | str,
    *,
    channels: list[int] | None = None,
    sequences: int = 64,
    lengths: tuple[int, int] = (60, 100),
    hw: tuple[int, int] = (64, 44),
    batch_size: int = 8,
) -> dict[str, Any]:
    """Sequences/s of ``model.embed`` over variable-length sequences (fp32)."""
    dev = torch.device(device)
    model = build(channels or PUBLISHED["channels"], 74, dev, hw[0]).eval()
    gen = torch.Generator().manual_seed(1)
    lo, hi = lengths
    seqs = [
        (torch.rand(lo + (i * 7) % (hi - lo + 1), *hw, generator=gen) > 0.5).float() for i in range(sequences)
    ]
    with torch.no_grad():
        model.embed(seqs[:2], batch_size=batch_size, device=dev)  # warm-up
        reset_peak_memory(dev)
        sync(dev)
        start = time.perf_counter()
        emb = model.embed(seqs, batch_size=batch_size, device=dev)
        sync(dev)
    seconds = time.perf_counter() - start
    return {
        "sequences": sequences,
        "frames": list(lengths),
        "batch_size": batch_size,
        "seconds": round(seconds, 3),
        "sequences_per_s": round(sequences / seconds, 2),
        "embedding_shape": list(emb.shape[1:]),
        "peak_memory_mb": peak_memory_mb(dev),
    }


def synthetic_features(
    scale: float, device: torch.device, parts: int = 64, channels: int = 128, seed: int = 0
) -> tuple[torch.Tensor, list[str], list[str], list[str]]:
    """OU-MVLP-shaped synthetic features made on ``device``: ids × seq 00/01 × 14 views, 7.2 %
    left out at random, each sequence its id's centre plus noise."""
    from eval import OU_IDS, OU_SEQUENCES, OU_VIEWS

    gen = torch.Generator().manual_seed(seed)
    ids = max(2, int(round(OU_IDS * scale)))
    total = ids * 2 * len(OU_VIEWS)
    keep = torch.randperm(total, generator=gen)[: int(round(total * OU_SEQUENCES / (OU_IDS * 2 * 14)))]
    keep = keep.sort().values
    id_of, rest = keep // (2 * len(OU_VIEWS)), keep % (2 * len(OU_VIEWS))
    dev_gen = torch.Generator(device=device).manual_seed(seed)
    centres = torch.randn(ids, parts, channels, generator=dev_gen, device=device)
    emb = centres[id_of.to(device)]
    del centres
    emb.add_(torch.randn(emb.shape, generator=dev_gen, device=device), alpha=1.3)
    labels = [f"{i:05d}" for i in id_of.tolist()]
    types = ["00" if r < len(OU_VIEWS) else "01" for r in rest.tolist()]
    views = [OU_VIEWS[r % len(OU_VIEWS)] for r in rest.tolist()]
    return emb, labels, types, views


def matching(device: torch.device | str, scale: float = 1.0) -> dict[str, Any]:
    """The ``ou-mvlp`` protocol on synthetic features of ``scale`` × the full size."""
    from gaitcli.evaluation import evaluate_features

    dev = torch.device(device)
    emb, labels, types, views = synthetic_features(scale, dev)
    probes = sum(t == "00" for t in types)
    gallery = len(types) - probes
    reset_peak_memory(dev)
    sync(dev)
    start = time.perf_counter()
    results = evaluate_features(emb, labels, types, views, protocol="ou-mvlp", metric="euc", device=dev)
    sync(dev)
    seconds = time.perf_counter() - start
    flops = 2.0 * probes * gallery * emb.shape[1] * emb.shape[2]
    return {
        "scale": scale,
        "sequences": len(labels),
        "probes": probes,
        "gallery": gallery,
        "seconds": round(seconds, 2),
        "achieved_gflops": round(flops / seconds / 1e9, 1),
        "rank1_NM": results.rank1.get("NM"),
        "peak_memory_mb": peak_memory_mb(dev),
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_group_startup(device: torch.device | str, backend: str | None = None) -> dict[str, Any]:
    """Seconds to start a one-process group (NCCL on CUDA, gloo on a CPU) and run one all-reduce."""
    import torch.distributed as dist

    dev = torch.device(device)
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    start = time.perf_counter()
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        started = time.perf_counter() - start
        value = torch.ones(1, device=dev)
        dist.all_reduce(value)
        sync(dev)
        first = time.perf_counter() - start - started
    finally:
        dist.destroy_process_group()
    return {
        "backend": backend,
        "init_seconds": round(started, 3),
        "first_all_reduce_seconds": round(first, 3),
        "all_reduce_value": float(value.item()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per variant")
    parser.add_argument("--scale", type=float, default=1.0, help="matching size, share of OU-MVLP")
    parser.add_argument("--extract-seqs", type=int, default=64)
    parser.add_argument("--skip-match", action="store_true")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device here; run it on a machine with a GPU", file=sys.stderr)
        return 2
    dev = torch.device("cuda", 0)
    out: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(dev),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "peak": measure_peak(dev, 8192).to_json(),
        "process_group": process_group_startup(dev),
    }
    out["train_step"] = training_matrix(dev, steps=args.steps)
    out["extraction"] = extraction(dev, sequences=args.extract_seqs)
    if not args.skip_match:
        out["matching"] = matching(dev, args.scale)
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
