"""Distributed data parallel setup for runs launched with `torchrun`.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without them training runs in one
process. NCCL is used on CUDA, gloo on CPU (which is how the tests run DDP).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    return info


def shutdown_distributed(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: float, info: DistInfo, device: torch.device) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


class GlobalBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's share of each global batch of a seeded per-epoch permutation.

    With W processes each rank takes every W-th index of the same global batch, so
    a W-process run sees exactly the global batches of a 1-process run.
    Datasets smaller than a batch are cycled (sampling with replacement across epochs).
    """

    def __init__(self, n_items: int, batch_size: int, *, rank: int = 0, world_size: int = 1, seed: int = 0):
        if n_items <= 0:
            raise ValueError("dataset is empty")
        if batch_size % world_size:
            raise ValueError(f"train.batch_size={batch_size} must be divisible by the number of processes ({world_size})")
        self.n, self.batch_size, self.rank, self.world, self.seed = n_items, batch_size, rank, world_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return max(1, self.n // self.batch_size)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        n_needed = len(self) * self.batch_size
        perm = torch.randperm(self.n, generator=g)
        while len(perm) < n_needed:
            perm = torch.cat([perm, torch.randperm(self.n, generator=g)])
        for i in range(len(self)):
            batch = perm[i * self.batch_size:(i + 1) * self.batch_size]
            yield batch[self.rank::self.world].tolist()
