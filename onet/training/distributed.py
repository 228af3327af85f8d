"""Distributed data parallel setup for runs launched with `torchrun`.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without them training runs in one
process. NCCL is used on CUDA, gloo on CPU (which is how the tests run DDP).

Every collective here is entered by all ranks at the same point of the loop, or
the run hangs: decisions that depend on one rank's data or clock are agreed first
(a skipped batch with `agree`, on CPU tensors over a gloo group so that a CUDA run
does not wait for the GPU to drain; when to stop with `agree_to_stop`).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn

NONFINITE_STOP = "a non-finite training loss on some process"


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    # gloo group for small CPU-side agreements (the default group itself on CPU runs)
    cpu_group: Any = field(default=None, compare=False, repr=False)

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
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    cpu_group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    return DistInfo(int(os.environ["RANK"]), world, local_rank, int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
                    cpu_group)


def shutdown_distributed(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        # free what is unreachable but still holds the process group (DDP's reducer in reference
        # cycles) while the group is alive, so nothing of it is left to interpreter finalisation
        gc.collect()
        dist.destroy_process_group()


def all_reduce_mean(value: float, info: DistInfo, device: torch.device) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def agree_to_stop(reason: str, info: DistInfo, device: torch.device, *,
                  nonfinite: torch.Tensor | None = None) -> str:
    """The stop decision every process follows, so no rank waits alone in a collective.

    reason: this process's own answer ("" to go on); only rank 0's counts
    (train.max_time runs on each rank's own clock, and clocks drift). With
    `nonfinite` (a 0-dim bool tensor: this rank met a non-finite loss), a NaN
    on any rank returns NONFINITE_STOP on every rank. One small all-reduce.
    """
    if not info.enabled:
        return reason
    flags = torch.zeros(2, dtype=torch.float32, device=device)
    if info.is_main and reason:
        flags[0] = 1.0
    if nonfinite is not None:
        flags[1] = nonfinite.to(device=device, dtype=torch.float32)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    stop, bad = flags.tolist()
    if bad:
        return NONFINITE_STOP
    if not stop:
        return ""
    box = [reason]
    dist.broadcast_object_list(box, src=0, device=device if device.type == "cuda" else None)
    return box[0]


class _SumOverProcesses(torch.autograd.Function):
    """Sum over processes; the gradient of each input is the sum of all processes' output gradients.

    Blocking all-reduces in both directions: nothing is left in flight for the process group's
    worker threads (torch's functional collectives could leave asynchronous work behind, and a
    process that then destroyed its group aborted with "terminate called without an active
    exception"). Also avoids torch.distributed.nn.functional, which warns on every call.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _differentiable_sum(x: torch.Tensor) -> torch.Tensor:
    return _SumOverProcesses.apply(x)


def all_reduce_sum(values: Sequence[float], info: DistInfo, device: torch.device) -> list[float]:
    """Element-wise sums over all processes (float64), e.g. of validation sums and counts.
    On device "cpu" over the gloo group (a CUDA run's default group is NCCL's)."""
    if not info.enabled:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, group=info.cpu_group if t.device.type == "cpu" else None)
    return t.tolist()


def agree(flags: Sequence[int], info: DistInfo) -> list[int]:
    """Element-wise sums of small integers over all processes, on the CPU.

    Used so that every rank takes the same branch, e.g. a batch one rank could not
    load is skipped by all (sum > 0). Runs over a gloo group, so on CUDA it neither
    synchronises nor waits for the GPU.
    """
    if not info.enabled:
        return [int(f) for f in flags]
    t = torch.tensor([int(f) for f in flags], dtype=torch.int64)
    dist.all_reduce(t, group=info.cpu_group)
    return t.tolist()


def all_gather_objects(obj: Any, info: DistInfo) -> list:
    """[rank 0's obj, rank 1's obj, ...] on every rank (picklable objects, e.g. RNG states)."""
    if not info.enabled:
        return [obj]
    out: list = [None] * info.world_size
    dist.all_gather_object(out, obj, group=info.cpu_group)
    return out


def once_per_node(fn: Callable[[], None], info: DistInfo) -> None:
    """Run `fn` (idempotent, e.g. build a dataset unless it exists) so that every node has its result.

    Global rank 0 runs it first while the others wait; then the first process of every
    other node runs it, which finds the result and returns at once on a shared file
    system and builds a node-local copy without one. Nodes never build the same folder
    concurrently, so a shared file system is not required.
    """
    if not info.enabled:
        fn()
        return
    if info.rank == 0:
        fn()
    dist.barrier(group=info.cpu_group)
    if info.local_rank == 0 and info.rank != 0:
        fn()
    dist.barrier(group=info.cpu_group)


def convert_sync_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """Replace every batch norm in `module` by one whose training statistics span all processes.

    On GPUs this is torch's SyncBatchNorm. torch's SyncBatchNorm refuses CPU
    tensors, so on CPU (gloo) the layers become `GlooSyncBatchNorm`, which computes
    the same statistics with differentiable all-reduces. Either way a W-process run
    normalises exactly like a 1-process run with the same global batch. Parameters
    and buffers are reused, not copied, so an optimizer built before stays valid.
    """
    if device_type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlooSyncBatchNorm):
        new = GlooSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, device_type))
    return module


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the global batch of all processes, for CPU tensors (gloo).

    Training mode under an initialised process group: per-channel mean and
    (biased) variance over every process's (N, C, ...) input, by two
    differentiable all-reduces (sums, then squared deviations), so gradients flow
    across processes as in torch's SyncBatchNorm. Otherwise: plain batch norm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (N, C, ...), got {input.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]  # every axis but the channels
        shape = [1, -1] + [1] * (x.dim() - 2)  # per-channel stats broadcast over (N, C, ...)
        count = x.new_tensor([x.numel() // x.shape[1]])
        dist.all_reduce(count)
        mean = _differentiable_sum(x.sum(dims)) / count
        centred = x - mean.view(shape)
        var = _differentiable_sum((centred * centred).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (count / (count - 1).clamp(min=1))
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(unbiased.detach(), factor)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


class GlobalBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's share of each global batch of a seeded per-epoch permutation.

    With W processes each rank takes every W-th index of the same global batch, so
    a W-process run sees exactly the global batches of a 1-process run.
    Datasets smaller than a batch are cycled (sampling with replacement across epochs).
    `epoch_batches(epoch, start_batch=k)` skips the first k batches of that epoch: a
    resumed run continues inside the epoch exactly where the checkpoint was written
    (EpochStream chains the epochs for training); iterating the sampler gives epoch 0.
    """

    def __init__(self, n_items: int, batch_size: int, *, rank: int = 0, world_size: int = 1, seed: int = 0):
        if n_items <= 0:
            raise ValueError("dataset is empty")
        if batch_size % world_size:
            raise ValueError(f"train.batch_size={batch_size} must be divisible by the number of processes ({world_size})")
        self.n, self.batch_size, self.rank, self.world, self.seed = n_items, batch_size, rank, world_size, seed

    def __len__(self) -> int:
        return max(1, self.n // self.batch_size)

    def __iter__(self):
        return self.epoch_batches(0)

    def epoch_batches(self, epoch: int, start_batch: int = 0):
        """This rank's share of each batch of `epoch` from batch `start_batch` on."""
        g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        n_needed = len(self) * self.batch_size
        perm = torch.randperm(self.n, generator=g)
        while len(perm) < n_needed:
            perm = torch.cat([perm, torch.randperm(self.n, generator=g)])
        for i in range(start_batch, len(self)):
            batch = perm[i * self.batch_size:(i + 1) * self.batch_size]
            yield batch[self.rank::self.world].tolist()


class EpochStream(torch.utils.data.Sampler):
    """The batches of epoch after epoch of a GlobalBatchSampler, endlessly, each index as
    (index, epoch) (ShapeDataset draws an item's points with its epoch's seed).

    One DataLoader iterator over the stream serves the whole run: its workers live from
    the first batch to the last, so what they cache (data.cache_points, cache_images)
    stays cached, and they load the next epoch's first batches while the current epoch's
    last ones train. A loader iterator per epoch starts new workers each epoch, with
    empty caches, and waits at each epoch's start for a whole batch from one worker.
    """

    def __init__(self, sampler: GlobalBatchSampler):
        self.sampler = sampler
        self.epoch, self.start_batch = 0, 0

    def start_at(self, epoch: int, start_batch: int = 0) -> None:
        """Where the next iterator starts (a resumed run: inside the checkpoint's epoch)."""
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self):
        epoch, start = self.epoch, self.start_batch
        while True:
            for batch in self.sampler.epoch_batches(epoch, start):
                yield [(i, epoch) for i in batch]
            epoch, start = epoch + 1, 0
