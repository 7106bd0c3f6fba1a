"""Benchmark GaitGL and MetaGait: fast implementation vs the straightforward one, side by side.

Prints JSON. For each model, at the CASIA-B training shape (n=8, s=30, 64x44):
forward+backward seconds per iteration (fast, straightforward, and the fast one under bf16
autocast on the CPU), and at inference over 8 sequences of 60-100 frames: sequences/s of
``model.embed`` (sorted, padded, masked batches) and of one-at-a-time straightforward inference.
Also the parameter count, FLOPs per sequence (torch.utils.flop_counter.FlopCounterMode, counted on
the meta device so counting costs nothing) and the achieved GFLOP/s (useful FLOPs / time; the
padded batch's extra FLOPs are reported separately).

    python bench/models.py                    # both models, defaults sized for a few minutes on 2 cores
    python bench/models.py --models GaitGL --reps 3 --out bench.json
    python bench/models.py --device cuda      # same measurements on a GPU (bf16 autocast on CUDA)

Times are wall-clock seconds, best and median of ``--reps`` runs after a warm-up, with the
variants interleaved; ``cpu_s_best`` is the process CPU time of the best run (less sensitive to
other jobs on a shared machine). The load average at the start and end is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from gaitcli.build import build_model
from gaitcli.models.straightforward import straightforward_embed, straightforward_forward

TRAIN_SHAPE = (8, 30, 64, 44)
INFER_LENGTHS = (60, 66, 71, 77, 83, 88, 94, 100)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare(fns: dict, device: torch.device, reps: int, warmup: int = 1) -> dict:
    """Time several variants, interleaved (A B C A B C ...) so a shared machine's changing load
    hits them alike. Returns best and median seconds per variant."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    times: dict = {k: [] for k in fns}
    cpu: dict = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return {
        k: {"best_s": min(v), "median_s": statistics.median(v), "cpu_s_best": min(cpu[k]), "runs": len(v)}
        for k, v in times.items()
    }


def silhouettes(shape, seed: int, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) > 0.5).float().to(device)


def loss_of(out: dict) -> torch.Tensor:
    return out["logits"].logsumexp(-1).mean() + out["embeddings"].pow(2).mean()


def count_flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def bench_model(name: str, device: torch.device, reps: int, infer_reps: int, bf16: bool) -> dict:
    cfg = {"model_cfg": {"model": name}, "data_cfg": {"dataset_name": "CASIA-B"}}
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    with torch.device("meta"):
        meta_model = build_model(cfg)
    result: dict = {"parameters": model.num_parameters()}

    # ---- training step --------------------------------------------------------------------
    x = silhouettes(TRAIN_SHAPE, 0, device)
    n = TRAIN_SHAPE[0]
    model.train()

    def step(forward):
        model.zero_grad(set_to_none=True)
        loss_of(forward()).backward()

    fast_fwd = lambda: model(x)  # noqa: E731
    plain_fwd = lambda: straightforward_forward(model, x)  # noqa: E731
    xm = torch.empty(TRAIN_SHAPE, device="meta")
    meta_model.train()
    flops_fast = count_flops(lambda: loss_of(meta_model(xm)).backward())
    flops_plain = count_flops(lambda: loss_of(straightforward_forward(meta_model, xm)).backward())
    variants = {"fast": lambda: step(fast_fwd), "straightforward": lambda: step(plain_fwd)}
    if bf16:

        def bf16_step():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = model(x)
            model.zero_grad(set_to_none=True)
            loss_of(out).backward()

        variants["bf16_autocast"] = bf16_step
    times = compare(variants, device, reps)
    t_fast, t_plain = times["fast"], times["straightforward"]
    train = {
        "shape": list(TRAIN_SHAPE),
        "flops_per_sequence": flops_fast // n,
        "fast": {**t_fast, "gflops_per_s": flops_fast / t_fast["best_s"] / 1e9},
        "straightforward": {
            **t_plain,
            "gflops_per_s": flops_plain / t_plain["best_s"] / 1e9,
            "flops_per_sequence": flops_plain // n,
        },
        "speedup": t_plain["best_s"] / t_fast["best_s"],
    }
    if bf16:
        t_bf16 = times["bf16_autocast"]
        train["bf16_autocast"] = {**t_bf16, "speedup_vs_fp32": t_fast["best_s"] / t_bf16["best_s"]}
    result["train_step"] = train
    model.zero_grad(set_to_none=True)

    # ---- variable-length inference ----------------------------------------------------------
    h, w = TRAIN_SHAPE[2:]
    seqs = [silhouettes((L, h, w), 10 + i, "cpu") for i, L in enumerate(INFER_LENGTHS)]
    warm = [s[:20] for s in seqs[:2]]
    model.eval()
    meta_model.eval()
    useful = sum(
        count_flops(lambda L=L: straightforward_forward(meta_model, torch.empty(1, L, h, w, device="meta")))
        for L in INFER_LENGTHS
    )
    padded = count_flops(
        lambda: meta_model(
            torch.empty(len(seqs), max(INFER_LENGTHS), h, w, device="meta"), list(INFER_LENGTHS)
        )
    )
    model.embed(warm, batch_size=8)
    straightforward_embed(model, warm)
    times = compare(
        {
            "fast": lambda: model.embed(seqs, batch_size=8),
            "fast_one_batch": lambda: model.embed(seqs, batch_size=8, max_frames=None),
            "straightforward": lambda: straightforward_embed(model, seqs),
        },
        device,
        infer_reps,
        warmup=0,
    )
    t_fast, t_big, t_plain = times["fast"], times["fast_one_batch"], times["straightforward"]
    k = len(seqs)
    result["inference"] = {
        "lengths": list(INFER_LENGTHS),
        "flops_per_sequence": useful // k,
        "one_padded_batch_flops_per_sequence": padded // k,
        "fast_embed": {
            **t_fast,
            "note": 'model.embed(batch_size=8) with max_frames="auto" (128 padded frames per call on CPU)',
            "sequences_per_s": k / t_fast["best_s"],
            "gflops_per_s": useful / t_fast["best_s"] / 1e9,
        },
        "fast_embed_one_padded_batch": {
            **t_big,
            "note": "model.embed(batch_size=8, max_frames=None): all 8 in one padded batch",
            "sequences_per_s": k / t_big["best_s"],
            "gflops_per_s": useful / t_big["best_s"] / 1e9,
        },
        "straightforward_one_at_a_time": {
            **t_plain,
            "sequences_per_s": k / t_plain["best_s"],
            "gflops_per_s": useful / t_plain["best_s"] / 1e9,
        },
        "speedup": t_plain["best_s"] / t_fast["best_s"],
    }
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="GaitGL,MetaGait")
    ap.add_argument(
        "--reps", type=int, default=2, help="timed training steps per variant (after one warm-up)"
    )
    ap.add_argument("--infer-reps", type=int, default=3, help="timed inference passes per variant")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--no-bf16", action="store_true", help="skip the bf16-autocast training step")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started = time.perf_counter()
    report = {
        "torch": torch.__version__,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "models": {},
    }
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        report["models"][name] = bench_model(name, device, args.reps, args.infer_reps, not args.no_bf16)
    report["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report["wall_s"] = time.perf_counter() - started
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
