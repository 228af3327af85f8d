"""Multiresolution IsoSurface Extraction (MISE) of an occupancy network.

Evaluate the network on a coarse grid, then repeatedly subdivide only the
cells whose corners disagree about the threshold and evaluate only the grid
points that are new. The result is a dense logit grid on the finest level
that marching cubes can read directly (grid convention: onet.geometry.grid).

Everything is vectorised in torch on `device`: the per-level work is a few
boolean slicing ops over the grid plus one `nonzero`; the only Python loop is
over chunks of network calls, and it never waits for the device (results are
scattered through a sink slot instead of boolean masks, whose size the host
would have to read back). Memory at 256^3 for one object: one float32 value
grid (68 MB), a few bool masks (17 MB each) and the indices of the points to
evaluate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from onet.geometry.grid import check_box_size, check_resolution, flat_index_to_world

EvalFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class MiseGrids:
    """The batch's grids on the device: values (B, R+1, R+1, R+1) float32 logits;
    n_evaluated (B,) int64 network evaluations per object; n_dense = (R+1)^3."""

    values: torch.Tensor
    n_evaluated: torch.Tensor
    n_dense: int


@dataclass
class MiseResult:
    """values: (R+1, R+1, R+1) float32 logits on the finest grid (evaluated or
    interpolated); n_evaluated: network evaluations spent on this object;
    n_dense: (R+1)^3, what dense evaluation would have cost."""

    values: np.ndarray
    n_evaluated: int
    n_dense: int


def probability_to_logit(threshold: float) -> float:
    threshold = float(threshold)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be a probability in (0, 1), got {threshold!r}")
    return math.log(threshold / (1.0 - threshold))


def mise(
    eval_fn: EvalFn,
    batch_size: int,
    *,
    resolution_0: int = 32,
    upsampling_steps: int = 2,
    threshold: float = 0.2,
    box_size: float = 1.1,
    points_chunk: int = 100_000,
    safety_margin: bool = False,
    logit_margin: float = 0.0,
    device: str | torch.device = "cpu",
) -> list[MiseResult]:
    """Extract dense logit grids for a batch of objects with MISE.

    eval_fn: points (B, N, 3) float32 -> logits (B, N); row b holds object b's
        points (rows are padded to a common N; padded results are ignored).
    batch_size: B, the number of objects eval_fn answers for.
    threshold: iso level as a probability; cells are compared in logit space.
    points_chunk: at most this many points (B * N) per eval_fn call.
    safety_margin: also refine the 26 neighbours of every active cell, which
        recovers parts of thin structures that pass between coarse points.
    logit_margin: also refine cells none of whose corners reaches the level but
        one comes within this many logits of it: a part thinner than a coarse
        cell raises the field at the coarse points near it without crossing
        tau there, and plain MISE never looks inside. 0 is the thesis's rule.
    upsampling_steps == 0 is plain dense evaluation at resolution_0.
    Returns one MiseResult per object at resolution resolution_0 * 2**upsampling_steps.
    """
    grids = mise_grids(eval_fn, batch_size, resolution_0=resolution_0, upsampling_steps=upsampling_steps,
                       threshold=threshold, box_size=box_size, points_chunk=points_chunk,
                       safety_margin=safety_margin, logit_margin=logit_margin, device=device)
    values_np = grids.values.cpu().numpy()
    counts = grids.n_evaluated.cpu().tolist()
    return [MiseResult(values=values_np[b], n_evaluated=int(counts[b]), n_dense=grids.n_dense)
            for b in range(len(counts))]


def mise_grids(
    eval_fn: EvalFn,
    batch_size: int,
    *,
    resolution_0: int = 32,
    upsampling_steps: int = 2,
    threshold: float = 0.2,
    box_size: float = 1.1,
    points_chunk: int = 100_000,
    safety_margin: bool = False,
    logit_margin: float = 0.0,
    device: str | torch.device = "cpu",
) -> MiseGrids:
    """mise() with the grids left on `device` (for GPU marching cubes, or one copy of the batch)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    res = check_resolution(resolution_0)
    if isinstance(upsampling_steps, bool) or not isinstance(upsampling_steps, (int, np.integer)) or upsampling_steps < 0:
        raise ValueError(f"upsampling_steps must be a non-negative integer, got {upsampling_steps!r}")
    if not isinstance(points_chunk, (int, np.integer)) or points_chunk < batch_size:
        raise ValueError(
            f"points_chunk must be an integer >= batch_size ({batch_size}) so every call holds at least "
            f"one point per object, got {points_chunk!r}"
        )
    box_size = check_box_size(box_size)
    logit_margin = check_logit_margin(logit_margin)
    level = probability_to_logit(threshold)
    device = torch.device(device)
    B = int(batch_size)

    n = res + 1
    values = _with_sink((B, n, n, n), device)
    _evaluate_full_grid(eval_fn, values, res, box_size, points_chunk)
    n_evaluated = torch.full((B,), n**3, dtype=torch.int64, device=device)
    evaluated = torch.ones((B, n, n, n), dtype=torch.bool, device=device)

    for _ in range(upsampling_steps):
        inside = values > level
        active = _active_cells(inside, values > level - logit_margin if logit_margin > 0 else inside)  # (B, R, R, R)
        if safety_margin:
            active = _dilate_cells(active)
        values = _upsample_values(values, out=_with_sink((B, 2 * res + 1, 2 * res + 1, 2 * res + 1), device))
        evaluated = _upsample_evaluated(evaluated)
        res *= 2
        need = _corners_of_cells(active)  # fine points of the active coarse cells
        need &= ~evaluated
        n_evaluated += need.flatten(1).sum(dim=1)
        evaluated |= need
        # flat indices into values.view(-1); sorted, hence grouped by object
        flat = need.view(-1).nonzero().squeeze(1)
        del need
        if values.numel() < 2**31:
            flat = flat.to(torch.int32)
        _evaluate_points(eval_fn, values, flat, res, box_size, points_chunk)
        del flat

    return MiseGrids(values, n_evaluated, (res + 1) ** 3)


