"""Thumbnails: point splats land where the mesh renderer draws the same shape; freshness by mtime."""

import os

import numpy as np
import trimesh
from PIL import Image

from onet.report.thumbnails import image_thumbnail, is_fresh, mesh_thumbnail, points_thumbnail


def covered(image):
    return (image != 255).any(axis=2)


def test_points_and_mesh_of_one_shape_cover_the_same_pixels():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.35)
    mesh = covered(mesh_thumbnail(sphere.vertices, sphere.faces, size=96))
    points, face = trimesh.sample.sample_surface(sphere, 40000, seed=0)
    splat = covered(points_thumbnail(points, sphere.face_normals[face], size=96))
    iou = (mesh & splat).sum() / (mesh | splat).sum()
    assert 0.05 < mesh.mean() < 0.6 and iou > 0.9


def test_sparse_clouds_are_drawn_bigger_and_empty_input_is_blank():
    points = np.random.default_rng(0).uniform(-0.3, 0.3, size=(50, 3))
    assert covered(points_thumbnail(points, size=64)).sum() > 50 * 4  # discs, not single pixels
    assert not covered(points_thumbnail(np.zeros((0, 3)), size=64)).any()
    assert not covered(mesh_thumbnail(np.zeros((0, 3)), np.zeros((0, 3), int), size=64)).any()


def test_image_thumbnail_composites_transparency_on_white(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[:, :15] = (255, 0, 0, 255)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    thumb = image_thumbnail(tmp_path / "a.png", size=40)
    assert thumb.shape == (40, 40, 3)
    assert tuple(thumb[20, 2]) == (255, 0, 0) and tuple(thumb[20, 37]) == (255, 255, 255)


def test_freshness_follows_modification_times(tmp_path):
    source, target = tmp_path / "s", tmp_path / "t"
    source.write_text("x")
    assert not is_fresh(target, source)
    target.write_text("y")
    os.utime(source, (1000, 1000))
    assert is_fresh(target, source)
    os.utime(source, (target.stat().st_mtime + 5,) * 2)
    assert not is_fresh(target, source)
