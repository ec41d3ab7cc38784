"""Small helpers for ``torchrun`` / DDP runs: process-group setup, exact head-gradient averaging, gathering.

Only the head is trained, so instead of wrapping the model in ``DistributedDataParallel`` the trainer
all-reduces the head's gradients itself (one flat tensor per step). That is exactly what DDP would compute
(the mean of the per-rank gradients) without DDP's bucketing or its interaction with the frozen body.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from schemas.runtime import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process runs.

    Attributes:
        rank: Global rank (0 without torchrun).
        world_size: Number of processes.
        local_rank: Rank on this node (selects the GPU).
        device: The torch device of this process.
        backend: ``"nccl"``, ``"gloo"`` or ``""`` when not distributed.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def distributed(self) -> bool:
        """Whether a process group with more than one process is active."""
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Whether this is rank 0 (the process that writes files)."""
        return self.rank == 0


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Set up the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1), pick the device.

    ``gloo`` on CPU, ``nccl`` on CUDA (one GPU per process, ``cuda:LOCAL_RANK``).

    Args:
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        timeout_s: Collective timeout in seconds.

    Returns:
        The :class:`DistInfo`.

    Raises:
        ValueError: For an unknown device string or CUDA requested without a GPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    try:  # "cuda" is this rank's GPU, cuda:LOCAL_RANK
        dev = resolve_device(f"cuda:{local}" if device == "cuda" and world > 1 else device)
    except RuntimeError as err:
        raise ValueError(str(err)) from None
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = ""
    if world > 1:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank, world, local, dev, backend)


def shutdown(info: DistInfo) -> None:
    """Destroy the process group created by :func:`init_distributed` (no-op when not distributed)."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(params: list[torch.nn.Parameter], info: DistInfo) -> None:
    """Replace each gradient by its mean over ranks (one flat all-reduce); missing gradients count as zero."""
    if not info.distributed:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= info.world_size
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        p.grad.copy_(flat[offset:offset + n].view_as(p))
        offset += n


def average_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Average the floating-point buffers (BN running statistics) of ``module`` over ranks."""
    if not info.distributed:
        return
    bufs = [b for b in module.buffers() if b.is_floating_point()]
    if not bufs:
        return
    flat = torch.cat([b.reshape(-1) for b in bufs])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= info.world_size
    offset = 0
    for b in bufs:
        n = b.numel()
        b.copy_(flat[offset:offset + n].view_as(b))
        offset += n


def broadcast_module(module: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters and buffers of ``module`` to every rank."""
    if not info.distributed:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """All ranks' ``obj`` (picklable, small) in rank order; ``[obj]`` when not distributed."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op when not distributed)."""
    if info.distributed:
        dist.barrier()


def mean_over_ranks(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over ranks (a copy; the input is unchanged)."""
    out = values.detach().clone()
    if info.distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= info.world_size
    return out
