"""Reference outputs of OpenGait's GaitSet for the parity test (``tests/test_parity_gaitset.py``).

Runs OpenGait's own code, OUTSIDE the project (its venv has torchvision; gaitcli does not depend
on it), and is not collected by pytest (no ``test_`` prefix). It builds the reference network
without ``BaseModel.__init__`` (no config file, message manager or process group), seeds it,
initialises it with OpenGait's ``init_parameters`` and runs OpenGait's ``forward`` in eval mode on

(a) a fixed-length batch (``seqL`` None),
(b) variable-length sequences (lengths 9, 1, 4, 2, 5) as OpenGait's evaluator feeds them (frames
    concatenated along time, ``seqL`` = the lengths) and each sequence alone at batch size 1
    (what OpenGait's test does); the harness checks that both agree.

Regenerate the committed fixtures (small widths; ``tests/fixtures/parity/gaitset.*``)::

    /work/ref/venv/bin/python tests/parity/gaitset_harness.py /work/ref/OpenGait

Writes ``gaitset.pt`` (OpenGait's checkpoint layout ``{"model": state_dict, "iteration": N}``),
``gaitset.yaml`` (an OpenGait-shaped config of that network) and ``gaitset.npz`` (uint8 inputs,
lengths, and the reference's ``inference_feat['embeddings']`` ``[n, c, p]``).
``--full --out DIR`` does the same at the published size (OpenGait's configs/gaitset/gaitset.yaml;
not committed: about 10 MB) for a one-off measurement. The venv needs torch, torchvision (its C
ops are not loaded: ``register_fake`` is stubbed), numpy, pyyaml, einops, opencv; tensorboard is
stubbed. ``gaitpart_harness.py`` reuses the helpers here.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np
import yaml

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "parity"
FIXED = (2, 6)  # sequences, frames
LENGTHS = (9, 1, 4, 2, 5)  # variable-length sequences (OpenGait repeats nothing for these models)

SMALL = {
    "in_channels": [1, 4, 8, 8],
    "SeparateFCs": {"in_channels": 8, "out_channels": 8, "parts_num": 62},
    "bin_num": [16, 8, 4, 2, 1],
}
FULL = {  # OpenGait's configs/gaitset/gaitset.yaml
    "in_channels": [1, 32, 64, 128],
    "SeparateFCs": {"in_channels": 128, "out_channels": 256, "parts_num": 62},
    "bin_num": [16, 8, 4, 2, 1],
}


def import_model(opengait: Path, module: str, name: str) -> type:
    """OpenGait's model class ``name`` from ``modeling/models/<module>.py``, importing only what it
    needs (``modeling/models/__init__`` would import every model)."""
    import torch.library

    torch.library.register_fake = lambda *a, **k: (lambda f: f)  # torchvision's C ops do not load
    board = types.ModuleType("torch.utils.tensorboard")
    board.SummaryWriter = object  # type: ignore[attr-defined]
    sys.modules["torch.utils.tensorboard"] = board
    root = opengait / "opengait"
    sys.path.insert(0, str(root))
    import modeling  # noqa: F401

    models = types.ModuleType("modeling.models")
    models.__path__ = [str(root / "modeling" / "models")]  # type: ignore[attr-defined]
    sys.modules["modeling.models"] = models
    mod = __import__(f"modeling.models.{module}", fromlist=[name])
    return getattr(mod, name)


def build(cls: type, model_cfg: dict, seed: int):
    """The reference network as ``BaseModel.__init__`` builds it: ``build_network`` then
    ``init_parameters`` (xavier convolutions; ``fc_bin`` xavier at creation), seeded."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = cls.__new__(cls)
    nn.Module.__init__(model)
    model.build_network(model_cfg)
    model.init_parameters()
    return model.eval()


