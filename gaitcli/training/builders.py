"""What a training run is built from, one builder per concern: data, network, optimisation.

Each builder takes the resolved config and the rank's :class:`DistInfo` and returns a small
dataclass; :class:`gaitcli.training.trainer.Trainer` only wires them together.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from gaitcli.config_types import GaitConfig
from gaitcli.data.collate import Collator, Element, IndexedDataset
from gaitcli.data.dataset import GaitDataset
from gaitcli.data.samplers import TripletSampler
from gaitcli.errors import ConfigError
from gaitcli.runtime.distributed import DistInfo, gather_with_grad
from gaitcli.schedule import build_optimizer, build_scheduler
from gaitcli.training.losses import LossAggregator

Log = Callable[[str], None]


def seed_everything(seed: int, info: DistInfo) -> None:
    """Seed torch, numpy and random per rank (every rank differs, runs repeat)."""
    torch.manual_seed(seed + info.rank)
    np.random.seed((seed + info.rank) % 2**32)
    random.seed(seed + info.rank)


def device_of(info: DistInfo) -> torch.device:
    if info.device == "cuda":
        torch.backends.cudnn.benchmark = True
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


# -------------------------------------------------------------------------------------------- data
@dataclass
class TrainData:
    """The training split and the loader that draws its P x K batches."""

    dataset: GaitDataset
    """The training sequences."""
    frame_size: str
    """Prepared frame height x width, e.g. ``64x64`` (stored in every checkpoint)."""
    global_batch: int
    """P x K over all ranks."""
    seed: int
    """The sampler's seed."""


def build_data(cfg: GaitConfig, log: Log) -> TrainData:
    """Open the training split, say what is missing, check ``class_num`` against it."""
    data = cfg.data
    dataset = GaitDataset(
        data.dataset_root,
        data.dataset_partition,
        "train",
        cache=data.cache,
        data_in_use=None if data.data_in_use is None else list(data.data_in_use),
        min_frames=data.min_frames,
    )
    if dataset.missing_ids:
        log(
            f"warning: {len(dataset.missing_ids)} training ids of the partition are not on disk: "
            f"{', '.join(dataset.missing_ids[:10])}"
        )
    if dataset.skipped_short:
        log(f"min_frames: left out {len(dataset.skipped_short)} short sequences")
    classes = len(dataset.label_set)
    class_num = cfg.model.settings.class_num
    if cfg.has_cross_entropy and class_num < classes:  # the classifier's width matters only then
        raise ConfigError(
            f"model_cfg.class_num is {class_num} but the training split has {classes} ids; "
            f"set model_cfg.class_num={classes}"
        )
    sampler = cfg.trainer.sampler
    return TrainData(dataset, frame_size_of(dataset), sampler.sequences_per_batch, cfg.trainer.seed)


def frame_size_of(dataset: GaitDataset) -> str:
    """``HxW`` of the first sequence's first pkl, read from its header (no unpickling)."""
    from gaitcli.data.pkl_header import HeaderProblem, read_array_header

    try:
        shape = read_array_header(dataset.sequences[0].paths[0]).shape
    except (HeaderProblem, OSError, IndexError):
        return ""
    return f"{shape[1]}x{shape[2]}" if len(shape) == 3 else ""


def build_loader(
    cfg: GaitConfig, data: TrainData, info: DistInfo, start_batch: int, device: torch.device
) -> torch.utils.data.DataLoader[Element]:
    """The endless loader from batch ``start_batch`` on (a resumed run continues the stream)."""
    sampler_cfg = cfg.trainer.sampler
    sampler = TripletSampler(
        data.dataset.labels,
        list(sampler_cfg.batch_size),
        shuffle=sampler_cfg.batch_shuffle,
        seed=data.seed,
        rank=info.rank,
        world_size=info.world_size,
        start_batch=start_batch,
    )
    collate = Collator(sampler_cfg.frame_sampling(), data.dataset.label_index, seed=data.seed,
                       transform=list(cfg.trainer.transform))
    workers = cfg.data.num_workers
    # its own generator: starting an iterator must not draw from the global RNG, or a resumed run
    # (which starts one more iterator) would continue with a shifted torch RNG
    generator = torch.Generator().manual_seed(data.seed + info.rank)
    return torch.utils.data.DataLoader(
        IndexedDataset(data.dataset),
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
        worker_init_fn=ignore_interrupts if workers > 0 else None,
        generator=generator,
    )


