"""Previews: meshes and point sets (drawn as small octahedra) beside the input image."""

import numpy as np
import trimesh

from onet.generation.preview import point_splats, preview_image


def test_point_splats_are_closed_outward_octahedra_around_the_points():
    points = np.array([[0.0, 0.0, 0.0], [0.2, -0.1, 0.3]])
    vertices, faces = point_splats(points, radius=0.05)
    assert vertices.shape == (12, 3) and faces.shape == (16, 3)
    for i, p in enumerate(points):
        octahedron = trimesh.Trimesh(vertices[6 * i:6 * i + 6], faces[8 * i:8 * i + 8] - 6 * i, process=False)
        assert octahedron.is_watertight
        assert abs(octahedron.volume - 4 / 3 * 0.05**3) < 1e-12  # positive: outward winding
        np.testing.assert_allclose(octahedron.vertices.mean(axis=0), p, atol=1e-12)


def test_a_point_set_renders_and_an_empty_one_is_blank():
    rng = np.random.default_rng(0)
    drawn = np.asarray(preview_image(rng.uniform(-0.3, 0.3, (200, 3)), np.zeros((0, 3), np.int64), size=64))
    blank = np.asarray(preview_image(np.zeros((0, 3)), np.zeros((0, 3), np.int64), size=64))
    assert (drawn < 250).any() and (blank == 255).all()
