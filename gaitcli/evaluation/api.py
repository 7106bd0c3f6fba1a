"""The evaluation entry points: ``gait eval`` and the trainer's ``with_test`` share them.

* :func:`evaluate_model` — a model in memory plus its config: extract the test split, run the
  protocol. ``results["rank1"]`` maps each probe set to its mean rank-1 (%) excluding identical
  views; that is what the trainer logs.
* :func:`evaluate_checkpoint` — the same from a checkpoint file (``gait eval CKPT``), optionally
  with several processes.
* :func:`evaluate_features` / :func:`evaluate_feature_file` — saved features, no model.

Every result is a JSON-ready dict (see :func:`gaitcli.evaluation.protocols.run_protocol`) with
``checkpoint``, ``iteration``, ``dataset_name`` and ``seconds`` added.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gaitcli.errors import GaitError

from .extract import FeatureSet, extract_distributed, extract_features
from .metrics import check_metric
from .protocols import PROTOCOLS, ProtocolSpec, check_fit, resolve_protocol, run_protocol

Warn = Callable[[str], None]
_DEFAULT_DATASET = "CASIA-B"
_BIG_MATCH = 5e7  # probe × gallery pairs above which matching shows a progress bar


def dataset_name_of(cfg: Mapping[str, Any]) -> str | None:
    """The test set's name: ``test_dataset_name`` when it was set to something other than the
    default, else ``dataset_name``."""
    dcfg = cfg.get("data_cfg", {}) or {}
    test = dcfg.get("test_dataset_name")
    if test and test != _DEFAULT_DATASET:
        return str(test)
    name = dcfg.get("dataset_name")
    return str(name) if name else None


def load_test_split(cfg: Mapping[str, Any], data: str | os.PathLike[str] | None = None,
                 partition: str | os.PathLike[str] | None = None, *, warn: Warn | None = None) -> Any:
    """The test split named by ``cfg`` (``data`` / ``partition`` override its paths)."""
    from gaitcli.data.dataset import GaitDataset

    dcfg = cfg["data_cfg"]
    root = Path(data) if data is not None else Path(dcfg["dataset_root"])
    part = partition if partition is not None else dcfg["dataset_partition"]
    if not root.is_dir():
        raise GaitError(f"data folder not found: {root} (pass --data DIR or set data_cfg.dataset_root)")
    dataset = GaitDataset(root, part, "test", cache=False, data_in_use=dcfg.get("data_in_use"))
    if warn is not None and dataset.missing_ids:
        shown = ", ".join(dataset.missing_ids[:8]) + (", ..." if len(dataset.missing_ids) > 8 else "")
        warn(f"{len(dataset.missing_ids)} test ids of {dataset.partition.path} have no sequences under {root}: {shown}")
    return dataset


def plan_protocol(cfg: Mapping[str, Any], protocol: str | ProtocolSpec, metric: str | None,
                  types: Any) -> tuple[ProtocolSpec, str]:
    """Resolve the protocol and metric for the sequence ``types`` of a data set before any
    feature is extracted, so a mismatch fails at once."""
    ev = cfg.get("evaluator_cfg", {}) or {}
    metric = check_metric(metric or ev.get("metric") or "euc")
    types = np.asarray(types).astype(str)
    spec = resolve_protocol(protocol, dataset_name=dataset_name_of(cfg), evaluator_cfg=ev, types=types)
    check_fit(spec, types)
    return spec, metric


def _check_options(protocol: Any, metric: str | None) -> None:
    if not isinstance(protocol, ProtocolSpec) and (protocol or "auto") not in PROTOCOLS:
        raise GaitError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if metric is not None:
        check_metric(metric)


def _match_progress(console: Any, pairs: float) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    if console is None or pairs < _BIG_MATCH:
        return None, lambda: None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(TextColumn("[bold]matching"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console)
    task = progress.add_task("match", total=1)
    progress.start()

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return update, progress.stop


def evaluate_features(
    embeddings: Any,
    labels: Any,
    types: Any,
    views: Any,
    protocol: str | ProtocolSpec = "auto",
    metric: str | None = "euc",
    *,
    cfg: Mapping[str, Any] | None = None,
    dataset_name: str | None = None,
    want_map: bool = False,
    device: torch.device | str | None = None,
    console: Any = None,
    warn: Warn | None = None,
) -> dict[str, Any]:
    """Run a protocol on features ``[N, parts, channels]``. ``cfg`` supplies ``evaluator_cfg``
    (protocol, metric, gallery types / probe sets) and ``data_cfg.remove_no_gallery``."""
    ev = dict((cfg or {}).get("evaluator_cfg", {}) or {})
    metric = check_metric(metric or ev.get("metric") or "euc")
    if dataset_name is None and cfg is not None:
        dataset_name = dataset_name_of(cfg)
    spec = resolve_protocol(protocol, dataset_name=dataset_name, evaluator_cfg=ev, types=np.asarray(types).astype(str))
    remove = bool(((cfg or {}).get("data_cfg", {}) or {}).get("remove_no_gallery", False))
    n = len(labels)
    update, stop = _match_progress(console, float(n) * n / 4)
    started = time.perf_counter()
    try:
        results = run_protocol(embeddings, labels, types, views, spec, metric, want_map=want_map,
                               remove_no_gallery=remove, device=device, progress=update, warn=warn)
    finally:
        stop()
    results["dataset_name"] = dataset_name or None
    results["seconds"] = {"protocol": round(time.perf_counter() - started, 3)}
    return results


def evaluate_model(
    model: Any,
    cfg: Mapping[str, Any],
    *,
    device: torch.device | str | None = None,
    data: str | os.PathLike[str] | None = None,
    partition: str | os.PathLike[str] | None = None,
    protocol: str = "auto",
    metric: str | None = None,
    batch_size: int | None = None,
    console: Any = None,
    want_map: bool = False,
    save_features: str | os.PathLike[str] | None = None,
    warn: Warn | None = None,
    checkpoint: str | None = None,
) -> dict[str, Any]:
    """Extract the test split of ``cfg`` with ``model`` and run the protocol.

    ``results["rank1"]`` is ``{probe_set: mean rank-1 % excluding identical view}``; the full
    tables are under ``rank1_exclude``, ``rank1_include``, ``rank5_exclude``, ``map`` and
    ``matrix``. The model's train/eval mode is left as it was.
    """
    started = time.perf_counter()
    _check_options(protocol, metric)
    ev = cfg["evaluator_cfg"]
    sampler = dict(ev.get("sampler") or {})
    bs = int(batch_size or sampler.get("batch_size") or 8)
    dataset = load_test_split(cfg, data, partition, warn=warn)
    protocol, metric = plan_protocol(cfg, protocol, metric, [s.type for s in dataset.sequences])
    feats = extract_features(model, dataset, batch_size=bs, sampler_cfg=sampler, transform=ev.get("transform"),
                             device=device, enable_float16=bool(ev.get("enable_float16")), console=console,
                             progress=console is not None)
    meta = getattr(model, "checkpoint_meta", None) or {}
    return _finish(feats, cfg, started, protocol=protocol, metric=metric, want_map=want_map,
                   device=device, console=console, warn=warn, save_features=save_features,
                   checkpoint=checkpoint, iteration=meta.get("iteration"))


def _finish(feats: FeatureSet, cfg: Mapping[str, Any], started: float, *, protocol: str | ProtocolSpec, metric: str | None,
            want_map: bool, device: Any, console: Any, warn: Warn | None, save_features: Any,
            checkpoint: str | None, iteration: Any) -> dict[str, Any]:
    extract_seconds = time.perf_counter() - started
    name = dataset_name_of(cfg)
    metric = metric or cfg["evaluator_cfg"].get("metric") or "euc"
    if save_features is not None:
        feats.meta.update(dataset_name=name, checkpoint=checkpoint, iteration=iteration, metric=metric)
        feats.save(save_features)
    results = evaluate_features(feats.embeddings, feats.labels, feats.types, feats.views, protocol, metric,
                                cfg=cfg, dataset_name=name, want_map=want_map, device=device,
                                console=console, warn=warn)
    results["checkpoint"] = checkpoint
    results["iteration"] = int(iteration) if iteration is not None else None
    sps = feats.meta.get("sequences_per_second")
    results["seconds"] = {
        "extract": round(extract_seconds, 3),
        "protocol": results["seconds"]["protocol"],
        "total": round(time.perf_counter() - started, 3),
        "sequences_per_second": round(sps, 2) if sps else None,
    }
    return results


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    partition: str | os.PathLike[str] | None = None,
    protocol: str = "auto",
    metric: str | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    gpus: int | None = None,
    nproc: int | None = None,
    overrides: Iterable[str] = (),
    want_map: bool = False,
    save_features: str | os.PathLike[str] | None = None,
    console: Any = None,
    warn: Warn | None = None,
) -> dict[str, Any]:
    """``gait eval CKPT``: rebuild the model from the checkpoint's stored config, extract its
    test split (``data`` / ``partition`` override the stored paths), run the protocol."""
    from gaitcli.config import resolve_config
    from gaitcli.models import load_checkpoint, read_checkpoint_metadata
    from gaitcli.runtime.distributed import resolve_devices

    started = time.perf_counter()
    _check_options(protocol, metric)
    device_type, procs = resolve_devices(device, gpus, nproc)
    overrides = list(overrides)
    if procs > 1:
        meta = read_checkpoint_metadata(checkpoint)
        stored, iteration = meta["config"], meta.get("iteration")
    else:
        model = load_checkpoint(checkpoint, map_location=device_type, warn=warn)
        stored, iteration = model.config, model.checkpoint_meta.get("iteration")
    cfg = resolve_config(stored, f"{checkpoint} (stored config)", overrides=overrides, warn=warn) if overrides else stored
    if cfg is None:
        raise GaitError(f"{checkpoint}: the checkpoint carries no config")
    ev = cfg["evaluator_cfg"]
    bs = int(batch_size or (ev.get("sampler") or {}).get("batch_size") or 8)
    if bs < 1:
        raise GaitError(f"--batch-size must be at least 1, got {bs}")
    dataset = load_test_split(cfg, data, partition, warn=warn)
    protocol, metric = plan_protocol(cfg, protocol, metric, [s.type for s in dataset.sequences])
    if procs > 1:
        root = str(data if data is not None else cfg["data_cfg"]["dataset_root"])
        part = str(partition if partition is not None else cfg["data_cfg"]["dataset_partition"])
        try:
            feats = extract_distributed(checkpoint, cfg, dataset, root=root, partition=part, device=device_type,
                                        nproc=procs, batch_size=bs, progress=console is not None)
        except GaitError:
            raise
        except Exception as exc:  # a failed child process: keep the last line of its traceback
            lines = [ln for ln in str(exc).splitlines() if ln.strip()]
            raise GaitError(f"extraction with {procs} processes failed: {lines[-1] if lines else exc}") from None
    else:
        feats = extract_features(model, dataset, batch_size=bs, sampler_cfg=ev.get("sampler"),
                                 transform=ev.get("transform"), device=device_type,
                                 enable_float16=bool(ev.get("enable_float16")), console=console,
                                 progress=console is not None)
        del model
    return _finish(feats, cfg, started, protocol=protocol, metric=metric, want_map=want_map, device=device_type,
                   console=console, warn=warn, save_features=save_features, checkpoint=str(checkpoint),
                   iteration=iteration)


def evaluate_feature_file(
    path: str | os.PathLike[str],
    *,
    protocol: str = "auto",
    metric: str | None = None,
    overrides: Iterable[str] = (),
    want_map: bool = False,
    device: str | None = None,
    console: Any = None,
    warn: Warn | None = None,
) -> dict[str, Any]:
    """``gait eval --features FILE.npz``: evaluate saved features without a model. The data set
    name stored in the file (or ``--set data_cfg.dataset_name=...``, or the types present)
    picks the protocol under ``auto``."""
    from gaitcli.config import resolve_config
    from gaitcli.runtime.distributed import resolve_devices

    _check_options(protocol, metric)
    overrides = list(overrides)
    feats = FeatureSet.load(path)
    # only evaluator_cfg / data_cfg names matter here: notes about data paths would be noise
    cfg = resolve_config({}, "<defaults>", overrides=overrides)
    named = any(o.split("=", 1)[0].strip() in ("data_cfg.dataset_name", "data_cfg.test_dataset_name") for o in overrides)
    name = dataset_name_of(cfg) if named else feats.meta.get("dataset_name")
    if metric is None:
        stored = None if _metric_overridden(overrides) else feats.meta.get("metric")
        metric = stored or cfg["evaluator_cfg"].get("metric") or "euc"
    device_type, _ = resolve_devices(device, None, None)
    # an empty name makes ``auto`` look at the types present instead of the default config's name
    results = evaluate_features(feats.embeddings, feats.labels, feats.types, feats.views, protocol, metric,
                                cfg=cfg, dataset_name=name or "", want_map=want_map, device=device_type,
                                console=console, warn=warn)
    results["dataset_name"] = name
    results["checkpoint"] = feats.meta.get("checkpoint")
    results["iteration"] = feats.meta.get("iteration")
    results["features"] = str(path)
    return results


def _metric_overridden(overrides: Iterable[str]) -> bool:
    return any(o.split("=", 1)[0].strip() == "evaluator_cfg.metric" for o in overrides)
