"""Loading raw meshes of any common format as one clean triangle soup.

Real collections (ShapeNet, users' CAD or scan exports) hold multi-part
scenes, NaN vertices and degenerate faces. `load_mesh` turns any supported
file into one clean triangle soup or raises `MeshLoadError` saying which file
and what is wrong. (onet's own PLY/OBJ/OFF writer and reader are in
`onet.geometry.mesh_files`.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import trimesh

MESH_EXTENSIONS = (".obj", ".off", ".ply", ".stl", ".glb", ".gltf")


class MeshLoadError(ValueError):
    """A mesh file could not be turned into a usable triangle mesh."""


def load_mesh(path: str | os.PathLike) -> trimesh.Trimesh:
    """Load a mesh file as one triangle mesh, dropping invalid geometry.

    Scenes (glb/gltf, multi-object obj) are merged into one mesh with every
    node transform applied. Vertices with NaN/inf coordinates are dropped with
    the faces that use them, as are faces with an out-of-range index and
    degenerate faces (repeated index or zero area). No vertices are merged and
    no orientation is changed: watertighting does not rely on either.

    Raises:
        MeshLoadError: the file is missing, unreadable, has no triangles, or
            every triangle is invalid. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MeshLoadError(f"{path}: no such file")
    if path.suffix.lower() not in MESH_EXTENSIONS:
        raise MeshLoadError(f"{path}: unsupported extension {path.suffix!r} (supported: {', '.join(MESH_EXTENSIONS)})")
    if path.stat().st_size == 0:
        raise MeshLoadError(f"{path}: file is empty")

    kwargs = {"skip_materials": True} if path.suffix.lower() == ".obj" else {}
    try:
        loaded = trimesh.load(str(path), force="scene", process=False, **kwargs)
    except ImportError as e:  # trimesh's fallback readers (e.g. ASCII STL) import optional packages
        raise MeshLoadError(f"{path}: unreadable mesh file (not valid {path.suffix.lstrip('.').upper()}, "
                            f"or it needs the optional package {e.name!r})") from e
    except Exception as e:  # trimesh raises anything from KeyError to UnicodeError on garbage
        raise MeshLoadError(f"{path}: unreadable mesh file ({type(e).__name__}: {e})") from e

    if isinstance(loaded, trimesh.Scene) and len(loaded.geometry) == 0:
        # newer trimesh parses some garbage (e.g. a binary STL with a wrong
        # triangle count) into an empty scene instead of raising
        raise MeshLoadError(f"{path}: unreadable mesh file (no geometry found: not a valid "
                            f"{path.suffix.lstrip('.').upper()} file)")
    vertices, faces = _merge_scene(loaded)
    if len(faces) == 0:
        raise MeshLoadError(f"{path}: mesh has no faces")
    n_in = len(faces)
    vertices_in, faces_in = vertices, faces
    vertices, faces = clean_triangles(vertices, faces)
    if len(faces) == 0:
        # say which problem it is: NaN/inf coordinates and zero-area faces are fixed differently
        in_range = ((faces_in >= 0) & (faces_in < len(vertices_in))).all(axis=1)
        n_nonfinite = int((~np.isfinite(vertices_in[faces_in[in_range]]).all(axis=(1, 2))).sum())
        n_index = int((~in_range).sum())
        reasons = [f"{n} {what}" for n, what in ((n_nonfinite, "use NaN/inf vertices"),
                                                 (n_index, "use out-of-range vertex indices"),
                                                 (n_in - n_nonfinite - n_index, "are degenerate (zero area)"))
                   if n]
        raise MeshLoadError(f"{path}: all {n_in} faces are degenerate or use NaN/inf vertices ({', '.join(reasons)})")
    return trimesh.Trimesh(vertices=vertices, faces=faces, process=False)


def clean_triangles(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop faces that use non-finite or out-of-range vertices, or have zero area.

    Args:
        vertices: (V, 3) float.
        faces: (F, 3) int.
    Returns:
        vertices (V', 3) float64 with unreferenced ones removed, faces (F', 3) int64.
    """
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    in_range = ((faces >= 0) & (faces < len(vertices))).all(axis=1)
    faces = faces[in_range]
    finite_v = np.isfinite(vertices).all(axis=1)
    faces = faces[finite_v[faces].all(axis=1)]
    distinct = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[distinct]
    tri = vertices[faces]  # (F, 3, 3)
    doubled_area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    # relative to the mesh size, so a tiny but valid model keeps its faces
    extent = np.ptp(vertices[finite_v], axis=0).max() if finite_v.any() else 0.0
    faces = faces[doubled_area > 1e-12 * max(extent, 1e-30) ** 2]
    # a mask, not np.unique: linear time, which matters for million-face scans
    used_mask = np.zeros(len(vertices), dtype=bool)
    used_mask[faces.ravel()] = True
    used = np.flatnonzero(used_mask)
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[faces]


def _merge_scene(loaded) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate every triangle geometry of a scene (transforms applied)."""
    if isinstance(loaded, trimesh.Trimesh):
        parts = [loaded]
    elif isinstance(loaded, trimesh.Scene):
        parts = [g for g in loaded.dump(concatenate=False) if isinstance(g, trimesh.Trimesh)]
    else:
        parts = []
    vertices, faces, offset = [], [], 0
    for part in parts:
        v = np.asarray(part.vertices, dtype=np.float64).reshape(-1, 3)
        f = np.asarray(part.faces, dtype=np.int64).reshape(-1, 3)
        vertices.append(v)
        faces.append(f + offset)
        offset += len(v)
    if not vertices:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    return np.concatenate(vertices), np.concatenate(faces)
