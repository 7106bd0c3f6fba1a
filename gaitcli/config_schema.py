"""The configuration schema: every key gaitcli understands, its type, default and meaning.

The schema is the single source of truth for three things: the packaged defaults a user file is
merged over, validation (unknown keys, wrong types, out-of-range numbers), and ``docs/config.md``
(a test fails when the page and this module disagree). Section and key names follow OpenGait so
its configs load unchanged. The ``model_cfg`` keys are not listed here: each registered model
declares them in its config dataclass (:mod:`gaitcli.models.registry`), and :func:`model_keys`
turns that dataclass into schema keys.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from gaitcli.data.transforms import TRANSFORM_NAMES
from gaitcli.errors import ConfigError, option
from gaitcli.models.registry import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    Range,
    default_model_name,
    get_model_entry,
    model_names,
)


@dataclass(frozen=True)
class Key:
    """One configuration key.

    ``type`` is one of: ``int``, ``float``, ``bool``, ``str``, ``path``, ``int|str``,
    ``list[int]``, ``list[str]``, ``list[bool]``, ``int|list[int]``, ``mapping`` (free-form),
    ``section`` (nested keys in ``children``) or ``list[mapping]``.
    """

    type: str
    """The value's type name (see above)."""
    default: object
    """The packaged default."""
    doc: str
    """One line of help (docs/config.md)."""
    choices: tuple[object, ...] | None = None
    """The allowed values, when only a few are."""
    nullable: bool = False
    """Whether null is allowed."""
    children: dict[str, Key] | None = field(default=None, hash=False)
    """The keys of a nested section."""
    range: Range | None = None
    """Allowed numbers (for a list: of each element)."""


# Numeric arguments of optimisers and schedulers, by argument name: checked for every
# optimizer_cfg / scheduler_cfg key of that name, whichever torch class takes it.
UNIT_OPEN = Range(0, 1, high_open=True)
ARGUMENT_RANGES: dict[str, Range] = {
    "lr": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "momentum": UNIT_OPEN,
    "dampening": Range(0, 1),
    "betas": UNIT_OPEN,
    "eps": POSITIVE,
    "alpha": Range(0, 1),
    "lr_decay": NON_NEGATIVE,
    "rho": Range(0, 1),
    "gamma": Range(0, 1, low_open=True),
    "warmup_iters": NON_NEGATIVE,
    "warmup_factor": Range(0, 1, low_open=True),
    "milestones": NON_NEGATIVE,
    "step_size": AT_LEAST_ONE,
    "T_max": AT_LEAST_ONE,
    "T_0": AT_LEAST_ONE,
    "T_mult": AT_LEAST_ONE,
    "eta_min": NON_NEGATIVE,
    "max_lr": POSITIVE,
    "total_steps": AT_LEAST_ONE,
    "epochs": AT_LEAST_ONE,
    "steps_per_epoch": AT_LEAST_ONE,
    "pct_start": Range(0, 1, low_open=True, high_open=True),
    "div_factor": POSITIVE,
    "final_div_factor": POSITIVE,
    "start_factor": Range(0, 1, low_open=True),
    "end_factor": Range(0, 1),
    "total_iters": NON_NEGATIVE,
    "factor": Range(0, 1, low_open=True),
    "power": POSITIVE,
    "base_lr": POSITIVE,
    "step_size_up": AT_LEAST_ONE,
}


SAMPLE_TYPES = (
    "fixed_ordered",
    "fixed_unordered",
    "unfixed_ordered",
    "unfixed_unordered",
    "all_ordered",
    "all_unordered",
)

TRANSFORMS = TRANSFORM_NAMES

_TRANSFORM_DOC = (
    "List (or Compose) of {type: ...} transforms applied to each sequence in order: "
    "BaseSilCuttingTransform cuts 10*(W//64) columns per side (64x64 -> 64x44) or `cutting`; "
    "Resize `size: [h, w]` (area averaging); RandomHorizontalFlip, RandomErasing, RandomRotate, "
    "RandomPerspective, RandomAffine (`prob`, training only; see docs/recipes.md)."
)

