"""Voxelisation of triangle meshes and the inverse: the boundary mesh of a voxel grid.

Grid convention (as in `onet.data.formats`): a (R, R, R) grid indexed [x, y, z]
covers [-0.5, 0.5]^3; cell i spans [i / R - 0.5, (i + 1) / R - 0.5] along each
axis and is centred at (i + 0.5) / R - 0.5.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from onet.geometry.marching_cubes import marching_cubes
from onet.geometry.mesh import check_mesh_arrays
from onet.utils.lazy import lazy_import

trimesh = lazy_import("trimesh")  # 1-1.5 s of start-up: imported on first use

__all__ = ["voxelize", "voxels_to_mesh", "voxel_isosurface", "cell_centers", "triangle_box_overlap"]

# pairs (triangle, candidate cell) tested at once; bounds the temporary memory
_PAIRS_PER_CHUNK = 1_000_000


def cell_centers(resolution: int) -> np.ndarray:
    """Centres of the cells of a (R, R, R) grid over [-0.5, 0.5]^3.

    Returns:
        float64 (R, R, R, 3), entry [i, j, k] = centre of cell (i, j, k)
    """
    c = (np.arange(resolution) + 0.5) / resolution - 0.5
    return np.stack(np.meshgrid(c, c, c, indexing="ij"), axis=-1)


def triangle_box_overlap(triangles: np.ndarray, centers: np.ndarray, half_size: float) -> np.ndarray:
    """Whether each triangle intersects its axis-aligned cube (closed sets).

    Separating-axis test (Akenine-Moeller): the 3 box axes, the triangle
    normal and the 9 cross products of box axes with triangle edges.

    Args:
        triangles: (M, 3, 3) corners of M triangles
        centers: (M, 3) cube centres (one cube per triangle)
        half_size: half the cube's edge length
    Returns:
        bool (M,)
    """
    v = triangles - centers[:, None, :]  # (M, 3, 3) corners relative to the cube centre
    h = half_size
    # numpy reduces a length-3 axis element by element (min, sum, einsum): the corners and
    # components are written out instead, with the same operations in the same order
    corner = [v[:, 0], v[:, 1], v[:, 2]]
    # box face normals: the triangle's bounding box must overlap the cube
    hit = np.ones(len(v), dtype=bool)
    for i in range(3):
        x = [w[:, i] for w in corner]
        hit &= (_min3(*x) <= h) & (_max3(*x) >= -h)
    edges = [corner[1] - corner[0], corner[2] - corner[1], corner[0] - corner[2]]
    normal = np.cross(edges[0], edges[1])  # (M, 3)
    d = normal[:, 0] * corner[0][:, 0] + normal[:, 1] * corner[0][:, 1] + normal[:, 2] * corner[0][:, 2]
    hit &= np.abs(d) <= h * (np.abs(normal[:, 0]) + np.abs(normal[:, 1]) + np.abs(normal[:, 2]))
    for axis in range(3):
        b, c = (axis + 1) % 3, (axis + 2) % 3
        for f in edges:
            # projections on a = unit_axis x edge = (a_b, a_c) = (-f_c, f_b) and 0 on the axis
            p = [w[:, c] * f[:, b] - w[:, b] * f[:, c] for w in corner]
            r = h * (np.abs(f[:, c]) + np.abs(f[:, b]))
            hit &= (_min3(*p) <= r) & (_max3(*p) >= -r)
    return hit


def _min3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.minimum(np.minimum(a, b), c)


def _max3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(a, b), c)


def _surface_cells(vertices: np.ndarray, faces: np.ndarray, resolution: int) -> np.ndarray:
    """bool (R, R, R): cells whose closed box intersects at least one triangle."""
    R = resolution
    grid = np.zeros((R, R, R), dtype=bool)
    tri = vertices[faces]  # (F, 3, 3)
    # candidate cells: closed cells [i, i + 1] (grid units) overlapping the
    # triangle's bounding box [a, b], i.e. ceil(a) - 1 <= i <= floor(b)
    lo = np.ceil((tri.min(axis=1) + 0.5) * R - 1e-6).astype(np.int64) - 1
    hi = np.floor((tri.max(axis=1) + 0.5) * R + 1e-6).astype(np.int64)
    keep = np.all((hi >= 0) & (lo <= R - 1), axis=1)
    tri, lo, hi = tri[keep], np.clip(lo[keep], 0, R - 1), np.clip(hi[keep], 0, R - 1)
    extent = hi - lo + 1  # (F, 3)
    counts = extent.prod(axis=1)
    cum = np.cumsum(counts)
    start = 0
    while start < len(tri):
        # group triangles so each chunk has about _PAIRS_PER_CHUNK candidate pairs
        done = cum[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(cum, done + _PAIRS_PER_CHUNK, side="right")))
        c = counts[start:stop]
        t = np.repeat(np.arange(start, stop), c)
        k = np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c)  # index inside the triangle's box
        ex = extent[t]
        idx = lo[t] + np.stack([k // (ex[:, 1] * ex[:, 2]), (k // ex[:, 2]) % ex[:, 1], k % ex[:, 2]], axis=1)
        centers = (idx + 0.5) / R - 0.5
        # a hair of slack so a triangle lying exactly on a cell face counts for both cells
        hit = triangle_box_overlap(tri[t], centers, 0.5 / R * (1 + 1e-9))
        idx = idx[hit]
        grid[idx[:, 0], idx[:, 1], idx[:, 2]] = True
        start = stop
    return grid


def voxelize(
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    resolution: int = 32,
    occupancy_fn: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Voxelise a triangle mesh on the (R, R, R) grid over [-0.5, 0.5]^3.

    A cell is occupied when its closed box intersects the surface, or when its
    centre lies inside the shape. Inside is decided by `occupancy_fn(points
    (N, 3)) -> bool (N,)` when given (e.g. an analytic shape), otherwise by
    ray-crossing parity against the mesh (trimesh.contains; use a watertight
    mesh).

    Args:
        vertices: (V, 3) float, in the [-0.5, 0.5]^3 frame
        faces: (F, 3) int
    Returns:
        bool (R, R, R) indexed [x, y, z]
    """
    vertices, faces = check_mesh_arrays(vertices, faces)
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    if len(faces) == 0:
        raise ValueError("cannot voxelise a mesh without faces")
    grid = _surface_cells(vertices, faces, resolution)
    # only cells away from the surface need the inside test
    todo = np.flatnonzero(~grid.reshape(-1))
    points = cell_centers(resolution).reshape(-1, 3)[todo]
    if occupancy_fn is not None:
        inside = np.asarray(occupancy_fn(points)).reshape(-1)
        if inside.shape != (len(points),):
            raise ValueError(f"occupancy_fn returned shape {inside.shape} for {len(points)} points")
    else:
        mesh = trimesh.Trimesh(vertices, faces, process=False)
        inside = mesh.contains(points)
    grid.reshape(-1)[todo] = inside.astype(bool)
    return grid


