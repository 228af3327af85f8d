"""Device resolution and per-device defaults.

`auto` means CUDA when a GPU is visible, else the CPU. The defaults chosen here
by device (TF32, DataLoader workers and pinned memory) are documented in
configs/default.yaml and the README's GPUs section.
"""

from __future__ import annotations

import functools
import os

import torch

from onet.utils.errors import ConfigError
from onet.utils.parallel import usable_cpus


def resolve_device(name: str) -> torch.device:
    """Map a device name (auto, cpu, cuda, cuda:N) to a torch.device; cuda without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was asked for but no CUDA GPU is available (use --device cpu or auto)")
    return torch.device(name)


def set_tf32(device: torch.device, enabled: bool) -> None:
    """Let float32 matmuls and convolutions on CUDA use TF32 tensor cores (config key `tf32`).

    TF32 rounds matmul inputs to a 10-bit mantissa and accumulates in fp32: on
    Ampere and newer GPUs fp32 matmuls run several times faster, at about 1e-3
    relative error per product. Does nothing for a CPU device (CPU matmuls are
    untouched). Uses torch's per-backend `fp32_precision` switches (torch >= 2.9
    refuses a mix of those and the older allow_tf32 flags); older torch gets the
    allow_tf32 flags.
    """
    if torch.device(device).type != "cuda":
        return
    precision = "tf32" if enabled else "ieee"
    try:
        torch.backends.cuda.matmul.fp32_precision = precision
        torch.backends.cudnn.conv.fp32_precision = precision
    except AttributeError:  # torch < 2.9
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def loader_settings(device: torch.device, num_workers: int | None, pin_memory: bool | None,
                    *, processes_per_node: int = 1) -> tuple[int, bool]:
    """DataLoader (num_workers, pin_memory) for `device`; None means the device's default.

    CPU: 0 workers (the training step already uses every core; loading in the main
    process keeps runs reproducible and light) and no pinning. CUDA: pinned memory, so
    `.to(device, non_blocking=True)` overlaps the copy with compute, and workers
    loading the next batches while the GPU runs: min(8, CPU cores of this process's
    share of the node), at least 1.
    """
    cuda = torch.device(device).type == "cuda"
    if num_workers is not None and num_workers < 0:
        raise ConfigError(f"config key 'train.num_workers' must be >= 0 or null, got {num_workers}")
    if num_workers is None:
        if cuda:
            cores = usable_cpus()
            num_workers = max(1, min(8, cores // max(1, processes_per_node) - 1))
        else:
            num_workers = 0
    if pin_memory is None:
        pin_memory = cuda
    return int(num_workers), bool(pin_memory and cuda)


def marching_cubes_workers(device: torch.device, workers: int | None, *, processes_per_node: int = 1) -> int:
    """Worker processes for CPU marching cubes beside the device (generation.marching_cubes_workers).

    None: on CUDA min(32, this process's share of the CPU cores - 2), leaving cores for the
    process that feeds the GPU; on the CPU 0, since evaluation there already uses every core.
    (The cap was 8: on a 16-core H200 machine the 8 workers' marching cubes, 80-140 ms per
    128^3 mesh, bounded `onet generate` at about 60 meshes/s while the GPU idled.)
    """
    if workers is not None:
        if workers < 0:
            raise ConfigError(f"config key 'generation.marching_cubes_workers' must be >= 0 or null, got {workers}")
        return int(workers)
    if torch.device(device).type != "cuda":
        return 0
    cores = usable_cpus()
    return max(1, min(32, cores // max(1, processes_per_node) - 2))


def resolve_marching_cubes(value: str, device: torch.device) -> str:
    """The marching-cubes backend for generation.marching_cubes on `device`.

    auto: torch on CUDA (the grids stay on the GPU and a batch takes one pass there; CPU
    marching cubes in worker processes held `onet generate` on an H200 to 28 meshes/s
    while the GPU evaluated a 128^3 grid in 8 ms), skimage elsewhere (Lewiner's case
    table, which decides a face's saddle by the bilinear interpolant).
    """
    if value == "auto":
        return "torch" if torch.device(device).type == "cuda" else "skimage"
    return value


def to_device(batch: dict, device: torch.device | str) -> dict:
    """The batch with its tensors on `device` (names and other entries as they are)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse instead of unmapping it (CPU runs), at every size.

    By default glibc serves each block above a dynamic threshold (at most 32 MB) with a fresh
    mmap() and returns it to the OS on free(), so a loop that allocates the same large tensors
    every step page-faults each of them in again: in the 2-D GAN benchmark 6,485 minor faults
    per iteration of its largest group, 347 with the threshold at 32 MB. A training step of a
    thesis decoder allocates (B x T x 256) activations of 32-128 MB, above any threshold, so
    here mmap is switched off (every block from the heap) and the heap is never trimmed: the
    pointcloud decoder's forward + backward at B=64 1.13x faster (2.6M minor faults -> 0.55M)
    for a peak resident size 1.1-1.2x larger (README "Performance"). Process-wide, for the rest
    of the process. Returns whether the setting took (False off glibc).
    """
    import ctypes

    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0) and mallopt(m_trim_threshold, ctypes.c_int(2**31 - 1)))


def release_freed_memory() -> bool:
    """Give the heap's free memory back to the OS now (glibc malloc_trim), e.g. after a phase whose
    buffers the next one does not reuse.

    With `keep_freed_memory` nothing freed is ever returned, so each validation of a CPU run left
    its buffers resident: the demo's training grew from 2.5 to 3.0 GB over 6 validations (4.2 GB
    over a whole demo); trimming after each held it at 1.4-1.6 GB between them, for no measurable
    time (600 iterations 206 s against 213; 2-core AMD EPYC, Zen 3). Returns whether it ran.
    """
    trim = _libc_function("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


@functools.lru_cache(maxsize=None)
def _libc_function(name: str):
    """A function of the C library by name, or None where there is none (not glibc). Cached:
    find_library runs ldconfig, and malloc_trim is called after every CPU validation."""
    import ctypes
    import ctypes.util

    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


SYSFS_CACHE_DIR = "/sys/devices/system/cpu/cpu0/cache"


def last_level_cache_bytes(cache_dir: str | None = None) -> int | None:
    """Size of the CPU's last-level data cache in bytes (Linux sysfs), or None where unknown.

    This machine's (no cache_dir) is read once per process: the fused trunk asks on every call,
    and the dozen sysfs reads took 0.3 ms each time."""
    if cache_dir is None:
        return _system_last_level_cache_bytes()
    best = None
    try:
        entries = sorted(os.listdir(cache_dir))
    except OSError:
        return None
    for entry in entries:
        if not entry.startswith("index"):
            continue
        try:
            with open(os.path.join(cache_dir, entry, "level")) as f:
                level = int(f.read())
            with open(os.path.join(cache_dir, entry, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(cache_dir, entry, "size")) as f:
                size = f.read().strip()
        except (OSError, ValueError):
            continue
        if kind == "Instruction" or not size:
            continue
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        try:
            n = int(size[:-1]) * units[size[-1].upper()] if size[-1].isalpha() else int(size)
        except (KeyError, ValueError):
            continue
        if best is None or level > best[0]:
            best = (level, n)
    return None if best is None else best[1]


@functools.lru_cache(maxsize=None)
def _system_last_level_cache_bytes() -> int | None:
    return last_level_cache_bytes(SYSFS_CACHE_DIR)
