"""Marching cubes on a logit grid, returning a closed mesh in world coordinates.

Library choice: skimage.measure.marching_cubes (Lewiner), not PyMCubes.
Measured on this project's grids (sphere / torus fields, 2 CPU cores):
  - speed: 257^3 grid 176 ms vs 376 ms for PyMCubes; 129^3 25 ms vs 48 ms;
  - correctness: both return vertices in index coordinates (axis 0 = x) with
    no half-voxel offset, and both match the analytic sphere to 1e-5 cells;
    with gradient_direction="ascent" and values increasing inward, skimage's
    faces wind outward (positive volume); PyMCubes does too;
  - a logit exactly equal to the level on a grid point makes both emit
    zero-area triangles, and after merging coincident vertices PyMCubes' mesh
    is no longer watertight; skimage's allow_degenerate=False drops those
    triangles and keeps the mesh watertight (~5% slower).
"""

from __future__ import annotations

import numpy as np
from skimage import measure

from onet.geometry.grid import check_box_size, index_to_world

# Far below any logit: padding with it closes the mesh at the box boundary and
# puts the boundary vertices within ~1e-6 cells of the boundary plane.
_PAD_VALUE = -1e6


def marching_cubes(values: np.ndarray, level: float, *, box_size: float = 1.1) -> tuple[np.ndarray, np.ndarray]:
    """Extract the level set {values = level} of a grid following onet.geometry.grid.

    values: (X, Y, Z) array, larger inside (logits); axis d has resolution
        shape[d] - 1 and spans [-box_size/2, box_size/2].
    level: iso value in the units of `values` (a logit for logit grids).
    Returns vertices (V, 3) float32 in world coordinates and faces (F, 3) int64
    wound so that normals point outward (positive volume). The mesh is closed:
    the grid is padded with a large negative value, so a surface leaving the
    box is capped on the box boundary. No crossing -> empty arrays.
    """
    values = np.asarray(values)
    if values.ndim != 3 or min(values.shape) < 2:
        raise ValueError(f"values must be 3D and at least 2x2x2, got {values.shape}")
    if not np.issubdtype(values.dtype, np.floating) and not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"values must be a real-valued array, got dtype {values.dtype}")
    level = float(level)
    if not np.isfinite(level) or level <= _PAD_VALUE:
        raise ValueError(f"level must be finite and above {_PAD_VALUE}, got {level!r}")
    box_size = check_box_size(box_size)
    values = values.astype(np.float32, copy=False)
    if np.isnan(values).any():
        raise ValueError("values contain NaN")

    if not (values > level).any():
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)

    # pad with a large negative logit so the mesh is closed at the box boundary
    padded = np.pad(values, 1, mode="constant", constant_values=_PAD_VALUE)
    verts, faces, _, _ = measure.marching_cubes(
        padded, level, gradient_direction="ascent", allow_degenerate=False, method="lewiner"
    )
    if len(faces) == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    # undo the padding; clip the ~1e-6 cell overshoot of capping vertices
    resolution = np.asarray(values.shape, dtype=np.float64) - 1
    index = np.clip(verts.astype(np.float64) - 1.0, 0.0, resolution)
    vertices = index_to_world(index, [int(r) for r in resolution], box_size=box_size)
    return vertices.astype(np.float32), faces.astype(np.int64)
