"""CPU rendering of meshes into choy2016-style views by ray casting.

Cameras follow the convention of `onet.data.formats`: RT = [R | t] maps world
to camera coordinates, the camera looks along +z with x right and y down, K is
in pixels, and pixel [row, col] is the square [col, col + 1) x [row, row + 1)
in image coordinates (so its centre is (col + 0.5, row + 0.5)). The world is
y-up, as ShapeNet models are.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import trimesh

from onet.geometry.mesh import check_mesh_arrays

__all__ = ["default_cameras", "look_at_camera", "render_mesh", "camera_centers"]

# camera placement shared by all default views: the bounding sphere of a
# normalised object (radius sqrt(3)/2 for the unit cube) fills about 95% of the
# half image width at this distance and focal length
CAMERA_DISTANCE = 2.0
_HALF_FOV_TAN = np.tan(np.arcsin(np.sqrt(3) / 2 / CAMERA_DISTANCE)) / 0.95

BACKGROUND = np.array([255, 255, 255], dtype=np.uint8)
BASE_COLOR = np.array([0.62, 0.67, 0.78])  # neutral grey-blue
AMBIENT, DIFFUSE = 0.35, 0.65
# light direction (towards the light) in camera coordinates: from above left, behind the viewer
_LIGHT_CAM = np.array([-0.3, -0.6, -0.75]) / np.linalg.norm([-0.3, -0.6, -0.75])


def look_at_camera(eye: np.ndarray, *, size: int = 137, target=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Camera at `eye` looking at `target` with world +y up in the image.

    Returns:
        K float32 (3, 3) in pixels, RT float32 (3, 4) world to camera
    """
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    if np.linalg.norm(forward) == 0:
        raise ValueError("eye and target must differ")
    z = forward / np.linalg.norm(forward)
    x = np.cross(z, [0.0, 1.0, 0.0])
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("the viewing direction must not be vertical (world up is +y)")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # points down in the image, since x is right and z forward
    R = np.stack([x, y, z])
    t = -R @ eye
    f = size / 2 / _HALF_FOV_TAN
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]])
    return K.astype(np.float32), np.concatenate([R, t[:, None]], axis=1).astype(np.float32)


def default_cameras(n_views: int = 24, *, size: int = 137, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Views around a normalised object, like the choy2016 renderings.

    Random azimuths in [0, 360) degrees and elevations in [20, 35] degrees at a
    fixed distance of CAMERA_DISTANCE from the origin, all looking at it.

    Returns:
        [(K float32 (3, 3), RT float32 (3, 4))] * n_views
    """
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    rng = np.random.default_rng(seed)
    azimuth = rng.uniform(0, 2 * np.pi, n_views)
    elevation = np.deg2rad(rng.uniform(20, 35, n_views))
    eyes = CAMERA_DISTANCE * np.stack(
        [np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth)], axis=1
    )
    return [look_at_camera(eye, size=size) for eye in eyes]


def _check_cameras(cameras) -> tuple[np.ndarray, np.ndarray]:
    Ks, RTs = [], []
    for i, cam in enumerate(cameras):
        K, RT = np.asarray(cam[0], dtype=np.float64), np.asarray(cam[1], dtype=np.float64)
        if K.shape != (3, 3) or RT.shape != (3, 4):
            raise ValueError(f"camera {i}: K must be (3, 3) and RT (3, 4), got {K.shape} and {RT.shape}")
        Ks.append(K)
        RTs.append(RT)
    if not Ks:
        raise ValueError("cameras must not be empty")
    return np.stack(Ks), np.stack(RTs)


def camera_centers(cameras: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """World positions of the camera centres, float64 (n_views, 3): C = -R^T t."""
    _, RT = _check_cameras(cameras)
    return -np.einsum("vji,vj->vi", RT[:, :, :3], RT[:, :, 3])


def render_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    cameras: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    size: int = 137,
) -> list[np.ndarray]:
    """Render a mesh from each camera: Lambertian + ambient shading, white background.

    One ray through each pixel centre of every view, all cast in a single
    batch (embree through trimesh when embreex is installed). Faces are
    shaded two-sided with their face normal, lit by a light fixed relative to
    each camera.

    Args:
        vertices: (V, 3) float
        faces: (F, 3) int
        cameras: [(K (3, 3), RT (3, 4))] * n_views
    Returns:
        [uint8 (size, size, 3)] * n_views
    """
    vertices, faces = check_mesh_arrays(vertices, faces)
    K, RT = _check_cameras(cameras)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    n_views = len(K)
    images = np.empty((n_views, size, size, 3), dtype=np.uint8)
    images[:] = BACKGROUND
    if len(faces) == 0:
        return list(images)

    R = RT[:, :, :3]  # (V, 3, 3)
    centers = camera_centers(cameras)  # (V, 3)
    rows, cols = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
    pix = np.stack([cols, rows, np.ones_like(rows)], axis=-1).reshape(-1, 3)  # (P, 3) homogeneous (u, v, 1)
    # ray direction in world coordinates: R^T K^-1 (u, v, 1), one 3x3 map per view
    pix_to_world = np.linalg.inv(K).transpose(0, 2, 1) @ R  # (V, 3, 3), applied to row vectors
    directions = (pix[None] @ pix_to_world).astype(np.float32)  # (V, P, 3)
    directions /= np.sqrt((directions * directions).sum(axis=-1, keepdims=True))
    origins = np.broadcast_to(centers[:, None, :].astype(np.float32), directions.shape)

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    tri = mesh.ray.intersects_first(origins.reshape(-1, 3), directions.reshape(-1, 3))  # (V * P,), -1 = miss
    hit = np.flatnonzero(tri >= 0)
    if len(hit) == 0:
        return list(images)

    # shade the hit pixels only
    view = hit // (size * size)
    n = np.asarray(mesh.face_normals, dtype=np.float32)[tri[hit]]  # (H, 3)
    d = directions.reshape(-1, 3)[hit]
    light = (R.transpose(0, 2, 1) @ _LIGHT_CAM).astype(np.float32)[view]  # (H, 3) towards the light, world
    # two-sided: a normal facing away from the viewer is flipped
    towards_viewer = -np.sign((n * d).sum(axis=1))
    lambert = np.clip(towards_viewer * (n * light).sum(axis=1), 0, 1)
    color = 255 * BASE_COLOR[None] * (AMBIENT + DIFFUSE * lambert)[:, None]
    images.reshape(-1, 3)[hit] = color.round().clip(0, 255).astype(np.uint8)
    return list(images)
