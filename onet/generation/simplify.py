"""Quadric mesh decimation (fast-simplification, the library trimesh itself uses)."""

from __future__ import annotations

import numpy as np

from onet.geometry.mesh import check_mesh


def simplify_mesh(vertices, faces, n_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Decimate a mesh to at most `n_faces` triangles by quadric edge collapse.

    vertices (V, 3), faces (F, 3). A mesh already within budget comes back
    unchanged. Edge collapses keep a closed mesh closed (tested on a sphere).
    Returns vertices (V', 3) float32, faces (F', 3) int64 with F' <= n_faces.
    """
    vertices, faces = check_mesh(vertices, faces)
    if isinstance(n_faces, bool) or not isinstance(n_faces, (int, np.integer)) or n_faces < 4:
        raise ValueError(f"n_faces must be an integer >= 4 (a tetrahedron), got {n_faces!r}")
    if len(faces) <= n_faces:
        return vertices, faces
    import fast_simplification  # imported here so `import onet.generation` stays light

    new_vertices, new_faces = fast_simplification.simplify(
        vertices.astype(np.float64), faces.astype(np.int32), target_count=int(n_faces)
    )
    return np.asarray(new_vertices, np.float32), np.asarray(new_faces, np.int64)
