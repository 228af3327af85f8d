"""Numeric precision of training and generation: `fp32`, `bf16` or `auto`.

bf16 means bf16 inputs to the matmuls and convolutions with fp32 accumulation,
fp32 normalisation statistics and fp32 parameters (autocast on the device;
the fused decoder trunk and the folded eval path follow the same rule).
`auto` picks bf16 where the device runs it fast -- a CUDA GPU with native
bf16 (compute capability 8.0 or newer), or a CPU with AMX or AVX512-BF16
instructions -- and fp32 elsewhere.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

PRECISIONS = ("fp32", "bf16", "auto")
# /proc/cpuinfo flags of the x86 instructions that make bf16 matmuls faster than fp32
FAST_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """Feature flags of the first CPU listed in /proc/cpuinfo; empty where there is none."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def fast_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether `device` runs bf16 matmuls faster than fp32, and why (for the log)."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        name = torch.cuda.get_device_name(device)
        if major >= 8:
            return True, f"{name} (compute capability {major}.{minor}) has native bf16"
        return False, f"{name} (compute capability {major}.{minor}) has no native bf16"
    if device.type == "cpu":
        found = [f for f in FAST_BF16_CPU_FLAGS if f in cpu_flags()]
        if found:
            return True, f"the CPU has {' and '.join(found)}"
        return False, f"the CPU has none of {', '.join(FAST_BF16_CPU_FLAGS)}"
    return False, f"no fast bf16 known for device type {device.type!r}"


def resolve_precision(value: str, device: torch.device, *, key: str = "precision") -> tuple[str, str]:
    """'fp32' or 'bf16' for a configured value on `device`, and the reason (for the log).

    Raises ValueError naming `key` for a value other than fp32, bf16, auto (config
    validation rejects those first).
    """
    if value not in PRECISIONS:
        raise ValueError(f"{key} must be one of {', '.join(PRECISIONS)}, got {value!r}")
    if value == "fp32":
        return value, f"{key}={value}"
    if value == "auto":
        fast, why = fast_bf16(device)
        return ("bf16" if fast else "fp32"), f"{key}=auto: {why}"
    slow = slow_bf16(device)
    return value, f"{key}={value}" + (f"; WARNING: {slow}; use fp32 or auto" if slow else "")


def slow_bf16(device: torch.device) -> str | None:
    """Why bf16 would be slow on `device` (for logs and benchmark notes), or None where it is fast.

    Without bf16 units torch runs bf16 matmuls through an emulation: on a 2-core AVX2-only AMD
    EPYC, a 2048^2 bf16 matmul ran at 0.29 GFLOP/s against 155 in fp32 (540x slower).
    """
    fast, why = fast_bf16(device)
    if fast:
        return None
    if device.type == "cpu":
        return f"{why}, so bf16 matmuls are emulated (hundreds of times slower than fp32 on AVX2-only CPUs)"
    return f"{why}, so bf16 runs slower than fp32 there"


def autocast(precision: str, device: torch.device):
    """Context for the forward pass: bf16 autocast on `device`, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
