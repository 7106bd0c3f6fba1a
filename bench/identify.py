"""Benchmark ``gait identify``: one probe against a large gallery, after start-up.

    python bench/identify.py [--gallery 100000] [--ids 10000] [--parts 64] [--channels 128]
                             [--probes 20] [--top-k 5] [--metric euc|cos] [--threads N]

A synthetic gallery of ``--gallery`` sequences (``--ids`` identities, ``parts x channels`` float32,
the default is GaitGL / MetaGait's 64 x 128) is indexed once (:class:`gaitcli.deploy.identify.GalleryIndex`,
as ``gait identify`` does); then ``--probes`` probes are answered one at a time (latency: one pass
over the gallery each, bound by memory bandwidth) and all together (throughput: the probes share
each pass). Prints one JSON object with the index time and the per-probe seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch

from gaitcli.deploy.identify import GalleryIndex, answer_probes
from gaitcli.evaluation.extract import FeatureSet


def synthetic(n: int, ids: int, parts: int, channels: int, seed: int) -> FeatureSet:
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, parts, channels), dtype=np.float32)
    labels = (np.arange(n) % ids).astype(str)
    views = np.array([f"{v:03d}" for v in (np.arange(n) // ids) % 14 * 15])
    return FeatureSet(emb, labels, np.full(n, "01"), views, meta={"metric": "euc"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gallery", type=int, default=100_000)
    ap.add_argument("--ids", type=int, default=10_000)
    ap.add_argument("--parts", type=int, default=64)
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--metric", default="euc")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gallery = synthetic(args.gallery, args.ids, args.parts, args.channels, 0)
    probes = synthetic(args.probes, args.ids, args.parts, args.channels, 1)
    one = [
        FeatureSet(
            probes.embeddings[i : i + 1],
            probes.labels[i : i + 1],
            probes.types[i : i + 1],
            probes.views[i : i + 1],
        )
        for i in range(len(probes))
    ]
    started = time.perf_counter()
    index = GalleryIndex(gallery, np.arange(len(gallery)), args.metric)
    index_seconds = time.perf_counter() - started
    answer_probes(index, one[0], top_k=args.top_k)  # warm-up
    seconds = []
    for probe in one:
        started = time.perf_counter()
        answer_probes(index, probe, top_k=args.top_k, exclude_same_view=True)
        seconds.append(time.perf_counter() - started)
    started = time.perf_counter()
    answer_probes(index, probes, top_k=args.top_k, exclude_same_view=True)
    batched = (time.perf_counter() - started) / len(probes)
    print(
        json.dumps(
            {
                "benchmark": "identify",
                "gallery": args.gallery,
                "ids": args.ids,
                "parts": args.parts,
                "channels": args.channels,
                "metric": args.metric,
                "top_k": args.top_k,
                "seconds_per_probe_median": round(statistics.median(seconds), 4),
                "seconds_per_probe_max": round(max(seconds), 4),
                "seconds_per_probe_batched": round(batched, 4),
                "gallery_bytes": int(gallery.embeddings.nbytes),
                "index_seconds": round(index_seconds, 3),
                "threads": torch.get_num_threads(),
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
