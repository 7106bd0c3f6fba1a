"""Time the bf16 shortlist + certified fp32 re-rank against the fp32 path, in one run.

    python bench/shortlist.py [--n 20000] [--m 20000] [--parts 16] [--channels 256] [--k 5]
                              [--metric euc|cos] [--ids 2000] [--noise 0.5] [--threads N]

Synthetic clustered features (``--ids`` identity centres, each sequence its centre plus
``--noise`` × Gaussian noise; plain random features put every distance near the same value and
nothing can be shortlisted), probes and gallery drawn alike.
:func:`gaitcli.evaluation.metrics.nearest_neighbours` (fp32) and
:func:`gaitcli.evaluation.shortlist.shortlist_neighbours` on the same features; prints one JSON
object: seconds of each, the mean shortlist length, the probes that fell back to the fp32 path,
and whether the indices agree.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from gaitcli.evaluation.metrics import nearest_neighbours
from gaitcli.evaluation.shortlist import shortlist_neighbours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--m", type=int, default=20000)
    ap.add_argument("--parts", type=int, default=16)
    ap.add_argument("--channels", type=int, default=256)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--metric", choices=["euc", "cos"], default="euc")
    ap.add_argument("--ids", type=int, default=2000)
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(a.ids, a.parts, a.channels, generator=g)
    noise = float(a.noise)

    def draw(count: int) -> torch.Tensor:
        ids = torch.randint(0, a.ids, (count,), generator=g)
        return centres[ids] + noise * torch.randn(count, a.parts, a.channels, generator=g)

    x, y = draw(a.n), draw(a.m)
    t0 = time.perf_counter()
    ref = nearest_neighbours(x, y, a.k, a.metric)
    t1 = time.perf_counter()
    stats: dict[str, float] = {}
    got = shortlist_neighbours(x, y, a.k, a.metric, stats=stats)
    t2 = time.perf_counter()
    print(json.dumps({
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "shape": {"n": a.n, "m": a.m, "parts": a.parts, "channels": a.channels, "k": a.k},
        "metric": a.metric,
        "fp32_s": round(t1 - t0, 4),
        "shortlist_s": round(t2 - t1, 4),
        "speedup": round((t1 - t0) / max(t2 - t1, 1e-9), 3),
        "mean_shortlist": round(stats["mean_shortlist"], 2),
        "fallback_probes": int(stats["fallback"]),
        "same_indices": bool(torch.equal(ref.indices, got.indices)),
    }))


if __name__ == "__main__":
    main()
