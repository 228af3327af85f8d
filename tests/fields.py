"""Analytic occupancy fields for the geometry and generation tests.

Each field is logits = logit(tau) - k * sdf(p) with sdf the exact signed
distance (positive outside), so the threshold crossing sigmoid = tau lies
exactly on the true surface and the logits grow inward like a network's.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

TAU = 0.2
LEVEL = math.log(TAU / (1 - TAU))
K = 20.0

Sdf = Callable[[torch.Tensor], torch.Tensor]  # points (..., 3) -> signed distance (...)


def sphere_sdf(center=(0.0, 0.0, 0.0), radius=0.3) -> Sdf:
    c = torch.tensor(center, dtype=torch.float32)
    return lambda p: (p - c).norm(dim=-1) - radius


def torus_sdf(center=(0.0, 0.0, 0.0), major=0.3, minor=0.1) -> Sdf:
    """Torus around the z axis through `center`."""
    c = torch.tensor(center, dtype=torch.float32)

    def sdf(p):
        q = p - c
        ring = torch.sqrt(q[..., 0] ** 2 + q[..., 1] ** 2) - major
        return torch.sqrt(ring**2 + q[..., 2] ** 2) - minor

    return sdf


def rod_sdf(center=(0.0, 0.0, 0.0), direction=(0.0, 0.0, 1.0), radius=0.02, half_length=0.4) -> Sdf:
    """Capped cylinder: a thin rod along `direction`."""
    c = torch.tensor(center, dtype=torch.float32)
    d = torch.tensor(direction, dtype=torch.float32)
    d = d / d.norm()

    def sdf(p):
        q = p - c
        t = (q * d).sum(-1)
        radial = (q - t.unsqueeze(-1) * d).norm(dim=-1) - radius
        axial = t.abs() - half_length
        outside = torch.sqrt(radial.clamp_min(0) ** 2 + axial.clamp_min(0) ** 2)
        return outside + torch.maximum(radial, axial).clamp_max(0)

    return sdf


def logits_fn(sdf: Sdf, k: float = K) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda p: LEVEL - k * sdf(p)


def batched_eval_fn(sdfs: Sequence[Sdf], k: float = K):
    """eval_fn for mise: points (B, N, 3) -> logits (B, N), object b = sdfs[b]."""

    def eval_fn(points):
        assert points.shape[0] == len(sdfs) and points.shape[2] == 3
        return torch.stack([LEVEL - k * sdf(points[b]) for b, sdf in enumerate(sdfs)])

    return eval_fn


def field_fn(sdf: Sdf, k: float = K):
    """Differentiable field_fn: points (1, N, 3) -> logits (1, N)."""
    return lambda points: LEVEL - k * sdf(points)


class CountingEvalFn:
    """Wraps an eval_fn and records the points of every call."""

    def __init__(self, eval_fn):
        self.eval_fn = eval_fn
        self.calls: list[torch.Tensor] = []

    def __call__(self, points):
        self.calls.append(points.detach().clone())
        return self.eval_fn(points)
