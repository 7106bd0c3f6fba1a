"""The machine's matrix-multiply peak, measured in the same run as every other figure.

    python bench/peak.py [--device cpu|cuda] [--size 2048]

Prints JSON: fp32 sgemm GFLOP/s (``torch.mm`` of two ``size`` × ``size`` matrices, best of a few)
and the bf16 autocast matmul rate. Every bench script calls :func:`measure_peak` and reports its
figures as a share of ``sgemm_gflops``, so each one says how far it is from the limit of the
machine it ran on (a shared CPU moves by ±20 % from minute to minute: a peak from another run
would say nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass

import torch


@dataclass
class Peak:
    """Matrix-multiply rates of this machine, measured now."""

    device: str
    """``cpu`` or ``cuda``."""
    threads: int
    """torch intra-op threads during the measurement."""
    size: int
    """side of the square matrices."""
    sgemm_gflops: float
    """fp32 ``torch.mm`` rate, best of the repetitions."""
    bf16_gflops: float
    """the same product under bf16 autocast."""

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device | str, size: int = 2048, reps: int = 3, bf16: bool = False) -> float:
    """Best-of-``reps`` GFLOP/s of one ``size`` × ``size`` × ``size`` product (2 n³ FLOPs)."""
    dev = torch.device(device)
    a = torch.randn(size, size, device=dev)
    b = torch.randn(size, size, device=dev)
    best = float("inf")
    for rep in range(reps + 1):  # the first is a warm-up
        sync(dev)
        start = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            torch.mm(a, b)
        sync(dev)
        if rep:
            best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9


def measure_peak(device: torch.device | str = "cpu", size: int = 2048, reps: int = 3) -> Peak:
    dev = torch.device(device)
    return Peak(device=dev.type, threads=torch.get_num_threads(), size=size,
                sgemm_gflops=round(matmul_gflops(dev, size, reps), 1),
                bf16_gflops=round(matmul_gflops(dev, size, reps, bf16=True), 1))


def share(gflops: float | None, peak: Peak) -> float | None:
    """``gflops`` as a share of the fp32 sgemm peak (3 decimals)."""
    if gflops is None or peak.sgemm_gflops <= 0:
        return None
    return round(gflops / peak.sgemm_gflops, 3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args(argv)
    json.dump(measure_peak(args.device, args.size).to_json(), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
