"""The evaluation plan: everything ``gait eval`` needs, resolved and checked once, before any
feature is extracted.

A builder (:func:`plan_checkpoint`, :func:`plan_model`, :func:`plan_features`,
:func:`plan_arrays`) reads the config, the test split, the protocol and metric, the batch size
and sampler, and every output target; each mistake is one line here, so a long extraction never
ends in an error an option could have shown at once (docs/eval.md, "Errors"). Extraction,
matching and reporting then take the :class:`EvalPlan` and decide nothing of their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from gaitcli.config import Override
from gaitcli.config_types import GaitConfig, TransformSpec
from gaitcli.data.collate import FrameSampling
from gaitcli.data.dataset import GaitDataset
from gaitcli.errors import ConfigError, GaitError, option
from gaitcli.models.checkpoint import CheckpointError

from .extract import FeatureSet
from .metrics import check_metric
from .precision import Precision, resolve_precision
from .protocols import (
    FIELD_PROTOCOLS,
    GREW,
    PROTOCOLS,
    ProtocolFit,
    ProtocolSpec,
    check_fit,
    fit_protocol,
    needs_probe_list,
    read_probe_list,
    resolve_protocol,
)

Warn = Callable[[str], None]
PathLike = str | os.PathLike[str]


# ----------------------------------------------------------------------------------------------
# the plan
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalOutputs:
    """Where results go (``-`` is stdout for JSON and CSV)."""

    json: str | None = None
    """``--json`` target."""
    csv: str | None = None
    """``--csv`` target."""
    submission: str | None = None
    """``--submission``: GREW's competition CSV (protocol ``grew``; ``-`` is stdout)."""
    heatmap: Path | None = None
    """``--heatmap`` image."""
    save_features: Path | None = None
    """``--save-features`` file, written before matching."""
    verification: bool = False
    """``--verification``: genuine / impostor distances, EER and TAR@FAR per probe set."""
    calibrate: float | None = None
    """``--calibrate`` FAR: store the distance threshold reaching it (needs ``calibration_out``)."""
    calibration_out: Path | None = None
    """``--calibration-out`` JSON that ``gait identify --calibration`` reads."""
    roc: Path | None = None
    """``--roc`` image of the ROC and DET curves."""
    save_hits: Path | None = None
    """``--save-hits`` JSON: every probe's rank-1 hit or miss per column of the table (``gait compare``)."""


@dataclass
class Extraction:
    """How features are extracted from a model."""

    dataset: GaitDataset
    """The test split."""
    root: str
    """Its data folder."""
    partition: str
    """Its partition file."""
    batch_size: int
    """Sequences per forward pass."""
    sampling: FrameSampling
    """``evaluator_cfg.sampler``'s frame keys."""
    transform: list[TransformSpec]
    """``evaluator_cfg.transform``."""
    enable_float16: bool
    """fp16 autocast on CUDA."""
    nproc: int
    """Processes (each loads the checkpoint itself when more than one)."""
    model: torch.nn.Module | None
    """The model, for one process; None for several."""
    precision: Precision = Precision(False, "asked for")
    """fp32 or bf16 autocast, and why (the ``precision`` option)."""


@dataclass
class EvalPlan:
    """One evaluation, fully resolved."""

    cfg: GaitConfig
    """The config (the checkpoint's, with overrides applied)."""
    spec: ProtocolSpec
    """The protocol, resolved to type lists."""
    fit: ProtocolFit
    """Gallery and probe masks over the sequences (the order extraction keeps)."""
    metric: str
    """``euc`` or ``cos``."""
    device: torch.device | None
    """Where extraction and matching run (None: the model's device; matching on the CPU)."""
    want_map: bool
    """Compute mAP."""
    remove_no_gallery: bool
    """Leave out probes whose id has no gallery sequence."""
    outputs: EvalOutputs
    """Checked output targets."""
    dataset_name: str | None
    """The test set's name."""
    checkpoint: str | None = None
    """The checkpoint evaluated (or named by a feature file)."""
    iteration: int | None = None
    """Its iteration."""
    extraction: Extraction | None = None
    """Set when features come from a model."""
    features: FeatureSet | None = None
    """Set when features were given."""
    features_path: str | None = None
    """The feature file given (``--features``)."""
    seed: int | None = None
    """The training seed of the checkpoint (:func:`training_seed`); None when unknown."""


