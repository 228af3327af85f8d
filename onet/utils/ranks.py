"""Splitting per-object work over processes: torchrun ranks and cluster array shards.

A process takes share `index` of `count` of a list of work items. Under
`torchrun` (RANK / WORLD_SIZE / LOCAL_RANK in the environment) every rank is
one share; `--shard I/N` (a cluster job array, no communication) splits the
list N ways; both together split each shard over the ranks, so
share = I * WORLD_SIZE + RANK of N * WORLD_SIZE.

Ranks of one torchrun job meet in a gloo process group (CPU tensors only, so
it works beside any GPU setup) for the final merge: `barrier` and
`gather_to_main`.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

__all__ = ["Share", "Launch", "launch_info", "parse_shard", "barrier", "gather_to_main", "shutdown"]

# the ranks wait for each other only at the end, so the slowest one sets the wait;
# gloo's 30-minute default would fail a long generation with uneven objects
_GROUP_TIMEOUT = datetime.timedelta(days=7)


@dataclass(frozen=True)
class Share:
    """Part `index` of `count` of a work list."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"a share must have 0 <= index < count, got {self.index}/{self.count}")

    @property
    def whole(self) -> bool:
        return self.count == 1

    def take(self, items: list) -> list:
        """Every count-th item starting at index: shares are disjoint and cover the list."""
        return list(items[self.index::self.count])

    @property
    def suffix(self) -> str:
        """File-name tag of this share's own outputs, e.g. 'shard3of8'."""
        return f"shard{self.index}of{self.count}"


@dataclass(frozen=True)
class Launch:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # launch_info() created the process group, so shutdown() ends it
    local_world_size: int = 1  # processes on this node: they share its CPU cores

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device):
        """`device` (a torch.device) with this rank's GPU: cuda:LOCAL_RANK under torchrun, one GPU per rank.

        That GPU also becomes the current one, so calls without a device
        (torch.cuda.synchronize(), new contexts) stay off the other ranks' GPUs.
        """
        if device.type == "cuda" and device.index is None and self.distributed:
            import torch

            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        return device

    def share(self, shard: tuple[int, int] | None = None) -> Share:
        """This process's share of the work: shard (I, N) split over the ranks."""
        i, n = shard or (0, 1)
        return Share(i * self.world_size + self.rank, n * self.world_size)


def launch_info() -> Launch:
    """Read RANK / WORLD_SIZE / LOCAL_RANK (set by torchrun) and join the gloo group when there are several ranks."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Launch()
    import torch.distributed as dist

    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="gloo", timeout=_GROUP_TIMEOUT)
    return Launch(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")), owns,
                  int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def barrier(launch: Launch) -> None:
    if launch.distributed:
        import torch.distributed as dist

        dist.barrier()


def gather_to_main(launch: Launch, obj) -> list | None:
    """[obj of rank 0, obj of rank 1, ...] on rank 0, None elsewhere; [obj] in one process."""
    if not launch.distributed:
        return [obj]
    import torch.distributed as dist

    out = [None] * launch.world_size if launch.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def shutdown(launch: Launch) -> None:
    if launch.owns_group:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def parse_shard(text: str) -> tuple[int, int]:
    """'3/16' -> (3, 16); I counts from 0. Raises UsageError on anything else."""
    from onet.utils.errors import UsageError

    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {text}: need 0 <= I < N")
    return i, n