def voxels_to_mesh(voxels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed boundary surface of the occupied cells, in the [-0.5, 0.5]^3 frame.

    Every face between an occupied cell and an empty one (or the outside)
    becomes two triangles, wound so normals point out of the solid. Vertices
    are shared on the grid lattice, so the surface is closed and its enclosed
    volume is exactly n_occupied / R^3. Cells touching only along an edge or a
    corner give non-manifold edges/vertices (still closed).

    Args:
        voxels: bool (R, R, R) indexed [x, y, z] (any cuboid shape works; cells
            are 1 / shape[0] wide along every axis)
    Returns:
        vertices float64 (V, 3), faces int64 (F, 3)
    """
    voxels = np.asarray(voxels).astype(bool)
    if voxels.ndim != 3:
        raise ValueError(f"voxels must be 3D, got shape {voxels.shape}")
    shape = np.array(voxels.shape)
    padded = np.pad(voxels, 1)
    lattice = shape + 1  # vertex lattice size per axis
    quads = []
    for a in range(3):
        b, c = (a + 1) % 3, (a + 2) % 3
        inner = [slice(1, -1)] * 3
        lo_sl, hi_sl = list(inner), list(inner)
        lo_sl[a], hi_sl[a] = slice(None, -1), slice(1, None)
        low, high = padded[tuple(lo_sl)], padded[tuple(hi_sl)]  # cells before / after each face plane
        for sign, mask in ((1, low & ~high), (-1, ~low & high)):
            base = np.argwhere(mask)  # (Q, 3) lattice corner with the smallest coordinates
            eb, ec = np.eye(3, dtype=np.int64)[b], np.eye(3, dtype=np.int64)[c]
            # corners in the order base, +b, +b+c, +c have normal e_b x e_c = +e_a
            corners = np.stack([base, base + eb, base + eb + ec, base + ec], axis=1)  # (Q, 4, 3)
            if sign < 0:
                corners = corners[:, ::-1]
            quads.append(corners)
    if not quads or sum(len(q) for q in quads) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    corners = np.concatenate(quads)  # (Q, 4, 3)
    ids = np.ravel_multi_index(corners.reshape(-1, 3).T, lattice).reshape(-1, 4)
    used, inverse = np.unique(ids, return_inverse=True)
    inverse = inverse.reshape(-1, 4)
    faces = np.concatenate([inverse[:, [0, 1, 2]], inverse[:, [0, 2, 3]]])
    vertices = np.stack(np.unravel_index(used, lattice), axis=1) / shape[0] - 0.5
    return vertices.astype(np.float64), faces.astype(np.int64)


def voxel_isosurface(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Smooth closed surface {values = level} of a cell-centred (R, R, R) grid, by marching cubes.

    values (e.g. occupancy probabilities) sit at the cell centres of the
    grid convention above; outside the grid they continue as 0 (one layer of
    zero padding), so the mesh is closed and a full grid of ones ends about
    half a cell beyond the outer centres, near the grid's boundary.

    Args:
        values: float (R, R, R) indexed [x, y, z], larger inside
        level: iso value in the units of `values`, > 0
    Returns:
        vertices float32 (V, 3) in the [-0.5, 0.5]^3 frame (up to half a cell
        beyond it), faces int64 (F, 3) wound outward; empty arrays when nothing
        reaches the level.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 3 or len(set(values.shape)) != 1 or values.shape[0] < 1:
        raise ValueError(f"values must be a cubic (R, R, R) grid, got shape {values.shape}")
    if not level > 0:
        raise ValueError(f"level must be > 0 (the grid is continued with 0 outside), got {level!r}")
    R = values.shape[0]
    # padded sample i lies at the centre of cell i - 1, (i - 0.5) / R - 0.5 for i = 0 .. R + 1:
    # R + 2 samples spanning (R + 1) / R, centred at 0, as marching_cubes' grid convention wants
    padded = np.pad(values, 1)
    return marching_cubes(padded, level, box_size=(R + 1) / R)