_TRAIN_SAMPLER = {
    "type": Key("str", "TripletSampler", "Batch sampler for training.", choices=("TripletSampler",)),
    "batch_size": Key(
        "list[int]",
        [8, 8],
        "[P, K]: P identities, K sequences each, per iteration (over all ranks).",
        range=AT_LEAST_ONE,
    ),
    "batch_shuffle": Key("bool", True, "Shuffle the P*K sequences of a batch."),
    "sample_type": Key(
        "str", "fixed_ordered", "How frames are drawn from each sequence.", choices=SAMPLE_TYPES
    ),
    "frames_num_fixed": Key("int", 30, "Frames per sequence for fixed_* sampling.", range=AT_LEAST_ONE),
    "frames_skip_num": Key(
        "int", 0, "Extra frames in the window from which fixed_ordered picks its frames.", range=NON_NEGATIVE
    ),
    "frames_num_min": Key(
        "int", 25, "Lower bound of the frame count for unfixed_* sampling.", range=AT_LEAST_ONE
    ),
    "frames_num_max": Key(
        "int", 50, "Upper bound of the frame count for unfixed_* sampling.", range=AT_LEAST_ONE
    ),
    "frames_all_limit": Key(
        "int", 720, "all_* sampling keeps at most this many leading frames.", range=AT_LEAST_ONE
    ),
}

_EVAL_SAMPLER = {
    "type": Key("str", "InferenceSampler", "Sampler for evaluation.", choices=("InferenceSampler",)),
    "batch_size": Key(
        "int", 8, "Sequences per inference batch (any value; not tied to the GPU count).", range=AT_LEAST_ONE
    ),
    "batch_shuffle": Key("bool", False, "Accepted for OpenGait compatibility; inference never shuffles."),
    "sample_type": Key("str", "all_ordered", "How frames are drawn at inference.", choices=SAMPLE_TYPES),
    "frames_all_limit": Key(
        "int", 720, "all_* sampling keeps at most this many leading frames.", range=AT_LEAST_ONE
    ),
    "frames_num_fixed": Key(
        "int", 30, "Frames per sequence if fixed_* sampling is used at inference.", range=AT_LEAST_ONE
    ),
}

