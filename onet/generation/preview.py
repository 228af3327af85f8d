"""PNG previews: the input image beside a shaded rendering of the predicted mesh (or point set)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from onet.geometry.render import look_at_camera, render_mesh
from onet.utils.io import atomic_path


# A fixed three-quarter view from above, at a distance that frames the unit cube.
PREVIEW_EYE = np.array([1.2, 0.9, 1.2])
# half-diagonal of the octahedron drawn for each point of a point set (box units)
POINT_SPLAT_RADIUS = 0.012


def point_splats(points: np.ndarray, radius: float = POINT_SPLAT_RADIUS) -> tuple[np.ndarray, np.ndarray]:
    """A small octahedron around each of points (N, 3), so a point set renders like a mesh.

    Returns vertices (6N, 3) float64 and faces (8N, 3) int64, wound outward.
    """
    corners = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float64)
    # one face per octant, ordered (x, y, z) or reversed so every normal points away from the centre
    octants = np.array([[0, 2, 4], [0, 5, 2], [0, 4, 3], [0, 3, 5], [1, 4, 2], [1, 2, 5], [1, 3, 4], [1, 5, 3]])
    points = np.asarray(points, np.float64).reshape(-1, 3)
    vertices = (points[:, None, :] + radius * corners).reshape(-1, 3)  # (6N, 3)
    faces = (octants[None] + 6 * np.arange(len(points))[:, None, None]).reshape(-1, 3)  # (8N, 3)
    return vertices, faces


def preview_image(vertices: np.ndarray, faces: np.ndarray, *, input_image: torch.Tensor | np.ndarray | None = None,
                  size: int = 128) -> Image.Image:
    """Input image (if any) and the mesh rendering side by side; vertices without faces (a point
    set) render as small octahedra; an empty mesh renders as blank white."""
    if not len(faces) and len(vertices):
        vertices, faces = point_splats(vertices)
    if len(faces):
        render = render_mesh(np.asarray(vertices, np.float64), np.asarray(faces), [look_at_camera(PREVIEW_EYE, size=size)],
                             size=size)[0]
    else:
        render = np.full((size, size, 3), 255, np.uint8)
    panels = []
    if input_image is not None:
        arr = input_image.permute(1, 2, 0).numpy() if isinstance(input_image, torch.Tensor) else input_image
        arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8) if arr.dtype != np.uint8 else arr
        panels.append(np.asarray(Image.fromarray(arr).resize((size, size), Image.BILINEAR)))
    panels.append(render)
    return Image.fromarray(np.concatenate(panels, axis=1))


def save_preview(path: str | Path, vertices, faces, *, input_image=None, size: int = 128) -> None:
    buf = io.BytesIO()
    preview_image(vertices, faces, input_image=input_image, size=size).save(buf, format="PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
