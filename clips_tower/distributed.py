"""Process-group helpers for CLIPS pretraining: start-up, gathering per-rank state, rank-mean metrics.

    rank, world, device = init_distributed()     # 1 process, or N under torchrun (gloo on CPU, NCCL on GPU)
    states = gather(obj, world)                  # [obj of rank 0, obj of rank 1, ...] on every rank
    terms = mean_over_ranks(terms, world)        # loss terms of the global batch
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank() if world > 1 else 0), world, device


def gather(obj, world: int) -> list:
    """Every rank's `obj` (any picklable value), in rank order; `[obj]` without a process group."""
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(terms: dict[str, torch.Tensor], world: int) -> dict[str, torch.Tensor]:
    """Detached float terms averaged over the ranks (sorted by name): the global-batch values."""
    names = sorted(terms)
    vec = torch.stack([terms[n].detach().float() for n in names])
    if world > 1:
        dist.all_reduce(vec)
        vec /= world
    return dict(zip(names, vec))
