"""Run every benchmark in bench/ and collect their JSON into bench/results.json.

    python bench/run_all.py [--quick] [--reference PATH-TO-OPENGAIT-CHECKOUT]

Each script prints JSON (one object, possibly pretty-printed) on stdout. The arguments below
size every run for a couple of minutes on a 2-core CPU; ``--quick`` shrinks them further.
``gpu.py`` runs only on a CUDA machine (it refuses elsewhere). The machine's fp32 sgemm peak is
measured at the start of the run (``bench/peak.py``), and ``figures`` lists every headline figure
with its reference measured in the same run (the straightforward version, or bf16 against fp32),
the ratio, the ratio against OpenGait where ``--reference`` points to a checkout (``n/a``
otherwise), and achieved GFLOP/s with its share of that peak where the FLOPs are known.
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
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peak import Peak, measure_peak, share  # noqa: E402

ARGS = {
    "prepare.py": ["--subjects", "4", "--views", "000,090,180"],
    "inspect_tree.py": [],
    "models.py": [],
    "eval.py": ["--scale", "0.25"],
    "losses.py": [],
    "train.py": ["--iters", "40"],
}
EXTRA_RUNS = {"train.py --bf16": ["bench/train.py", "--iters", "40", "--bf16"]}
QUICK = {
    "prepare.py": ["--subjects", "2", "--views", "090"],
    "inspect_tree.py": ["--dense"],
    "models.py": ["--models", "GaitGL", "--infer-reps", "1"],
    "eval.py": ["--scale", "0.02", "--extract-seqs", "4", "--kernel-size", "512"],
    "losses.py": ["--reps", "3"],
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


def dig(tree: Any, *keys: str) -> Any:
    """``tree[k1][k2]...`` or None where any step is missing."""
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def ratio(reference: Any, value: Any) -> float | None:
    """How many times faster ``value`` is than ``reference`` (both seconds)."""
    if not isinstance(reference, (int, float)) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return round(reference / value, 3)


def figure(
    name: str,
    seconds: Any,
    reference: Any,
    reference_name: str,
    gflops: Any,
    peak: Peak,
    opengait: Any = "n/a",
) -> dict[str, Any]:
    return {
        "figure": name,
        "seconds": seconds,
        "reference": reference_name,
        "reference_seconds": reference,
        "ratio": ratio(reference, seconds),
        "vs_opengait": opengait,
        "achieved_gflops": round(gflops, 1) if isinstance(gflops, (int, float)) else None,
        "share_of_sgemm_peak": share(gflops, peak) if isinstance(gflops, (int, float)) else None,
    }


def figures(results: dict[str, Any], peak: Peak) -> list[dict[str, Any]]:
    """The headline figures, each against its reference from the same run."""
    out = []
    for model in ("MetaGait", "GaitGL"):
        step = dig(results, "models.py", "result", "models", model, "train_step")
        if step:
            out.append(
                figure(
                    f"{model} training step fp32",
                    dig(step, "fast", "best_s"),
                    dig(step, "straightforward", "best_s"),
                    "straightforward",
                    dig(step, "fast", "gflops_per_s"),
                    peak,
                )
            )
            out.append(
                figure(
                    f"{model} training step bf16 autocast",
                    dig(step, "bf16_autocast", "best_s"),
                    dig(step, "fast", "best_s"),
                    "fp32",
                    None,
                    peak,
                )
            )
        inf = dig(results, "models.py", "result", "models", model, "inference")
        if inf:
            out.append(
                figure(
                    f"{model} variable-length inference",
                    dig(inf, "fast_embed", "best_s"),
                    dig(inf, "straightforward_one_at_a_time", "best_s"),
                    "one at a time",
                    dig(inf, "fast_embed", "gflops_per_s"),
                    peak,
                )
            )
    kernel = dig(results, "eval.py", "result", "kernel")
    if kernel:
        out.append(
            figure(
                "distance kernel + rank-5, fused per tile",
                dig(kernel, "seconds", "fused"),
                dig(kernel, "seconds", "straightforward"),
                "whole matrix + topk",
                dig(kernel, "achieved_gflops", "fused"),
                peak,
            )
        )
    ext = dig(results, "eval.py", "result", "extract")
    if ext:
        out.append(figure("extraction fp32", ext.get("seconds"), ext.get("reference_seconds"),
                          "straightforward, one sequence at a time", None, peak))
        out.append(figure("extraction bf16 autocast", ext.get("bf16_seconds"), ext.get("seconds"), "fp32",
                          None, peak))
    match = dig(results, "eval.py", "result", "match")
    if match:
        out.append(
            figure(
                "full OU-MVLP matching (extrapolated)",
                match.get("estimated_full_size_seconds"),
                match.get("full_size_arithmetic_bound_seconds"),
                "arithmetic bound at sgemm peak",
                match.get("achieved_gflops"),
                peak,
            )
        )
    loss = dig(results, "losses.py", "result")
    if loss:
        out.append(
            figure(
                "triplet loss forward+backward",
                dig(loss, "seconds_forward_backward", "grouped"),
                dig(loss, "seconds_forward_backward", "dense_cube"),
                "dense [p, n, n, n] cube",
                None,
                peak,
                loss.get("speedup_vs_opengait", "n/a"),
            )
        )
    fp32 = dig(results, "train.py", "result", "seconds_per_iteration")
    bf16 = dig(results, "train.py --bf16", "result", "seconds_per_iteration")
    if fp32 is not None:
        out.append(figure("training loop, bf16 vs fp32", bf16, fp32, "fp32", None, peak))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    parser.add_argument("--reference", type=Path, default=None, help="an OpenGait checkout (for losses.py)")
    args = parser.parse_args()
    peak = measure_peak("cpu")
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "peak": peak.to_json(),
        "reference": str(args.reference) if args.reference else "n/a",
    }
    table = ARGS if not args.quick else QUICK
    skip = {"run_all.py", "gpu.py", "peak.py"}
    for script in sorted(p.name for p in HERE.glob("*.py") if p.name not in skip):
        extra = ["--reference", str(args.reference)] if args.reference and script == "losses.py" else []
        cmd = [sys.executable, str(HERE / script), *table.get(script, []), *extra]
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        seconds = round(time.perf_counter() - started, 1)
        entry = {
            "args": table.get(script, []),
            "seconds": seconds,
            "returncode": done.returncode,
            "result": last_json(done.stdout),
        }
        if done.returncode != 0:
            entry["stderr_tail"] = done.stderr[-2000:]
        results[script] = entry
        print(f"{script}: rc={done.returncode} in {seconds} s", file=sys.stderr)
    if not args.quick:
        for name, (script, *rest) in EXTRA_RUNS.items():
            done = subprocess.run(
                [sys.executable, str(HERE.parent / script), *rest], capture_output=True, text=True
            )
            results[name] = {"args": rest, "returncode": done.returncode, "result": last_json(done.stdout)}
    results["figures"] = figures(results, peak)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
