"""CPU rendering of meshes into choy2016-style views by ray casting.

Cameras follow the convention of `onet.data.formats`: RT = [R | t] maps world
to camera coordinates, the camera looks along +z with x right and y down, K is
in pixels, and pixel [row, col] is the square [col, col + 1) x [row, row + 1)
in image coordinates (so its centre is (col + 0.5, row + 0.5)). The world is
y-up, as ShapeNet models are.

Depth maps hold, per pixel, the camera-space z of the surface seen through
the pixel centre (the distance along the viewing axis, not along the ray),
in the units of the mesh, and 0 where the ray misses. So the surface point of
pixel [row, col] with depth d > 0 is, in world coordinates,

    X = R^T (d * K^-1 (col + 0.5, row + 0.5, 1) - t).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from onet.geometry.appearance import DEFAULT_COLOR, Appearance
from onet.geometry.mesh import check_mesh_arrays
from onet.utils.lazy import lazy_import

trimesh = lazy_import("trimesh")  # 1-1.5 s of start-up: imported on first use

__all__ = ["default_cameras", "look_at_camera", "render_mesh", "render_views", "Renders", "camera_centers",
           "depth_to_points"]

# camera placement shared by all default views: the bounding sphere of a
# normalised object (radius sqrt(3)/2 for the unit cube) fills about 95% of the
# half image width at this distance and focal length
CAMERA_DISTANCE = 2.0
_HALF_FOV_TAN = np.tan(np.arcsin(np.sqrt(3) / 2 / CAMERA_DISTANCE)) / 0.95

BACKGROUND = np.array([255, 255, 255], dtype=np.uint8)
BASE_COLOR = DEFAULT_COLOR.astype(np.float64)  # neutral grey-blue, for meshes without colours
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


@dataclass(frozen=True)
class Renders:
    """Renderings of one mesh from n views.

    images: uint8 (n, size, size, 3), white background.
    depth: float32 (n, size, size), camera-space z of the visible surface, 0 where
        there is none (see the module docstring).
    """

    images: np.ndarray
    depth: np.ndarray


def render_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    cameras: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    size: int = 137,
    appearance: Appearance | None = None,
) -> list[np.ndarray]:
    """The images of `render_views`: [uint8 (size, size, 3)] * n_views."""
    return list(render_views(vertices, faces, cameras, size=size, appearance=appearance).images)


def render_views(
    vertices: np.ndarray,
    faces: np.ndarray,
    cameras: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    size: int = 137,
    appearance: Appearance | None = None,
) -> Renders:
    """Render a mesh from each camera: its colours with Lambertian + ambient shading, and depth.

    One ray through each pixel centre of every view, all cast in a single
    batch (embree through trimesh when embreex is installed); the hit point is
    recomputed in float64 on the face embree reports, which gives the depth
    and the barycentric coordinates the colours are interpolated with. Faces
    are shaded two-sided with their face normal, lit by a light fixed
    relative to each camera. Without an appearance every face is BASE_COLOR.

    Args:
        vertices: (V, 3) float
        faces: (F, 3) int
        cameras: [(K (3, 3), RT (3, 4))] * n_views
        appearance: surface colours of this mesh (`onet.geometry.mesh_io.load_mesh_with_appearance`)
    Returns:
        Renders with images (n_views, size, size, 3) and depth (n_views, size, size)
    """
    vertices, faces = check_mesh_arrays(vertices, faces)
    K, RT = _check_cameras(cameras)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if appearance is not None:
        appearance.check_mesh(len(vertices), len(faces))
    n_views = len(K)
    images = np.empty((n_views, size, size, 3), dtype=np.uint8)
    images[:] = BACKGROUND
    depth = np.zeros((n_views, size, size), dtype=np.float32)
    if len(faces) == 0:
        return Renders(images, depth)

    R = RT[:, :, :3]  # (V, 3, 3)
    centers = camera_centers(cameras)  # (V, 3)
    rows, cols = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
    pix = np.stack([cols, rows, np.ones_like(rows)], axis=-1).reshape(-1, 3)  # (P, 3) homogeneous (u, v, 1)
    # only rays through the mesh's projected bounding box can hit it: cast those (each ray is
    # traced on its own, so the images are those of casting every ray)
    box = _box_pixels(vertices.min(0), vertices.max(0), K, RT, size).reshape(n_views, -1)  # (V, P)
    cast = np.flatnonzero(box)  # pixel indices into (V * P,)
    # ray direction in world coordinates: R^T K^-1 (u, v, 1), one 3x3 map per view
    pix_to_world = np.linalg.inv(K).transpose(0, 2, 1) @ R  # (V, 3, 3), applied to row vectors
    directions = np.concatenate([pix[box[v]] @ pix_to_world[v] for v in range(n_views)]).astype(np.float32)
    directions /= np.sqrt(_row_dot(directions, directions))[:, None]
    origins = centers.astype(np.float32)[cast // (size * size)]

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    tri = mesh.ray.intersects_first(origins, directions)  # (C,), -1 = miss
    k = np.flatnonzero(tri >= 0)
    if len(k) == 0:
        return Renders(images, depth)

    # shade the hit pixels only
    hit = cast[k]
    view = hit // (size * size)
    f = tri[k]
    d = directions[k].astype(np.float64)  # (H, 3) unit rays
    t, bary = _hit_points(vertices[faces[f]], centers[view], d)
    depth.reshape(-1)[hit] = t * _row_dot(d, R[view, 2])  # z of the hit in camera coordinates

    n = np.asarray(mesh.face_normals, dtype=np.float64)[f]  # (H, 3)
    light = (R.transpose(0, 2, 1) @ _LIGHT_CAM)[view]  # (H, 3) towards the light, world
    # two-sided: a normal facing away from the viewer is flipped
    towards_viewer = -np.sign(_row_dot(n, d))
    lambert = np.clip(towards_viewer * _row_dot(n, light), 0, 1)
    if appearance is None:
        albedo = np.broadcast_to(BASE_COLOR, (len(hit), 3))
    else:
        albedo = appearance.colors_at(faces, f, bary, screen_area=_screen_area(vertices[faces[f]], K[view], RT[view]))
    color = 255 * albedo * (AMBIENT + DIFFUSE * lambert)[:, None]
    images.reshape(-1, 3)[hit] = color.round().clip(0, 255).astype(np.uint8)
    return Renders(images, depth)


def _box_pixels(lo: np.ndarray, hi: np.ndarray, K: np.ndarray, RT: np.ndarray, size: int) -> np.ndarray:
    """bool (V, size, size): the pixels whose centre ray can meet the box [lo, hi] in each view.

    The rectangle around the box's 8 projected corners, one pixel wider on every side (the rays
    are traced in float32); every pixel of a view whose camera is not in front of all corners.
    """
    corners = np.stack(np.meshgrid(*zip(lo, hi), indexing="ij"), axis=-1).reshape(-1, 3)  # (8, 3)
    cam = np.einsum("vij,kj->vki", RT[:, :, :3], corners) + RT[:, None, :, 3]  # (V, 8, 3)
    proj = np.einsum("vij,vkj->vki", K, cam)
    in_front = (proj[..., 2] > 1e-9).all(axis=1)  # (V,): (u, v, 1) scaled by proj's z > 0 is ahead on the ray
    uv = proj[..., :2] / np.where(proj[..., 2:] > 1e-9, proj[..., 2:], 1.0)
    lo_uv = np.where(in_front[:, None], uv.min(axis=1) - 1, -np.inf)  # (V, 2) as (u, v)
    hi_uv = np.where(in_front[:, None], uv.max(axis=1) + 1, np.inf)
    centre = np.arange(size) + 0.5
    cols = (centre >= lo_uv[:, :1]) & (centre <= hi_uv[:, :1])  # (V, size) along u
    rows = (centre >= lo_uv[:, 1:]) & (centre <= hi_uv[:, 1:])
    return rows[:, :, None] & cols[:, None, :]


def _row_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dot products of the 3-vectors along the last axis. numpy reduces a length-3 last axis
    element by element (sum or einsum): three strided products are 4-8x faster on a view's rays."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _hit_points(tri: np.ndarray, origins: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray parameter and barycentric coordinates where rays meet the plane of the triangle they hit.

    Args:
        tri: (H, 3, 3) corners; origins: (H, 3); d: (H, 3) unit directions.
    Returns:
        t (H,) float64 distance along the ray, barycentric (H, 3) clipped into the triangle
    """
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    normal = np.cross(e1, e2)
    denom = _row_dot(d, normal)
    along = _row_dot(tri[:, 0] - origins, normal)
    grazing = np.abs(denom) <= 1e-9 * np.sqrt(_row_dot(normal, normal))
    # a ray (nearly) in the triangle's plane: take the centroid's distance along it
    centroid = (tri[:, 0] + tri[:, 1] + tri[:, 2]) / 3
    t = np.where(grazing, _row_dot(centroid - origins, d), along / np.where(grazing, 1.0, denom))
    p = origins + t[:, None] * d - tri[:, 0]
    # barycentric coordinates of p in (e1, e2): solve the 2x2 normal equations
    d11, d12, d22 = _row_dot(e1, e1), _row_dot(e1, e2), _row_dot(e2, e2)
    p1, p2 = _row_dot(p, e1), _row_dot(p, e2)
    det = d11 * d22 - d12 * d12
    b1 = (d22 * p1 - d12 * p2) / det
    b2 = (d11 * p2 - d12 * p1) / det
    bary = np.clip(np.stack([1 - b1 - b2, b1, b2], axis=1), 0, None)  # embree hits are float32: stay inside
    bary /= (bary[:, 0] + bary[:, 1] + bary[:, 2])[:, None]
    return t, bary


