"""Inside test against analytic occupancy, including grazing rays."""

import numpy as np
import pytest
import trimesh

from onet.geometry.inside import inside_mesh


def _uniform(n=100_000, seed=0, half=0.55):
    return np.random.default_rng(seed).uniform(-half, half, size=(n, 3))


def _agreement(inside, truth, unambiguous):
    return float((inside[unambiguous] == truth[unambiguous]).mean())


def test_sphere_matches_analytic():
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=0.4)
    points = _uniform()
    radius = np.linalg.norm(points, axis=1)
    inside = inside_mesh(mesh.vertices, mesh.faces, points)
    # the tessellation lies within 1e-3 of the sphere: closer points are ambiguous
    assert _agreement(inside, radius < 0.4, np.abs(radius - 0.4) > 2e-3) >= 0.999


def test_torus_matches_analytic():
    major, minor = 0.3, 0.12
    mesh = trimesh.creation.torus(major, minor, major_sections=128, minor_sections=64)
    points = _uniform(seed=1)
    ring = np.hypot(points[:, 0], points[:, 1])
    tube = np.hypot(ring - major, points[:, 2])
    inside = inside_mesh(mesh.vertices, mesh.faces, points)
    assert _agreement(inside, tube < minor, np.abs(tube - minor) > 2e-3) >= 0.999


def _grid_box(n=10, half=0.4):
    """Axis-aligned cube [-half, half]^3 whose faces are n x n grids of quads (2 triangles each)."""
    ticks = np.linspace(-half, half, n + 1)
    vertices, faces = [], []
    for axis in range(3):
        for side in (-half, half):
            u, v = np.meshgrid(ticks, ticks, indexing="ij")
            coords = [None, None, None]
            others = [a for a in range(3) if a != axis]
            coords[axis] = np.full(u.shape, side)
            coords[others[0]], coords[others[1]] = u, v
            start = sum(len(x) for x in vertices)
            vertices.append(np.stack(coords, axis=-1).reshape(-1, 3))
            idx = start + np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
            a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
            tris = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
            faces.append(tris)
    mesh = trimesh.Trimesh(np.concatenate(vertices), np.concatenate(faces), process=True)  # merge seams
    assert mesh.is_watertight
    return mesh


def test_grid_box_with_points_on_grid_lines():
    half, n = 0.4, 10
    mesh = _grid_box(n, half)
    rng = np.random.default_rng(2)
    ticks = np.linspace(-half, half, n + 1)
    grid = np.concatenate([ticks - (ticks[1] - ticks[0]), ticks[-1:] + (ticks[1] - ticks[0])])
    # two coordinates on grid lines (rays along the axes would graze edges and
    # vertices), the third uniform; plus points on all three grid coordinates
    points = rng.choice(grid, size=(100_000, 3))
    free = rng.integers(0, 3, size=len(points))
    keep = rng.random(len(points)) < 0.8
    points[keep, free[keep]] = rng.uniform(-0.55, 0.55, size=keep.sum())
    truth = (np.abs(points) < half).all(axis=1)
    unambiguous = (np.abs(np.abs(points) - half) > 1e-6).all(axis=1)
    inside = inside_mesh(mesh.vertices, mesh.faces, points)
    assert unambiguous.sum() > 50_000
    assert _agreement(inside, truth, unambiguous) >= 0.999


def test_empty_mesh_and_empty_points():
    points = _uniform(100)
    assert not inside_mesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=int), points).any()
    mesh = trimesh.creation.box()
    assert inside_mesh(mesh.vertices, mesh.faces, np.zeros((0, 3))).shape == (0,)


def test_open_mesh_is_best_effort():
    mesh = _grid_box(4, 0.4)
    top = mesh.triangles_center[:, 2] > 0.39
    points = _uniform(20_000, seed=3)
    truth = (np.abs(points) < 0.4).all(axis=1)
    inside = inside_mesh(mesh.vertices, mesh.faces[~top], points)
    assert inside.dtype == bool and inside.shape == (len(points),)
    assert (inside == truth).mean() > 0.95


@pytest.mark.parametrize(
    "vertices, faces, points, message",
    [
        (np.zeros((4, 2)), np.zeros((1, 3), int), np.zeros((1, 3)), "vertices must have shape"),
        (np.zeros((4, 3)), np.zeros((1, 4), int), np.zeros((1, 3)), "faces must have shape"),
        (np.zeros((4, 3)), np.zeros((1, 3)), np.zeros((1, 3)), "faces must be integer"),
        (np.zeros((4, 3)), np.array([[0, 1, 4]]), np.zeros((1, 3)), "out of range"),
        (np.zeros((4, 3)), np.array([[0, 1, 2]]), np.zeros(3), "points must have shape"),
        (np.zeros((4, 3)), np.array([[0, 1, 2]]), np.full((1, 3), np.nan), "points contain NaN"),
    ],
)
def test_bad_inputs_name_the_problem(vertices, faces, points, message):
    with pytest.raises(ValueError, match=message):
        inside_mesh(vertices, faces, points)


def test_voxel_mesh_with_non_manifold_edges():
    voxelize = pytest.importorskip("onet.geometry.voxelize")
    rng = np.random.default_rng(4)
    voxels = rng.random((16, 16, 16)) < 0.4  # many cells touch only along edges or corners
    vertices, faces = voxelize.voxels_to_mesh(voxels)
    # cell centres and corner-aligned offsets: rays from lattice-aligned points
    centres = (np.argwhere(np.ones_like(voxels)) + 0.5) / 16 - 0.5
    points = np.concatenate([centres, rng.uniform(-0.5, 0.5, size=(50_000, 3))])
    cell = np.clip(np.floor((points + 0.5) * 16).astype(int), 0, 15)
    truth = voxels[cell[:, 0], cell[:, 1], cell[:, 2]]
    offset = (points + 0.5) * 16
    unambiguous = (np.abs(offset - np.round(offset)) > 1e-6).all(axis=1)
    inside = inside_mesh(vertices, faces, points)
    assert _agreement(inside, truth, unambiguous) >= 0.999
