"""Procedurally coloured synthetic meshes, written as users' files are: a texture map through
UVs (OBJ + MTL + PNG), vertex colours (PLY) and face colours (PLY).

Shapes come from `onet.data.synthetic.make_shape`; the colours are made here,
so nothing outside the repository is needed. Used by scripts/make_render_figure.py
and scripts/bench_preprocess.py.

    from textured_shapes import write_textured_shapes
    paths = write_textured_shapes("/tmp/shapes")   # {name: mesh file}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from PIL import Image
from scipy.ndimage import zoom

from onet.data.synthetic import make_shape


def smooth_noise(shape: tuple[int, int], cells: int, rng: np.random.Generator) -> np.ndarray:
    """Value noise in [0, 1]: a cells x cells random grid, cubic-upsampled to `shape`, tiling."""
    grid = rng.random((cells, cells))
    grid = np.pad(grid, 2, mode="wrap")  # wrap so the texture tiles without seams
    up = zoom(grid, (shape[0] / cells, shape[1] / cells), order=3)
    pad_r, pad_c = 2 * shape[0] // cells, 2 * shape[1] // cells
    return np.clip(up[pad_r:pad_r + shape[0], pad_c:pad_c + shape[1]], 0, 1)


def wood_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) uint8 wood grain: stretched rings, light and dark bands, fine noise."""
    y, x = np.mgrid[0:size, 0:size] / size
    warp = smooth_noise((size, size), 4, rng)
    rings = np.sin(2 * np.pi * (12 * x + 3 * warp + 0.5 * np.sin(2 * np.pi * y)))
    t = 0.5 + 0.5 * rings
    t = 0.75 * t ** 3 + 0.25 * smooth_noise((size, size), 64, rng)
    light, dark = np.array([0.80, 0.60, 0.37]), np.array([0.42, 0.25, 0.12])
    return (255 * (light + (dark - light) * t[..., None])).round().astype(np.uint8)


def fabric_texture(size: int, rng: np.random.Generator, color=(0.25, 0.45, 0.65)) -> np.ndarray:
    """(size, size, 3) uint8 woven fabric: a fine checker of two shades with noise."""
    y, x = np.mgrid[0:size, 0:size]
    weave = ((x // 4 + y // 4) % 2) * 0.15 + 0.1 * smooth_noise((size, size), 32, rng)
    base = np.array(color)
    return (255 * np.clip(base * (0.85 + weave[..., None]), 0, 1)).round().astype(np.uint8)


def box_uv(mesh: trimesh.Trimesh, *, repeat: float = 2.0) -> trimesh.Trimesh:
    """A copy with one vertex per face corner and box-projected UVs: each face takes the two
    coordinates across its dominant normal axis (scaled by `repeat`)."""
    m = mesh.copy()
    m.unmerge_vertices()
    axis = np.abs(m.face_normals).argmax(axis=1)  # (F,)
    keep = np.array([[1, 2], [0, 2], [0, 1]])[axis]  # the two in-plane axes per face
    corners = m.vertices[m.faces]  # (F, 3, 3)
    uv = np.take_along_axis(corners, keep[:, None, :].repeat(3, axis=1), axis=2)  # (F, 3, 2)
    out_uv = np.zeros((len(m.vertices), 2))
    out_uv[m.faces.reshape(-1)] = (uv.reshape(-1, 2) + 0.5) * repeat
    m.visual = trimesh.visual.TextureVisuals(uv=out_uv)
    return m


def write_textured_shapes(folder: str | Path, *, seed: int = 0, texture_size: int = 512) -> dict[str, Path]:
    """Write a few coloured synthetic meshes under folder/<category>/<name>/, one per kind of colour.

    Returns:
        {name: mesh file path}
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    out = {}

    def textured(category: str, texture: np.ndarray) -> Path:
        mesh = box_uv(make_shape(category, rng).mesh)
        mesh.visual = trimesh.visual.TextureVisuals(uv=mesh.visual.uv, image=Image.fromarray(texture))
        path = folder / category / "textured" / "model.obj"
        path.parent.mkdir(parents=True, exist_ok=True)
        mesh.export(path)  # writes model.obj, material.mtl and material_0.png beside it
        return path

    out["chair (texture map)"] = textured("chair", wood_texture(texture_size, rng))
    out["sofa (texture map)"] = textured("sofa", fabric_texture(texture_size, rng))

    # vertex colours: glazed stripes by height, with a smooth gradient
    mug = make_shape("mug", rng).mesh.subdivide_to_size(0.02)  # vertices along the walls, for the stripes
    h = (mug.vertices[:, 1] - mug.vertices[:, 1].min()) / np.ptp(mug.vertices[:, 1])
    stripe = (np.floor(h * 6) % 2)[:, None]
    colors = (1 - stripe) * np.array([0.85, 0.82, 0.75]) + stripe * np.array([0.70, 0.20, 0.18])
    colors = colors * (0.8 + 0.2 * h[:, None])
    mug.visual = trimesh.visual.ColorVisuals(mug, vertex_colors=(255 * colors).round().astype(np.uint8))
    path = folder / "mug" / "vertex_colors" / "model.ply"
    path.parent.mkdir(parents=True, exist_ok=True)
    mug.export(path)
    out["mug (vertex colours)"] = path

    # face colours: a lamp whose shade (upper part) is red and whose stand is dark metal
    lamp = make_shape("lamp", rng).mesh.copy()
    upper = lamp.triangles_center[:, 1] > np.quantile(lamp.vertices[:, 1], 0.6)
    face_colors = np.where(upper[:, None], [200, 60, 40], [70, 70, 80])
    lamp.visual = trimesh.visual.ColorVisuals(lamp, face_colors=face_colors.astype(np.uint8))
    path = folder / "lamp" / "face_colors" / "model.ply"
    path.parent.mkdir(parents=True, exist_ok=True)
    lamp.export(path)
    out["lamp (face colours)"] = path
    return out
