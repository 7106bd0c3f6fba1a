"""The resolved configuration as typed, frozen values (docs/config.md).

:func:`gaitcli.config.load_config` validates a YAML file (or the defaults) against
:mod:`gaitcli.config_schema` and builds one :class:`GaitConfig` from it, once, at the edge; every
layer below takes these values, never the nested mapping. Field names are the schema's keys, so
``trainer_cfg.sampler.batch_size`` is ``cfg.trainer.sampler.batch_size``; a test checks that
every schema key has its field and the other way round.

Two sections stay free-form by design: ``optimizer_cfg`` and ``scheduler_cfg`` hold the keyword
arguments of a torch class named by ``solver`` / ``scheduler`` (validated against that class's
signature), so they are kept as a name plus a read-only mapping of arguments. Transforms are
``{type: ..., ...}`` specs that :func:`gaitcli.data.transforms.build_transform` checks and builds.

:meth:`GaitConfig.to_dict` gives the OpenGait-shaped mapping back (what ``gait config`` prints,
checkpoints and run folders store); ``GaitConfig.from_dict(cfg.to_dict()) == cfg``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias

from gaitcli.data.collate import FrameSampling
from gaitcli.models.registry import ModelConfig, get_model_entry, parse_model_config

ConfigValue: TypeAlias = "str | int | float | bool | None | list[ConfigValue] | dict[str, ConfigValue]"
"""A plain configuration value as YAML holds it."""

TransformSpec = Mapping[str, object]
"""One ``{type: Name, arg: value, ...}`` transform entry (checked by ``build_transform``)."""

CONFIG_FORMAT = 3
"""Version of the stored config's shape (in checkpoints and run folders, docs/config.md)."""


def _plain(value: object) -> ConfigValue:
    """A deep copy of ``value`` with tuples as lists and paths as strings (YAML-ready)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"not a configuration value: {value!r}")


def _frozen_specs(items: object) -> tuple[TransformSpec, ...]:
    assert isinstance(items, list)
    return tuple(dict(item) for item in items)


def section_at(raw: Mapping[str, object], name: str) -> Mapping[str, object]:
    """``raw[name]``, a section that validation has checked is a mapping."""
    body = raw[name]
    assert isinstance(body, Mapping), name
    return body


def int_at(raw: Mapping[str, object], key: str) -> int:
    """``raw[key]``, a key that validation has checked is an integer."""
    value = raw[key]
    assert isinstance(value, int) and not isinstance(value, bool), key
    return value


def _opt_int(raw: Mapping[str, object], key: str) -> int | None:
    value = raw.get(key)
    return None if value is None else int_at(raw, key)


def _float(raw: Mapping[str, object], key: str) -> float:
    value = raw[key]
    assert isinstance(value, (int, float)) and not isinstance(value, bool), key
    return float(value)


def _opt_float(raw: Mapping[str, object], key: str) -> float | None:
    return None if raw.get(key) is None else _float(raw, key)


def _bool(raw: Mapping[str, object], key: str) -> bool:
    value = raw[key]
    assert isinstance(value, bool), key
    return value


def _str(raw: Mapping[str, object], key: str) -> str:
    value = raw[key]
    assert isinstance(value, str), key
    return value


def _opt_str(raw: Mapping[str, object], key: str) -> str | None:
    return None if raw.get(key) is None else _str(raw, key)


def _hint(raw: Mapping[str, object], key: str) -> int | str:
    value = raw[key]
    assert isinstance(value, (int, str)) and not isinstance(value, bool), key
    return value


# ------------------------------------------------------------------------------------ data_cfg
@dataclass(frozen=True)
class DataConfig:
    """``data_cfg``: where the prepared data and its split are."""

    dataset_name: str
    """Data set name; selects the evaluation protocol and GaitGL's branch."""
    dataset_root: Path
    """Prepared tree ``id/type/view/*.pkl`` (absolute once resolved)."""
    dataset_partition: Path
    """Partition JSON ``{TRAIN_SET, TEST_SET}``."""
    num_workers: int
    """DataLoader worker processes."""
    cache: bool
    """Keep every sequence in memory after the first read."""
    test_dataset_name: str | None
    """Name of the test set (protocol selection); None: ``dataset_name``."""
    remove_no_gallery: bool
    """Drop probe sequences whose id has no gallery sequence."""
    data_in_use: tuple[bool, ...] | None
    """Which of several pkls per sequence to load."""
    min_frames: int | None
    """Leave shorter sequences out of training."""

    @property
    def test_name(self) -> str:
        """The name that selects the evaluation protocol."""
        return self.test_dataset_name or self.dataset_name

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> DataConfig:
        use = raw.get("data_in_use")
        return cls(
            dataset_name=_str(raw, "dataset_name"),
            dataset_root=Path(_str(raw, "dataset_root")),
            dataset_partition=Path(_str(raw, "dataset_partition")),
            num_workers=int_at(raw, "num_workers"),
            cache=_bool(raw, "cache"),
            test_dataset_name=_opt_str(raw, "test_dataset_name"),
            remove_no_gallery=_bool(raw, "remove_no_gallery"),
            data_in_use=None if use is None else tuple(bool(v) for v in use),  # type: ignore[attr-defined]
            min_frames=_opt_int(raw, "min_frames"),
        )


