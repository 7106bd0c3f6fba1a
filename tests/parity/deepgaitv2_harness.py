"""Reference outputs of OpenGait's DeepGaitV2 (p3d, 3d and 2d modes) for the parity test.

Runs OpenGait's own code, OUTSIDE the project (its venv has torchvision; gaitcli does not depend
on it), and is not collected by pytest (no ``test_`` prefix). It loads only
``opengait/modeling/modules.py`` and ``opengait/modeling/models/deepgaitv2.py`` (``utils``,
``BaseModel`` and matplotlib are stubbed), builds the network without ``BaseModel.__init__``
(no config file, message manager or process group), initialises it as OpenGait does
(``init_parameters``), gives its BatchNorms non-trivial statistics, and runs OpenGait's
``forward`` on

(a) a fixed-length batch (``seqL`` None) in eval mode;
(b) variable-length sequences (lengths 1 and 2 included) in eval mode, each ALONE: the
    reference for a padded batch. OpenGait's evaluator form (frames of several sequences
    concatenated along time, ``seqL`` = lengths) is run too and only reported: its temporal
    convolutions see the neighbouring sequence's frames across each boundary, so it is not
    what a sequence gives alone;
(c) the fixed-length batch in training mode (BatchNorm on batch statistics).

Regenerate the committed fixtures (small widths; ``tests/fixtures/parity/deepgaitv2_*``)::

    /work/ref/venv/bin/python tests/parity/deepgaitv2_harness.py /work/ref/OpenGait

Per mode it writes ``deepgaitv2_<mode>.pt`` (OpenGait's checkpoint layout
``{"model": state_dict, "iteration": N}``), ``deepgaitv2_<mode>.yaml`` (an OpenGait-shaped config
of that network) and ``deepgaitv2_<mode>.npz`` (uint8 inputs, lengths, and the reference's
``inference_feat['embeddings']`` ``[n, c, p]`` and BNNeck logits ``[n, classes, p]``).
``--full --out DIR`` does the same at the published sizes (channels 64-512; ``p3d`` = the CASIA-B
config, ``p3d-deep`` = the Gait3D / GREW layers [1, 4, 4, 1], ``3d``; not committed, tens of
MB) for a one-off measurement; the test reads such a folder from ``DEEPGAITV2_PARITY_DIR``.
The venv needs torch, torchvision (its C ops are not loaded: ``register_fake`` is stubbed),
numpy, pyyaml, einops.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import yaml

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "parity"
ITERATION = 60000


def backbone(mode: str, layers: list[int], channels: list[int]) -> dict:
    return {"mode": mode, "in_channels": 1, "layers": layers, "channels": channels}


# Small: channels[2] == channels[3] so layer4 keeps an identity shortcut; two blocks in layer2.
SMALL = {mode: (backbone(mode, [1, 2, 1, 1], [4, 4, 8, 8]), 6) for mode in ("p3d", "3d", "2d")}
FULL = {  # OpenGait's configs/deepgaitv2/DeepGaitV2_casiab.yaml (p3d) and _gait3d.yaml (p3d-deep)
    "p3d": (backbone("p3d", [1, 1, 1, 1], [64, 128, 256, 512]), 74),
    "p3d-deep": (backbone("p3d", [1, 4, 4, 1], [64, 128, 256, 512]), 3000),
    "3d": (backbone("3d", [1, 1, 1, 1], [64, 128, 256, 512]), 74),
}
FIXED = (2, 8)  # sequences, frames
LENGTHS = (6, 1, 3, 2, 9)  # variable-length sequences
FULL_FIXED = (2, 30)
FULL_LENGTHS = (40, 1, 2, 17, 30)


def import_deepgaitv2(opengait: Path) -> type:
    """OpenGait's ``DeepGaitV2`` class, loading only its two files."""
    import torch
    import torch.library

    torch.library.register_fake = lambda *a, **k: (lambda f: f)  # torchvision's C ops do not load
    import torchvision  # noqa: F401  (modules.py imports torchvision.ops)

    root = opengait / "opengait"

    def package(name: str, path: Path | None = None) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__path__ = [str(path)] if path else []  # type: ignore[attr-defined]
        sys.modules[name] = module
        return module

    utils = types.ModuleType("utils")  # the real one imports tensorboard and the message manager
    utils.clones = lambda m, n: torch.nn.ModuleList([copy.deepcopy(m) for _ in range(n)])  # type: ignore
    utils.is_list_or_tuple = lambda x: isinstance(x, (list, tuple))  # type: ignore[attr-defined]
    sys.modules["utils"] = utils
    package("modeling", root / "modeling")
    package("modeling.models", root / "modeling" / "models")  # skip __init__ (imports every model)
    plt = package("matplotlib")
    plt.pyplot = types.ModuleType("matplotlib.pyplot")  # type: ignore[attr-defined]
    sys.modules["matplotlib.pyplot"] = plt.pyplot  # type: ignore[attr-defined]
    base = types.ModuleType("modeling.base_model")
    base.BaseModel = torch.nn.Module  # type: ignore[attr-defined]
    sys.modules["modeling.base_model"] = base

    def load(name: str, path: Path) -> types.ModuleType:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    load("modeling.modules", root / "modeling" / "modules.py")
    return load("modeling.models.deepgaitv2", root / "modeling" / "models" / "deepgaitv2.py").DeepGaitV2


