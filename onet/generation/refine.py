"""Gradient-based mesh refinement and vertex normals from the occupancy field.

Occupancy increases inward, so the outward normal of the level set is the
negative normalised gradient of the logits f.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from onet.generation.mise import probability_to_logit
from onet.geometry.mesh import check_mesh

FieldFn = Callable[[torch.Tensor], torch.Tensor]


def _logits(field_fn: FieldFn, points: torch.Tensor) -> torch.Tensor:
    """field_fn on points (N, 3) -> logits (N,), its output shape checked."""
    logits = field_fn(points.unsqueeze(0))  # (1, N)
    if logits.shape != (1, points.shape[0]):
        raise ValueError(f"field_fn must return logits of shape (1, {points.shape[0]}), got {tuple(logits.shape)}")
    return logits.squeeze(0)


def _outward_normals_of_field(points: torch.Tensor, field_fn: FieldFn) -> tuple[torch.Tensor, torch.Tensor]:
    """points (N, 3) requiring grad -> logits (N,), unit outward normals (N, 3), both
    differentiable w.r.t. the points (create_graph: double backprop)."""
    logits = _logits(field_fn, points)
    (grad,) = torch.autograd.grad(logits.sum(), points, create_graph=True)
    normals = -grad / (grad.norm(dim=-1, keepdim=True) + 1e-10)
    return logits, normals


def _value_and_grad(points: torch.Tensor, field_fn: FieldFn) -> tuple[torch.Tensor, torch.Tensor]:
    """points (N, 3) -> logits (N,), d logits / d points (N, 3), both detached.

    Through the field's own `value_and_grad` where it has one (onet's decoders: a
    hand-written backward, no autograd graph), else autograd.
    """
    fast = getattr(field_fn, "value_and_grad", None)
    if fast is not None:
        return fast(points)
    p = points.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = _logits(field_fn, p)
        (grad,) = torch.autograd.grad(logits.sum(), p)
    return logits.detach(), grad


def vertex_normals_from_field(
    vertices, field_fn: FieldFn, *, points_chunk: int = 100_000, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Outward unit normals (V, 3) float32: -grad f / |grad f| at each vertex.

    vertices: (V, 3) world coordinates; field_fn: points (1, N, 3) -> logits
    (1, N), differentiable w.r.t. the points.
    """
    vertices = np.asarray(vertices)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {vertices.shape}")
    if points_chunk < 1:
        raise ValueError(f"points_chunk must be positive, got {points_chunk!r}")
    normals = np.zeros(vertices.shape, np.float32)
    for start in range(0, len(vertices), points_chunk):
        p = torch.tensor(vertices[start : start + points_chunk], dtype=torch.float32, device=device)
        _, grad = _value_and_grad(p, field_fn)
        normals[start : start + len(p)] = (-grad / (grad.norm(dim=-1, keepdim=True) + 1e-10)).cpu().numpy()
    return normals


