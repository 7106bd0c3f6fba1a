"""Whole-loop training throughput on the synthetic set: sequences/s and the share of time
spent waiting for data. Prints JSON.

    python bench/train.py [--iters 20] [--subjects 8] [--bf16] [--workers 1] [--real-shapes]

``--real-shapes`` trains at the real-data shapes of the reference comparison instead of the demo's:
the ``metagait`` config at the reference variant's widths [8, 16, 32], P×K 8×4, 20 frames, 64×44
silhouettes (16 synthetic subjects, 8 of them for training).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--config", default="demo")
    parser.add_argument(
        "--real-shapes", action="store_true", help="MetaGait [8, 16, 32], 8x4, 20 frames, 64x44"
    )
    args = parser.parse_args()
    if args.real_shapes:
        args.config = "metagait" if args.config == "demo" else args.config
        args.subjects = max(args.subjects, 16)

    from gaitcli.config import load_config
    from gaitcli.data.prepare import prepare_dataset
    from gaitcli.synth.generate import synthesize
    from gaitcli.training.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(
            tmp / "raw",
            subjects=args.subjects,
            views=["000", "090", "180"],
            types=["nm-01", "nm-02", "bg-01", "cl-01"],
            frames=40,
            seed=0,
            workers=1,
        )
        # the demo config expects 32x32; the real shapes 64x64 (64x44 after the crop)
        prepare_dataset(tmp / "raw", tmp / "pkl", img_size=64 if args.real_shapes else 32, workers=1)
        ids = [f"{i:03d}" for i in range(1, args.subjects + 1)]
        half = max(2, args.subjects // 2)
        (tmp / "part.json").write_text(json.dumps({"TRAIN_SET": ids[:half], "TEST_SET": ids[half:]}))
        overrides = [
            f"data_cfg.dataset_root={tmp / 'pkl'}",
            f"data_cfg.dataset_partition={tmp / 'part.json'}",
            f"data_cfg.num_workers={args.workers}",
            f"trainer_cfg.total_iter={args.iters}",
            f"trainer_cfg.log_iter={args.iters}",
            f"trainer_cfg.save_iter={args.iters}",
            f"trainer_cfg.enable_bfloat16={str(args.bf16).lower()}",
            f"model_cfg.class_num={half}",
            "scheduler_cfg.warmup_iters=0",
            "trainer_cfg.with_test=false",
        ]
        if args.real_shapes:
            overrides += [
                "model_cfg.model=MetaGait",
                "model_cfg.channels=[8, 16, 32]",
                "trainer_cfg.sampler.batch_size=[8, 4]",
                "trainer_cfg.sampler.frames_num_fixed=20",
            ]
        cfg = load_config(args.config, overrides)
        start = time.perf_counter()
        summary = train(cfg, output=tmp / "run", device="cpu", progress=False)
        wall = time.perf_counter() - start
        line = summary.metrics
        batch = cfg["trainer_cfg"]["sampler"]["batch_size"]
    print(
        json.dumps(
            {
                "config": args.config,
                "real_shapes": args.real_shapes,
                "iterations": args.iters,
                "batch": batch,
                "frames": cfg["trainer_cfg"]["sampler"]["frames_num_fixed"],
                "bf16": args.bf16,
                "workers": args.workers,
                "sequences_per_s": line.get("sequences_per_s"),
                "data_wait_share": line.get("data_wait"),
                "seconds_per_iteration": round(line["seconds"] / args.iters, 4),
                "wall_seconds_incl_setup": round(wall, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
