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


# --------------------------------------------------------------------------- colours and depth


def _quad(n_sub: int = 1):
    """The square [-0.4, 0.4]^2 at z = 0 (subdivided), uv = (x, y) / 0.8 + 0.5."""
    quad = trimesh.Trimesh([[-0.4, -0.4, 0], [0.4, -0.4, 0], [0.4, 0.4, 0], [-0.4, 0.4, 0]], [[0, 1, 2], [0, 2, 3]])
    for _ in range(n_sub):
        quad = quad.subdivide()
    uv = quad.vertices[:, :2] / 0.8 + 0.5
    return quad, uv


def test_texture_colours_show_at_their_pixels():
    from onet.geometry.appearance import Appearance
    from textured import BLUE, GREEN, RED, YELLOW, quadrant_texture

    quad, uv = _quad(n_sub=2)  # the quadrant borders do not coincide with edges
    app = Appearance(face_colors=np.ones((len(quad.faces), 3)), uv=uv,
                     face_texture=np.zeros(len(quad.faces), int), textures=(quadrant_texture(),))
    K, RT = look_at_camera([0.3, 0.2, 2.0], size=96)
    image = render_mesh(quad.vertices, quad.faces, [(K, RT)], size=96, appearance=app)[0]
    grey = render_mesh(quad.vertices, quad.faces, [(K, RT)], size=96)[0]
    measured = []
    for (x, y), color in zip([(-0.2, 0.2), (0.2, 0.2), (-0.2, -0.2), (0.2, -0.2)], [RED, GREEN, BLUE, YELLOW]):
        u, v = _project(K, RT, np.array([x, y, 0.0]))
        pixel = image[int(v), int(u)].astype(float)
        # one flat face, one light: every pixel is its texel times the same shading factor
        shade = pixel.max() / 255
        np.testing.assert_allclose(pixel, 255 * shade * np.array(color), atol=1.0)
        measured.append(shade)
        assert not np.array_equal(grey[int(v), int(u)], image[int(v), int(u)])
    assert max(measured) - min(measured) < 1 / 255 and min(measured) > 0.5


def test_vertex_colours_are_interpolated():
    from onet.geometry.appearance import Appearance

    tri = np.array([[-0.5, -0.4, 0], [0.5, -0.4, 0], [0.0, 0.5, 0]])
    app = Appearance(face_colors=np.ones((1, 3)), vertex_colors=np.eye(3))
    K, RT = look_at_camera([0, 0, 2.0], size=64)
    image = render_mesh(tri, [[0, 1, 2]], [(K, RT)], size=64, appearance=app)[0].astype(float)
    # at each pixel centre inside the triangle, the colour is its barycentric coordinates (times the shading)
    rows, cols = np.nonzero(np.any(image < 255, axis=2))
    centre = -RT[:, :3].T @ RT[:, 3]
    rays = np.stack([cols + 0.5, rows + 0.5, np.ones(len(rows))], axis=1) @ np.linalg.inv(K).T @ RT[:, :3]
    hits = centre + rays * (-centre[2] / rays[:, 2:])  # on the plane z = 0
    bary = np.linalg.solve(np.vstack([tri[:, :2].T, np.ones(3)]), np.vstack([hits[:, :2].T, np.ones(len(hits))])).T
    inner = (bary > 0.05).all(axis=1)  # away from the edges, where the ray may hit at a pixel's border
    assert inner.sum() > 200
    pixel = image[rows[inner], cols[inner]]
    np.testing.assert_allclose(pixel / pixel.sum(axis=1, keepdims=True), bary[inner], atol=0.02)


