"""Reference outputs of OpenGait's silhouette transforms for tests/test_transforms_da.py.

Runs OpenGait's own ``opengait/data/transform.py`` OUTSIDE the project (not collected by pytest).
OpenGait draws from Python's global ``random``; this harness seeds it, records every draw
(``uniform(a, b)``, ``choice(range(lo, hi))``, ``randint(a, b)``, each with its bounds and value)
and stores the inputs, the draws and OpenGait's outputs. The test replays the draws through
gaitcli's transforms (a scripted generator in place of numpy's), so the bounds, the order of the
draws, the ``prob`` rule and the pixels are all compared with OpenGait's.

Cases: the ``trainer_cfg.transform`` chains of OpenGait's ``gaitbase_da_casiab.yaml`` and
``gaitbase_da_gait3d.yaml`` read from the OpenGait checkout (several seeds: each transform is
applied in some and skipped in others), and each random transform alone with ``prob: 1`` and
non-default arguments, before and after the division by 255.

Regenerate ``tests/fixtures/parity/transforms_da.{npz,json}``::

    /work/ref/venv/bin/python tests/parity/transforms_da_harness.py /work/ref/OpenGait
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gaitbase_harness import FIXTURES, reference_imports, silhouettes  # noqa: E402

FRAMES = 2
CHAIN_SEEDS = range(12)


def import_transforms(opengait: Path):
    reference_imports(opengait)
    from data import transform

    return transform


class Recorder:
    """Wraps ``random.uniform`` / ``choice`` / ``randint`` and records each draw."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.orig = (random.uniform, random.choice, random.randint)

    def __enter__(self) -> Recorder:
        uniform, choice, randint = self.orig

        def rec_uniform(a, b):
            value = uniform(a, b)
            self.calls.append({"kind": "uniform", "low": a, "high": b, "value": value})
            return value

        def rec_choice(seq):
            seq = list(seq)
            assert seq == list(range(seq[0], seq[-1] + 1)), "choice from a range only"
            value = choice(seq)
            self.calls.append({"kind": "int", "low": seq[0], "high": seq[-1] + 1, "value": value})
            return value

        def rec_randint(a, b):
            value = randint(a, b)
            self.calls.append({"kind": "int", "low": a, "high": b + 1, "value": value})
            return value

        random.uniform, random.choice, random.randint = rec_uniform, rec_choice, rec_randint
        return self

    def __exit__(self, *exc: object) -> None:
        random.uniform, random.choice, random.randint = self.orig


def main(argv: list[str]) -> int:
    opengait = Path(argv[0])
    out = Path(argv[1]) if len(argv) > 1 else FIXTURES
    transform = import_transforms(opengait)
    configs = opengait / "configs" / "gaitbase"
    chains = {
        name: yaml.safe_load((configs / f"{name}.yaml").read_text())["trainer_cfg"]["transform"]
        for name in ("gaitbase_da_casiab", "gaitbase_da_gait3d")
    }
    single = {
        "rotate_after_division": [{"type": "BaseSilCuttingTransform"},
                                  {"type": "RandomRotate", "prob": 1.0, "degree": 30}],
        "rotate_uint8": [{"type": "RandomRotate", "prob": 1.0, "degree": 25}],
        "perspective_uint8": [{"type": "RandomPerspective", "prob": 1.0}],
        "perspective_after_division": [{"type": "BaseSilCuttingTransform"},
                                       {"type": "RandomPerspective", "prob": 1.0}],
        "affine_uint8": [{"type": "RandomAffine", "prob": 1.0}],
        "erasing_per_frame": [{"type": "BaseSilCuttingTransform"},
                              {"type": "RandomErasing", "prob": 0.7, "sl": 0.1, "sh": 0.4, "r1": 0.5,
                               "per_frame": True}],
        "erasing_sequence": [{"type": "BaseSilCuttingTransform"}, {"type": "RandomErasing", "prob": 1.0}],
        "flip": [{"type": "BaseSilCuttingTransform"}, {"type": "RandomHorizontalFlip", "prob": 1.0}],
    }
    cases: list[dict] = []
    arrays: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(5)

    def run(name: str, spec: list, seed: int) -> None:
        frames = silhouettes(rng, FRAMES, 64, 64)
        trf = transform.get_transform(spec)[0] if spec[0]["type"] == "Compose" else \
            transform.get_transform({"type": "Compose", "trf_cfg": spec})
        random.seed(seed)
        with Recorder() as rec:
            result = trf(frames.copy())
        key = f"case{len(cases)}"
        arrays[f"{key}_in"] = frames
        divided = result.dtype != np.uint8
        scale = 255.0 if divided else 1.0  # OpenGait's float frames / 255 back on the 0-255 scale
        arrays[f"{key}_out"] = (np.asarray(result, np.float64) * scale).astype(np.float32)
        cases.append({"key": key, "name": name, "spec": spec, "seed": seed, "calls": rec.calls,
                      "divided": bool(divided)})

    for name, spec in chains.items():
        for seed in CHAIN_SEEDS:
            run(name, spec, seed)
    for name, spec in single.items():
        for seed in range(3):
            run(name, spec, 100 + seed)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "transforms_da.npz", **arrays)
    (out / "transforms_da.json").write_text(json.dumps({"cases": cases}, indent=None) + "\n")
    applied = {name: sum(1 for c in cases if c["name"] == name and any(
        k["kind"] != "uniform" or (k["low"], k["high"]) != (0, 1) for k in c["calls"])) for name in chains}
    print(f"wrote {len(cases)} cases to {out}/transforms_da.{{npz,json}}; chains with a transform applied: "
          f"{applied}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