def _screen_area(tri: np.ndarray, K: np.ndarray, RT: np.ndarray) -> np.ndarray:
    """(H,) area in pixels of each hit triangle (H, 3, 3) in its view (K (H, 3, 3), RT (H, 3, 4))."""
    cam = np.einsum("hij,hkj->hki", RT[:, :, :3], tri) + RT[:, None, :, 3]  # (H, 3, 3) camera coordinates
    proj = np.einsum("hij,hkj->hki", K, cam)
    uv = proj[..., :2] / np.maximum(proj[..., 2:], 1e-9)  # corners behind the camera: a huge area, full detail
    e1, e2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    return 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])


def depth_to_points(depth: np.ndarray, K: np.ndarray, RT: np.ndarray) -> np.ndarray:
    """World points of the pixels with depth > 0 of one view, in row-major pixel order.

    Args:
        depth: (H, W) camera-space z per pixel, 0 where nothing was seen.
        K: (3, 3) intrinsics in pixels; RT: (3, 4) world to camera.
    Returns:
        (N, 3) float64, N = number of pixels with depth > 0
    """
    depth = np.asarray(depth, dtype=np.float64)
    K, RT = np.asarray(K, dtype=np.float64), np.asarray(RT, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth.shape}")
    rows, cols = np.nonzero(depth > 0)
    pix = np.stack([cols + 0.5, rows + 0.5, np.ones(len(rows))], axis=1)  # (N, 3) pixel centres
    cam = depth[rows, cols][:, None] * (pix @ np.linalg.inv(K).T)
    return (cam - RT[:, 3]) @ RT[:, :3]  # R^T (X_cam - t), as row vectors