SCHEMA: dict[str, dict[str, Key]] = {
    "data_cfg": {
        "dataset_name": Key(
            "str",
            "CASIA-B",
            "Data set name; selects the evaluation protocol and GaitGL's branch (OUMVLP, GREW: large).",
        ),
        "dataset_root": Key(
            "path",
            "data/CASIA-B-pkl",
            "Prepared tree id/type/view/*.pkl; relative paths are taken from the config file's folder.",
        ),
        "dataset_partition": Key(
            "path",
            "CASIA-B.json",
            "Partition JSON {TRAIN_SET, TEST_SET}; a missing file named like a packaged partition "
            "uses the packaged one.",
        ),
        "num_workers": Key("int", 1, "DataLoader worker processes.", range=NON_NEGATIVE),
        "cache": Key("bool", False, "Keep every sequence in memory after the first read."),
        "test_dataset_name": Key(
            "str", None, "Name of the test set (protocol selection); null = dataset_name.", nullable=True
        ),
        "remove_no_gallery": Key("bool", False, "Drop probe sequences whose id has no gallery sequence."),
        "data_in_use": Key(
            "list[bool]",
            None,
            "Which of several pkls per sequence to load (OpenGait multi-modal folders).",
            nullable=True,
        ),
        "min_frames": Key(
            "int",
            None,
            "Leave sequences shorter than this out of training instead of repeating them end-to-start.",
            nullable=True,
            range=AT_LEAST_ONE,
        ),
    },
    "evaluator_cfg": {
        "enable_float16": Key("bool", False, "Autocast inference in half precision on CUDA."),
        "restore_ckpt_strict": Key(
            "bool", True, "Require checkpoint names and shapes to match the model exactly."
        ),
        "restore_hint": Key(
            "int|str", 0, "Checkpoint to evaluate: an iteration number, a path, or 'latest'."
        ),
        "save_name": Key("str", "MetaGait", "Run name used to find checkpoints."),
        "eval_func": Key(
            "str",
            "evaluate_indoor_dataset",
            "Reference evaluation function name (mapped onto the evaluation protocol).",
        ),
        "sampler": Key("section", None, "Inference sampler.", children=_EVAL_SAMPLER),
        "transform": Key(
            "list[mapping]",
            [{"type": "BaseSilCuttingTransform"}],
            _TRANSFORM_DOC + " Random transforms are refused here (evaluation is deterministic).",
        ),
        "metric": Key("str", "euc", "Distance: euc (per-part Euclidean) or cos.", choices=("euc", "cos")),
        "cross_view_gallery": Key("bool", False, "Use the cross-view-gallery protocol (gives mAP)."),
        "protocol": Key(
            "str",
            "auto",
            "Evaluation protocol.",
            choices=("auto", "casia-b", "ou-mvlp", "cross-view", "generic", "gait3d", "grew", "ccpg"),
        ),
        "gallery_types": Key(
            "list[str]", None, "generic protocol: types forming the gallery.", nullable=True
        ),
        "probe_sets": Key("mapping", None, "generic protocol: {name: [types]} probe sets.", nullable=True),
    },
    "loss_cfg": {},  # a list of losses; see LOSS_SCHEMAS
    "model_cfg": {},  # derived from the registered model's config dataclass; see model_keys
    "optimizer_cfg": {
        "solver": Key("str", "Adam", "Any torch.optim optimiser by name; other keys are its arguments."),
        "lr": Key("float", 3.5e-4, "Base learning rate.", range=ARGUMENT_RANGES["lr"]),
        "weight_decay": Key("float", 5e-4, "Weight decay.", range=ARGUMENT_RANGES["weight_decay"]),
    },
    "scheduler_cfg": {
        "scheduler": Key(
            "str",
            "warmup",
            "'warmup' (WarmupMultiStepLR) or any torch.optim.lr_scheduler by name; "
            "other keys are its arguments.",
        ),
        "milestones": Key(
            "list[int]",
            [80000, 100000],
            "Iterations at which the lr is multiplied by gamma (strictly increasing).",
            range=ARGUMENT_RANGES["milestones"],
        ),
        "gamma": Key("float", 0.1, "Multiplicative decay at each milestone.", range=ARGUMENT_RANGES["gamma"]),
        "warmup_iters": Key(
            "int",
            10000,
            "warmup: length of the warm-up (may exceed the run: a note says so).",
            range=ARGUMENT_RANGES["warmup_iters"],
        ),
        "warmup_factor": Key(
            "float", 0.01, "warmup: lr factor at iteration 0.", range=ARGUMENT_RANGES["warmup_factor"]
        ),
        "warmup_method": Key("str", "linear", "warmup: linear or constant.", choices=("linear", "constant")),
        "decay": Key(
            "str",
            "multistep",
            "warmup: after the warm-up, multistep (gamma at each milestone) or cosine (milestones unused).",
            choices=("multistep", "cosine"),
        ),
        "cosine_iters": Key(
            "int",
            None,
            "warmup, decay cosine: the iteration where the cosine reaches min_factor (usually total_iter).",
            nullable=True,
            range=AT_LEAST_ONE,
        ),
        "min_factor": Key(
            "float", 0.0, "warmup, decay cosine: lr factor at the end of the cosine.", range=Range(0, 1)
        ),
    },
    "trainer_cfg": {
        "enable_float16": Key("bool", True, "fp16 autocast + GradScaler on CUDA (ignored on CPU)."),
        "enable_bfloat16": Key(
            "bool", False, "bf16 autocast (CPU or CUDA); about 2x faster on AVX-512-BF16 CPUs."
        ),
        "kernel_choice": Key(
            "str",
            "config",
            "config: train with enable_bfloat16 and model_cfg.channels_last as written; auto: on a CPU, "
            "measure the training step in fp32 / bf16 and contiguous / channels-last at start-up "
            "(seconds, cached per CPU) and train with the fastest (docs/train.md, Kernel choice).",
            choices=("config", "auto"),
        ),
        "with_test": Key("bool", False, "Evaluate the test set at every save."),
        "fix_BN": Key("bool", False, "Keep BatchNorm layers in eval mode while training."),
        "log_iter": Key("int", 100, "Iterations per logged window.", range=AT_LEAST_ONE),
        "restore_ckpt_strict": Key(
            "bool", True, "Require checkpoint names and shapes to match the model exactly."
        ),
        "optimizer_reset": Key("bool", False, "On resume, start the optimiser afresh."),
        "scheduler_reset": Key("bool", False, "On resume, start the schedule afresh."),
        "restore_hint": Key(
            "int|str", 0, "Resume from: 0 (fresh), an iteration, a checkpoint path, or 'latest'."
        ),
        "save_iter": Key("int", 10000, "Iterations between checkpoints.", range=AT_LEAST_ONE),
        "save_name": Key("str", "MetaGait", "Run name: output/{dataset}/{model}/{save_name}/."),
        "sync_BN": Key("bool", True, "SyncBatchNorm when distributed on CUDA."),
        "total_iter": Key("int", 120000, "Iterations to train.", range=NON_NEGATIVE),
        "keep_last": Key(
            "int", None, "Keep only the newest N checkpoints.", nullable=True, range=AT_LEAST_ONE
        ),
        "seed": Key(
            "int", 0, "Random seed (per rank: seed + rank for data workers).", range=Range(0, 2**32 - 1)
        ),
        "sampler": Key("section", None, "Training sampler.", children=_TRAIN_SAMPLER),
        "transform": Key("list[mapping]", [{"type": "BaseSilCuttingTransform"}], _TRANSFORM_DOC),
        "time_budget": Key(
            "float",
            None,
            "Minutes of wall time (also an option of gait train): after time_budget_probe iterations the "
            "run length and every schedule length are scaled to the iterations that fit (docs/train.md).",
            nullable=True,
            range=POSITIVE,
        ),
        "time_budget_probe": Key(
            "int", 30, "Iterations timed (after 5 untimed) to derive the time budget's run length.",
            range=AT_LEAST_ONE,
        ),
    },
}