def test_fine_texture_seen_small_is_averaged_not_aliased():
    from onet.geometry.appearance import Appearance

    quad, uv = _quad(n_sub=0)
    checker = (np.indices((512, 512)).sum(axis=0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    app = Appearance(face_colors=np.ones((2, 3)), uv=uv, face_texture=np.zeros(2, int), textures=(checker,))
    K, RT = look_at_camera([0, 0, 2.0], size=48)  # the square covers about 20 x 20 pixels
    image = render_mesh(quad.vertices, quad.faces, [(K, RT)], size=48, appearance=app)[0].astype(float)
    inside = image[20:28, 20:28, 0]
    assert inside.std() < 3  # a 512-texel checkerboard over 20 pixels is flat grey, not noise
    flat = render_mesh(quad.vertices, quad.faces, [(K, RT)], size=48,
                       appearance=Appearance(face_colors=np.full((2, 3), 0.5)))[0].astype(float)
    assert inside.mean() == pytest.approx(flat[20:28, 20:28, 0].mean(), abs=3)


def test_depth_reprojects_onto_the_surface():
    from onet.geometry.render import depth_to_points, render_views

    half = np.array([0.3, 0.2, 0.45])
    box = trimesh.creation.box(extents=2 * half)
    box.apply_transform(trimesh.transformations.rotation_matrix(0.4, [0, 1, 0]))
    cams = default_cameras(5, size=64, seed=2)
    renders = render_views(box.vertices, box.faces, cams, size=64)
    assert renders.depth.shape == (5, 64, 64) and renders.depth.dtype == np.float32
    rot = trimesh.transformations.rotation_matrix(-0.4, [0, 1, 0])[:3, :3]
    for (K, RT), depth, image in zip(cams, renders.depth, renders.images):
        # depth where the image shows the object, and only there
        np.testing.assert_array_equal(depth > 0, np.any(image < 255, axis=2))
        points = depth_to_points(depth, K, RT) @ rot.T  # back into the box's frame
        # on the surface of an axis-aligned box: the largest |p_i| - h_i is 0
        gap = np.max(np.abs(points) - half, axis=1)
        assert np.abs(gap).max() < 1e-5
        # depth is z along the camera axis, not the distance along the ray
        cam_z = (depth_to_points(depth, K, RT) @ RT[:, :3].T + RT[:, 3])[:, 2]
        np.testing.assert_allclose(cam_z, depth[depth > 0], rtol=1e-6)


def test_rays_outside_the_projected_box_are_not_cast_and_change_nothing(monkeypatch):
    from onet.data.synthetic import make_shape
    from onet.geometry import render

    shapes = [make_shape(c, s) for c, s in (("chair", 0), ("lamp", 1), ("mug", 2))]
    cube = trimesh.creation.box(extents=[0.1, 0.1, 0.1])
    cube.apply_translation([0.25, 0.1, -0.2])
    meshes = [(s.mesh.vertices, s.mesh.faces) for s in shapes] + [(cube.vertices, cube.faces)]

    def cameras(v):  # the default cameras, and one inside the mesh's box (every pixel is cast there)
        centre = (v.min(0) + v.max(0)) / 2
        return default_cameras(5, size=48, seed=1) + [look_at_camera(centre + 0.01, size=48, target=centre)]

    culled = [render.render_views(v, f, cameras(v), size=48) for v, f in meshes]
    fractions = [render._box_pixels(v.min(0), v.max(0), *map(np.stack, zip(*cameras(v))), 48).mean(axis=(1, 2))
                 for v, _ in meshes]
    monkeypatch.setattr(render, "_box_pixels", lambda lo, hi, K, RT, size: np.ones((len(K), size, size), bool))
    for (v, f), mine in zip(meshes, culled):
        every = render.render_views(v, f, cameras(v), size=48)
        assert (every.depth > 0).any()
        np.testing.assert_array_equal(mine.images, every.images)
        np.testing.assert_array_equal(mine.depth, every.depth)
    assert all(fr[-1] == 1.0 for fr in fractions)  # the camera inside the box
    assert fractions[-1][:-1].max() < 0.1  # the small cube: a few pixels of each outside view
    assert all(fr[:-1].max() < 1.0 for fr in fractions)