def silhouettes(rng: np.random.Generator, frames: int, h: int = 64, w: int = 44) -> np.ndarray:
    """uint8 walker-like blobs (a torso ellipse, a head, two swinging legs) with grey edges."""
    ys, xs = np.mgrid[0:h, 0:w]
    out = np.zeros((frames, h, w), np.float64)
    cx, phase = rng.uniform(18, 26), rng.uniform(0, 6.3)
    for f in range(frames):
        swing = 5 * np.sin(phase + 0.7 * f)
        body = ((xs - cx) / 6.0) ** 2 + ((ys - 26) / 13.0) ** 2 <= 1
        head = ((xs - cx) / 4.0) ** 2 + ((ys - 9) / 5.0) ** 2 <= 1
        legs = (ys >= 36) & ((np.abs(xs - (cx + swing * (ys - 36) / 28)) <= 2.5)
                             | (np.abs(xs - (cx - swing * (ys - 36) / 28)) <= 2.5))
        out[f] = (body | head | legs) * 255.0
    edges = (out > 0) & (rng.random(out.shape) < 0.1)
    out[edges] = rng.integers(64, 255, int(edges.sum()))
    return out.astype(np.uint8)


def run(model, sils: np.ndarray, seq_lens) -> np.ndarray:
    """OpenGait's forward on ``inputs = ([sils], labs, typs, vies, seqL)`` as its evaluator builds
    them (``sils`` float ``[n, s, h, w]`` = uint8 / 255): ``inference_feat['embeddings']``."""
    import torch

    ipts = [torch.from_numpy(sils).float() / 255.0]
    seql = None if seq_lens is None else torch.tensor([list(seq_lens)], dtype=torch.int32)
    labs = torch.zeros(ipts[0].shape[0] if seql is None else len(seq_lens), dtype=torch.long)
    with torch.no_grad():
        out = model((ipts, labs, None, None, seql))
    return out["inference_feat"]["embeddings"].numpy()


def make_reference(model, seed: int) -> dict[str, np.ndarray]:
    """Inputs and the reference's embeddings: fixed batch, packed variable-length, each alone."""
    rng = np.random.default_rng(seed)
    fixed = np.stack([silhouettes(rng, FIXED[1]) for _ in range(FIXED[0])])
    varlen = [silhouettes(rng, n) for n in LENGTHS]
    packed = np.concatenate(varlen)[None]  # [1, sum(lengths), h, w], the evaluator's layout
    var_emb = run(model, packed, LENGTHS)
    alone = np.concatenate([run(model, seq[None], [len(seq)]) for seq in varlen])
    gap = float(np.abs(alone - var_emb).max())
    assert gap <= 1e-5 * float(np.abs(var_emb).max()), f"packed vs alone differ by {gap}"
    return {
        "fixed": fixed, "fixed_embeddings": run(model, fixed, None),
        "varlen": np.concatenate(varlen), "lengths": np.array(LENGTHS),
        "varlen_embeddings": var_emb, "alone_embeddings": alone,
    }


def write(out: Path, name: str, model, model_cfg: dict, arrays: dict[str, np.ndarray],
          iteration: int) -> None:
    """``NAME.pt`` (OpenGait's checkpoint layout), ``NAME.yaml``, ``NAME.npz`` in ``out``."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save({"model": state, "iteration": iteration}, out / f"{name}.pt")
    config = {
        "data_cfg": {"dataset_name": "CASIA-B", "test_dataset_name": "CASIA-B"},
        "evaluator_cfg": {"metric": "euc", "transform": [{"type": "BaseSilCuttingTransform"}]},
        "loss_cfg": {"type": "TripletLoss", "margin": 0.2, "loss_term_weight": 1.0, "log_prefix": "triplet"},
        "model_cfg": model_cfg,
    }
    (out / f"{name}.yaml").write_text(
        f"# OpenGait-shaped config of the network in {name}.pt (tests/parity/{name}_harness.py)\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    np.savez_compressed(out / f"{name}.npz", **arrays)
    params = sum(p.numel() for p in model.parameters())
    shape = list(arrays["fixed_embeddings"].shape)
    print(f"wrote {out}/{name}.{{pt,yaml,npz}}: {params} parameters, embeddings {shape} [n, c, p]")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("opengait", type=Path, help="OpenGait checkout (the folder holding opengait/)")
    parser.add_argument("--full", action="store_true", help="the published widths (not committed)")
    parser.add_argument("--out", type=Path, default=FIXTURES, help="output folder")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    cls = import_model(args.opengait, "gaitset", "GaitSet")
    model_cfg = {"model": "GaitSet", **(FULL if args.full else SMALL)}
    model = build(cls, model_cfg, seed=21)
    write(args.out, "gaitset", model, model_cfg, make_reference(model, seed=21), iteration=40000)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
