"""The evaluation entry points: ``gait eval`` and the trainer's ``with_test`` share them.

Each builds an :class:`~.plan.EvalPlan` (everything resolved and checked once) and runs it with
:func:`run_plan`: extract (unless features were given), save the features when asked, match.

* :func:`evaluate_model` — a model in memory plus its config; ``result.rank1`` maps each probe
  set to its mean rank-1 (%) excluding identical views, which is what the trainer logs.
* :func:`evaluate_checkpoint` — the same from a checkpoint file (``gait eval CKPT``), optionally
  with several processes.
* :func:`evaluate_features` — features in memory, no model (``gait eval --features`` builds its
  plan with :func:`~.plan.plan_features` and runs it with :func:`run_plan`).

:func:`run_plan` first checks that every output file can be written (:func:`check_targets`), so a
full or read-only disk is one line before the extraction, not after it.

Every entry point returns an :class:`~.results.EvalResult`; ``to_json()`` is the ``--json``
document of docs/eval.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

import numpy.typing as npt
import torch
from rich.console import Console

from gaitcli.config_types import GaitConfig
from gaitcli.errors import option
from gaitcli.fileio import check_writable

from .calibration import Calibration, calibrate, provenance_of
from .extract import FeatureSet, extract_distributed, extract_features
from .matching import Progress, match
from .plan import (
    EvalOutputs,
    EvalPlan,
    ModelOptions,
    PathLike,
    check_finite,
    dataset_name_of,
    load_test_split,
    plan_arrays,
    plan_checkpoint,
    plan_model,
)
from .protocols import FIELD_PROTOCOLS, ProtocolSpec
from .results import EvalResult, ProtocolResult, Seconds
from .retrieval import match_field
from .verification import VerificationReport, verification_for_results

Warn = Callable[[str], None]
BIG_MATCH = 5e7  # probe x gallery pairs above which matching shows a progress bar

__all__ = [
    "check_targets",
    "dataset_name_of",
    "evaluate_checkpoint",
    "evaluate_features",
    "evaluate_model",
    "load_test_split",
    "run_plan",
]


def extract(plan: EvalPlan, console: Console | None = None) -> FeatureSet:
    """The plan's features: extracted by the plan's model, or by one process per device."""
    ex = plan.extraction
    if ex is None:
        assert plan.features is not None, "a plan holds features or says how to extract them"
        return plan.features
    show = console is not None
    if ex.model is None:
        assert plan.checkpoint is not None and plan.device is not None
        feats = extract_distributed(
            plan.checkpoint,
            plan.cfg,
            ex.dataset,
            root=ex.root,
            partition=ex.partition,
            device=plan.device.type,
            nproc=ex.nproc,
            batch_size=ex.batch_size,
            progress=show,
            bf16=ex.precision.bf16,
        )
    else:
        feats = extract_features(
            ex.model,
            ex.dataset,
            batch_size=ex.batch_size,
            sampler_cfg=ex.sampling,
            transform=ex.transform,
            device=plan.device,
            enable_float16=ex.enable_float16,
            console=console,
            progress=show,
            bf16=ex.precision.bf16,
        )
    feats.meta["precision"] = ex.precision.name
    return check_finite(feats, plan.checkpoint or "the model")


def _match_progress(console: Console | None, pairs: float) -> tuple[Progress | None, Callable[[], None]]:
    if console is None or pairs < BIG_MATCH:
        return None, lambda: None
    from gaitcli.progress import make_progress

    progress = make_progress("matching", console, count=False, unit=None)
    task = progress.add_task("match", total=1)
    progress.start()

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return update, progress.stop


def match_plan(
    plan: EvalPlan, feats: FeatureSet, *, console: Console | None = None, warn: Warn | None = None
) -> ProtocolResult:
    """The plan's protocol on ``feats`` (in the order the plan's masks were built on)."""
    n = len(feats)
    if plan.spec.name in FIELD_PROTOCOLS:
        return match_field(feats.embeddings, feats.labels, feats.views, plan.spec, plan.fit, plan.metric,
                           want_map=plan.want_map, device=plan.device if plan.device is not None else "cpu")
    update, stop = _match_progress(console, float(n) * n / 4)
    try:
        return match(
            feats.embeddings,
            feats.labels,
            feats.views,
            plan.spec,
            plan.fit,
            plan.metric,
            want_map=plan.want_map,
            remove_no_gallery=plan.remove_no_gallery,
            device=plan.device if plan.device is not None else "cpu",
            progress=update,
            warn=warn,
        )
    finally:
        stop()


def _save_features(plan: EvalPlan, feats: FeatureSet) -> None:
    target = plan.outputs.save_features
    if target is not None:
        feats.meta.update(
            dataset_name=plan.dataset_name,
            checkpoint=plan.checkpoint,
            iteration=plan.iteration,
            metric=plan.metric,
        )
        feats.save(target)


def _save_hits(plan: EvalPlan, feats: FeatureSet, result: ProtocolResult) -> None:
    """``--save-hits``: every probe's rank-1 outcome per column of the table (docs/compare.md)."""
    target = plan.outputs.save_hits
    if target is None:
        return
    from .hits import probe_hits

    hits = probe_hits(
        feats, plan.spec, plan.fit, plan.metric,
        remove_no_gallery=plan.remove_no_gallery,
        device=plan.device,
        checkpoint=plan.checkpoint,
        iteration=plan.iteration,
        seed=plan.seed,
        features_path=plan.features_path,
        dataset_name=plan.dataset_name,
        rank1=result.rank1,
    )
    hits.save(target)


