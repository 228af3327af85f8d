"""Validation of triangle meshes given as arrays, shared by every stage."""

from __future__ import annotations

import numpy as np


def check_mesh_arrays(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a triangle mesh given as arrays.

    Args:
        vertices: (V, 3) float
        faces: (F, 3) integer indices into vertices
    Returns:
        (vertices float64 (V, 3), faces int64 (F, 3))
    """
    vertices = np.asarray(vertices)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {faces.shape}")
    if faces.size and not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"faces must hold integer indices, got dtype {faces.dtype}")
    faces = faces.astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"face indices must lie in [0, {len(vertices)}), got [{faces.min()}, {faces.max()}]")
    return vertices.astype(np.float64), faces