def init_parameters(model) -> None:
    """OpenGait's ``BaseModel.init_parameters`` (not importable without its whole package)."""
    from torch import nn

    for m in model.modules():
        if isinstance(m, (nn.Conv3d, nn.Conv2d, nn.Conv1d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight.data)
            if m.bias is not None:
                nn.init.constant_(m.bias.data, 0.0)
        elif isinstance(m, (nn.BatchNorm3d, nn.BatchNorm2d, nn.BatchNorm1d)) and m.affine:
            nn.init.normal_(m.weight.data, 1.0, 0.02)
            nn.init.constant_(m.bias.data, 0.0)


def build(cls: type, model_cfg: dict, seed: int):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = cls.__new__(cls)
    nn.Module.__init__(model)
    model.build_network(model_cfg)
    init_parameters(model)
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


def silhouettes(rng: np.random.Generator, frames: int, h: int = 64, w: int = 44) -> np.ndarray:
    """uint8 walker-like shapes (torso, head, swinging legs) drifting sideways, with grey edges,
    so that consecutive frames differ and a temporal convolution matters."""
    ys, xs = np.mgrid[0:h, 0:w]
    out = np.zeros((frames, h, w), np.float64)
    cx, phase, drift = rng.uniform(17, 27), rng.uniform(0, 6.3), rng.uniform(-0.6, 0.6)
    for f in range(frames):
        x0 = cx + drift * f
        swing = 6 * np.sin(phase + 0.8 * f)
        torso = ((xs - x0) / 6.0) ** 2 + ((ys - 26) / 12.0) ** 2 <= 1
        head = ((xs - x0) / 4.0) ** 2 + ((ys - 9) / 5.0) ** 2 <= 1
        reach = (ys - 36) / 28
        legs = (ys >= 36) & (
            (np.abs(xs - (x0 + swing * reach)) <= 2.5) | (np.abs(xs - (x0 - swing * reach)) <= 2.5)
        )
        out[f] = (torso | head | legs) * 255.0
    edges = (out > 0) & (rng.random(out.shape) < 0.1)
    out[edges] = rng.integers(64, 255, int(edges.sum()))
    return out.astype(np.uint8)


def run(model, sils: np.ndarray, seq_lens, training: bool):
    """OpenGait's forward on ``inputs = ([sils], labs, typs, vies, seqL)`` as its evaluator builds
    them (``sils`` float ``[n, s, h, w]`` = uint8 / 255): ``(embeddings [n, c, p], logits [n, k, p])``."""
    import torch

    model.train(training)
    ipts = [torch.from_numpy(sils).float() / 255.0]
    seql = None if seq_lens is None else torch.tensor([list(seq_lens)], dtype=torch.int32)
    labs = torch.zeros(ipts[0].shape[0] if seql is None else len(seq_lens), dtype=torch.long)
    with torch.no_grad():
        out = model((ipts, labs, None, None, seql))
    return out["inference_feat"]["embeddings"].numpy(), out["training_feat"]["softmax"]["logits"].numpy()


def write_mode(cls: type, name: str, bb: dict, class_num: int, out: Path, fixed_shape, lengths) -> str:
    import torch

    model_cfg = {"model": "DeepGaitV2", "Backbone": bb, "SeparateBNNecks": {"class_num": class_num}}
    model = build(cls, model_cfg, seed=20)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}  # before training mode
    rng = np.random.default_rng(20)
    fixed = np.stack([silhouettes(rng, fixed_shape[1]) for _ in range(fixed_shape[0])])
    varlen = [silhouettes(rng, n) for n in lengths]

    fixed_emb, fixed_logits = run(model, fixed, None, training=False)
    alone = [run(model, seq[None], None, training=False) for seq in varlen]
    alone_emb = np.concatenate([a[0] for a in alone])
    alone_logits = np.concatenate([a[1] for a in alone])
    concat_emb, _ = run(model, np.concatenate(varlen)[None], lengths, training=False)
    leak = float(np.abs(concat_emb - alone_emb).max() / np.abs(alone_emb).max())
    train_emb, train_logits = run(copy.deepcopy(model), fixed, None, training=True)

    stem = f"deepgaitv2_{name}"
    torch.save({"model": state, "iteration": ITERATION}, out / f"{stem}.pt")
    config = {
        "data_cfg": {"dataset_name": "CASIA-B", "test_dataset_name": "CASIA-B"},
        "evaluator_cfg": {"metric": "euc", "transform": [{"type": "BaseSilCuttingTransform"}]},
        "model_cfg": model_cfg,
    }
    (out / f"{stem}.yaml").write_text(
        f"# OpenGait-shaped config of the network in {stem}.pt (tests/parity/deepgaitv2_harness.py)\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    np.savez_compressed(
        out / f"{stem}.npz",
        fixed=fixed, fixed_embeddings=fixed_emb, fixed_logits=fixed_logits,
        varlen=np.concatenate(varlen), lengths=np.array(lengths),
        alone_embeddings=alone_emb, alone_logits=alone_logits,
        train_embeddings=train_emb, train_logits=train_logits,
    )
    params = sum(p.numel() for p in model.parameters())
    return (f"{stem}: {params} parameters, embeddings {list(fixed_emb.shape)} [n, c, p]; OpenGait's "
            f"concatenated (seqL) form differs from each sequence alone by {leak:.1e} (relative)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("opengait", type=Path, help="OpenGait checkout (the folder holding opengait/)")
    parser.add_argument("--full", action="store_true", help="the published widths (not committed)")
    parser.add_argument("--out", type=Path, default=FIXTURES, help="output folder")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1 if not args.full else 2)
    cls = import_deepgaitv2(args.opengait)
    args.out.mkdir(parents=True, exist_ok=True)
    table = FULL if args.full else SMALL
    shape, lengths = (FULL_FIXED, FULL_LENGTHS) if args.full else (FIXED, LENGTHS)
    for name, (bb, class_num) in table.items():
        print(write_mode(cls, name, bb, class_num, args.out, shape, lengths), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