def check_targets(outputs: EvalOutputs) -> None:
    """Every file the evaluation will write can be written now (a full disk, a read-only or
    foreign folder is one line before the extraction, not a lost result after it)."""
    for name, target in (
        ("json", outputs.json),
        ("csv", outputs.csv),
        ("submission", outputs.submission),
        ("save_features", outputs.save_features),
        ("calibration_out", outputs.calibration_out),
        ("heatmap", outputs.heatmap),
        ("roc", outputs.roc),
        ("save_hits", outputs.save_hits),
    ):
        if target is not None and str(target) != "-":
            check_writable(target, option(name))


def run_plan(plan: EvalPlan, *, console: Console | None = None, warn: Warn | None = None) -> EvalResult:
    """Check the output targets, extract (unless the plan holds features), save the features
    when asked, match."""
    check_targets(plan.outputs)
    started = time.perf_counter()
    feats = extract(plan, console)
    extracted = time.perf_counter()
    _save_features(plan, feats)
    result = match_plan(plan, feats, console=console, warn=warn)
    _save_hits(plan, feats, result)
    report, calibration = _verify(plan, result, feats)
    protocol_seconds = round(time.perf_counter() - extracted, 3)
    if plan.extraction is None:
        seconds = Seconds(protocol=protocol_seconds)
    else:
        sps = feats.meta.get("sequences_per_second")
        seconds = Seconds(
            protocol=protocol_seconds,
            extract=round(extracted - started, 3),
            total=round(time.perf_counter() - started, 3),
            sequences_per_second=round(sps, 2) if sps else None,
        )
    return EvalResult(
        result=result,
        seconds=seconds,
        dataset_name=plan.dataset_name or None,
        checkpoint=plan.checkpoint,
        iteration=plan.iteration,
        features=plan.features_path,
        verification=report,
        calibration=calibration,
        seed=plan.seed,
    )


def _verify(
    plan: EvalPlan, result: ProtocolResult, feats: FeatureSet
) -> tuple[VerificationReport | None, Calibration | None]:
    """``--verification`` on the protocol's gallery and probe sets, from the features in memory,
    and the ``--calibrate`` threshold measured on them (docs/eval.md, "Verification")."""
    outputs = plan.outputs
    if not outputs.verification:
        return None, None
    far = outputs.calibrate
    report = verification_for_results(
        result.to_json(),
        feats.embeddings,
        feats.labels,
        feats.types,
        feats.views,
        extra_fars=(far,) if far is not None else (),
    )
    if far is None:
        return report, None
    prov = provenance_of(feats.meta, plan.checkpoint, plan.metric)
    return report, calibrate(report, far, dataset=plan.dataset_name or None, provenance=prov)


