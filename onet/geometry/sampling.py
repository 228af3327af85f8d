"""Point sampling: uniform points in the padded unit box and area-weighted surface samples."""

from __future__ import annotations

import numpy as np

from onet.geometry.mesh import check_mesh_arrays

__all__ = ["sample_uniform_points", "sample_surface"]


def sample_uniform_points(n: int, *, box_size: float = 1.1, rng: np.random.Generator | int) -> np.ndarray:
    """Sample points uniformly in the cube [-box_size/2, box_size/2]^3.

    Returns:
        points float32 (n, 3)
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not box_size > 0:
        raise ValueError(f"box_size must be positive, got {box_size}")
    rng = np.random.default_rng(rng)
    return ((rng.random((n, 3)) - 0.5) * box_size).astype(np.float32)


def sample_surface(
    vertices: np.ndarray, faces: np.ndarray, n: int, *, rng: np.random.Generator | int,
    dtype: type = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample `n` points uniformly by area on a triangle mesh, with face normals.

    Args:
        vertices: (V, 3) float
        faces: (F, 3) int
        rng: generator or seed (same inputs and seed -> same samples)
        dtype: of the returned arrays (computed in float64; float32 for
            datasets, float64 for metrics)
    Returns:
        points (n, 3), normals (n, 3) unit face normals (oriented by the face
        winding)
    """
    vertices, faces = check_mesh_arrays(vertices, faces)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if len(faces) == 0:
        raise ValueError("cannot sample the surface of a mesh without faces")
    rng = np.random.default_rng(rng)
    tri = vertices[faces]  # (F, 3 corners, 3)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    cross = np.cross(e1, e2)
    double_area = np.linalg.norm(cross, axis=1)
    cum = np.cumsum(double_area)
    total = cum[-1] if len(cum) else 0.0
    if not np.isfinite(total) or total <= 0:
        raise ValueError("cannot sample the surface of a mesh with zero area")
    # inverse-CDF face choice; zero-area faces have empty intervals and are never drawn
    face_idx = np.searchsorted(cum, rng.random(n) * total, side="right")
    face_idx = np.minimum(face_idx, len(faces) - 1)
    u, v = rng.random(n), rng.random(n)
    # reflect (u, v) outside the triangle back into it: uniform on the triangle
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    points = tri[face_idx, 0] + u[:, None] * e1[face_idx] + v[:, None] * e2[face_idx]
    normals = cross[face_idx] / double_area[face_idx, None]
    return points.astype(dtype), normals.astype(dtype)