# ----------------------------------------------------------------------------------------------
# shared checks
# ----------------------------------------------------------------------------------------------


def dataset_name_of(cfg: GaitConfig | Mapping[str, object]) -> str | None:
    """The test set's name: ``data_cfg.test_dataset_name`` when set, else ``dataset_name``."""
    if isinstance(cfg, GaitConfig):
        return cfg.data.test_name or None
    dcfg = cfg.get("data_cfg", {}) or {}
    if not isinstance(dcfg, Mapping):
        return None
    name = dcfg.get("test_dataset_name") or dcfg.get("dataset_name")
    return str(name) if name else None


def check_protocol_name(protocol: str | ProtocolSpec) -> None:
    if not isinstance(protocol, ProtocolSpec) and (protocol or "auto") not in PROTOCOLS:
        raise GaitError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")


def check_finite(feats: FeatureSet, source: str) -> FeatureSet:
    """One line when any embedding is NaN or infinite: distances to it mean nothing."""
    if len(feats) == 0:
        return feats
    flat = feats.embeddings.reshape(len(feats), -1)
    # row blocks: a boolean copy of a full OU-MVLP feature set would be another gigabyte
    bad = np.concatenate([~np.isfinite(flat[i : i + 4096]).all(axis=1) for i in range(0, len(flat), 4096)] or
                         [np.zeros(0, dtype=bool)])
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise GaitError(
            f"{source}: {int(bad.sum())} of {len(feats)} embeddings hold NaN or infinite values "
            "(first: sequence "
            f"{feats.labels[first]}/{feats.types[first]}/{feats.views[first]}), and distances to them mean "
            "nothing: re-extract them (with an earlier checkpoint if the run diverged)"
        )
    return feats


def _check_file_target(name: str, target: PathLike | None) -> None:
    if target is None or str(target) == "-":
        return
    path = Path(target)
    if path.is_dir():
        raise GaitError(f"{option(name, path)}: is a folder; give a file name")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise GaitError(f"{option(name, path)}: {parent} is a file, not a folder")


def check_verification_options(outputs: EvalOutputs) -> None:
    """The verification options go together (docs/eval.md, "Verification")."""
    given = outputs.calibrate is not None or outputs.calibration_out is not None or outputs.roc is not None
    if given and not outputs.verification:
        raise GaitError(f"{option('calibrate')}, {option('calibration_out')} and {option('roc')} need "
                        f"{option('verification')}")
    if (outputs.calibrate is None) != (outputs.calibration_out is None):
        raise GaitError(
            f"{option('calibrate', 'FPIR')} and {option('calibration_out', 'CAL.json')} go together"
        )
    if outputs.calibrate is not None and not 0 < outputs.calibrate < 1:
        raise GaitError(f"{option('calibrate', outputs.calibrate)}: a rate lies between 0 and 1, e.g. 1e-3")


def check_output_files(outputs: EvalOutputs) -> None:
    """The output targets themselves (no folder given as a file; matplotlib and an image type it
    writes for ``--heatmap`` and ``--roc``) and the verification options: checked before
    anything is read."""
    from gaitcli.imaging import check_image_target

    check_verification_options(outputs)
    for name, target in (
        ("json", outputs.json),
        ("csv", outputs.csv),
        ("save_features", outputs.save_features),
        ("calibration_out", outputs.calibration_out),
        ("save_hits", outputs.save_hits),
    ):
        _check_file_target(name, target)
    for name, image in (("heatmap", outputs.heatmap), ("roc", outputs.roc)):
        if image is not None:
            check_image_target(image, name)


