import numpy as np
import pytest
import trimesh

from onet.geometry.voxelize import cell_centers, triangle_box_overlap, voxelize, voxels_to_mesh


def _box(lo, hi):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    box = trimesh.creation.box(extents=hi - lo)
    box.apply_translation((lo + hi) / 2)
    return box


def test_box_voxel_count_is_exact():
    # [-0.3, 0.2] covers cell coordinates [6.4, 22.4] at R=32: cells 6..22 touch it
    box = _box([-0.3, -0.3, -0.1], [0.2, 0.2, 0.2])
    voxels = voxelize(box.vertices, box.faces, resolution=32)
    assert voxels.dtype == bool and voxels.shape == (32, 32, 32)
    expected = np.zeros((32, 32, 32), dtype=bool)
    expected[6:23, 6:23, 12:23] = True  # z: [-0.1, 0.2] -> [12.8, 22.4]
    np.testing.assert_array_equal(voxels, expected)
    # same result when inside is decided by an occupancy function
    inside = lambda p: np.all((p >= [-0.3, -0.3, -0.1]) & (p <= [0.2, 0.2, 0.2]), axis=1)
    np.testing.assert_array_equal(voxelize(box.vertices, box.faces, resolution=32, occupancy_fn=inside), expected)


def test_thin_plate_marks_the_cells_it_crosses():
    # a slanted triangle far smaller than the box: only surface cells, no inside
    tri = np.array([[-0.41, -0.37, -0.43], [0.38, -0.42, 0.35], [0.36, 0.39, 0.44]])
    voxels = voxelize(tri, np.array([[0, 1, 2]]), resolution=8, occupancy_fn=lambda p: np.zeros(len(p), bool))
    # slow reference: dense triangle samples; every sampled cell must be marked
    u, v = np.random.default_rng(0).random((2, 20000))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    pts = tri[0] + u[:, None] * (tri[1] - tri[0]) + v[:, None] * (tri[2] - tri[0])
    idx = np.floor((pts + 0.5) * 8).astype(int)
    sampled = np.zeros_like(voxels)
    sampled[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    assert np.all(voxels[sampled])
    # cells marked beyond the samples only graze the triangle (SAT is exact)
    assert voxels.sum() - sampled.sum() <= 0.1 * sampled.sum()


def test_triangle_box_overlap_against_brute_force():
    rng = np.random.default_rng(3)
    tris = rng.uniform(-1, 1, (300, 3, 3))
    centers = rng.uniform(-0.5, 0.5, (300, 3))
    fast = triangle_box_overlap(tris, centers, 0.25)
    # brute force: does the triangle contain a point of the box? sample densely both ways
    u, v = rng.random((2, 4000))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    pts = tris[:, :1] + u[None, :, None] * (tris[:, 1:2] - tris[:, :1]) + v[None, :, None] * (tris[:, 2:3] - tris[:, :1])
    slow = np.any(np.all(np.abs(pts - centers[:, None]) <= 0.25, axis=2), axis=1)
    assert np.all(fast[slow])  # sampling can only miss overlaps, never invent them
    assert np.mean(fast != slow) < 0.03


def test_sphere_voxels_contain_centres_inside():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.35)
    voxels = voxelize(sphere.vertices, sphere.faces, resolution=16)
    d = np.linalg.norm(cell_centers(16), axis=-1)
    assert np.all(voxels[d < 0.3])
    assert not np.any(voxels[d > 0.35 + np.sqrt(3) / 32])


def test_voxels_to_mesh_is_closed_with_exact_volume():
    rng = np.random.default_rng(0)
    voxels = np.zeros((12, 12, 12), dtype=bool)
    voxels[2:9, 3:7, 4:10] = True
    voxels[5:9, 7:11, 4:6] = True  # an L-shape: still a manifold boundary
    vertices, faces = voxels_to_mesh(voxels)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume == pytest.approx(voxels.sum() / 12**3)
    assert mesh.bounds[0] == pytest.approx([2 / 12 - 0.5, 3 / 12 - 0.5, 4 / 12 - 0.5])
    # random grids: closed surface (every edge used an even number of times), exact volume
    voxels = rng.random((10, 10, 10)) < 0.4
    vertices, faces = voxels_to_mesh(voxels)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.volume == pytest.approx(voxels.sum() / 10**3)
    edges = np.sort(mesh.edges, axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert np.all(counts % 2 == 0)
    # an empty grid gives an empty mesh
    v, f = voxels_to_mesh(np.zeros((4, 4, 4), bool))
    assert v.shape == (0, 3) and f.shape == (0, 3)


def test_voxelize_round_trips_through_voxels_to_mesh():
    voxels = np.zeros((16, 16, 16), dtype=bool)
    voxels[3:12, 4:9, 5:13] = True
    vertices, faces = voxels_to_mesh(voxels)
    # the boundary lies on cell faces, so re-voxelising marks one extra layer;
    # deciding inside at centres recovers the solid exactly
    inside = lambda p: voxels[tuple(np.floor((p + 0.5) * 16).astype(int).T)]
    again = voxelize(vertices, faces, resolution=16, occupancy_fn=inside)
    assert np.all(again[voxels])
    grown = np.zeros_like(voxels)
    grown[2:13, 3:10, 4:14] = True
    np.testing.assert_array_equal(again, grown)


def test_voxelize_checks_inputs():
    with pytest.raises(ValueError, match="without faces"):
        voxelize(np.zeros((3, 3)), np.zeros((0, 3), int))
    with pytest.raises(ValueError, match="resolution"):
        voxelize(np.eye(3), np.array([[0, 1, 2]]), resolution=0)
    with pytest.raises(ValueError, match="3D"):
        voxels_to_mesh(np.zeros((4, 4), bool))


def test_voxel_isosurface_is_closed_and_sits_on_the_cell_boundaries():
    from onet.geometry.voxelize import voxel_isosurface

    values = np.zeros((8, 8, 8))
    values[2:6, 1:7, 3:8] = 1.0  # touches the +z border: the zero padding closes it there
    vertices, faces = voxel_isosurface(values, 0.5)
    mesh = trimesh.Trimesh(vertices, faces, process=True)
    assert mesh.is_watertight and mesh.volume > 0
    # at level 0.5 between a 1 and a 0 the surface crosses half way between the centres: on the cell faces
    np.testing.assert_allclose(vertices.min(axis=0), [2 / 8 - 0.5, 1 / 8 - 0.5, 3 / 8 - 0.5], atol=1e-6)
    np.testing.assert_allclose(vertices.max(axis=0), [6 / 8 - 0.5, 7 / 8 - 0.5, 0.5], atol=1e-6)
    # a higher level moves the surface towards the occupied centres: 0.6 of the way at level 0.4 -> 0.4 at 0.6
    hi = voxel_isosurface(values, 0.6)[0]
    assert hi[:, 0].max() == pytest.approx(6 / 8 - 0.5 - 0.1 / 8, abs=1e-6)
    v, f = voxel_isosurface(np.zeros((4, 4, 4)), 0.4)
    assert v.shape == (0, 3) and f.shape == (0, 3)
    with pytest.raises(ValueError, match="cubic"):
        voxel_isosurface(np.zeros((4, 4, 5)), 0.4)
    with pytest.raises(ValueError, match="level"):
        voxel_isosurface(values, 0.0)