def evaluate_features(
    embeddings: torch.Tensor | npt.ArrayLike,
    labels: npt.ArrayLike,
    types: npt.ArrayLike,
    views: npt.ArrayLike,
    protocol: str | ProtocolSpec = "auto",
    metric: str | None = "euc",
    *,
    cfg: GaitConfig | Mapping[str, object] | None = None,
    dataset_name: str | None = None,
    want_map: bool = False,
    device: torch.device | str | None = None,
    console: Console | None = None,
    warn: Warn | None = None,
    partition: PathLike | None = None,
    submission: bool = False,
) -> EvalResult:
    """Run a protocol on features ``[N, parts, channels]``. ``cfg`` supplies ``evaluator_cfg``
    (protocol, metric, gallery types / probe sets) and ``data_cfg.remove_no_gallery``;
    ``partition`` the gait3d protocol's ``PROBE_SET``; ``submission`` (protocol grew) puts GREW's
    competition answer into ``result.result.submission`` (write it with
    :func:`~.submission.write_submission`)."""
    plan = plan_arrays(
        embeddings,
        labels,
        types,
        views,
        protocol=protocol,
        metric=metric,
        cfg=cfg,
        dataset_name=dataset_name,
        want_map=want_map,
        device=device,
        warn=warn,
        partition=partition,
        outputs=EvalOutputs(submission="-" if submission else None),
    )
    return run_plan(plan, console=console, warn=warn)


def _model_options(
    data: PathLike | None,
    partition: PathLike | None,
    protocol: str,
    metric: str | None,
    batch_size: int | None,
    want_map: bool,
    save_features: PathLike | None,
    precision: str = "fp32",
) -> ModelOptions:
    """The options of the two model entry points below (a checkpoint or a model in memory)."""
    from pathlib import Path

    outputs = EvalOutputs(save_features=Path(save_features) if save_features is not None else None)
    return ModelOptions(data=data, partition=partition, protocol=protocol, metric=metric,
                        batch_size=batch_size, want_map=want_map, outputs=outputs, precision=precision)


def evaluate_model(
    model: torch.nn.Module,
    cfg: GaitConfig,
    *,
    device: torch.device | str | None = None,
    data: PathLike | None = None,
    partition: PathLike | None = None,
    protocol: str = "auto",
    metric: str | None = None,
    batch_size: int | None = None,
    console: Console | None = None,
    want_map: bool = False,
    save_features: PathLike | None = None,
    warn: Warn | None = None,
    checkpoint: str | None = None,
    precision: str = "fp32",
) -> EvalResult:
    """Extract the test split of ``cfg`` with ``model`` and run the protocol.

    ``result.rank1`` is ``{probe_set: mean rank-1 % excluding identical view}``; the full tables
    are in ``result.result``. The model's train/eval mode is left as it was. ``precision``:
    fp32 (default), bf16 or auto (docs/eval.md, "Precision").
    """
    opts = _model_options(data, partition, protocol, metric, batch_size, want_map, save_features, precision)
    plan = plan_model(model, cfg, opts, device=device, warn=warn, checkpoint=checkpoint)
    return run_plan(plan, console=console, warn=warn)


def evaluate_checkpoint(
    checkpoint: PathLike,
    *,
    data: PathLike | None = None,
    partition: PathLike | None = None,
    protocol: str = "auto",
    metric: str | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    gpus: int | None = None,
    nproc: int | None = None,
    overrides: Iterable[str] = (),
    want_map: bool = False,
    save_features: PathLike | None = None,
    console: Console | None = None,
    warn: Warn | None = None,
    precision: str = "fp32",
) -> EvalResult:
    """``gait eval CKPT``: rebuild the model from the checkpoint's stored config, extract its
    test split (``data`` / ``partition`` override the stored paths), run the protocol."""
    opts = _model_options(data, partition, protocol, metric, batch_size, want_map, save_features, precision)
    plan = plan_checkpoint(
        checkpoint, opts, device=device, gpus=gpus, nproc=nproc, overrides=overrides, warn=warn
    )
    return run_plan(plan, console=console, warn=warn)
