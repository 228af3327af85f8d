import numpy as np
import pytest
import trimesh

from onet.geometry.normalize import normalize_mesh
from onet.geometry.sampling import sample_surface, sample_uniform_points


def test_uniform_points_fill_the_padded_box():
    p = sample_uniform_points(20000, box_size=1.1, rng=np.random.default_rng(0))
    assert p.dtype == np.float32 and p.shape == (20000, 3)
    assert p.min() >= -0.55 and p.max() <= 0.55
    # each octant holds 1/8 of the points
    octant = (p > 0) @ np.array([1, 2, 4])
    assert np.allclose(np.bincount(octant, minlength=8) / len(p), 1 / 8, atol=0.01)
    np.testing.assert_array_equal(p, sample_uniform_points(20000, rng=0))


def test_sphere_samples_are_area_uniform():
    r = 0.4
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=r)
    points, normals = sample_surface(sphere.vertices, sphere.faces, 50000, rng=np.random.default_rng(0))
    assert points.dtype == np.float32 and normals.dtype == np.float32
    assert points.shape == normals.shape == (50000, 3)
    # on the sphere (up to the flat facets) with outward unit normals
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), r, rtol=3e-3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1, atol=1e-5)
    assert np.all((normals * points).sum(axis=1) > 0.99 * r)
    # Archimedes: uniform samples on a sphere have a uniform height; the
    # fraction above z = h estimates the cap area 2 pi r (r - h) / (4 pi r^2)
    for h in (-0.3, 0.0, 0.2):
        assert np.mean(points[:, 2] > h) == pytest.approx((1 - h / r) / 2, abs=0.01)


def test_samples_follow_face_areas():
    # two squares of areas 1 and 4 far apart
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [5, 0, 0], [7, 0, 0], [7, 2, 0], [5, 2, 0]], float)
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7], [0, 0, 1]])  # the last face has no area
    points, normals = sample_surface(vertices, faces, 10000, rng=1)
    assert np.mean(points[:, 0] > 3) == pytest.approx(0.8, abs=0.015)
    np.testing.assert_allclose(normals, np.tile([0, 0, 1], (10000, 1)))


def test_sample_surface_rejects_bad_meshes():
    with pytest.raises(ValueError, match="without faces"):
        sample_surface(np.zeros((3, 3)), np.zeros((0, 3), int), 10, rng=0)
    with pytest.raises(ValueError, match="zero area"):
        sample_surface(np.zeros((3, 3)), np.array([[0, 1, 2]]), 10, rng=0)
    with pytest.raises(ValueError, match="face indices"):
        sample_surface(np.zeros((3, 3)), np.array([[0, 1, 3]]), 10, rng=0)
    with pytest.raises(ValueError, match=r"\(V, 3\)"):
        sample_surface(np.zeros((3, 2)), np.array([[0, 1, 2]]), 10, rng=0)


def test_normalize_mesh_centres_and_scales():
    box = trimesh.creation.box(extents=[2.0, 4.0, 1.0])
    box.apply_translation([3.0, -1.0, 0.5])
    out, loc, scale = normalize_mesh(box)
    np.testing.assert_allclose(loc, [3.0, -1.0, 0.5])
    assert scale == pytest.approx(4.0)
    np.testing.assert_allclose(out.bounds, [[-0.25, -0.5, -0.125], [0.25, 0.5, 0.125]])
    np.testing.assert_allclose(out.vertices * scale + loc, box.vertices)
    assert box.bounds[0, 0] == pytest.approx(2.0)  # the input is not modified
    with pytest.raises(ValueError, match="empty"):
        normalize_mesh(trimesh.Trimesh())