def check_outputs(outputs: EvalOutputs, spec: ProtocolSpec) -> None:
    """The output options against the resolved protocol (``auto`` included), before extraction."""
    _check_file_target("submission", outputs.submission)
    if outputs.submission is not None and spec.name != GREW.name:
        raise GaitError(
            f"{option('submission')} writes GREW's competition file: use it with "
            f"{option('protocol', 'grew')}, not {spec.name}"
        )
    if outputs.heatmap is not None and spec.kind in ("retrieval", "cross-view"):
        raise GaitError(
            f"{option('heatmap')}: the {spec.name} protocol has no gallery-view x probe-view matrix "
            f"(casia-b, ou-mvlp, generic and ccpg have one); drop {option('heatmap')}"
        )
    if outputs.verification and spec.kind in ("retrieval", "cloth-change"):
        raise GaitError(
            f"{option('verification')} works with the casia-b, ou-mvlp, cross-view and generic protocols, "
            f"not {spec.name}; drop it"
        )
    if outputs.save_hits is not None:
        from .hits import check_hits_supported

        check_hits_supported(spec)


def _protocol(
    cfg: GaitConfig,
    protocol: str | ProtocolSpec,
    name: str | None,
    sequences: tuple[np.ndarray, np.ndarray, np.ndarray],
    partition: PathLike | None,
    outputs: EvalOutputs,
    warn: Warn | None,
) -> tuple[ProtocolSpec, ProtocolFit]:
    """The protocol and its masks over ``sequences`` (labels, types, views); gait3d reads its
    probes from ``partition``'s ``PROBE_SET``."""
    labels, types, views = sequences
    ev = cfg.to_dict()["evaluator_cfg"]
    assert isinstance(ev, dict)
    spec = resolve_protocol(protocol, dataset_name=name, evaluator_cfg=ev, types=types.tolist())
    if spec.name not in FIELD_PROTOCOLS:
        return spec, check_fit(spec, types, warn)
    probe_list = read_probe_list(partition) if needs_probe_list(spec) else None
    fit = fit_protocol(spec, labels, types, views, probe_list=probe_list,
                       submission=outputs.submission is not None, warn=warn)
    return spec, fit


def load_test_split(
    cfg: GaitConfig,
    data: PathLike | None = None,
    partition: PathLike | None = None,
    *,
    warn: Warn | None = None,
) -> GaitDataset:
    """The test split named by ``cfg`` (``data`` / ``partition`` override its paths)."""
    dcfg = cfg.data
    root = Path(data) if data is not None else dcfg.dataset_root
    part = partition if partition is not None else dcfg.dataset_partition
    if not root.is_dir():
        raise GaitError(f"data folder not found: {root} (give the data folder or set data_cfg.dataset_root)")
    use = None if dcfg.data_in_use is None else list(dcfg.data_in_use)
    dataset = GaitDataset(root, part, "test", cache=False, data_in_use=use)
    if warn is not None and dataset.missing_ids:
        shown = ", ".join(dataset.missing_ids[:8]) + (", ..." if len(dataset.missing_ids) > 8 else "")
        warn(
            f"{len(dataset.missing_ids)} test ids of {dataset.partition.path} have no sequences "
            f"under {root}: "
            f"{shown}"
        )
    return dataset


# ----------------------------------------------------------------------------------------------
# builders
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelOptions:
    """The options of an evaluation that runs a model."""

    data: PathLike | None = None
    partition: PathLike | None = None
    protocol: str | ProtocolSpec = "auto"
    metric: str | None = None
    batch_size: int | None = None
    want_map: bool = False
    outputs: EvalOutputs = EvalOutputs()
    precision: str = "fp32"
    """``fp32``, ``bf16`` or ``auto`` (the commands' default; docs/eval.md, "Precision")."""


