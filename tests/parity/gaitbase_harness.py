"""Reference outputs of OpenGait's GaitBase (``Baseline`` + ``ResNet9``) for the parity test.

Runs OpenGait's own code, OUTSIDE the project (its venv has torchvision; gaitcli does not depend
on it), and is not collected by pytest (no ``test_`` prefix). It builds the reference network
without ``BaseModel.__init__`` (no config file, message manager or process group), seeds it,
gives its BatchNorm layers non-trivial statistics, and runs OpenGait's ``forward`` on

(a) a fixed-length batch (``seqL`` None) in eval mode,
(b) variable-length sequences, in eval mode, as OpenGait's evaluator feeds them (frames
    concatenated along time, ``seqL`` = the lengths, lengths 1 and 2 included) and each alone,
(c) the same concatenated batch in training mode (BatchNorm on the batch's real frames).

Regenerate the committed fixtures (small widths; ``tests/fixtures/parity/gaitbase.*``)::

    /work/ref/venv/bin/python tests/parity/gaitbase_harness.py /work/ref/OpenGait

Writes ``gaitbase.pt`` (OpenGait's checkpoint layout ``{"model": state_dict, "iteration": N}``),
``gaitbase.yaml`` (an OpenGait-shaped config of that small network) and ``gaitbase.npz`` (uint8
inputs, lengths, and the reference's ``inference_feat['embeddings']`` ``[n, c, p]`` and BN-neck
logits ``[n, classes, p]``). ``--full --out DIR`` does the same at GaitBase's published size
(channels 64-512, 74 classes; not committed: about 30 MB) for a one-off measurement.
The venv needs torch, torchvision (its C ops are not loaded: ``register_fake`` is stubbed),
numpy, pyyaml, einops; tensorboard is stubbed.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np
import yaml
from gaitset_harness import silhouettes  # the same synthetic walkers as the set-based models

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "parity"
ITERATION = 60000

SMALL = {
    "backbone_cfg": {"type": "ResNet9", "block": "BasicBlock", "channels": [8, 16, 16, 32],
                     "layers": [1, 1, 1, 1], "strides": [1, 2, 2, 1], "maxpool": False},
    "SeparateFCs": {"in_channels": 32, "out_channels": 16, "parts_num": 16},
    "SeparateBNNecks": {"class_num": 10, "in_channels": 16, "parts_num": 16},
    "bin_num": [16],
}
FULL = {  # OpenGait's configs/gaitbase/gaitbase_da_casiab.yaml
    "backbone_cfg": {"type": "ResNet9", "block": "BasicBlock", "channels": [64, 128, 256, 512],
                     "layers": [1, 1, 1, 1], "strides": [1, 2, 2, 1], "maxpool": False},
    "SeparateFCs": {"in_channels": 512, "out_channels": 256, "parts_num": 16},
    "SeparateBNNecks": {"class_num": 74, "in_channels": 256, "parts_num": 16},
    "bin_num": [16],
}
FIXED = (2, 6)  # sequences, frames
LENGTHS = (7, 1, 4, 2)  # variable-length sequences (1 and 2 frames: OpenGait repeats nothing)


def reference_imports(opengait: Path) -> Path:
    """Make OpenGait's modules importable (its ``opengait/`` folder on the path, torchvision's C
    ops and tensorboard stubbed); the folder."""
    import torch.library

    torch.library.register_fake = lambda *a, **k: (lambda f: f)  # torchvision's C ops do not load
    board = types.ModuleType("torch.utils.tensorboard")
    board.SummaryWriter = object  # type: ignore[attr-defined]
    sys.modules["torch.utils.tensorboard"] = board
    root = opengait / "opengait"
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


def import_baseline(opengait: Path) -> type:
    """OpenGait's ``Baseline`` class, importing only what it needs."""
    root = reference_imports(opengait)
    import modeling  # noqa: F401

    models = types.ModuleType("modeling.models")  # skip models/__init__ (imports every model)
    models.__path__ = [str(root / "modeling" / "models")]  # type: ignore[attr-defined]
    sys.modules["modeling.models"] = models
    from modeling.models.baseline import Baseline

    return Baseline


