import numpy as np
import pytest

from onet.geometry.appearance import Appearance, mip_pyramid, sample_texture


def _quadrants(n: int = 8) -> np.ndarray:
    """(2n, 2n) RGB image: top-left red, top-right green, bottom-left blue, bottom-right yellow."""
    img = np.zeros((2 * n, 2 * n, 3), np.uint8)
    img[:n, :n] = (255, 0, 0)
    img[:n, n:] = (0, 255, 0)
    img[n:, :n] = (0, 0, 255)
    img[n:, n:] = (255, 255, 0)
    return img


def test_sample_texture_uv_convention_and_wrap():
    img = _quadrants()
    uv = np.array([[0.25, 0.75], [0.75, 0.75], [0.25, 0.25], [0.75, 0.25],  # v up: top row is v > 0.5
                   [1.25, 0.75], [-0.25, -0.75]])  # repeat outside [0, 1)
    got = sample_texture(img, uv)
    expected = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 0], [1, 1, 0]], np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # a texel centre returns the texel exactly; halfway between two texels, their mean
    ramp = np.zeros((1, 4, 3), np.uint8)
    ramp[0, :, 0] = [0, 40, 80, 120]
    centre = sample_texture(ramp, np.array([[(1 + 0.5) / 4, 0.5]]))
    assert centre[0, 0] * 255 == pytest.approx(40, abs=1e-3)
    between = sample_texture(ramp, np.array([[2 / 4, 0.5]]))
    assert between[0, 0] * 255 == pytest.approx(60, abs=1e-3)


def test_mip_pyramid_averages():
    img = np.zeros((4, 6, 3), np.uint8)
    img[::2, ::2] = 200  # one bright texel per 2x2 block
    levels = mip_pyramid(img)
    assert [lv.shape[:2] for lv in levels] == [(4, 6), (2, 3), (1, 1)]
    np.testing.assert_array_equal(levels[1], 50)
    # the odd last column is dropped before averaging the 2x3 level to 1x1
    np.testing.assert_array_equal(levels[2], 50)


def test_colors_at_combines_face_vertex_and_texture():
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0.1, 0.9], [0.4, 0.9], [0.4, 0.6], [0.1, 0.6]])  # all in the red quadrant
    app = Appearance(face_colors=np.array([[1.0, 1.0, 1.0], [0.5, 0.5, 0.5]]),
                     vertex_colors=np.array([[1, 1, 1], [0, 1, 1], [1, 1, 1], [1, 1, 1.0]]),
                     uv=uv, face_texture=np.array([0, -1]), textures=(_quadrants(),))
    bary = np.array([[1, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]])
    got = app.colors_at(faces, np.array([0, 0, 1]), bary)
    np.testing.assert_allclose(got[0], [1, 0, 0], atol=1e-6)  # white vertex on red texels
    np.testing.assert_allclose(got[1], [0.5, 0, 0], atol=1e-6)  # halfway to a cyan vertex: red halves
    np.testing.assert_allclose(got[2], [0.5, 0.5, 0.5], atol=1e-6)  # untextured face: its colour only


def test_mip_level_follows_screen_area():
    # a 64x64 one-texel checkerboard over the whole uv square, on one face of uv area 1/2
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    faces = np.array([[0, 1, 2]])
    app = Appearance(face_colors=np.ones((1, 3)), uv=np.array([[0, 0], [1, 0], [0, 1.0]]),
                     face_texture=np.array([0]), textures=(checker,))
    rng = np.random.default_rng(0)
    bary = rng.dirichlet(np.ones(3), size=500)
    big = app.colors_at(faces, np.zeros(500, int), bary, screen_area=np.full(500, 64 * 64 / 2))  # 1 texel/pixel
    small = app.colors_at(faces, np.zeros(500, int), bary, screen_area=np.full(500, 8 * 8 / 2))  # 8x8 texels/pixel
    assert big.std() > 0.1  # full resolution: black and white texels (blended by the bilinear lookup)
    np.testing.assert_allclose(small, 0.5, atol=0.02)  # averaged: grey


def test_appearance_checks_shapes_and_subsets():
    with pytest.raises(ValueError, match="face_colors"):
        Appearance(face_colors=np.ones((3, 4)))
    with pytest.raises(ValueError, match="uv and face_texture"):
        Appearance(face_colors=np.ones((1, 3)), uv=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="face_texture values"):
        Appearance(face_colors=np.ones((1, 3)), uv=np.zeros((3, 2)), face_texture=np.array([1]),
                   textures=(np.zeros((2, 2, 3), np.uint8),))
    app = Appearance(face_colors=np.eye(3), vertex_colors=np.arange(12).reshape(4, 3) / 12)
    sub = app.subset(np.array([2, 0]), np.array([1, 3]))
    np.testing.assert_array_equal(sub.face_colors, np.eye(3)[[2, 0]])
    np.testing.assert_allclose(sub.vertex_colors, (np.arange(12).reshape(4, 3) / 12)[[1, 3]])
    with pytest.raises(ValueError, match="per-vertex"):
        sub.check_mesh(5, 2)
