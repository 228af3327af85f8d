"""The one grid convention of onet: how a grid index maps to world coordinates.

A grid of resolution R has R cells and R + 1 points per axis. Its points span
the cube [-box_size/2, box_size/2]^3, corners included:

    world = box_size * (i / R - 0.5),    i = 0 .. R

so index 0 lies on -box_size/2 and index R on +box_size/2, with no half-cell
offset. Values on such a grid are stored as arrays of shape (R+1, R+1, R+1)
indexed [i, j, k] -> (x, y, z) ("ij" meshgrid order). MISE evaluates on it,
marching cubes reads it and maps its vertices back with `index_to_world`, so
no caller ever shifts vertices by hand. The probability grids that
`onet generate` saves with `generation.save_grid: true`
(meshes/<name>.grid.npz, see onet.generation.grids) use it too: their
`probabilities[i, j, k]` is the occupancy probability at
world = box_size * ((i, j, k) / resolution - 0.5).
"""

from __future__ import annotations

import numpy as np
import torch


def check_resolution(resolution: int) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    return int(resolution)


def check_box_size(box_size: float) -> float:
    box_size = float(box_size)
    if not np.isfinite(box_size) or box_size <= 0:
        raise ValueError(f"box_size must be a positive finite number, got {box_size!r}")
    return box_size


def cell_size(resolution: int, *, box_size: float = 1.1) -> float:
    """Edge length of one grid cell in world units."""
    return check_box_size(box_size) / check_resolution(resolution)


def index_to_world(index, resolution, *, box_size: float = 1.1):
    """Map (possibly fractional) grid indices to world coordinates.

    index: numpy array or tensor (..., 3) (or any shape) of indices.
    resolution: int, or a length-3 sequence of per-axis resolutions (the last
        axis of `index` is then x, y, z).
    Returns the same kind of array: float64 for numpy input, the floating
    dtype of a float tensor (float32 for an integer tensor).
    """
    box_size = check_box_size(box_size)
    if np.ndim(resolution) == 0:
        res = check_resolution(resolution)
    else:
        res = [check_resolution(r) for r in resolution]
    if isinstance(index, torch.Tensor):
        idx = index if index.is_floating_point() else index.to(torch.float32)
        if isinstance(res, list):
            res = torch.tensor(res, dtype=idx.dtype, device=idx.device)
        return (idx / res - 0.5) * box_size
    idx = np.asarray(index, dtype=np.float64)
    if isinstance(res, list):
        res = np.asarray(res, dtype=np.float64)
    return (idx / res - 0.5) * box_size


def world_to_index(points, resolution: int, *, box_size: float = 1.1):
    """Inverse of `index_to_world`: fractional grid indices of world points."""
    box_size = check_box_size(box_size)
    res = check_resolution(resolution)
    if isinstance(points, torch.Tensor):
        return (points / box_size + 0.5) * res
    return (np.asarray(points, dtype=np.float64) / box_size + 0.5) * res


def grid_points(resolution: int, *, box_size: float = 1.1, device: str | torch.device = "cpu") -> torch.Tensor:
    """All points of the grid, float32 tensor ((R+1)^3, 3) in [i, j, k] row-major order."""
    res = check_resolution(resolution)
    axis = index_to_world(torch.arange(res + 1, device=device), res, box_size=box_size)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    return torch.stack([x, y, z], dim=-1).reshape(-1, 3)  # ((R+1)^3, 3)


def flat_index_to_world(flat: torch.Tensor, resolution: int, *, box_size: float = 1.1) -> torch.Tensor:
    """World coordinates (..., 3) float32 of flat row-major indices into a (R+1)^3 grid."""
    n = check_resolution(resolution) + 1
    flat = flat.to(torch.int64)
    i = torch.div(flat, n * n, rounding_mode="floor")
    j = torch.div(flat, n, rounding_mode="floor") % n
    k = flat % n
    return index_to_world(torch.stack([i, j, k], dim=-1), resolution, box_size=box_size)