# ------------------------------------------------------------------------------------ samplers
SampleType = Literal[
    "fixed_ordered", "fixed_unordered", "unfixed_ordered", "unfixed_unordered", "all_ordered", "all_unordered"
]


@dataclass(frozen=True)
class TrainSamplerConfig:
    """``trainer_cfg.sampler``: P×K batches and how frames are drawn."""

    type: str
    """Batch sampler (TripletSampler)."""
    batch_size: tuple[int, int]
    """(P, K): P identities, K sequences each, per iteration over all ranks."""
    batch_shuffle: bool
    """Shuffle the P*K sequences of a batch."""
    sample_type: str
    """How frames are drawn from each sequence (one of :data:`SampleType`)."""
    frames_num_fixed: int
    """Frames per sequence for fixed_* sampling."""
    frames_skip_num: int
    """Extra frames in the window of fixed_ordered."""
    frames_num_min: int
    """Lower bound for unfixed_* sampling."""
    frames_num_max: int
    """Upper bound for unfixed_* sampling."""
    frames_all_limit: int
    """all_* sampling keeps at most this many leading frames."""

    def frame_sampling(self) -> FrameSampling:
        """The frame keys, as the collator takes them."""
        return FrameSampling(self.sample_type, self.frames_num_fixed, self.frames_skip_num,
                             self.frames_num_min, self.frames_num_max, self.frames_all_limit)

    @property
    def sequences_per_batch(self) -> int:
        """P * K."""
        return self.batch_size[0] * self.batch_size[1]

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> TrainSamplerConfig:
        batch = raw["batch_size"]
        assert isinstance(batch, list) and len(batch) == 2
        return cls(
            type=_str(raw, "type"),
            batch_size=(int(batch[0]), int(batch[1])),
            batch_shuffle=_bool(raw, "batch_shuffle"),
            sample_type=_str(raw, "sample_type"),
            frames_num_fixed=int_at(raw, "frames_num_fixed"),
            frames_skip_num=int_at(raw, "frames_skip_num"),
            frames_num_min=int_at(raw, "frames_num_min"),
            frames_num_max=int_at(raw, "frames_num_max"),
            frames_all_limit=int_at(raw, "frames_all_limit"),
        )


@dataclass(frozen=True)
class EvalSamplerConfig:
    """``evaluator_cfg.sampler``: inference batches."""

    type: str
    """Sampler (InferenceSampler)."""
    batch_size: int
    """Sequences per inference batch."""
    batch_shuffle: bool
    """Accepted for OpenGait compatibility; inference never shuffles."""
    sample_type: str
    """How frames are drawn at inference."""
    frames_all_limit: int
    """all_* sampling keeps at most this many leading frames."""
    frames_num_fixed: int
    """Frames per sequence if fixed_* sampling is used."""

    def frame_sampling(self) -> FrameSampling:
        """The frame keys, as inference takes them."""
        return FrameSampling(self.sample_type, self.frames_num_fixed, 0, 25, 50, self.frames_all_limit)

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> EvalSamplerConfig:
        return cls(
            type=_str(raw, "type"),
            batch_size=int_at(raw, "batch_size"),
            batch_shuffle=_bool(raw, "batch_shuffle"),
            sample_type=_str(raw, "sample_type"),
            frames_all_limit=int_at(raw, "frames_all_limit"),
            frames_num_fixed=int_at(raw, "frames_num_fixed"),
        )


