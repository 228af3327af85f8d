import math

import numpy as np
import pytest
import trimesh

from onet.geometry.marching_cubes import marching_cubes
from onet.generation.mise import mise
from onet.generation.simplify import simplify_mesh

from fields import LEVEL, batched_eval_fn, sphere_sdf, torus_sdf


def mesh_of(sdf, resolution=64):
    values = mise(batched_eval_fn([sdf]), 1, resolution_0=resolution, upsampling_steps=0)[0].values
    return marching_cubes(values, LEVEL)


@pytest.mark.parametrize("n_faces", [5000, 500])
def test_sphere_hits_the_budget_and_stays_closed(n_faces):
    vertices, faces = mesh_of(sphere_sdf(radius=0.3))
    assert len(faces) > n_faces
    v, f = simplify_mesh(vertices, faces, n_faces)
    assert v.dtype == np.float32 and f.dtype == np.int64
    assert 0.9 * n_faces <= len(f) <= n_faces
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight and mesh.euler_number == 2
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * 0.3**3, rel=0.03)


def test_torus_keeps_its_hole():
    v, f = simplify_mesh(*mesh_of(torus_sdf()), 1000)
    mesh = trimesh.Trimesh(v, f, process=False)
    assert len(f) <= 1000 and mesh.is_watertight and mesh.euler_number == 0


def test_under_budget_is_a_no_op():
    vertices, faces = mesh_of(sphere_sdf(radius=0.3), resolution=16)
    v, f = simplify_mesh(vertices, faces, len(faces))
    assert np.array_equal(v, vertices) and np.array_equal(f, faces)


@pytest.mark.parametrize(
    "vertices, faces, n_faces",
    [
        (np.zeros((4, 2)), np.zeros((1, 3), int), 10),
        (np.zeros((4, 3)), np.array([[0, 1, 4]]), 10),
        (np.zeros((4, 3)), np.array([[0, 1, 2]]), 0),
    ],
)
def test_bad_arguments(vertices, faces, n_faces):
    with pytest.raises(ValueError):
        simplify_mesh(vertices, faces, n_faces)
