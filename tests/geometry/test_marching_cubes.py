import math

import numpy as np
import pytest
import trimesh

from onet.geometry.grid import grid_points
from onet.geometry.marching_cubes import marching_cubes

from fields import LEVEL, logits_fn, sphere_sdf


def grid_values(logits, resolution, box_size=1.1):
    pts = grid_points(resolution, box_size=box_size)
    return logits(pts).reshape((resolution + 1,) * 3).numpy()


def test_plane_vertices_land_exactly_on_the_world_plane():
    # a half-cell offset anywhere in the index -> world mapping would move every vertex
    res = 16
    x0 = -0.55 + 1.1 * 5.5 / res  # half-way between planes 5 and 6
    values = grid_values(lambda p: LEVEL - 10.0 * (p[:, 0] - x0), res)
    vertices, faces = marching_cubes(values, LEVEL, box_size=1.1)
    inner = vertices[np.abs(vertices).max(axis=1) < 0.55 - 1e-6]  # drop the caps on the box boundary
    assert len(inner) > 0
    assert np.allclose(inner[:, 0], x0, atol=1e-6)
    assert trimesh.Trimesh(vertices, faces, process=False).is_watertight


def test_sphere_is_closed_outward_and_on_the_surface():
    res = 64
    vertices, faces = marching_cubes(grid_values(logits_fn(sphere_sdf((0.05, -0.02, 0.01), 0.3)), res), LEVEL)
    assert vertices.dtype == np.float32 and faces.dtype == np.int64
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight
    # positive volume = outward normals
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * 0.3**3, rel=0.01)
    radius = np.linalg.norm(vertices - np.array([0.05, -0.02, 0.01]), axis=1)
    assert np.abs(radius - 0.3).max() < 0.05 * 1.1 / res


def test_matches_pymcubes_reference():
    # an independent implementation, with the convention applied by hand here
    mcubes = pytest.importorskip("mcubes")
    res = 24
    values = grid_values(logits_fn(sphere_sdf((0.03, 0.0, -0.04), 0.25)), res)
    vertices, _ = marching_cubes(values, LEVEL)
    ref, _ = mcubes.marching_cubes(values.astype(np.float64), LEVEL)
    ref = -0.55 + 1.1 * ref / res
    assert len(ref) == len(vertices)
    assert np.allclose(np.sort(vertices, axis=0), np.sort(ref, axis=0), atol=1e-5)


def test_surface_leaving_the_box_is_capped_on_the_boundary():
    values = np.full((9, 9, 9), 5.0, np.float32)  # everything inside
    vertices, faces = marching_cubes(values, 0.0, box_size=2.0)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight
    assert np.abs(vertices).max() == pytest.approx(1.0, abs=1e-6)
    assert mesh.volume == pytest.approx(8.0, rel=1e-4)


def test_no_crossing_gives_empty_arrays():
    vertices, faces = marching_cubes(np.full((5, 5, 5), -3.0), 0.0)
    assert vertices.shape == (0, 3) and faces.shape == (0, 3)
    assert vertices.dtype == np.float32 and faces.dtype == np.int64


@pytest.mark.parametrize(
    "values, message",
    [
        (np.zeros((4, 4)), "values must be 3D and at least 2x2x2, got (4, 4)"),
        (np.zeros((2, 2, 1)), "values must be 3D and at least 2x2x2, got (2, 2, 1)"),
        (np.full((3, 3, 3), np.nan), "values contain NaN"),
    ],
)
def test_bad_values(values, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        marching_cubes(values, 0.0)


def test_values_exactly_at_the_level_keep_the_mesh_closed():
    # integer logits put the level exactly on many grid points: degenerate
    # triangles appear there, and they must not open the mesh once vertices merge
    res = 24
    pts = grid_points(res).numpy()
    values = np.round(8.0 * (0.3 - np.linalg.norm(pts, axis=1))).reshape((res + 1,) * 3)
    vertices, faces = marching_cubes(values, 0.0)
    mesh = trimesh.Trimesh(vertices, faces)  # merges coincident vertices
    assert mesh.is_watertight and mesh.volume > 0


@pytest.mark.parametrize("center, radius", [((0.05, -0.02, 0.01), 0.3), ((0.3, 0.0, 0.0), 0.4)],
                         ids=["inside", "leaves the box"])
def test_warp_marching_cubes_equals_skimage_up_to_order(center, radius):
    """The optional GPU path (NVIDIA Warp, here on the CPU) gives the same mesh as the default."""
    pytest.importorskip("warp", reason="optional extra: pip install -e .[gpu]")
    import torch
    from scipy.spatial import cKDTree

    from onet.geometry.marching_cubes import marching_cubes_warp

    values = grid_values(logits_fn(sphere_sdf(center, radius)), 40)
    v_ref, f_ref = marching_cubes(values, LEVEL)
    v_wp, f_wp = marching_cubes_warp(torch.from_numpy(values), LEVEL)
    assert v_wp.dtype == np.float32 and f_wp.dtype == np.int64
    # the same vertices (edge crossings) in another order ...
    assert v_wp.shape == v_ref.shape and f_wp.shape == f_ref.shape
    dist, match = cKDTree(v_wp).query(v_ref)
    assert dist.max() < 1e-6 and len(np.unique(match)) == len(v_ref)  # a one-to-one match
    # ... and as many triangles, which may split a cell's polygon along another diagonal
    # (Warp's classic case table vs skimage's Lewiner table): the same closed surface
    ref, wp_mesh = trimesh.Trimesh(v_ref, f_ref, process=False), trimesh.Trimesh(v_wp, f_wp, process=False)
    assert wp_mesh.is_watertight and wp_mesh.volume > 0
    assert wp_mesh.volume == pytest.approx(ref.volume, rel=1e-4)
    assert wp_mesh.area == pytest.approx(ref.area, rel=1e-5)
    # numpy input and an empty level set
    assert np.array_equal(marching_cubes_warp(values, LEVEL)[1], f_wp)
    v0, f0 = marching_cubes_warp(values, values.max() + 1.0)
    assert v0.shape == (0, 3) and f0.shape == (0, 3)


def test_warp_marching_cubes_checks_its_input():
    pytest.importorskip("warp", reason="optional extra: pip install -e .[gpu]")
    from onet.geometry.marching_cubes import marching_cubes_warp

    with pytest.raises(ValueError, match="3D"):
        marching_cubes_warp(np.zeros((2, 2, 1), np.float32), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        marching_cubes_warp(np.full((3, 3, 3), np.nan, np.float32), 0.0)