def _extraction(
    cfg: GaitConfig, opts: ModelOptions, model: torch.nn.Module | None, nproc: int, warn: Warn | None,
    device: torch.device | str,
) -> Extraction:
    ev = cfg.evaluator
    bs = int(opts.batch_size or ev.sampler.batch_size)
    if bs < 1:
        raise GaitError(f"batch size must be at least 1, got {bs}")
    dataset = load_test_split(cfg, opts.data, opts.partition, warn=warn)
    root = str(opts.data if opts.data is not None else cfg.data.dataset_root)
    part = str(opts.partition if opts.partition is not None else cfg.data.dataset_partition)
    return Extraction(
        dataset, root, part, bs, ev.sampler.frame_sampling(), list(ev.transform), ev.enable_float16, nproc,
        model, resolve_precision(opts.precision, device),
    )


def _model_plan(
    cfg: GaitConfig,
    opts: ModelOptions,
    extraction: Extraction,
    device: torch.device | None,
    warn: Warn | None,
    checkpoint: str | None,
    iteration: int | None,
) -> EvalPlan:
    # a --metric was checked before the checkpoint was read; the config's one is checked here
    metric = opts.metric or check_metric(cfg.evaluator.metric)
    seqs = extraction.dataset.sequences
    sequences = (np.array([s.label for s in seqs], dtype=str), np.array([s.type for s in seqs], dtype=str),
                 np.array([s.view for s in seqs], dtype=str))
    name = dataset_name_of(cfg)
    spec, fit = _protocol(cfg, opts.protocol, name, sequences, extraction.partition, opts.outputs, warn)
    check_outputs(opts.outputs, spec)
    return EvalPlan(
        cfg=cfg,
        spec=spec,
        fit=fit,
        metric=metric,
        device=device,
        want_map=opts.want_map,
        remove_no_gallery=cfg.data.remove_no_gallery,
        outputs=opts.outputs,
        dataset_name=name,
        checkpoint=checkpoint,
        iteration=iteration,
        extraction=extraction,
    )


def plan_model(
    model: torch.nn.Module,
    cfg: GaitConfig,
    opts: ModelOptions = ModelOptions(),
    *,
    device: torch.device | str | None = None,
    warn: Warn | None = None,
    checkpoint: str | None = None,
) -> EvalPlan:
    """The plan for a model in memory and its config (the trainer's ``with_test``)."""
    check_protocol_name(opts.protocol)
    check_output_files(opts.outputs)
    if opts.metric is not None:
        check_metric(opts.metric)
    iteration = _iteration(model)
    dev = torch.device(device) if device is not None else None
    extraction = _extraction(cfg, opts, model, 1, warn, dev or _device_of(model))
    plan = _model_plan(
        cfg, opts, extraction, dev, warn, checkpoint, iteration
    )
    # a model in training has no checkpoint metadata: its config's seed
    plan.seed = training_seed(_attribute(model, "checkpoint_meta"), cfg.to_dict())
    return plan


