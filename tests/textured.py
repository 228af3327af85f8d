"""Textured test meshes written by hand (no exporter in the loop), with their expected colours.

The texture is four coloured quadrants. On every mesh here the texture
coordinates are a known linear function of the position, so the colour a
surface point must show is known without any renderer or loader.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

# quadrant colours of the texture image: (top-left, top-right, bottom-left, bottom-right)
RED, GREEN, BLUE, YELLOW = (1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0), (1.0, 1.0, 0)


def quadrant_texture(n: int = 32) -> np.ndarray:
    """(2n, 2n, 3) uint8: top-left red, top-right green, bottom-left blue, bottom-right yellow."""
    img = np.zeros((2 * n, 2 * n, 3), np.uint8)
    for (rows, cols), color in zip([(slice(0, n), slice(0, n)), (slice(0, n), slice(n, None)),
                                    (slice(n, None), slice(0, n)), (slice(n, None), slice(n, None))],
                                   [RED, GREEN, BLUE, YELLOW]):
        img[rows, cols] = np.array(color) * 255
    return img


def quadrant_color(u: float, v: float) -> tuple[float, float, float]:
    """Colour of the quadrant texture at (u, v) in [0, 1]^2, v up (OBJ convention)."""
    top, right = v > 0.5, u > 0.5
    return {(True, False): RED, (True, True): GREEN, (False, False): BLUE, (False, True): YELLOW}[(top, right)]


# the unit cube's faces: (outward normal, u axis, v axis); uv = (p . u + 0.5, p . v + 0.5)
CUBE_FACES = [
    ((0, 0, 1), (1, 0, 0), (0, 1, 0)),
    ((0, 0, -1), (-1, 0, 0), (0, 1, 0)),
    ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
    ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
    ((0, 1, 0), (1, 0, 0), (0, 0, -1)),
    ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
]


def cube_color(point) -> tuple[float, float, float]:
    """Expected texture colour at a point on the surface of the cube [-0.5, 0.5]^3 (away from edges)."""
    p = np.asarray(point, float)
    axis = int(np.argmax(np.abs(p)))
    for n, u, v in CUBE_FACES:
        if n[axis] == np.sign(p[axis]):
            return quadrant_color(p @ np.array(u) + 0.5, p @ np.array(v) + 0.5)
    raise AssertionError("unreachable")


def write_textured_cube_obj(folder: Path, *, texture_ref: str = "../images/texture0.png",
                            kd: str = "0.2 0.2 0.2") -> Path:
    """ShapeNet-v2-like layout: folder/models/model_normalized.{obj,mtl}, folder/images/texture0.png.

    The unit cube centred at 0, 4 vertices and 2 triangles per face, with the
    quadrant texture over each face (see CUBE_FACES). Returns the obj path.
    """
    models, images = folder / "models", folder / "images"
    models.mkdir(parents=True, exist_ok=True)
    images.mkdir(parents=True, exist_ok=True)
    Image.fromarray(quadrant_texture()).save(images / "texture0.png")
    (models / "model_normalized.mtl").write_text(f"newmtl tex\nKa 0 0 0\nKd {kd}\nmap_Kd {texture_ref}\n")
    lines = ["mtllib model_normalized.mtl", "usemtl tex"]
    faces = []
    for k, (n, u, v) in enumerate(CUBE_FACES):
        n, u, v = (np.array(a, float) for a in (n, u, v))
        for su, sv in [(-1, -1), (1, -1), (1, 1), (-1, 1)]:
            p = 0.5 * n + 0.5 * su * u + 0.5 * sv * v
            lines.append("v {:.6f} {:.6f} {:.6f}".format(*p))
            lines.append(f"vt {(su + 1) / 2:.6f} {(sv + 1) / 2:.6f}")
        a = 4 * k + 1  # counter-clockwise seen from outside, since u x v = n
        faces += [f"f {a}/{a} {a + 1}/{a + 1} {a + 2}/{a + 2}", f"f {a}/{a} {a + 2}/{a + 2} {a + 3}/{a + 3}"]
    path = models / "model_normalized.obj"
    path.write_text("\n".join(lines + faces) + "\n")
    return path


def write_textured_quad_gltf(path: Path) -> Path:
    """A glTF 2.0 file (buffers and image embedded as data URIs): the square [-0.5, 0.5]^2 at z = 0
    with the quadrant texture, glTF texture coordinates (origin at the image's top-left corner)."""
    positions = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]], np.float32)
    texcoords = np.stack([positions[:, 0] + 0.5, 0.5 - positions[:, 1]], axis=1).astype(np.float32)
    indices = np.array([0, 1, 2, 0, 2, 3], np.uint16)
    blob = positions.tobytes() + texcoords.tobytes() + indices.tobytes()
    png = io.BytesIO()
    Image.fromarray(quadrant_texture()).save(png, format="PNG")

    def uri(data: bytes, mime: str) -> str:
        return f"data:{mime};base64," + base64.b64encode(data).decode()

    doc = {
        "asset": {"version": "2.0"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "indices": 2, "material": 0}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
        "textures": [{"source": 0}],
        "images": [{"uri": uri(png.getvalue(), "image/png")}],
        "buffers": [{"byteLength": len(blob), "uri": uri(blob, "application/octet-stream")}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 48},
                        {"buffer": 0, "byteOffset": 48, "byteLength": 32},
                        {"buffer": 0, "byteOffset": 80, "byteLength": 12}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC3",
             "min": [-0.5, -0.5, 0], "max": [0.5, 0.5, 0]},
            {"bufferView": 1, "componentType": 5126, "count": 4, "type": "VEC2"},
            {"bufferView": 2, "componentType": 5123, "count": 6, "type": "SCALAR"},
        ],
    }
    path.write_text(json.dumps(doc))
    return path


def colors_at_points(mesh, appearance, points: np.ndarray) -> np.ndarray:
    """Appearance colours at surface points (N, 3), through the face each lies on (brute force)."""
    tri = np.asarray(mesh.vertices)[np.asarray(mesh.faces)]  # (F, 3, 3)
    out = []
    for p in np.asarray(points, float):
        # barycentric coordinates of p in every face; keep the face that contains it
        e1, e2, d = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], p - tri[:, 0]
        d11, d12, d22 = (e1 * e1).sum(1), (e1 * e2).sum(1), (e2 * e2).sum(1)
        p1, p2 = (d * e1).sum(1), (d * e2).sum(1)
        det = d11 * d22 - d12 ** 2
        b1, b2 = (d22 * p1 - d12 * p2) / det, (d11 * p2 - d12 * p1) / det
        bary = np.stack([1 - b1 - b2, b1, b2], axis=1)
        off_plane = np.linalg.norm(tri[:, 0] + b1[:, None] * e1 + b2[:, None] * e2 - p, axis=1)
        ok = np.flatnonzero((bary > -1e-9).all(axis=1) & (off_plane < 1e-6))
        assert len(ok), f"{p} is on no face"
        out.append(appearance.colors_at(mesh.faces, ok[:1], bary[ok[:1]])[0])
    return np.array(out)