# ------------------------------------------------------------------------------- evaluator_cfg
@dataclass(frozen=True)
class EvaluatorConfig:
    """``evaluator_cfg``: how a checkpoint is evaluated."""

    enable_float16: bool
    """Autocast inference in half precision on CUDA."""
    restore_ckpt_strict: bool
    """Require checkpoint names and shapes to match exactly."""
    restore_hint: int | str
    """Checkpoint to evaluate: an iteration, a path, or 'latest'."""
    save_name: str
    """Run name used to find checkpoints."""
    eval_func: str
    """Reference evaluation function name (mapped onto the protocol)."""
    sampler: EvalSamplerConfig
    """Inference sampler."""
    transform: tuple[TransformSpec, ...]
    """Deterministic transforms applied to each sequence."""
    metric: str
    """Distance: euc or cos."""
    cross_view_gallery: bool
    """Use the cross-view-gallery protocol."""
    protocol: str
    """Evaluation protocol (auto, casia-b, ou-mvlp, cross-view, generic)."""
    gallery_types: tuple[str, ...] | None
    """generic protocol: types forming the gallery."""
    probe_sets: Mapping[str, object] | None
    """generic protocol: {name: [types]} probe sets."""

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> EvaluatorConfig:
        types = raw.get("gallery_types")
        probes = raw.get("probe_sets")
        return cls(
            enable_float16=_bool(raw, "enable_float16"),
            restore_ckpt_strict=_bool(raw, "restore_ckpt_strict"),
            restore_hint=_hint(raw, "restore_hint"),
            save_name=_str(raw, "save_name"),
            eval_func=_str(raw, "eval_func"),
            sampler=EvalSamplerConfig.from_dict(section_at(raw, "sampler")),
            transform=_frozen_specs(raw["transform"]),
            metric=_str(raw, "metric"),
            cross_view_gallery=_bool(raw, "cross_view_gallery"),
            protocol=_str(raw, "protocol"),
            gallery_types=None if types is None else tuple(str(t) for t in types),  # type: ignore[attr-defined]
            probe_sets=None if probes is None else dict(probes),  # type: ignore[call-overload]
        )


# ------------------------------------------------------------------------------------ loss_cfg
@dataclass(frozen=True)
class TripletLossConfig:
    """A ``loss_cfg`` entry of type TripletLoss."""

    loss_term_weight: float
    """Weight of this loss in the total."""
    margin: float
    """Triplet margin."""
    log_prefix: str
    """Prefix of the logged terms."""
    type: Literal["TripletLoss"] = "TripletLoss"
    """The loss type."""


@dataclass(frozen=True)
class CrossEntropyLossConfig:
    """A ``loss_cfg`` entry of type CrossEntropyLoss."""

    loss_term_weight: float
    """Weight of this loss in the total."""
    scale: float
    """Logits are multiplied by this."""
    label_smooth: bool
    """Label smoothing on or off."""
    eps: float
    """Label-smoothing amount."""
    log_accuracy: bool
    """Log the per-part argmax accuracy."""
    log_prefix: str
    """Prefix of the logged terms."""
    type: Literal["CrossEntropyLoss"] = "CrossEntropyLoss"
    """The loss type."""


LossConfig: TypeAlias = "TripletLossConfig | CrossEntropyLossConfig"


def loss_from_dict(raw: Mapping[str, object]) -> LossConfig:
    """One validated ``loss_cfg`` entry as its typed value."""
    if raw["type"] == "TripletLoss":
        return TripletLossConfig(
            loss_term_weight=_float(raw, "loss_term_weight"),
            margin=_float(raw, "margin"),
            log_prefix=_str(raw, "log_prefix"),
        )
    assert raw["type"] == "CrossEntropyLoss", raw["type"]
    return CrossEntropyLossConfig(
        loss_term_weight=_float(raw, "loss_term_weight"),
        scale=_float(raw, "scale"),
        label_smooth=_bool(raw, "label_smooth"),
        eps=_float(raw, "eps"),
        log_accuracy=_bool(raw, "log_accuracy"),
        log_prefix=_str(raw, "log_prefix"),
    )


def _loss_dict(loss: LossConfig) -> dict[str, ConfigValue]:
    body = dataclasses.asdict(loss)
    return {"type": body.pop("type"), **body}


