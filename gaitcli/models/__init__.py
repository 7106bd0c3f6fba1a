"""Models: GaitGL and MetaGait (reference and paper variants) and their checkpoints.

Public API (``build_model`` and ``convert_checkpoint`` resolve configs, so they live one layer up,
in :mod:`gaitcli.build` and :mod:`gaitcli.convert`; docs/models.md, "Python API")::

    from gaitcli.build import build_model
    from gaitcli.models import create_model, save_checkpoint, load_checkpoint

    model = build_model({"model_cfg": {"model": "MetaGait"}, "data_cfg": {"dataset_name": "CASIA-B"}})
    out = model(sils, seq_lens)          # sils [n, s, 64, 44] in [0, 1]
    out["embeddings"]                    # [n, parts, channels]  (post-BN; used for retrieval)
    out["logits"]                        # [n, parts, classes]
    feats = model.embed(list_of_sequences, batch_size=8)   # eval, no grad, any lengths
    save_checkpoint("run.safetensors", model, model.config, iteration=1000, labels=[...])
    model = load_checkpoint("run.safetensors")            # eval mode, model.config restored
"""

from __future__ import annotations

from .base import GaitModel
from .build import create_model
from .checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    load_checkpoint,
    load_state_dict_checked,
    read_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)
from .deepgaitv2 import DeepGaitV2
from .gaitbase import GaitBase
from .gaitgl import GaitGL
from .gaitpart import GaitPart
from .gaitset import GaitSet
from .metagait import MetaGait
from .registry import get_model_class, model_names, register_model

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "DeepGaitV2",
    "GaitBase",
    "GaitGL",
    "GaitModel",
    "GaitPart",
    "GaitSet",
    "MetaGait",
    "create_model",
    "get_model_class",
    "load_checkpoint",
    "load_state_dict_checked",
    "model_names",
    "read_checkpoint",
    "read_checkpoint_metadata",
    "register_model",
    "save_checkpoint",
]
