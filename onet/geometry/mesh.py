"""Validation of triangle meshes and point sets given as arrays, shared by every stage."""

from __future__ import annotations

import numpy as np


def check_points(name: str, array, *, width: int = 3) -> np.ndarray:
    """Validate a finite (N, width) numeric array; returns it as float64.

    Raises ValueError naming `name` on a wrong shape, dtype or a NaN/inf entry.
    """
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"{name} must have shape (n, {width}), got {array.shape}")
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contain NaN or inf")
    return array


def check_mesh_arrays(vertices: np.ndarray, faces: np.ndarray, *, finite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Validate a triangle mesh given as arrays.

    Args:
        vertices: (V, 3) float
        faces: (F, 3) integer indices into vertices
        finite: also reject NaN/inf vertex coordinates
    Returns:
        (vertices float64 (V, 3), faces int64 (F, 3))
    """
    vertices = np.asarray(vertices)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {faces.shape}")
    if vertices.size and vertices.dtype.kind not in "fiu":
        raise ValueError(f"vertices must be numeric, got dtype {vertices.dtype}")
    if faces.size and not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"faces must be integer (vertex indices), got dtype {faces.dtype}")
    faces = faces.astype(np.int64)
    vertices = vertices.astype(np.float64)
    if finite and not np.isfinite(vertices).all():
        raise ValueError("vertices contain NaN or inf")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(
            f"face indices must lie in [0, {len(vertices)}) (faces index vertices out of range), "
            f"got [{faces.min()}, {faces.max()}]")
    return vertices, faces


def check_mesh(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    """Validate a triangle mesh for output: returns (V, 3) float32 vertices, (F, 3) int64 faces."""
    vertices, faces = check_mesh_arrays(vertices, faces)
    return vertices.astype(np.float32), faces
