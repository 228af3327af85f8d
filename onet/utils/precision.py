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
import platform
from pathlib import Path

import torch

PRECISIONS = ("fp32", "bf16", "auto")
# /proc/cpuinfo flags of the x86 instructions that make bf16 matmuls faster than fp32
FAST_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def _first_cpu(cpuinfo: str | Path) -> dict[str, str]:
    """The fields of the first CPU listed in /proc/cpuinfo; empty where there is none."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """Feature flags of the first CPU listed in /proc/cpuinfo; empty where there is none."""
    fields = _first_cpu(cpuinfo)
    return set(fields.get("flags", fields.get("Features", "")).split())


# the vector and matrix units a timing depends on, as named in /proc/cpuinfo -> in reports
_UNITS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))


def cpu_description(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU as a benchmark should name it: model name, x86 family / model (a virtual
    machine's model name alone, e.g. "AMD EPYC", does not tell the generations apart) and
    the vector units, e.g. "AMD EPYC (family 25 model 17; AVX512-BF16, AVX-512, AVX2)"."""
    fields = _first_cpu(cpuinfo)
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    flags = cpu_flags(cpuinfo)
    extra = []
    if "cpu family" in fields and "model" in fields:
        extra.append(f"family {fields['cpu family']} model {fields['model']}")
    units = [label for flag, label in _UNITS if flag in flags]
    if units:
        extra.append(", ".join(units))
    return f"{name} ({'; '.join(extra)})" if extra else name


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
