import math

import numpy as np
import pytest
import trimesh

from onet.geometry.grid import grid_points
from onet.geometry.marching_cubes import marching_cubes, marching_cubes_torch, marching_cubes_torch_batch

from fields import LEVEL, logits_fn, sphere_sdf, torus_sdf


# the checks every backend must pass (warp's own are below: an optional extra)
BACKENDS = pytest.mark.parametrize("mc", [marching_cubes, marching_cubes_torch], ids=["skimage", "torch"])


def grid_values(logits, resolution, box_size=1.1):
    pts = grid_points(resolution, box_size=box_size)
    return logits(pts).reshape((resolution + 1,) * 3).numpy()


@BACKENDS
def test_plane_vertices_land_exactly_on_the_world_plane(mc):
    # a half-cell offset anywhere in the index -> world mapping would move every vertex
    res = 16
    x0 = -0.55 + 1.1 * 5.5 / res  # half-way between planes 5 and 6
    values = grid_values(lambda p: LEVEL - 10.0 * (p[:, 0] - x0), res)
    vertices, faces = mc(values, LEVEL, box_size=1.1)
    inner = vertices[np.abs(vertices).max(axis=1) < 0.55 - 1e-6]  # drop the caps on the box boundary
    assert len(inner) > 0
    assert np.allclose(inner[:, 0], x0, atol=1e-6)
    assert trimesh.Trimesh(vertices, faces, process=False).is_watertight


@BACKENDS
def test_sphere_is_closed_outward_and_on_the_surface(mc):
    res = 64
    vertices, faces = mc(grid_values(logits_fn(sphere_sdf((0.05, -0.02, 0.01), 0.3)), res), LEVEL)
    assert vertices.dtype == np.float32 and faces.dtype == np.int64
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight
    # positive volume = outward normals
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * 0.3**3, rel=0.01)
    radius = np.linalg.norm(vertices - np.array([0.05, -0.02, 0.01]), axis=1)
    assert np.abs(radius - 0.3).max() < 0.05 * 1.1 / res


@BACKENDS
def test_matches_pymcubes_reference(mc):
    # an independent implementation, with the convention applied by hand here
    mcubes = pytest.importorskip("mcubes")
    res = 24
    values = grid_values(logits_fn(sphere_sdf((0.03, 0.0, -0.04), 0.25)), res)
    vertices, _ = mc(values, LEVEL)
    ref, _ = mcubes.marching_cubes(values.astype(np.float64), LEVEL)
    ref = -0.55 + 1.1 * ref / res
    assert len(ref) == len(vertices)
    assert np.allclose(np.sort(vertices, axis=0), np.sort(ref, axis=0), atol=1e-5)


@BACKENDS
def test_surface_leaving_the_box_is_capped_on_the_boundary(mc):
    values = np.full((9, 9, 9), 5.0, np.float32)  # everything inside
    vertices, faces = mc(values, 0.0, box_size=2.0)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight
    assert np.abs(vertices).max() == pytest.approx(1.0, abs=1e-6)
    assert mesh.volume == pytest.approx(8.0, rel=1e-4)


@BACKENDS
def test_no_crossing_gives_empty_arrays(mc):
    vertices, faces = mc(np.full((5, 5, 5), -3.0), 0.0)
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
@BACKENDS
def test_bad_values(values, message, mc):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        mc(values, 0.0)


@BACKENDS
def test_values_exactly_at_the_level_keep_the_mesh_closed(mc):
    # integer logits put the level exactly on many grid points: degenerate
    # triangles appear there, and they must not open the mesh once vertices merge
    res = 24
    pts = grid_points(res).numpy()
    values = np.round(8.0 * (0.3 - np.linalg.norm(pts, axis=1))).reshape((res + 1,) * 3)
    vertices, faces = mc(values, 0.0)
    mesh = trimesh.Trimesh(vertices, faces)  # merges coincident vertices
    assert mesh.is_watertight and mesh.volume > 0


@BACKENDS
@pytest.mark.parametrize("where", ["inside", "outside", "both"])
def test_infinite_logits_give_finite_closed_meshes(where, mc):
    # a probability of exactly 1 or 0 is an infinite logit: interpolating towards it gave NaN vertices
    res = 16
    values = grid_values(logits_fn(sphere_sdf((0.05, -0.02, 0.01), 0.3)), res)
    if where in ("inside", "both"):
        values = np.where(values > LEVEL, np.inf, values)
    if where in ("outside", "both"):
        values = np.where(values <= LEVEL, -np.inf, values)
    vertices, faces = mc(values, LEVEL)
    assert len(faces) > 0 and np.isfinite(vertices).all()
    mesh = trimesh.Trimesh(vertices, faces, process=False)  # no merging: shared vertices already
    assert mesh.is_watertight and mesh.volume > 0
    assert len(np.unique(faces)) == len(vertices)  # every vertex used
    # the crossings sit on the finite side (a grid point) or, between two infinities, mid-edge
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * 0.3**3, rel=0.35)


