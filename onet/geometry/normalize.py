"""Mesh normalisation: bounding box centred at the origin, longest edge 1."""

from __future__ import annotations

import numpy as np

from onet.utils.lazy import lazy_import

trimesh = lazy_import("trimesh")  # 1-1.5 s of start-up: imported on first use

__all__ = ["normalize_mesh", "bounding_box_normalization"]


def normalize_mesh(mesh: trimesh.Trimesh) -> tuple[trimesh.Trimesh, np.ndarray, float]:
    """Centre the bounding box of `mesh` at 0 and scale its longest edge to 1.

    As in ONet, normalized = (v - loc) / scale, so v = normalized * scale + loc
    maps results back to the input frame.

    Returns:
        (normalized copy of mesh, loc float64 (3,), scale float)
    """
    if not isinstance(mesh, trimesh.Trimesh):
        raise TypeError(f"mesh must be a trimesh.Trimesh, got {type(mesh).__name__}")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    if len(vertices) == 0 or len(mesh.faces) == 0:
        raise ValueError("cannot normalise an empty mesh (no vertices or faces)")
    # only referenced vertices define the shape; stray ones must not move the box
    vertices_used = vertices[np.unique(np.asarray(mesh.faces).reshape(-1))]
    loc, scale = bounding_box_normalization(vertices_used)
    out = mesh.copy()
    out.vertices = (vertices - loc) / scale
    return out, loc, scale


def bounding_box_normalization(points: np.ndarray) -> tuple[np.ndarray, float]:
    """loc (bounding-box centre) and scale (longest edge) of (N, 3) points: normalized = (p - loc) / scale."""
    bmin, bmax = points.min(axis=0), points.max(axis=0)
    scale = float((bmax - bmin).max())
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"cannot normalise a shape with bounding box extent {bmax - bmin}")
    return (bmin + bmax) / 2, scale


# the axis a file points up -> the rotation that turns it to +y (onet's and ShapeNet's up);
# proper rotations only (determinant 1), so no model is mirrored
UP_AXES = {
    "y": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "-y": ((1, 0, 0), (0, -1, 0), (0, 0, -1)),
    "z": ((1, 0, 0), (0, 0, 1), (0, -1, 0)),  # Blender, 3ds Max, most CAD: z up
    "-z": ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
    "x": ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
    "-x": ((0, 1, 0), (-1, 0, 0), (0, 0, 1)),
}


def up_axis_rotation(axis: str) -> np.ndarray:
    """(3, 3) rotation R with R @ e_axis = +y: rotated = vertices @ R.T. axis: y, z, x, -y, -z, -x."""
    if axis not in UP_AXES:
        raise ValueError(f"up axis must be one of {', '.join(UP_AXES)}, got {axis!r}")
    return np.asarray(UP_AXES[axis], dtype=np.float64)