def refine_mesh(
    vertices,
    faces,
    field_fn: FieldFn,
    *,
    threshold: float = 0.2,
    n_steps: int = 30,
    lr: float = 1e-4,
    n_samples_per_step: int | None = None,
    normal_weight: float = 0.01,
    points_chunk: int = 50_000,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Move vertices onto the level set sigmoid(f) = threshold (ONet's refinement).

    Each step samples points on faces (uniform random barycentric weights) and
    minimises, over the vertex positions with Adam (betas 0.9, 0.999),
        mean (sigmoid(f(p)) - threshold)^2
        + normal_weight * mean |(-grad f / |grad f|)(p) - face normal|^2,
    the second term by double backprop (create_graph=True).

    vertices (V, 3), faces (F, 3) with outward winding; field_fn: points
    (1, N, 3) -> logits (1, N), differentiable w.r.t. the points.
    n_samples_per_step: samples per step, on faces drawn uniformly at random;
        None -> one sample on every face (ONet's choice).
    points_chunk: samples per field_fn call; gradients are accumulated over
        chunks, which bounds the memory of double backprop.
    Returns refined vertices (V, 3) float32; faces are unchanged.
    """
    vertices, faces = check_mesh(vertices, faces)
    probability_to_logit(threshold)  # validates the threshold
    if n_steps < 0:
        raise ValueError(f"n_steps must be >= 0, got {n_steps!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    if n_samples_per_step is not None and n_samples_per_step < 1:
        raise ValueError(f"n_samples_per_step must be positive or None, got {n_samples_per_step!r}")
    if points_chunk < 1:
        raise ValueError(f"points_chunk must be positive, got {points_chunk!r}")
    if n_steps == 0 or len(faces) == 0:
        return vertices.copy()

    device = torch.device(device)
    # a field whose gradient is piecewise constant (onet's ReLU decoders, see
    # `_first_order_loss`) needs no double backprop: its second-order term is zero
    piecewise_linear = bool(getattr(field_fn, "piecewise_linear", False))
    # drawn on the device itself: no host-to-device copy (and wait) per step
    generator = torch.Generator(device=device).manual_seed(seed)
    v = torch.tensor(vertices, dtype=torch.float32, device=device).requires_grad_(True)
    f = torch.tensor(faces, dtype=torch.int64, device=device)
    adam = _Adam(v, lr=lr)
    n_faces = len(faces)

    for _ in range(n_steps):
        if n_samples_per_step is None:
            face_idx = torch.arange(n_faces, device=device)
        else:
            face_idx = torch.randint(n_faces, (n_samples_per_step,), generator=generator, device=device)
        # uniform barycentric weights: normalised exponentials = Dirichlet(1, 1, 1)
        weights = -torch.log(torch.rand((len(face_idx), 3), generator=generator, device=device).clamp_min_(1e-12))
        weights = weights / weights.sum(dim=1, keepdim=True)  # (S, 3)
        n_samples = len(face_idx)

        grad = torch.zeros_like(v)
        for start in range(0, n_samples, points_chunk):
            fi = face_idx[start : start + points_chunk]
            w = weights[start : start + points_chunk]
            corners = v[f[fi]]  # (S, 3 corners, 3)
            points = (w.unsqueeze(-1) * corners).sum(dim=1)  # (S, 3)
            face_normal = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
            face_normal = face_normal / (face_normal.norm(dim=-1, keepdim=True) + 1e-10)
            if piecewise_linear:
                loss = _first_order_loss(points, face_normal, field_fn, threshold, normal_weight)
            else:
                logits, field_normal = _outward_normals_of_field(points, field_fn)
                loss_level = ((torch.sigmoid(logits) - threshold) ** 2).sum()
                loss_normal = ((field_normal - face_normal) ** 2).sum(dim=-1).sum()
                loss = loss_level + normal_weight * loss_normal
            loss = loss / n_samples  # chunks add up to the mean
            # w.r.t. the vertices only: no gradients for the network's weights
            grad += torch.autograd.grad(loss, v)[0]
        adam.step(grad)

    return v.detach().cpu().numpy().astype(np.float32)


def _first_order_loss(points: torch.Tensor, face_normal: torch.Tensor, field_fn: FieldFn, threshold: float,
                      normal_weight: float) -> torch.Tensor:
    """A loss with the refinement loss's gradient w.r.t. points (S, 3) and face normals (S, 3),
    for a field whose gradient is piecewise constant in p (a ReLU network: constant
    between the kinks of its activations, i.e. almost everywhere).

    There the field normal -grad f / |grad f| has zero derivative, so the normal term
    varies only through the face normals, and d/dp (sigmoid(f) - tau)^2 =
    2 (sigmoid(f) - tau) sigmoid'(f) grad f. One forward and one backward pass through
    the network give grad f; the double backprop of the general loss (its second-order
    term, exactly zero here) is skipped. Sum over the points, like the general loss.
    """
    logits, grad_f = _value_and_grad(points.detach(), field_fn)
    with torch.no_grad():
        prob = torch.sigmoid(logits)
        d_level = (2 * (prob - threshold) * prob * (1 - prob)).unsqueeze(1) * grad_f  # (S, 3)
        field_normal = -grad_f / (grad_f.norm(dim=-1, keepdim=True) + 1e-10)
    return (points * d_level).sum() + normal_weight * ((field_normal - face_normal) ** 2).sum()


class _Adam:
    """Adam (Kingma & Ba) on one tensor, updated in place.

    Written out instead of torch.optim.Adam because the first torch.optim step
    imports torch._dynamo, which costs seconds per process on CPU.
    """

    def __init__(self, x: torch.Tensor, *, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.x, self.lr, self.betas, self.eps = x, lr, betas, eps
        self.m = torch.zeros_like(x)
        self.v = torch.zeros_like(x)
        self.t = 0

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t += 1
        self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        m_hat = self.m / (1 - b1**self.t)
        v_hat = self.v / (1 - b2**self.t)
        self.x.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))