# ----------------------------------------------------------------- optimizer_cfg, scheduler_cfg
@dataclass(frozen=True)
class OptimizerConfig:
    """``optimizer_cfg``: a ``torch.optim`` optimiser by name and its keyword arguments."""

    solver: str
    """The optimiser's class name in ``torch.optim``."""
    arguments: Mapping[str, object]
    """Its keyword arguments (checked against its signature)."""

    @property
    def lr(self) -> float:
        """The base learning rate (1e-3 when not given, torch's usual default)."""
        value = self.arguments.get("lr", 1e-3)
        assert isinstance(value, (int, float))
        return float(value)

    def as_mapping(self) -> dict[str, object]:
        """``{solver: ..., **arguments}``, the section as YAML holds it."""
        return {"solver": self.solver, **self.arguments}

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> OptimizerConfig:
        return cls(_str(raw, "solver"), {k: v for k, v in raw.items() if k != "solver"})


@dataclass(frozen=True)
class SchedulerConfig:
    """``scheduler_cfg``: ``warmup`` or a ``torch.optim.lr_scheduler`` class and its arguments."""

    scheduler: str
    """'warmup' (WarmupMultiStepLR) or a torch scheduler's class name."""
    arguments: Mapping[str, object]
    """Its keyword arguments."""

    def as_mapping(self) -> dict[str, object]:
        """``{scheduler: ..., **arguments}``, the section as YAML holds it."""
        return {"scheduler": self.scheduler, **self.arguments}

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> SchedulerConfig:
        return cls(_str(raw, "scheduler"), {k: v for k, v in raw.items() if k != "scheduler"})


# ----------------------------------------------------------------------------------- model_cfg
@dataclass(frozen=True)
class ModelSection:
    """``model_cfg``: the registered model's name and its settings (the dataclass it registered)."""

    name: str
    """``model_cfg.model``."""
    settings: ModelConfig = field(compare=False)
    """Its keys as the model's own config dataclass."""
    values: Mapping[str, object] = field(repr=False)
    """The same keys as plain data (``model`` first), what the models layer is built from."""

    def as_mapping(self) -> dict[str, ConfigValue]:
        """A fresh copy of ``values``."""
        plain = _plain(self.values)
        assert isinstance(plain, dict)
        return plain

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> ModelSection:
        name = _str(raw, "model")
        entry = get_model_entry(name)
        plain = _plain(raw)
        assert isinstance(plain, dict)
        return cls(name, parse_model_config(entry.config, raw), plain)


# --------------------------------------------------------------------------------- trainer_cfg
@dataclass(frozen=True)
class TrainerConfig:
    """``trainer_cfg``: the training run."""

    enable_float16: bool
    """fp16 autocast + GradScaler on CUDA."""
    enable_bfloat16: bool
    """bf16 autocast (CPU or CUDA)."""
    kernel_choice: str
    """``config`` or ``auto`` (measure fp32/bf16 and the memory format on a CPU at start-up)."""
    with_test: bool
    """Evaluate the test set at every save."""
    fix_BN: bool
    """Keep BatchNorm layers in eval mode while training."""
    log_iter: int
    """Iterations per logged window."""
    restore_ckpt_strict: bool
    """Require checkpoint names and shapes to match exactly."""
    optimizer_reset: bool
    """On resume, start the optimiser afresh."""
    scheduler_reset: bool
    """On resume, start the schedule afresh."""
    restore_hint: int | str
    """Resume from: 0 (fresh), an iteration, a checkpoint path, or 'latest'."""
    save_iter: int
    """Iterations between checkpoints."""
    save_name: str
    """Run name."""
    sync_BN: bool
    """SyncBatchNorm when distributed on CUDA."""
    total_iter: int
    """Iterations to train."""
    keep_last: int | None
    """Keep only the newest N checkpoints."""
    seed: int
    """Random seed."""
    sampler: TrainSamplerConfig
    """Training sampler."""
    transform: tuple[TransformSpec, ...]
    """Transforms applied to each training sequence."""
    time_budget: float | None
    """Minutes of wall time the run is fitted into."""
    time_budget_probe: int
    """Iterations timed to derive the time budget's run length."""

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> TrainerConfig:
        return cls(
            enable_float16=_bool(raw, "enable_float16"),
            enable_bfloat16=_bool(raw, "enable_bfloat16"),
            kernel_choice=_str(raw, "kernel_choice"),
            with_test=_bool(raw, "with_test"),
            fix_BN=_bool(raw, "fix_BN"),
            log_iter=int_at(raw, "log_iter"),
            restore_ckpt_strict=_bool(raw, "restore_ckpt_strict"),
            optimizer_reset=_bool(raw, "optimizer_reset"),
            scheduler_reset=_bool(raw, "scheduler_reset"),
            restore_hint=_hint(raw, "restore_hint"),
            save_iter=int_at(raw, "save_iter"),
            save_name=_str(raw, "save_name"),
            sync_BN=_bool(raw, "sync_BN"),
            total_iter=int_at(raw, "total_iter"),
            keep_last=_opt_int(raw, "keep_last"),
            seed=int_at(raw, "seed"),
            sampler=TrainSamplerConfig.from_dict(section_at(raw, "sampler")),
            transform=_frozen_specs(raw["transform"]),
            time_budget=_opt_float(raw, "time_budget"),
            time_budget_probe=int_at(raw, "time_budget_probe"),
        )