LOSS_TYPES = ("TripletLoss", "CrossEntropyLoss")

LOSS_SCHEMAS: dict[str, dict[str, Key]] = {
    "TripletLoss": {
        "type": Key("str", "TripletLoss", "Batch-all triplet loss per part."),
        "loss_term_weight": Key("float", 1.0, "Weight of this loss in the total.", range=NON_NEGATIVE),
        "margin": Key("float", 0.2, "Triplet margin.", range=NON_NEGATIVE),
        "log_prefix": Key("str", "triplet", "Prefix of the logged terms."),
    },
    "CrossEntropyLoss": {
        "type": Key("str", "CrossEntropyLoss", "Cross-entropy on per-part logits."),
        "loss_term_weight": Key("float", 1.0, "Weight of this loss in the total.", range=NON_NEGATIVE),
        "scale": Key("float", 16.0, "Logits are multiplied by this.", range=POSITIVE),
        "label_smooth": Key("bool", True, "Label smoothing (eps below) on or off."),
        "eps": Key("float", 0.1, "Label-smoothing amount when label_smooth is on.", range=UNIT_OPEN),
        "log_accuracy": Key("bool", False, "Log the per-part argmax accuracy."),
        "log_prefix": Key("str", "softmax", "Prefix of the logged terms."),
    },
}

DEFAULT_LOSSES = [
    {"type": "TripletLoss", "loss_term_weight": 1.0, "margin": 0.2, "log_prefix": "triplet"},
    {
        "type": "CrossEntropyLoss",
        "loss_term_weight": 1.0,
        "scale": 1.0,
        "label_smooth": False,
        "log_accuracy": True,
        "log_prefix": "softmax",
    },
]

