"""Benchmark ``gait eval``: extraction throughput and the distance + protocol part.

    python bench/eval.py [--scale 1.0] [--model MetaGait|GaitGL] [--extract-seqs 16]
                         [--frames 80] [--device cpu|cuda] [--skip-extract] [--skip-match]
                         [--kernel-size 2048]

1. **Extraction**: ``--extract-seqs`` synthetic sequences of ``--frames`` frames (64×64 uint8
   silhouettes written as a prepared tree in a temporary folder) through the default recipe's
   model (random weights: the speed does not depend on them) with
   :func:`gaitcli.evaluation.extract_features`; reports sequences/s.
2. **Matching**: a synthetic OU-MVLP-sized feature set, 133,780 × ``--scale`` sequences
   (5,154 × scale ids × seq 00/01 × 14 views, 7.2 % left out at random as in the real set),
   64 parts × 128 channels float32, through the ``ou-mvlp`` protocol (14 × 14 rank-1 matrix);
   reports seconds, probe × gallery pairs per second, and (for ``--scale < 1``) the time the full
   size would take, since the work grows with the square of the size.

3. **Kernel**: the distance kernel alone on a ``--kernel-size`` square block (64 parts × 128
   channels): the fused rank-k walk (:func:`gaitcli.evaluation.metrics.nearest_neighbours`,
   only a ``[rows, k]`` list per tile survives) against the straightforward whole matrix +
   ``topk`` in the same run (same hits asserted), and the bare batched GEMM of its tiles as the
   ceiling.

Every rate is also given as achieved GFLOP/s and as a share of the fp32 sgemm peak measured at the
start of the same run (``bench/peak.py``); the matching figure also gives the arithmetic bound
(the full size's FLOPs at that peak). Prints one JSON object. At ``--scale 1`` the features alone
take 4.4 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak import Peak, measure_peak, share, sync  # noqa: E402

OU_VIEWS = [f"{v:03d}" for v in (*range(0, 91, 15), *range(180, 271, 15))]
OU_SEQUENCES = 133_780
OU_IDS = 5_154


def synthetic_ou_features(scale: float, parts: int = 64, channels: int = 128, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = max(2, int(round(OU_IDS * scale)))
    keys = [(i, s, v) for i in range(ids) for s in ("00", "01") for v in OU_VIEWS]
    keep_share = OU_SEQUENCES / (OU_IDS * 2 * len(OU_VIEWS))
    keep = np.sort(rng.choice(len(keys), size=int(round(len(keys) * keep_share)), replace=False))
    n = len(keep)
    emb = np.empty((n, parts, channels), dtype=np.float32)
    centres = {}
    labels, types, views = [], [], []
    for row, k in enumerate(keep.tolist()):
        i, s, v = keys[k]
        if i not in centres:
            centres[i] = rng.standard_normal((parts, channels), dtype=np.float32)
        emb[row] = centres[i]
        labels.append(f"{i:05d}")
        types.append(s)
        views.append(v)
    # noise added in chunks: one [n, parts, channels] temporary would double the memory
    for start in range(0, n, 4096):
        stop = min(n, start + 4096)
        emb[start:stop] += rng.standard_normal((stop - start, parts, channels), dtype=np.float32) * 1.3
    return emb, labels, types, views


def match_flops(probes: int, gallery: int, parts: int = 64, channels: int = 128) -> float:
    """Multiply-adds of every probe × gallery pair over all parts and channels, × 2."""
    return 2.0 * probes * gallery * parts * channels


def bench_match(scale: float, device: str, peak: Peak | None = None) -> dict:
    from gaitcli.evaluation import evaluate_features

    t0 = time.perf_counter()
    emb, labels, types, views = synthetic_ou_features(scale)
    made = time.perf_counter() - t0
    types_np = np.asarray(types)
    probes, gallery = int((types_np == "00").sum()), int((types_np == "01").sum())
    t0 = time.perf_counter()
    results = evaluate_features(emb, labels, types, views, protocol="ou-mvlp", metric="euc", device=device)
    seconds = time.perf_counter() - t0
    pairs = probes * gallery
    gflops = match_flops(probes, gallery) / seconds / 1e9
    full_flops = match_flops(OU_SEQUENCES // 2, OU_SEQUENCES - OU_SEQUENCES // 2)
    return {
        "scale": scale,
        "sequences": len(labels),
        "probes": probes,
        "gallery": gallery,
        "feature_gb": round(emb.nbytes / 1e9, 3),
        "make_seconds": round(made, 2),
        "distance_protocol_seconds": round(seconds, 2),
        "pairs_per_second": round(pairs / seconds),
        "estimated_full_size_seconds": round(seconds / scale**2, 1) if scale < 1 else round(seconds, 1),
        "achieved_gflops": round(gflops, 1),
        "share_of_sgemm_peak": share(gflops, peak) if peak else None,
        "full_size_arithmetic_bound_seconds": (round(full_flops / peak.sgemm_gflops / 1e9, 1)
                                               if peak else None),
        "rank1_NM": results.rank1.get("NM"),
    }


def bench_kernel(size: int, device: str, peak: Peak | None = None, parts: int = 64, channels: int = 128,
                 reps: int = 2) -> dict:
    """The fused rank-k distance walk vs the whole matrix + topk, side by side, and the bare GEMM."""
    from gaitcli.evaluation.metrics import (
        blockwise_topk_hits,
        default_tile,
        distance_block,
        part_norms,
        topk_hits,
    )

    dev = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(size, parts, channels, generator=gen).to(dev)
    y = torch.randn(size, parts, channels, generator=gen).to(dev)
    pl = torch.randint(0, 50, (size,), generator=gen).to(dev)
    gl = torch.randint(0, 50, (size,), generator=gen).to(dev)
    xn, yn = part_norms(x), part_norms(y)
    rows, cols = default_tile(dev, parts, size, size)
    xp, yp = x.transpose(0, 1), y.transpose(0, 1)
    buf = torch.empty(parts, rows, cols, device=dev)

    def bare_gemm() -> None:
        for i0 in range(0, size - rows + 1, rows):
            for j0 in range(0, size - cols + 1, cols):
                torch.bmm(xp[:, i0 : i0 + rows], yp[:, j0 : j0 + cols].transpose(1, 2), out=buf)

    from gaitcli.evaluation.tiles import choose_tiles
    from gaitcli.runtime.cpu import MeasurementCache

    with tempfile.TemporaryDirectory() as tmp:  # this run's own measurement, not a cached one
        tuned = choose_tiles(parts, channels, dev, size * size, cache=MeasurementCache(Path(tmp)),
                             min_pairs=0)
    tuned_tile = (tuned.rows, tuned.cols) if tuned is not None else None
    tuned_group = tuned.group if tuned is not None else None
    variants = {
        "fused": lambda: blockwise_topk_hits(x, y, pl, gl, (1, 5), x_norms=xn, y_norms=yn),
        "fused_tuned": lambda: blockwise_topk_hits(x, y, pl, gl, (1, 5), x_norms=xn, y_norms=yn,
                                                   tile=tuned_tile, group=tuned_group),
        "straightforward": lambda: topk_hits(distance_block(x, y, x_norms=xn, y_norms=yn), pl, gl, (1, 5)),
        "bare_gemm": bare_gemm,
    }
    best = {k: float("inf") for k in variants}
    results = {}
    for _ in range(reps + 1):  # interleaved; the first round is the warm-up
        for name, fn in variants.items():
            sync(dev)
            t0 = time.perf_counter()
            results[name] = fn()
            sync(dev)
            best[name] = min(best[name], time.perf_counter() - t0)
    for k in (1, 5):
        assert torch.equal(results["fused"][k], results["straightforward"][k]), "fused hits differ"
        assert torch.equal(results["fused_tuned"][k], results["straightforward"][k]), "tuned hits differ"
    flops = match_flops(size, size, parts, channels)
    gemm_flops = match_flops((size // rows) * rows, (size // cols) * cols, parts, channels)
    rates = {"fused": flops / best["fused"] / 1e9, "fused_tuned": flops / best["fused_tuned"] / 1e9,
             "straightforward": flops / best["straightforward"] / 1e9,
             "bare_gemm": gemm_flops / best["bare_gemm"] / 1e9}
    return {
        "size": size, "tile": [rows, cols],
        "tuned": None if tuned is None else {"tile": [tuned.rows, tuned.cols], "group": tuned.group,
                                             "candidates_seconds": tuned.seconds},
        "seconds": {k: round(v, 3) for k, v in best.items()},
        "achieved_gflops": {k: round(v, 1) for k, v in rates.items()},
        "share_of_sgemm_peak": {k: share(v, peak) for k, v in rates.items()} if peak else None,
        "speedup_vs_straightforward": round(best["straightforward"] / best["fused"], 3),
    }


def straightforward_extract(model, ds, embeddings: np.ndarray, device: str) -> tuple[float, float]:
    """The reference: every sequence alone through the straightforward model (seconds, and the
    largest difference from the fast embeddings)."""
    from gaitcli.evaluation.extract import FramePicker
    from gaitcli.models.straightforward import straightforward_embed

    picker = FramePicker()
    model.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        ref = np.stack([straightforward_embed(model, [picker(ds.load(i)[0], i)])[0].cpu().numpy()
                        for i in range(len(ds))])
    return time.perf_counter() - t0, float(np.abs(ref - embeddings).max())


def same_nearest_share(a: np.ndarray, b: np.ndarray) -> float:
    """Share of sequences whose nearest other sequence is the same in both feature sets (how far
    the bf16 table can move: a rank-1 cell changes only where this does)."""
    from gaitcli.evaluation.metrics import pairwise_distances

    if len(a) < 2:
        return 1.0
    da, db = pairwise_distances(a, a), pairwise_distances(b, b)
    np.fill_diagonal(da, np.inf), np.fill_diagonal(db, np.inf)
    return round(float(np.mean(da.argmin(1) == db.argmin(1))), 4)


def bench_extract(count: int, frames: int, model_name: str, device: str, batch_size: int) -> dict:
    from gaitcli.build import build_model
    from gaitcli.data.dataset import GaitDataset
    from gaitcli.evaluation import extract_features

    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory(prefix="gait-eval-bench-") as tmp:
        root = Path(tmp) / "pkl"
        ids = [f"{i:03d}" for i in range(1, count + 1)]
        for label in ids:
            folder = root / label / "nm-01" / "090"
            folder.mkdir(parents=True)
            sil = np.zeros((frames, 64, 64), np.uint8)
            for t in range(frames):
                sway = int(4 * np.sin(t / 4))
                sil[t, 6:60, 24 + sway : 40 + sway] = 255
                sil[t, 6:60][rng.random((54, 64)) < 0.02] = 255
            (folder / "090.pkl").write_bytes(pickle.dumps(sil, protocol=4))
        part = Path(tmp) / "part.json"
        part.write_text(json.dumps({"TRAIN_SET": [], "TEST_SET": ids}))
        ds = GaitDataset(root, part, "test")
        model = build_model({"model_cfg": {"model": model_name}, "data_cfg": {"dataset_name": "CASIA-B"}})
        model.to(device)
        extract_features(model, ds, batch_size=batch_size, device=device, indices=[0])  # warm-up
        t0 = time.perf_counter()
        feats = extract_features(model, ds, batch_size=batch_size, device=device)
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        low = extract_features(model, ds, batch_size=batch_size, device=device, bf16=True)
        bf16_seconds = time.perf_counter() - t0
        ref_seconds, ref_diff = straightforward_extract(model, ds, feats.embeddings, device)
    scale = max(float(np.abs(feats.embeddings).max()), 1e-12)
    drift = np.abs(low.embeddings - feats.embeddings).max() / scale
    return {
        "reference": "straightforward model, one sequence at a time (batch 1, F.conv3d)",
        "reference_seconds": round(ref_seconds, 2),
        "ratio_vs_reference": round(ref_seconds / seconds, 3) if seconds > 0 else None,
        "reference_max_abs_diff": ref_diff,
        "bf16_seconds": round(bf16_seconds, 2),
        "bf16_ratio_vs_fp32": round(seconds / bf16_seconds, 3) if bf16_seconds > 0 else None,
        "bf16_max_relative_embedding_drift": round(float(drift), 5),
        "bf16_same_nearest_neighbour_share": same_nearest_share(feats.embeddings, low.embeddings),
        "model": model_name,
        "sequences": count,
        "frames_per_sequence": frames,
        "batch_size": batch_size,
        "seconds": round(seconds, 2),
        "sequences_per_second": round(count / seconds, 2),
        "embedding_shape": list(feats.embeddings.shape[1:]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="share of the OU-MVLP test set size (default 1.0)")
    parser.add_argument("--model", default="MetaGait", choices=("MetaGait", "GaitGL"))
    parser.add_argument("--extract-seqs", type=int, default=16)
    parser.add_argument("--frames", type=int, default=80, help="frames per sequence (CASIA-B median: 80)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-extract", action="store_true")
    parser.add_argument("--skip-match", action="store_true")
    parser.add_argument("--kernel-size", type=int, default=2048, help="side of the kernel block (0: skip)")
    args = parser.parse_args(argv)
    out: dict = {
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
    }
    peak = measure_peak(args.device)
    out["peak"] = peak.to_json()
    if args.kernel_size:
        out["kernel"] = bench_kernel(args.kernel_size, args.device, peak)
    if not args.skip_extract:
        out["extract"] = bench_extract(args.extract_seqs, args.frames, args.model, args.device,
                                       args.batch_size)
    if not args.skip_match:
        out["match"] = bench_match(args.scale, args.device, peak)
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
