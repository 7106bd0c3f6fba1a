"""Benchmark the batch-all triplet loss: the ``[p, n, K, n - K]`` form against the masked
``[p, n, n, n]`` cube it replaced, forward + backward, side by side in one run.

    python bench/losses.py [--pk 8,4] [--parts 64] [--channels 32] [--reps 20]
                           [--reference PATH-TO-OPENGAIT-CHECKOUT]

With ``--reference`` the OpenGait checkout's ``TripletLoss`` (``opengait/modeling/losses/triplet.py``)
is timed on the same embeddings too; without it, or when it cannot be imported, its figures are
``"n/a"``. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from gaitcli.training.losses import dense_triplet_terms, grouped_triplet_terms, pairwise_distance


def _loss_from(
    terms_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def run(emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        feats = emb.permute(1, 0, 2)
        dist = pairwise_distance(feats, feats)
        terms = terms_fn(dist, labels.unsqueeze(0) == labels.unsqueeze(1))
        num = (terms != 0).sum(-1)
        return (terms.sum(-1) / (num + 1e-9)).mean()

    return run


def opengait_loss(path: Path) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | str:
    """OpenGait's TripletLoss from a checkout, or why it could not be loaded."""
    try:
        sys.path.insert(0, str(path / "opengait"))
        from modeling.losses.triplet import TripletLoss  # type: ignore[import-not-found]
    except Exception as exc:  # any failure just means no reference figure
        return f"n/a ({type(exc).__name__}: {exc})"
    loss = TripletLoss(margin=0.2)

    def run(emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        value, _ = loss(emb, labels)
        return value  # type: ignore[no-any-return]

    return run


def time_backward(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    emb: torch.Tensor,
    labels: torch.Tensor,
    reps: int,
) -> float:
    best = float("inf")
    for rep in range(reps + 1):
        e = emb.detach().clone().requires_grad_()
        start = time.perf_counter()
        fn(e, labels).backward()
        if rep:
            best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pk", default="8,4", help="P ids x K sequences per batch")
    parser.add_argument("--parts", type=int, default=64)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--reference", type=Path, default=None, help="an OpenGait checkout")
    args = parser.parse_args(argv)
    p_ids, k = (int(v) for v in args.pk.split(","))
    labels = torch.arange(p_ids).repeat_interleave(k)
    emb = torch.randn(p_ids * k, args.parts, args.channels, generator=torch.Generator().manual_seed(0))
    variants: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
        "grouped": _loss_from(lambda d, s: grouped_triplet_terms(d, s, k)),
        "dense_cube": _loss_from(lambda d, s: dense_triplet_terms(d, s)),
    }
    ref = opengait_loss(args.reference) if args.reference else "n/a"
    if not isinstance(ref, str):
        variants["opengait"] = ref
    seconds = {name: time_backward(fn, emb, labels, args.reps) for name, fn in variants.items()}
    out = {
        "pk": [p_ids, k],
        "parts": args.parts,
        "channels": args.channels,
        "seconds_forward_backward": {n: round(v, 5) for n, v in seconds.items()},
        "speedup_vs_dense_cube": round(seconds["dense_cube"] / seconds["grouped"], 2),
        "speedup_vs_opengait": round(seconds["opengait"] / seconds["grouped"], 2)
        if "opengait" in seconds
        else ref,
        "terms": {"grouped": p_ids * k * k * (p_ids * k - k), "dense_cube": (p_ids * k) ** 3},
    }
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
