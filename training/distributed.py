"""Process-group setup for ``torchrun`` and the small collectives the trainer needs.

``torchrun --nproc_per_node N train_encoder.py ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
the rendezvous variables; without them the trainer runs as a single process (world size 1). The
backend is NCCL on CUDA and gloo on CPU; each rank uses ``cuda:LOCAL_RANK`` (or the CPU).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str | None = None) -> DistEnv:
    """Join the ``torchrun`` process group when one is described by the environment.

    ``device``: ``None`` picks ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU; ``"cuda"``
    means ``cuda:LOCAL_RANK``; an explicit ``"cuda:N"`` is honoured only for world size 1.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
        if dev.index is None or world_size > 1:
            if world_size > 1 and dev.index not in (None, local_rank):
                log.warning("--device %s ignored under torchrun: rank %d uses cuda:%d", device, rank, local_rank)
            dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)
        log.info("rank %d/%d joined the %s process group on %s", rank, world_size, backend, dev)
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum a float64 tensor over ranks (identity for one process)."""
    if env.distributed:
        values = values.to(env.device)
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values.cpu()


def sum_over_ranks(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum a tensor over ranks where it lives (no host sync; identity for one process)."""
    if not env.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_flag(flag: bool, env: DistEnv) -> bool:
    """True on every rank when it is True on any rank (used to stop all ranks together)."""
    if not env.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=env.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