def test_torch_case_table_separates_inside_from_outside_grid_points():
    """Every one of the 256 cell cases, and random grids full of ambiguous faces: a closed,
    outward surface with exactly the grid points above the level inside it."""
    from onet.geometry.inside import inside_mesh

    grids = []
    for case in range(1, 256):
        cell = np.full((2, 2, 2), -1.0)
        for c in range(8):  # corner c has bits x, y, z
            if (case >> c) & 1:
                cell[c & 1, (c >> 1) & 1, (c >> 2) & 1] = 1.0
        grids.append(cell)
    rng = np.random.default_rng(0)
    grids += [rng.normal(size=(7, 6, 5)) for _ in range(10)]
    for core in grids:
        values = np.pad(core, 1, constant_values=-1.0)  # every grid point above the level is interior
        vertices, faces = marching_cubes_torch(values, 0.0, box_size=2.0)
        mesh = trimesh.Trimesh(vertices, faces, process=False)
        assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
        index = np.stack(np.meshgrid(*[np.arange(n) for n in values.shape], indexing="ij"), -1).reshape(-1, 3)
        points = 2.0 * index / (np.array(values.shape) - 1) - 1.0
        assert np.array_equal(inside_mesh(vertices, faces, points), values.reshape(-1) > 0)


def test_torch_batch_equals_one_grid_at_a_time():
    values = np.stack([grid_values(logits_fn(sphere_sdf((0.05, -0.02, 0.01), 0.3)), 24),
                       np.full((25, 25, 25), -3.0),  # no surface
                       grid_values(logits_fn(torus_sdf()), 24)])
    batch = marching_cubes_torch_batch(values, LEVEL)
    assert len(batch) == 3 and batch[1][0].shape == (0, 3) and batch[1][1].shape == (0, 3)
    for b, (vertices, faces) in enumerate(batch):
        alone = marching_cubes_torch(values[b], LEVEL)
        assert np.array_equal(vertices, alone[0]) and np.array_equal(faces, alone[1])
    assert marching_cubes_torch_batch(np.zeros((0, 4, 4, 4)), 0.0) == []
    with pytest.raises(ValueError, match=r"batch of 3D grids \(B, X, Y, Z\), got \(4, 4, 4\)"):
        marching_cubes_torch_batch(np.zeros((4, 4, 4)), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        marching_cubes_torch_batch(np.stack([values[0], np.full_like(values[0], np.nan)]), LEVEL)


def _warp(values, level, **kw):
    pytest.importorskip("warp", reason="optional extra: pip install -e .[gpu]")
    from onet.geometry.marching_cubes import marching_cubes_warp

    return marching_cubes_warp(values, level, **kw)


@pytest.mark.parametrize("backend", [marching_cubes_torch, _warp], ids=["torch", "warp"])
@pytest.mark.parametrize("center, radius", [((0.05, -0.02, 0.01), 0.3), ((0.3, 0.0, 0.0), 0.4)],
                         ids=["inside", "leaves the box"])
def test_device_marching_cubes_equals_skimage_up_to_order(center, radius, backend):
    """The paths that run on the grid's device (here the CPU) give the same mesh as the default."""
    import torch
    from scipy.spatial import cKDTree

    values = grid_values(logits_fn(sphere_sdf(center, radius)), 40)
    v_ref, f_ref = marching_cubes(values, LEVEL)
    v_wp, f_wp = backend(torch.from_numpy(values), LEVEL)
    assert v_wp.dtype == np.float32 and f_wp.dtype == np.int64
    # the same vertices (edge crossings) in another order ...
    assert v_wp.shape == v_ref.shape and f_wp.shape == f_ref.shape
    dist, match = cKDTree(v_wp).query(v_ref)
    assert dist.max() < 1e-6 and len(np.unique(match)) == len(v_ref)  # a one-to-one match
    # ... and as many triangles, which may split a cell's polygon along another diagonal
    # (a classic case table vs skimage's Lewiner table): the same closed surface
    ref, wp_mesh = trimesh.Trimesh(v_ref, f_ref, process=False), trimesh.Trimesh(v_wp, f_wp, process=False)
    assert wp_mesh.is_watertight and wp_mesh.volume > 0
    assert wp_mesh.volume == pytest.approx(ref.volume, rel=1e-4)
    assert wp_mesh.area == pytest.approx(ref.area, rel=1e-5)
    # numpy input and an empty level set
    assert np.array_equal(backend(values, LEVEL)[1], f_wp)
    v0, f0 = backend(values, values.max() + 1.0)
    assert v0.shape == (0, 3) and f0.shape == (0, 3)


def test_warp_marching_cubes_checks_its_input():
    pytest.importorskip("warp", reason="optional extra: pip install -e .[gpu]")
    from onet.geometry.marching_cubes import marching_cubes_warp

    with pytest.raises(ValueError, match="3D"):
        marching_cubes_warp(np.zeros((2, 2, 1), np.float32), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        marching_cubes_warp(np.full((3, 3, 3), np.nan, np.float32), 0.0)
