"""Process groups without the reference's pitfalls (SPEC §13).

- The backend is NCCL for CUDA on Linux and gloo everywhere else (CPU runs, Windows, builds
  without NCCL).
- Single-node runs set their own rendezvous: 127.0.0.1 and a free port, ranks spawned here.
- Under ``torchrun`` (multi-node) the environment it provides (RANK, WORLD_SIZE, LOCAL_RANK,
  MASTER_ADDR, MASTER_PORT) is used as is.
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from gaitcli.errors import GaitError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def under_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))


def pick_backend(device_type: str) -> str:
    if device_type == "cuda" and platform.system() == "Linux" and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def resolve_devices(device: str | None, gpus: int | None, nproc: int | None) -> tuple[str, int]:
    """(device type, number of processes) from the CLI options, with one clear error each."""
    cuda = torch.cuda.is_available()
    if gpus is not None:
        if device == "cpu":
            raise GaitError("--gpus and --device cpu contradict each other; use --device cpu --nproc N for CPU processes")
        if not cuda:
            raise GaitError(f"--gpus {gpus}: no CUDA device is visible on this machine; "
                            f"run on the CPU with --device cpu --nproc {gpus}")
        available = torch.cuda.device_count()
        if gpus > available:
            raise GaitError(f"--gpus {gpus}: only {available} CUDA device(s) visible (CUDA_VISIBLE_DEVICES?)")
        return "cuda", gpus
    if device in (None, "auto"):
        device = "cuda" if cuda else "cpu"
    if device == "cuda" and not cuda:
        raise GaitError("--device cuda: no CUDA device is visible on this machine; use --device cpu")
    if device not in ("cpu", "cuda"):
        raise GaitError(f"--device {device}: expected cpu, cuda or auto")
    return device, max(1, nproc or 1)


def init_process_group(info: DistInfo) -> None:
    backend = pick_backend(info.device)
    if info.device == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)


def _spawned(local_rank: int, fn: Callable[..., Any], world_size: int, device: str, port: int, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(local_rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(local_rank))
    info = DistInfo(rank=local_rank, world_size=world_size, local_rank=local_rank, device=device)
    init_process_group(info)
    try:
        fn(info, *args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def launch(fn: Callable[..., Any], device: str, nproc: int, *args: Any) -> Any:
    """Run ``fn(info, *args)`` once per process and return rank 0's result when in-process.

    Under torchrun the current process is one rank already. With ``nproc == 1`` it runs here,
    without a process group. Otherwise ``nproc`` processes are spawned on this node.
    """
    if under_torchrun():
        info = DistInfo(
            rank=int(os.environ["RANK"]),
            world_size=int(os.environ["WORLD_SIZE"]),
            local_rank=int(os.environ["LOCAL_RANK"]),
            device=device,
        )
        if info.world_size > 1 and not dist.is_initialized():
            init_process_group(info)
        return fn(info, *args)
    if nproc == 1:
        return fn(DistInfo(device=device), *args)
    import torch.multiprocessing as mp

    port = free_port()
    mp.start_processes(_spawned, args=(fn, nproc, device, port, args), nprocs=nproc, start_method="spawn", join=True)
    return None


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from all ranks along dim 0; this rank's slice keeps its gradient."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    parts[dist.get_rank()] = tensor
    return torch.cat(parts, dim=0)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