def _with_sink(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """An empty float32 grid whose storage has one spare slot after the last element.

    `_scatter` sends the padded (invalid) entries of a call to that slot, so results
    land with one index_put and no boolean mask, whose size the host would have to
    read back: the loop over network calls never waits for the device.
    """
    numel = math.prod(shape)
    return torch.empty(numel + 1, dtype=torch.float32, device=device)[:numel].view(shape)


def _scatter(values: torch.Tensor, idx: torch.Tensor, valid: torch.Tensor, out: torch.Tensor) -> None:
    """values.view(-1)[idx[valid]] = out[valid], without a host synchronisation.

    values: a grid made by `_with_sink`; idx (B, n) int64 flat indices, garbage where not
    valid; valid (B, n) bool; out (B, n) float32. Invalid entries all go to the sink slot
    (the values written there, in whatever order, are never read).
    """
    numel = values.numel()
    flat = values.as_strided((numel + 1,), (1,))  # the grid and its sink slot; checked against the storage
    flat[torch.where(valid, idx, numel)] = out


def _call(eval_fn: EvalFn, points: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = eval_fn(points)
    if out.shape != points.shape[:2]:
        raise ValueError(f"eval_fn must return logits of shape {tuple(points.shape[:2])}, got {tuple(out.shape)}")
    return out.to(dtype=torch.float32)


def _evaluate_full_grid(eval_fn: EvalFn, values: torch.Tensor, res: int, box_size: float, points_chunk: int) -> None:
    """Evaluate every grid point; all objects share the same points."""
    B = values.shape[0]
    flat_values = values.view(B, -1)  # (B, (R+1)^3)
    total = flat_values.shape[1]
    per_call = points_chunk // B
    for start in range(0, total, per_call):
        idx = torch.arange(start, min(start + per_call, total), device=values.device)
        points = flat_index_to_world(idx, res, box_size=box_size)  # (n, 3)
        out = _call(eval_fn, points.unsqueeze(0).expand(B, -1, -1))
        flat_values[:, start : start + len(idx)] = out.to(values.device)


def _evaluate_points(
    eval_fn: EvalFn, values: torch.Tensor, flat: torch.Tensor, res: int, box_size: float, points_chunk: int
) -> None:
    """Evaluate the points with flat indices `flat` into values (B, S, S, S), in place.

    Object b's points are flat[offsets[b] : offsets[b] + counts[b]]; each call
    takes the next `per_call` points of every object, padding short rows.
    """
    if flat.numel() == 0:
        return
    B = values.shape[0]
    per_object = values[0].numel()
    device = values.device
    obj = torch.div(flat, per_object, rounding_mode="floor").to(torch.int64)
    counts = torch.bincount(obj, minlength=B)  # (B,)
    del obj
    offsets = torch.cumsum(counts, 0) - counts  # (B,)
    per_call = points_chunk // B
    max_count = int(counts.max())
    for start in range(0, max_count, per_call):
        local = torch.arange(start, min(start + per_call, max_count), device=device)  # (n,)
        valid = local.unsqueeze(0) < counts.unsqueeze(1)  # (B, n)
        pos = (offsets.unsqueeze(1) + local.unsqueeze(0)).clamp_(max=flat.numel() - 1)  # (B, n)
        idx = flat[pos].to(torch.int64)  # (B, n) flat indices, garbage where not valid
        points = flat_index_to_world(idx % per_object, res, box_size=box_size)  # (B, n, 3)
        out = _call(eval_fn, points).to(device)  # (B, n)
        _scatter(values, idx, valid, out)


def check_logit_margin(margin) -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(margin)) or margin < 0:
        raise ValueError(f"logit_margin must be a finite number >= 0 (logits), got {margin!r}")
    return float(margin)


def _active_cells(occ: torch.Tensor, near: torch.Tensor | None = None) -> torch.Tensor:
    """occ (B, S, S, S) bool -> (B, S-1, S-1, S-1) bool: some corner is in `near`
    (default: occ) and not every corner in occ. near ⊇ occ: with near = occ,
    the corners disagree about the level."""
    any_ = occ if near is None else near
    all_ = occ
    for dim in (1, 2, 3):
        n = any_.shape[dim]
        any_ = any_.narrow(dim, 0, n - 1) | any_.narrow(dim, 1, n - 1)
        all_ = all_.narrow(dim, 0, n - 1) & all_.narrow(dim, 1, n - 1)
    return any_ & ~all_


def _dilate_cells(active: torch.Tensor) -> torch.Tensor:
    """Add the 26 neighbours of every active cell (separable 3x3x3 dilation)."""
    out = active
    for dim in (1, 2, 3):
        n = out.shape[dim]
        grown = out.clone()
        grown.narrow(dim, 1, n - 1).logical_or_(out.narrow(dim, 0, n - 1))
        grown.narrow(dim, 0, n - 1).logical_or_(out.narrow(dim, 1, n - 1))
        out = grown
    return out


def _upsample_values(values: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """(B, S, S, S) -> (B, 2S-1, 2S-1, 2S-1): exact trilinear (separable midpoints), into `out` if given."""
    for dim in (1, 2, 3):
        n = values.shape[dim]
        shape = list(values.shape)
        shape[dim] = 2 * n - 1
        fine = out if dim == 3 and out is not None else values.new_empty(shape)
        _strided(fine, dim, 0, n).copy_(values)
        odd = _strided(fine, dim, 1, n - 1)
        torch.add(values.narrow(dim, 0, n - 1), values.narrow(dim, 1, n - 1), out=odd)
        odd.mul_(0.5)
        values = fine
    return values


def _upsample_evaluated(evaluated: torch.Tensor) -> torch.Tensor:
    """Known points keep their place on the fine grid (even indices); the rest are new."""
    B, n = evaluated.shape[0], evaluated.shape[1]
    fine = evaluated.new_zeros((B, 2 * n - 1, 2 * n - 1, 2 * n - 1))
    fine[:, ::2, ::2, ::2] = evaluated
    return fine


def _corners_of_cells(active: torch.Tensor) -> torch.Tensor:
    """active coarse cells (B, R, R, R) -> fine points (B, 2R+1, ...) inside or on them.

    Coarse cell i covers fine points 2i, 2i+1, 2i+2 along each axis; the
    expansion is separable because the covered set is a product of intervals.
    """
    out = active
    for dim in (1, 2, 3):
        n = out.shape[dim]
        shape = list(out.shape)
        shape[dim] = 2 * n + 1
        fine = out.new_zeros(shape)
        for offset in (0, 1, 2):
            _strided(fine, dim, offset, n).logical_or_(out)
        out = fine
    return out


def _strided(t: torch.Tensor, dim: int, start: int, count: int) -> torch.Tensor:
    """View of t along `dim` at start, start+2, ..., count entries."""
    index = [slice(None)] * t.dim()
    index[dim] = slice(start, start + 2 * count - 1, 2)
    return t[tuple(index)]
