"""Benchmark ``gait prepare`` on a synthetic CASIA-B-shaped PNG tree.

    python bench/prepare.py [--subjects 4] [--workers N] [--frames 60] [--views 000,090] [--keep]
    python bench/prepare.py --raw /data/CASIA-B/silhouettes [--workers N]

Writes a tree with :func:`gaitcli.synth.generate.synthesize` into a temporary folder (or uses an
existing tree given with ``--raw``), times :func:`gaitcli.data.prepare.prepare_dataset` into a
fresh temporary output folder, and prints one JSON line
``{frames, seconds, frames_per_s, workers, sequences, ...}``. ``frames`` counts every frame
read and pretreated (kept or dropped); ``seconds`` covers the whole call: folder scan, worker
start-up, decoding, pretreatment and the atomic writes. Files written by the tree generator
are still in the page cache, so this is the warm-cache figure; a cold disk adds its read time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=4, help="synthetic subjects (default 4)")
    parser.add_argument("--workers", type=int, default=None, help="prepare workers (default: all cores)")
    parser.add_argument("--frames", type=int, default=60, help="mean frames per synthetic sequence")
    parser.add_argument("--views", default=None, help="comma list of views (default: all 11)")
    parser.add_argument("--types", default=None, help="comma list of type-seq (default: all 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--raw", type=Path, default=None, help="time an existing PNG tree instead")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders and print them")
    args = parser.parse_args(argv)

    from gaitcli.data.prepare import prepare_dataset

    scratch = Path(tempfile.mkdtemp(prefix="gait_prepare_bench_"))
    try:
        synth_seconds = None
        if args.raw is None:
            from gaitcli.synth.generate import synthesize

            raw = scratch / "raw"
            started = time.perf_counter()
            synthesize(
                raw,
                subjects=args.subjects,
                views=args.views.split(",") if args.views else None,
                types=args.types.split(",") if args.types else None,
                frames=args.frames,
                seed=args.seed,
                workers=args.workers,
            )
            synth_seconds = round(time.perf_counter() - started, 3)
        else:
            raw = args.raw

        started = time.perf_counter()
        prepared = prepare_dataset(raw, scratch / "out", img_size=args.img_size, workers=args.workers)
        summary = prepared.to_json()
        seconds = time.perf_counter() - started
        frames = summary["frames_kept"] + summary["frames_dropped"]
        result = {
            "frames": frames,
            "seconds": round(seconds, 3),
            "frames_per_s": round(frames / seconds, 1) if seconds > 0 else None,
            "workers": summary["workers"],
            "sequences": summary["sequences_written"],
            "frames_kept": summary["frames_kept"],
            "cpu_count": os.cpu_count(),
            "synth_seconds": synth_seconds,
        }
        if args.keep:
            result["scratch"] = str(scratch)
        print(json.dumps(result))
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
