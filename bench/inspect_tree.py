"""Benchmark ``gait inspect`` on a synthetic CASIA-B-sized tree.

    python bench/inspect_tree.py [--root /tmp/gait_inspect_bench] [--workers N] [--dense] [--keep]

Builds 124 ids × 10 types × 11 views minus 48 (= 13,592 sequences, like CASIA-B) of
``[T, 64, 64]`` uint8 pickles (protocol 4, T drawn around 82 frames), then times
:func:`gaitcli.data.inspect.inspect_dataset` on it and prints one JSON line
``{sequences, seconds, sequences_per_s, workers, ...}``.

By default the files are *sparse*: the pickle's opcodes are written for real and the array
bytes are a hole, so every file has its true size (4.6 GB in all) but costs no disk. inspect
reads only the opcodes, so this measures what it does on the real data set. ``--dense`` writes
real (smaller, ``[T, 16, 16]``) arrays instead. The tree is reused between runs when its marker
file matches; ``--fresh`` rebuilds it. Caches are warm after the build (no root needed to drop
them); the first run over a real data set on a cold disk is bounded by disk seeks instead.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import pickletools
import shutil
import sys
import time
from pathlib import Path

import numpy as np

TYPES = [f"nm-0{i}" for i in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"]
VIEWS = [f"{v:03d}" for v in range(0, 181, 18)]


def _template(frames: int, side: int) -> tuple[bytes, int, bytes]:
    """Opcodes before the array bytes, the byte count of the array, and the opcodes after."""
    data = pickle.dumps(np.zeros((frames, side, side), np.uint8), protocol=4)
    nbytes = frames * side * side
    for op, _arg, pos in pickletools.genops(data):
        if op.name in ("BINBYTES8", "BINBYTES", "SHORT_BINBYTES") and len(_arg) == nbytes:
            header_len = {"BINBYTES8": 9, "BINBYTES": 5, "SHORT_BINBYTES": 2}[op.name]
            start = pos + header_len
            return data[:start], nbytes, data[start + nbytes:]
    raise RuntimeError("no array bytes found")


def build(root: Path, dense: bool, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    side = 16 if dense else 64
    cells = [(f"{i:03d}", t, v) for i in range(1, 125) for t in TYPES for v in VIEWS]
    drop = set(rng.choice(len(cells), size=48, replace=False).tolist())
    templates: dict[int, tuple[bytes, int, bytes]] = {}
    count = 0
    for index, (ident, typ, view) in enumerate(cells):
        if index in drop:
            continue
        frames = int(np.clip(rng.normal(82, 18), 1, 204))
        folder = root / ident / typ / view
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{view}.pkl"
        if dense:
            path.write_bytes(pickle.dumps(rng.integers(0, 2, (frames, side, side), np.uint8) * 255,
                                          protocol=4))
        else:
            if frames not in templates:
                templates[frames] = _template(frames, side)
            head, nbytes, tail = templates[frames]
            with open(path, "wb") as handle:
                handle.write(head)
                handle.seek(nbytes, os.SEEK_CUR)
                handle.write(tail)
        count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/gait_inspect_bench"))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--dense", action="store_true", help="write real [T,16,16] arrays")
    parser.add_argument("--fresh", action="store_true", help="rebuild the tree")
    parser.add_argument("--keep", action="store_true", help="keep the tree afterwards")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)

    from gaitcli.data.inspect import inspect_dataset

    kind = "dense16" if args.dense else "sparse64"
    marker = args.root / ".bench"
    if args.fresh or not marker.is_file() or marker.read_text() != kind:
        shutil.rmtree(args.root, ignore_errors=True)
        args.root.mkdir(parents=True)
        t0 = time.perf_counter()
        build(args.root, args.dense)
        marker.write_text(kind)
        print(f"built {kind} tree in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    best = None
    report = None
    for _ in range(max(1, args.repeat)):
        t0 = time.perf_counter()
        report = inspect_dataset(args.root, workers=args.workers).to_json()
        seconds = time.perf_counter() - t0
        best = seconds if best is None else min(best, seconds)
    assert report is not None and best is not None
    apparent = sum(f.stat().st_size for f in args.root.rglob("*.pkl"))
    print(json.dumps({
        "sequences": report["sequences"],
        "seconds": round(best, 3),
        "sequences_per_s": round(report["sequences"] / best, 1),
        "workers": report["workers"],
        "tree": kind,
        "apparent_gb": round(apparent / 1e9, 2),
        "problems": report["problems"],
    }))
    if not args.keep:
        shutil.rmtree(args.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
