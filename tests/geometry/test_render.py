import numpy as np
import pytest
import trimesh

from onet.geometry.render import camera_centers, default_cameras, look_at_camera, render_mesh


def _project(K, RT, X):
    x = K @ (RT[:, :3] @ X + RT[:, 3])
    return x[:2] / x[2]


def test_default_cameras_geometry():
    cams = default_cameras(24, size=137, seed=0)
    assert len(cams) == 24
    centres = camera_centers(cams)
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 2.0, rtol=1e-5)
    elevation = np.degrees(np.arcsin(centres[:, 1] / 2.0))
    assert elevation.min() >= 20 - 1e-3 and elevation.max() <= 35 + 1e-3
    for K, RT in cams:
        assert K.shape == (3, 3) and RT.shape == (3, 4) and K.dtype == np.float32
        np.testing.assert_allclose(RT[:, :3] @ RT[:, :3].T, np.eye(3), atol=1e-5)
        # the origin projects to the image centre; every corner of the unit cube is in view
        np.testing.assert_allclose(_project(K, RT, np.zeros(3)), [68.5, 68.5], atol=1e-3)
        corners = np.array(np.meshgrid([-0.5, 0.5], [-0.5, 0.5], [-0.5, 0.5])).reshape(3, -1).T
        uv = np.array([_project(K, RT, c) for c in corners])
        assert uv.min() > 0 and uv.max() < 137
        # world up (+y) points up in the image (towards smaller rows)
        assert _project(K, RT, np.array([0, 0.3, 0]))[1] < 68.5
    same = default_cameras(24, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(cams, same))


def test_render_silhouette_matches_projection():
    # a small cube away from the origin: its projected centre must be covered,
    # and the pixel where a far-away point projects must stay white
    cube = trimesh.creation.box(extents=[0.1, 0.1, 0.1])
    cube.apply_translation([0.25, 0.1, -0.2])
    cams = default_cameras(6, size=64, seed=3)
    images = render_mesh(cube.vertices, cube.faces, cams, size=64)
    assert len(images) == 6
    for (K, RT), image in zip(cams, images):
        assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
        u, v = _project(K, RT, np.array([0.25, 0.1, -0.2]))
        assert np.any(image[int(v), int(u)] < 250), "cube centre projects onto background"
        u, v = _project(K, RT, np.array([-0.3, -0.3, 0.3]))
        assert np.all(image[int(v), int(u)] == 255)
        # silhouette bounded by the projected corners
        mask = np.any(image < 255, axis=2)
        rows, cols = np.nonzero(mask)
        uv = np.array([_project(K, RT, c) for c in cube.vertices])
        assert cols.min() >= np.floor(uv[:, 0].min()) and cols.max() <= np.ceil(uv[:, 0].max())
        assert rows.min() >= np.floor(uv[:, 1].min()) and rows.max() <= np.ceil(uv[:, 1].max())


def test_render_background_and_shading():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    K, RT = look_at_camera([0, 0.5, 2.0], size=48)
    (image,) = render_mesh(sphere.vertices, sphere.faces, [(K, RT)], size=48)
    assert np.all(image[0, 0] == 255) and np.all(image[-1, -1] == 255)
    mask = np.any(image < 255, axis=2)
    # silhouette area matches the projected disc, pi * (f * r / d)^2 approx.
    f, d = K[0, 0], np.linalg.norm([0, 0.5, 2.0])
    radius_px = f * 0.3 / np.sqrt(d**2 - 0.3**2)
    assert mask.sum() == pytest.approx(np.pi * radius_px**2, rel=0.08)
    # shaded: not a flat colour, grey-blue (blue channel brightest)
    obj = image[mask].astype(int)
    assert obj.std(axis=0).max() > 5
    assert np.all(obj[:, 2] >= obj[:, 0])


def test_render_is_two_sided_and_checks_cameras():
    # flipped winding still renders
    box = trimesh.creation.box(extents=[0.5, 0.5, 0.5])
    cams = default_cameras(2, size=32)
    a = render_mesh(box.vertices, box.faces, cams, size=32)
    b = render_mesh(box.vertices, box.faces[:, ::-1], cams, size=32)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="camera 0"):
        render_mesh(box.vertices, box.faces, [(np.eye(3), np.eye(3))], size=32)