def _device_of(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _stored_config(
    checkpoint: Path, stored: Mapping[str, object], overrides: list[str | Override], warn: Warn | None
) -> GaitConfig:
    """The checkpoint's config (migrated from an older format) with the overrides applied (a
    checkpoint without a config never gets this far: :func:`gaitcli.models.load_checkpoint`
    refuses it rather than assume defaults)."""
    from gaitcli.config import config_from_stored, resolve_config

    source = f"{checkpoint} (stored config)"
    try:
        cfg = config_from_stored(stored, source)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    if not overrides:
        return cfg
    return resolve_config(cfg, source, overrides=overrides, warn=warn)


def _attribute(model: torch.nn.Module, name: str) -> dict[str, object]:
    """``model.config`` / ``model.checkpoint_meta``, which :func:`~gaitcli.models.load_checkpoint` sets."""
    value = getattr(model, name, None)
    return dict(value) if isinstance(value, Mapping) else {}


def _iteration(model: torch.nn.Module) -> int | None:
    """``model.checkpoint_meta["iteration"]`` (an integer in the checkpoint's metadata)."""
    value = _attribute(model, "checkpoint_meta").get("iteration")
    if value is None:
        return None
    if not isinstance(value, (int, float, str)):
        raise TypeError(f"checkpoint iteration is not a number: {value!r}")
    return int(value)


def training_seed(meta: Mapping[str, object], config: Mapping[str, object]) -> int | None:
    """The seed a checkpoint was trained with: its ``seed`` metadata (what ``gait train`` writes);
    for a ``gait train`` checkpoint from before that metadata, its stored ``trainer_cfg.seed`` (the
    seed that run used); None for a converted checkpoint (``converted_from``: the reference run's
    seed is not known) or when nothing says."""
    value = meta.get("seed")
    if value is None or value == "":
        if meta.get("converted_from"):
            return None
        trainer = config.get("trainer_cfg")
        value = trainer.get("seed") if isinstance(trainer, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _model_seed(model: torch.nn.Module) -> int | None:
    return training_seed(_attribute(model, "checkpoint_meta"), _attribute(model, "config"))


def _features_seed(feats: FeatureSet) -> int | None:
    """The seed of the checkpoint a feature file names, when that file is at hand."""
    ckpt = feats.meta.get("checkpoint")
    if not ckpt or not Path(str(ckpt)).is_file():
        return None
    from gaitcli.models import read_checkpoint_metadata

    try:
        meta = dict(read_checkpoint_metadata(str(ckpt)))
    except GaitError:
        return None
    config = meta.get("config")
    return training_seed(meta, config if isinstance(config, Mapping) else {})


def plan_checkpoint(
    checkpoint: PathLike,
    opts: ModelOptions = ModelOptions(),
    *,
    device: str | None = None,
    gpus: int | None = None,
    nproc: int | None = None,
    overrides: Iterable[str | Override] = (),
    warn: Warn | None = None,
) -> EvalPlan:
    """The plan for ``gait eval CKPT``: the model is rebuilt from the checkpoint's stored config
    (weights checked, NaN refused) and its test split read, all before any extraction."""
    from gaitcli.models import load_checkpoint
    from gaitcli.runtime.distributed import resolve_devices

    check_protocol_name(opts.protocol)
    check_output_files(opts.outputs)
    if opts.metric is not None:
        check_metric(opts.metric)
    device_type, procs = resolve_devices(device, gpus, nproc)
    path = Path(checkpoint)
    model = load_checkpoint(path, map_location="cpu")
    cfg = _stored_config(path, _attribute(model, "config"), list(overrides), warn)
    iteration = _iteration(model)
    extraction = _extraction(cfg, opts, model if procs == 1 else None, procs, warn, device_type)
    plan = _model_plan(
        cfg,
        opts,
        extraction,
        torch.device(device_type),
        warn,
        str(checkpoint),
        int(iteration) if iteration is not None else None,
    )
    plan.seed = _model_seed(model)
    return plan


def _features_plan(
    feats: FeatureSet,
    cfg: GaitConfig,
    *,
    protocol: str | ProtocolSpec,
    metric: str,
    name: str | None,
    want_map: bool,
    device: torch.device | None,
    outputs: EvalOutputs,
    warn: Warn | None,
    path: str | None,
    partition: PathLike | None = None,
) -> EvalPlan:
    # an empty name makes ``auto`` look at the types present instead of the default config's name
    sequences = (feats.labels, feats.types, feats.views)
    spec, fit = _protocol(cfg, protocol, name or "", sequences, partition, outputs, warn)
    if partition is not None and not needs_probe_list(spec):
        raise GaitError(
            f"{option('partition')}: no effect on features with the {spec.name} protocol (only gait3d reads "
            "the partition file, for its PROBE_SET); drop it"
        )
    check_outputs(outputs, spec)
    iteration = feats.meta.get("iteration")
    return EvalPlan(
        cfg=cfg,
        spec=spec,
        fit=fit,
        metric=metric,
        device=device,
        want_map=want_map,
        remove_no_gallery=cfg.data.remove_no_gallery,
        outputs=outputs,
        dataset_name=name,
        checkpoint=feats.meta.get("checkpoint"),
        iteration=int(iteration) if iteration is not None else None,
        features=feats,
        features_path=path,
        seed=_features_seed(feats),
    )


def _named(overrides: list[Override], *keys: str) -> bool:
    return any(".".join(o.path) in keys for o in overrides)


def plan_features(
    path: PathLike,
    *,
    protocol: str = "auto",
    metric: str | None = None,
    overrides: Iterable[str | Override] = (),
    want_map: bool = False,
    device: str | None = None,
    outputs: EvalOutputs = EvalOutputs(),
    warn: Warn | None = None,
    partition: PathLike | None = None,
) -> EvalPlan:
    """The plan for ``gait eval --features FILE.npz``. The data set name and metric stored in the
    file apply unless ``--set`` / ``--metric`` name others; ``partition`` gives the gait3d
    protocol its ``PROBE_SET``."""
    from gaitcli.config import parse_override, resolve_config
    from gaitcli.runtime.distributed import resolve_devices

    check_protocol_name(protocol)
    check_output_files(outputs)
    given = [parse_override(o) if isinstance(o, str) else o for o in overrides]
    feats = check_finite(FeatureSet.load(path), str(path))
    cfg = resolve_config({}, "<defaults>", overrides=given)
    named = _named(given, "data_cfg.dataset_name", "data_cfg.test_dataset_name")
    name = dataset_name_of(cfg) if named else feats.meta.get("dataset_name")
    stored = None if _named(given, "evaluator_cfg.metric") else feats.meta.get("metric")
    metric = check_metric(metric or stored or cfg.evaluator.metric)
    device_type, _ = resolve_devices(device, None, None)
    return _features_plan(
        feats,
        cfg,
        protocol=protocol,
        metric=metric,
        name=name,
        want_map=want_map,
        device=torch.device(device_type),
        outputs=outputs,
        warn=warn,
        path=str(path),
        partition=partition,
    )


def plan_arrays(
    embeddings: torch.Tensor | npt.ArrayLike,
    labels: npt.ArrayLike,
    types: npt.ArrayLike,
    views: npt.ArrayLike,
    *,
    protocol: str | ProtocolSpec = "auto",
    metric: str | None = None,
    cfg: GaitConfig | Mapping[str, object] | None = None,
    dataset_name: str | None = None,
    want_map: bool = False,
    device: torch.device | str | None = None,
    warn: Warn | None = None,
    partition: PathLike | None = None,
    outputs: EvalOutputs = EvalOutputs(),
) -> EvalPlan:
    """The plan for features in memory (``evaluate_features``); ``cfg`` (a whole config, or a
    partial mapping resolved over the defaults) supplies ``evaluator_cfg`` and
    ``data_cfg.remove_no_gallery``; ``partition`` the gait3d protocol's ``PROBE_SET``."""
    from gaitcli.config import resolve_config

    check_protocol_name(protocol)
    base = cfg if isinstance(cfg, GaitConfig) else resolve_config(dict(cfg or {}), "<config>")
    arrays = (np.asarray(labels), np.asarray(types), np.asarray(views))
    feats = check_finite(FeatureSet(np.asarray(embeddings, dtype=np.float32), *arrays), "features")
    metric = check_metric(metric or base.evaluator.metric)
    if dataset_name is None and cfg is not None:
        dataset_name = dataset_name_of(cfg)
    dev = torch.device(device) if device is not None else None
    return _features_plan(
        feats,
        base,
        protocol=protocol,
        metric=metric,
        name=dataset_name,
        want_map=want_map,
        device=dev,
        outputs=outputs,
        warn=warn,
        path=None,
        partition=partition,
    )
