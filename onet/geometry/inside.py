"""Inside test: is a point inside a closed triangle mesh?

Occupancy is the parity of ray crossings (DESIGN §4): a ray from the point
crosses a closed surface an odd number of times iff the point is inside.

Robustness. Rays are cast along fixed, irrational-looking directions so that
they essentially never run along an edge or through a vertex of meshes built
on axis-aligned grids (voxel meshes, marching cubes output, grid-subdivided
boxes). Each point is first tested with a ray and its opposite: on a closed
mesh the whole line crosses the surface an even number of times, so both
half-rays must report the same parity. Where they disagree (a hit was lost or
doubled at an edge, a vertex, or a crack) the point is re-tested with three
more directions and decided by a majority vote over all five half-rays.

Non-watertight meshes. Parity is not well defined for an open surface; the
answer is then best effort: the two half-rays and, where they disagree, the
five-ray vote give the "most often seen" parity, which is right for points
whose rays do not pass through the holes.

Points exactly on the surface have no defined answer.

Ray casting uses Embree (embreex) through trimesh's ray module when it is
installed and trimesh's pure-numpy intersector otherwise (same answers, much
slower).
"""

from __future__ import annotations

import numpy as np

from onet.geometry.mesh import check_mesh_arrays, check_points

# Unit-length directions with no simple rational ratio between components:
# rays along them do not graze grid-aligned edges or vertices.
_DIRECTIONS = np.array(
    [
        [0.5773502691896258, 0.6123724356957945, 0.5400617248673217],
        [-0.3826834323650898, 0.8164965809277260, -0.4325844589081710],
        [0.7071067811865476, -0.2588190451025208, -0.6579378849891012],
        [-0.6180339887498949, -0.5411961001461970, 0.5700903697236113],
    ]
)
_DIRECTIONS = _DIRECTIONS / np.linalg.norm(_DIRECTIONS, axis=1, keepdims=True)


def _make_intersector(vertices: np.ndarray, faces: np.ndarray):
    import trimesh

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False, validate=False)
    try:
        from trimesh.ray.ray_pyembree import RayMeshIntersector
    except ImportError:  # embreex missing: trimesh's numpy ray tests
        from trimesh.ray.ray_triangle import RayMeshIntersector
    return RayMeshIntersector(mesh)


def _hit_parity(intersector, points: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Parity of the number of hits of rays from `points` along `direction`: (N,) bool."""
    directions = np.broadcast_to(direction, points.shape).copy()
    # every hit along each ray, not only the first: parity needs the count
    _, ray_index = intersector.intersects_id(points, directions, multiple_hits=True, max_hits=1000)
    return np.bincount(ray_index, minlength=len(points)) % 2 == 1


def inside_mesh(vertices, faces, points) -> np.ndarray:
    """Which points lie inside the (closed) triangle mesh.

    Args:
        vertices: (V, 3) mesh vertices.
        faces: (F, 3) integer vertex indices.
        points: (N, 3) query points.

    Returns:
        inside: (N,) bool. All False for a mesh without faces.

    Raises:
        ValueError: wrong shapes or dtypes, non-finite values, or face indices
            out of range.
    """
    vertices, faces = check_mesh_arrays(vertices, faces, finite=True)
    points = check_points("points", points)
    if len(points) == 0 or len(faces) == 0:
        return np.zeros(len(points), dtype=bool)

    intersector = _make_intersector(vertices, faces)
    forward = _hit_parity(intersector, points, _DIRECTIONS[0])
    backward = _hit_parity(intersector, points, -_DIRECTIONS[0])
    inside = forward & backward
    ambiguous = np.flatnonzero(forward != backward)
    if len(ambiguous):
        # one vote each from the two half-rays (they disagree: one True) and
        # from three fresh directions: a majority needs 2 of the 3 new votes
        votes = np.ones(len(ambiguous), dtype=np.int64)
        for direction in _DIRECTIONS[1:]:
            votes += _hit_parity(intersector, points[ambiguous], direction)
        inside[ambiguous] = votes >= 3
    return inside