def build(opengait: Path, model_cfg: dict, seed: int):
    import torch
    from torch import nn

    Baseline = import_baseline(opengait)
    torch.manual_seed(seed)
    model = Baseline.__new__(Baseline)
    nn.Module.__init__(model)
    model.build_network(model_cfg)
    model.init_parameters()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # trained-looking BatchNorms, so the test sees their statistics used
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                m.weight.copy_(1 + 0.2 * torch.randn(c, generator=gen))
                m.bias.copy_(0.1 * torch.randn(c, generator=gen))
                m.num_batches_tracked.fill_(ITERATION)
    return model


def run(model, sils: np.ndarray, seq_lens, training: bool):
    """OpenGait's forward: ``inputs = ([sils], labs, typs, vies, seqL)`` as its evaluator builds
    them (``sils`` float ``[n, s, h, w]`` = uint8 / 255)."""
    import torch

    model.train(training)
    ipts = [torch.from_numpy(sils).float() / 255.0]
    seql = None if seq_lens is None else torch.tensor([list(seq_lens)], dtype=torch.int32)
    labs = torch.zeros(ipts[0].shape[0] if seql is None else len(seq_lens), dtype=torch.long)
    with torch.no_grad():
        out = model((ipts, labs, None, None, seql))
    emb = out["inference_feat"]["embeddings"].numpy()
    logits = out["training_feat"]["softmax"]["logits"].numpy()
    return emb, logits


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("opengait", type=Path, help="OpenGait checkout (the folder holding opengait/)")
    parser.add_argument("--full", action="store_true", help="GaitBase's published widths (not committed)")
    parser.add_argument("--out", type=Path, default=FIXTURES, help="output folder")
    parser.add_argument("--name", default="gaitbase")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    model_cfg = {"model": "Baseline", **(FULL if args.full else SMALL)}
    model = build(args.opengait, model_cfg, seed=20)
    rng = np.random.default_rng(20)
    fixed = np.stack([silhouettes(rng, FIXED[1]) for _ in range(FIXED[0])])
    varlen = [silhouettes(rng, n) for n in LENGTHS]
    packed = np.concatenate(varlen)[None]  # [1, sum(lengths), h, w], the evaluator's layout

    fixed_emb, fixed_logits = run(model, fixed, None, training=False)
    var_emb, var_logits = run(model, packed, LENGTHS, training=False)
    alone = np.concatenate([run(model, seq[None], None, training=False)[0] for seq in varlen])
    gap = float(np.abs(alone - var_emb).max())
    assert gap < 1e-4 * float(np.abs(var_emb).max()), f"packed vs alone differ by {gap}"
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}  # before training mode
    train_emb, train_logits = run(model, packed, LENGTHS, training=True)  # updates running stats

    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state, "iteration": ITERATION}, args.out / f"{args.name}.pt")
    config = {
        "data_cfg": {"dataset_name": "CASIA-B", "test_dataset_name": "CASIA-B"},
        "evaluator_cfg": {"metric": "euc", "transform": [{"type": "BaseSilCuttingTransform"}]},
        "model_cfg": model_cfg,
    }
    (args.out / f"{args.name}.yaml").write_text(
        "# OpenGait-shaped config of the network in gaitbase.pt (tests/parity/gaitbase_harness.py)\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    np.savez_compressed(
        args.out / f"{args.name}.npz",
        fixed=fixed, fixed_embeddings=fixed_emb, fixed_logits=fixed_logits,
        varlen=np.concatenate(varlen), lengths=np.array(LENGTHS),
        varlen_embeddings=var_emb, varlen_logits=var_logits, alone_embeddings=alone,
        train_embeddings=train_emb, train_logits=train_logits,
    )
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}/{args.name}.{{pt,yaml,npz}}: {params} parameters, "
          f"embeddings {list(fixed_emb.shape)} [n, c, p], packed vs alone max diff {gap:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
