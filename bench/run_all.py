"""Run every benchmark in bench/ and collect their JSON into bench/results.json.

    python bench/run_all.py [--quick]

Each script prints JSON (one object, possibly pretty-printed) on stdout. The arguments below
size every run for a couple of minutes on a 2-core CPU; ``--quick`` shrinks them further.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

ARGS = {
    "prepare.py": ["--subjects", "4", "--views", "000,090,180"],
    "inspect_tree.py": [],
    "models.py": [],
    "eval.py": ["--scale", "0.1"],
    "train.py": ["--iters", "40"],
}
EXTRA_RUNS = {"train.py --bf16": ["bench/train.py", "--iters", "40", "--bf16"]}
QUICK = {
    "prepare.py": ["--subjects", "2", "--views", "090"],
    "inspect_tree.py": ["--dense"],
    "models.py": ["--models", "GaitGL", "--infer-reps", "1"],
    "eval.py": ["--scale", "0.02", "--extract-seqs", "4"],
    "train.py": ["--iters", "10"],
}


def last_json(text: str) -> object:
    """The last JSON value printed on stdout (a script may print progress first)."""
    decoder = json.JSONDecoder()
    found = None
    for start in range(len(text)):
        if text[start] in "{[":
            try:
                found, _ = decoder.raw_decode(text[start:])
                break
            except ValueError:
                continue
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    results: dict[str, object] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    table = ARGS if not args.quick else QUICK
    for script in sorted(p.name for p in HERE.glob("*.py") if p.name != "run_all.py"):
        cmd = [sys.executable, str(HERE / script), *table.get(script, [])]
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        seconds = round(time.perf_counter() - started, 1)
        entry = {"args": table.get(script, []), "seconds": seconds, "returncode": done.returncode,
                 "result": last_json(done.stdout)}
        if done.returncode != 0:
            entry["stderr_tail"] = done.stderr[-2000:]
        results[script] = entry
        print(f"{script}: rc={done.returncode} in {seconds} s", file=sys.stderr)
    if not args.quick:
        for name, (script, *rest) in EXTRA_RUNS.items():
            done = subprocess.run([sys.executable, str(HERE.parent / script), *rest], capture_output=True, text=True)
            results[name] = {"args": rest, "returncode": done.returncode, "result": last_json(done.stdout)}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
