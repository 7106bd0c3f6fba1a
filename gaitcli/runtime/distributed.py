"""Process groups: backend choice, rendezvous, devices, and the few collectives gaitcli uses.

- The backend is NCCL for CUDA on Linux and gloo everywhere else (CPU runs, Windows, builds
  without NCCL).
- Single-node runs set their own rendezvous: 127.0.0.1 and a free port, ranks spawned by
  :mod:`gaitcli.runtime.launch`.
- Under ``torchrun`` (multi-node) the environment it provides (RANK, WORLD_SIZE, LOCAL_RANK,
  MASTER_ADDR, MASTER_PORT) is used as is.
- Every group has a timeout (``GAITCLI_DIST_TIMEOUT`` seconds, default 1800), so a rank whose
  peer died never waits in a collective forever. docs/train.md ("Distributed") describes this.
"""

from __future__ import annotations

import datetime
import os
import platform
import socket
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from gaitcli.errors import GaitError, option

DEFAULT_TIMEOUT_S = 1800.0

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where one rank sits in the run."""

    rank: int = 0
    """Global rank (0 writes the output)."""
    world_size: int = 1
    """Number of processes in the run."""
    local_rank: int = 0
    """Rank on this node (the CUDA device index)."""
    device: str = "cpu"
    """``cpu`` or ``cuda``."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def under_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))


def torchrun_info(device: str) -> DistInfo:
    """This process's place in a ``torchrun`` launch."""
    return DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
        device=device,
    )


def pick_backend(device_type: str) -> str:
    if device_type == "cuda" and platform.system() == "Linux" and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def collective_timeout() -> datetime.timedelta:
    """How long a collective may wait for a peer (``GAITCLI_DIST_TIMEOUT`` seconds)."""
    raw = os.environ.get("GAITCLI_DIST_TIMEOUT", "")
    try:
        seconds = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise GaitError(f"GAITCLI_DIST_TIMEOUT={raw!r}: expected a number of seconds") from None
    return datetime.timedelta(seconds=max(seconds, 1.0))


def resolve_devices(device: str | None, gpus: int | None, nproc: int | None) -> tuple[str, int]:
    """(device type, number of processes) from the CLI options, with one clear error each."""
    cuda = torch.cuda.is_available()
    if gpus is not None:
        if device == "cpu":
            raise GaitError(
                f"{option('gpus')} and {option('device', 'cpu')} contradict each other; use "
                f"{option('device', 'cpu')} {option('nproc', 'N')} for CPU processes"
            )
        if not cuda:
            raise GaitError(
                f"{option('gpus', gpus)}: no CUDA device is visible on this machine; "
                f"run on the CPU with {option('device', 'cpu')} {option('nproc', gpus)}"
            )
        available = torch.cuda.device_count()
        if gpus > available:
            raise GaitError(
                f"{option('gpus', gpus)}: only {available} CUDA device(s) visible (CUDA_VISIBLE_DEVICES?)"
            )
        return "cuda", gpus
    if device in (None, "auto"):
        device = "cuda" if cuda else "cpu"
    if device == "cuda" and not cuda:
        raise GaitError(
            f"{option('device', 'cuda')}: no CUDA device is visible on this machine; "
            f"use {option('device', 'cpu')}"
        )
    if device not in ("cpu", "cuda"):
        raise GaitError(f"{option('device', device)}: expected cpu, cuda or auto")
    return device, max(1, nproc or 1)


def init_process_group(info: DistInfo) -> None:
    backend = pick_backend(info.device)
    if info.device == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(
        backend=backend, rank=info.rank, world_size=info.world_size, timeout=collective_timeout()
    )


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from all ranks along dim 0; this rank's slice keeps its gradient."""
    if not is_initialized() or dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    parts[dist.get_rank()] = tensor
    return torch.cat(parts, dim=0)


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one (one small all-reduce)."""
    if not is_initialized():
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    box = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return bool(box.item() > 0)


def all_ranks(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on all of them."""
    return not any_rank(not flag)


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (``obj`` itself without a group)."""
    if not is_initialized():
        return obj
    box: list[T] = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: T) -> list[T]:
    """``obj`` of every rank, in rank order, on every rank (``[obj]`` without a group)."""
    if not is_initialized():
        return [obj]
    out: list[T] = [obj] * dist.get_world_size()  # every entry is overwritten by its rank's object
    dist.all_gather_object(out, obj)
    return out


def gather_to_main(obj: T) -> list[T] | None:
    """``obj`` of every rank, in rank order, on rank 0 only (others get ``None``); ``[obj]``
    without a group. Only the main rank holds the whole: no rank pays for N copies."""
    if not is_initialized():
        return [obj]
    rank = dist.get_rank()
    out: list[T] | None = [obj] * dist.get_world_size() if rank == 0 else None  # entries overwritten
    dist.gather_object(obj, out, dst=0)
    return out
