"""Thumbnails for the report: meshes, point clouds and images as small PNGs, without OpenGL.

Meshes go through the ray caster of onet.geometry.render; point clouds are
splatted with a z-buffer from the same camera, so an input cloud, the
predicted mesh and the reference share one view. Every thumbnail is written
atomically and is skipped when it is newer than its source (a rerun of
`onet report` only renders what changed).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from onet.geometry.mesh_files import read_mesh
from onet.geometry.render import look_at_camera, render_mesh
from onet.utils.io import write_bytes_atomic

# a three-quarter view from above that frames the normalised object (unit cube)
EYE = np.array([1.2, 0.9, 1.2])
POINT_COLOR = np.array([0.62, 0.67, 0.78])
_LIGHT_CAM = np.array([-0.3, -0.6, -0.75]) / np.linalg.norm([-0.3, -0.6, -0.75])


def is_fresh(target: Path, *sources: Path) -> bool:
    """True when `target` exists and is at least as new as every existing source."""
    if not target.is_file():
        return False
    mtime = target.stat().st_mtime
    return all(mtime >= s.stat().st_mtime for s in sources if s.is_file())


def save_png(path: Path, image: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())


def mesh_thumbnail(vertices: np.ndarray, faces: np.ndarray, *, size: int = 160) -> np.ndarray:
    """uint8 (size, size, 3) shaded rendering; an empty mesh is a blank white image."""
    if len(faces) == 0:
        return np.full((size, size, 3), 255, np.uint8)
    return render_mesh(np.asarray(vertices, np.float64), np.asarray(faces), [look_at_camera(EYE, size=size)],
                       size=size)[0]


def points_thumbnail(points: np.ndarray, normals: np.ndarray | None = None, *, size: int = 160,
                     radius: int | None = None) -> np.ndarray:
    """Splat points (N, 3) as discs of `radius` pixels (default: larger for sparse clouds), nearest in front.

    Shaded by the normal when given (two-sided Lambert, as the mesh renderer), else by depth.
    Returns uint8 (size, size, 3) on white.
    """
    points = np.asarray(points, np.float64).reshape(-1, 3)
    image = np.full((size, size, 3), 255, np.uint8)
    keep = np.isfinite(points).all(axis=1)
    points = points[keep]
    if len(points) == 0:
        return image
    K, RT = (a.astype(np.float64) for a in look_at_camera(EYE, size=size))
    cam = points @ RT[:, :3].T + RT[:, 3]  # (N, 3) camera coordinates, +z forward
    front = cam[:, 2] > 1e-6
    cam = cam[front]
    uv = cam @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    if normals is not None:
        n = np.asarray(normals, np.float64).reshape(-1, 3)[keep][front] @ RT[:, :3].T
        shade = 0.35 + 0.65 * np.abs(n @ _LIGHT_CAM) / np.maximum(np.linalg.norm(n, axis=1), 1e-12)
    else:
        depth = cam[:, 2]
        span = max(float(np.ptp(depth)), 1e-9)
        shade = 1.0 - 0.6 * (depth - depth.min()) / span
    if radius is None:
        radius = 1 if len(points) > 20000 else (2 if len(points) > 2000 else 3)
    offsets = [(dx, dy) for dx in range(-radius + 1, radius) for dy in range(-radius + 1, radius)
               if dx * dx + dy * dy < radius * radius]
    # far points first, so nearer ones overwrite them (a painter's z-buffer)
    order = np.argsort(-cam[:, 2])
    col = np.floor(uv[order, 0]).astype(np.int64)
    row = np.floor(uv[order, 1]).astype(np.int64)
    color = (255 * POINT_COLOR[None] * shade[order, None]).round().clip(0, 255).astype(np.uint8)
    for dx, dy in offsets:
        r, c = row + dy, col + dx
        ok = (r >= 0) & (r < size) & (c >= 0) & (c < size)
        image[r[ok], c[ok]] = color[ok]
    return image


def image_thumbnail(path: Path, *, size: int = 160) -> np.ndarray:
    """An image file as RGB uint8 (size, size, 3), transparency on white."""
    with Image.open(path) as img:
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(background, img).convert("RGB")
        return np.asarray(rgb.resize((size, size), Image.BILINEAR))


def read_points(path: Path) -> np.ndarray:
    """Vertices of a point-cloud PLY, such as the input copies `onet generate` writes. Returns (N, 3)."""
    vertices, _ = read_mesh(path, fmt="ply")
    return vertices
