"""Process-group plumbing for DDP, kept out of the training loop.

Launch with `torchrun --nproc-per-node N -m ...` (or any launcher that sets RANK / WORLD_SIZE /
LOCAL_RANK / MASTER_ADDR / MASTER_PORT). NCCL on CUDA, gloo on CPU. A single process needs none
of this: every helper degrades to a no-op.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    owns_group: bool  # we initialised the process group, so we tear it down

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup() -> DistContext:
    """Join the process group described by the environment (if any) and pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank % max(1, torch.cuda.device_count())}") if cuda else torch.device("cpu")
    owns = False
    if world > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if cuda else "gloo", rank=rank, world_size=world)
        owns = True
        log.info("rank %d/%d joined the process group on %s", rank, world, device)
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistContext(rank, world, local_rank, device, owns)


def teardown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.world > 1:
        dist.barrier()


def all_true(ctx: DistContext, flag: bool) -> bool:
    """True only if `flag` is true on every rank (used to stop together when a shard runs dry)."""
    if ctx.world == 1:
        return flag
    t = torch.tensor([1 if flag else 0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def sum_across(ctx: DistContext, values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over ranks (for logging means: send sums and counts)."""
    if ctx.world == 1:
        return values
    values = values.to(ctx.device)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values.cpu()
