"""Device resolution: `auto` means CUDA when a GPU is visible, else the CPU."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """Map a device name (auto, cpu, cuda, cuda:N) to a torch.device; cuda without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was asked for but no CUDA GPU is available (use --device cpu or auto)")
    return torch.device(name)