# Keys other tools put in their configs that gaitcli does not use: a warning, not an error.
_DISTRIBUTION = f"distribution is chosen with {option('gpus')} / {option('nproc')}"
FOREIGN_KEYS = {
    ("trainer_cfg", "wandb"): "Weights & Biases logging is not built in",
    ("trainer_cfg", "enable_distributed"): _DISTRIBUTION,
    ("evaluator_cfg", "enable_distributed"): _DISTRIBUTION,
}

PATH_KEYS = (("data_cfg", "dataset_root"), ("data_cfg", "dataset_partition"))


def section_defaults(keys: dict[str, Key]) -> dict[str, object]:
    """The default mapping for a group of keys (nested sections included)."""
    out: dict[str, object] = {}
    for name, key in keys.items():
        if key.type == "section":
            out[name] = section_defaults(key.children or {})
        else:
            out[name] = copy_tree(key.default)
    return out


def copy_tree(value: object) -> object:
    """A deep copy of nested dicts and lists (config values are plain data)."""
    if isinstance(value, Mapping):
        return copy_mapping(value)
    if isinstance(value, list):
        return [copy_tree(v) for v in value]
    return value


def copy_mapping(value: Mapping[str, object]) -> dict[str, object]:
    """:func:`copy_tree` of a mapping."""
    return {k: copy_tree(v) for k, v in value.items()}


_T = TypeVar("_T")


def _key_from_field(item: dataclasses.Field[_T]) -> Key:
    meta = item.metadata
    if "kind" not in meta:
        raise TypeError(
            f"model config field {item.name!r} is not declared with gaitcli.models.registry.option"
        )
    children = meta.get("children")
    if children is not None:
        keys = {f.name: _key_from_field(f) for f in dataclasses.fields(children)}
        return Key("section", None, str(meta["help"]), children=keys)
    default = item.default_factory() if item.default_factory is not dataclasses.MISSING else item.default
    return Key(
        str(meta["kind"]),
        default,
        str(meta["help"]),
        choices=meta.get("choices"),
        nullable=bool(meta.get("nullable")),
        range=meta.get("range"),
    )


def model_keys(name: str | None = None) -> dict[str, Key]:
    """The ``model_cfg`` keys of the registered model ``name`` (default: the default model),
    ``model`` first; an unknown name raises :class:`~gaitcli.errors.ConfigError`."""
    entry = get_model_entry(name if name is not None else default_model_name())
    keys = {"model": Key("str", entry.name, "Registered model name.", choices=tuple(model_names()))}
    keys.update({item.name: _key_from_field(item) for item in entry.fields()})
    return keys


def schema_defaults() -> dict[str, object]:
    """The complete packaged default configuration."""
    cfg: dict[str, object] = {}
    for name, keys in SCHEMA.items():  # schema order (losses last): the order dumped configs show
        if name == "model_cfg":
            cfg[name] = section_defaults(model_keys())
        elif name != "loss_cfg":
            cfg[name] = section_defaults(keys)
    # each default loss completed from its type's keys, exactly as a user's loss list is
    cfg["loss_cfg"] = [
        {**{k: copy_tree(key.default) for k, key in LOSS_SCHEMAS[str(item["type"])].items()}, **item}
        for item in DEFAULT_LOSSES
    ]
    return cfg


_INT64 = 2**63


def check_number(value: object, source: str, dotted: str, allowed: Range | None = None) -> None:

    """A finite number (an int that fits 64 bits) inside ``allowed``, or one
    :class:`~gaitcli.errors.ConfigError` line naming the key; other values pass."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{source}: {dotted} must be a finite number, got {value!r}")
    if isinstance(value, int) and not -_INT64 <= value < _INT64:
        raise ConfigError(f"{source}: {dotted} = {value} is too large")
    if allowed is not None and not allowed.contains(float(value)):
        raise ConfigError(f"{source}: {dotted} must be {allowed.describe()}, got {value!r}")