def ignore_interrupts(_worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the trainer, which finishes its step and saves."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# ----------------------------------------------------------------------------------------- network
@dataclass
class TrainNetwork:
    """The model and what the loop calls (DDP-wrapped when distributed)."""

    model: torch.nn.Module
    """The bare model: what checkpoints store."""
    net: torch.nn.Module
    """``model``, or its DistributedDataParallel wrapper."""
    param_count: int
    """Number of parameters."""


def build_network(cfg: GaitConfig, info: DistInfo, device: torch.device) -> TrainNetwork:
    from gaitcli.build import build_model

    return wrap_network(build_model(cfg).to(device), cfg, info, device)


def wrap_network(
    model: torch.nn.Module, cfg: GaitConfig, info: DistInfo, device: torch.device
) -> TrainNetwork:
    """``model`` (already on ``device``, its memory format set) as the loop runs it."""
    net: torch.nn.Module = model
    if info.distributed:
        if device.type == "cuda" and cfg.trainer.sync_BN:
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)  # type: ignore[no-untyped-call]
        # without a cross-entropy term the classifier head gets no gradient; DDP must know
        unused = not cfg.has_cross_entropy
        net = torch.nn.parallel.DistributedDataParallel(
            net,
            device_ids=[info.local_rank] if device.type == "cuda" else None,
            find_unused_parameters=unused,
        )
    return TrainNetwork(model, net, sum(p.numel() for p in model.parameters()))


# ------------------------------------------------------------------------------------ optimisation
@dataclass
class Optimisation:
    """Losses, optimiser, scheduler and mixed-precision settings."""

    losses: LossAggregator
    """Every loss of ``loss_cfg``."""
    optimizer: torch.optim.Optimizer
    """``optimizer_cfg``'s optimiser."""
    scheduler: torch.optim.lr_scheduler.LRScheduler
    """``scheduler_cfg``'s schedule, stepped once per iteration."""
    scaler: torch.amp.GradScaler
    """The fp16 gradient scaler (disabled unless fp16 on CUDA)."""
    fp16: bool
    """fp16 autocast (CUDA only)."""
    bf16: bool
    """bf16 autocast."""


def cpu_bf16_warning(bf16: bool, device: torch.device) -> str | None:
    """A warning when bf16 autocast runs on a CPU without native bf16 (AVX-512-BF16 or AMX):
    oneDNN then emulates it, several times slower than fp32 (docs/recipes.md measured 2.9x
    slower with AVX-512 alone and 15x with AVX2). None otherwise."""
    if not bf16 or device.type != "cpu":
        return None
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    if native:
        return None
    return ("warning: trainer_cfg.enable_bfloat16 on a CPU without AVX-512-BF16 or AMX: bf16 is "
            "emulated there, several times slower than fp32; set trainer_cfg.enable_bfloat16=false")


def build_optimisation(
    cfg: GaitConfig, info: DistInfo, net: torch.nn.Module, device: torch.device
) -> Optimisation:
    losses = LossAggregator(
        cfg.losses, gather=gather_with_grad if info.distributed else None, world_size=info.world_size
    )
    optimizer = build_optimizer(net.parameters(), cfg.optimizer.as_mapping())
    scheduler = build_scheduler(optimizer, cfg.scheduler.as_mapping())
    fp16 = cfg.trainer.enable_float16 and device.type == "cuda"
    return Optimisation(
        losses,
        optimizer,
        scheduler,
        torch.amp.GradScaler("cuda", enabled=fp16),
        fp16,
        cfg.trainer.enable_bfloat16,
    )