# ------------------------------------------------------------------------------------- the lot
_SECTIONS = (
    ("data_cfg", "data"),
    ("evaluator_cfg", "evaluator"),
    ("loss_cfg", "losses"),
    ("model_cfg", "model"),
    ("optimizer_cfg", "optimizer"),
    ("scheduler_cfg", "scheduler"),
    ("trainer_cfg", "trainer"),
)
"""Each YAML section and the :class:`GaitConfig` field that holds it (schema order)."""


@dataclass(frozen=True)
class GaitConfig:
    """A complete, validated configuration (docs/config.md), built by
    :func:`gaitcli.config.load_config`; change one with :meth:`replace`."""

    data: DataConfig
    """``data_cfg``."""
    evaluator: EvaluatorConfig
    """``evaluator_cfg``."""
    losses: tuple[LossConfig, ...]
    """``loss_cfg``, in order."""
    model: ModelSection
    """``model_cfg``."""
    optimizer: OptimizerConfig
    """``optimizer_cfg``."""
    scheduler: SchedulerConfig
    """``scheduler_cfg``."""
    trainer: TrainerConfig
    """``trainer_cfg``."""

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> GaitConfig:
        """The typed value of a validated, complete mapping (:func:`gaitcli.config.resolve_config`
        validates; this only converts)."""
        losses = raw["loss_cfg"]
        assert isinstance(losses, list)
        return cls(
            data=DataConfig.from_dict(section_at(raw, "data_cfg")),
            evaluator=EvaluatorConfig.from_dict(section_at(raw, "evaluator_cfg")),
            losses=tuple(loss_from_dict(item) for item in losses),
            model=ModelSection.from_dict(section_at(raw, "model_cfg")),
            optimizer=OptimizerConfig.from_dict(section_at(raw, "optimizer_cfg")),
            scheduler=SchedulerConfig.from_dict(section_at(raw, "scheduler_cfg")),
            trainer=TrainerConfig.from_dict(section_at(raw, "trainer_cfg")),
        )

    def to_dict(self) -> dict[str, ConfigValue]:
        """The OpenGait-shaped mapping (sections in schema order, plain YAML values)."""
        out: dict[str, ConfigValue] = {}
        for section, attr in _SECTIONS:
            value = getattr(self, attr)
            if attr == "losses":
                out[section] = [_loss_dict(item) for item in value]
            elif attr == "model":
                out[section] = _plain(value.values)
            elif attr in ("optimizer", "scheduler"):
                out[section] = _plain(value.as_mapping())
            else:
                out[section] = _plain(dataclasses.asdict(value))
        return out

    @property
    def has_cross_entropy(self) -> bool:
        """Whether a cross-entropy loss (which uses the classifier) is configured."""
        return any(isinstance(loss, CrossEntropyLossConfig) for loss in self.losses)

    def replace(
        self,
        *,
        data: DataConfig | None = None,
        trainer: TrainerConfig | None = None,
        evaluator: EvaluatorConfig | None = None,
        scheduler: SchedulerConfig | None = None,
    ) -> GaitConfig:
        """A copy with whole sections replaced (build them with ``dataclasses.replace``)."""
        return dataclasses.replace(
            self,
            data=data or self.data,
            trainer=trainer or self.trainer,
            evaluator=evaluator or self.evaluator,
            scheduler=scheduler or self.scheduler,
        )


SECTION_FIELDS = dict(_SECTIONS)
"""YAML section name -> :class:`GaitConfig` field name."""
