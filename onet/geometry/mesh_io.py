"""Loading raw meshes of any common format as one clean triangle soup.

Real collections (ShapeNet, users' CAD or scan exports) hold multi-part
scenes, NaN vertices and degenerate faces. `load_mesh` turns any supported
file into one clean triangle soup or raises `MeshLoadError` saying which file
and what is wrong. `load_mesh_with_appearance` does the same and also
returns the surface colours the file carries (material colours, vertex or
face colours, texture maps through UVs) as an `onet.geometry.appearance.Appearance`
that follows the cleaning. (onet's own PLY/OBJ/OFF writer and reader are in
`onet.geometry.mesh_files`.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import trimesh

from onet.geometry.appearance import DEFAULT_COLOR, Appearance
from onet.geometry import assimp_reader
from onet.geometry.formats import ASSIMP_AVAILABLE, ASSIMP_EXTENSIONS, MESH_EXTENSIONS, describe_readable



# textures are shrunk (by an integer factor) to at most this many pixels a side on
# loading: renderings are a few hundred pixels wide, and a mip pyramid of an
# 8k texture would cost more memory than the rest of the object
MAX_TEXTURE_SIZE = 2048


# formats trimesh reads first and assimp second
ASSIMP_FALLBACK = (".dae", ".gltf", ".glb")


class MeshLoadError(ValueError):
    """A mesh file could not be turned into a usable triangle mesh."""


def load_mesh(path: str | os.PathLike) -> trimesh.Trimesh:
    """Load a mesh file as one triangle mesh, dropping invalid geometry.

    Scenes (glb/gltf, multi-object obj, and the formats read through assimp:
    3ds, ac, fbx, blend ..., see `assimp_reader`) are merged into one mesh with
    every node transform applied. Vertices with NaN/inf coordinates are dropped with
    the faces that use them, as are faces with an out-of-range index and
    degenerate faces (repeated index or zero area). No vertices are merged and
    no orientation is changed: watertighting does not rely on either.
    Materials are not read (see `load_mesh_with_appearance`). When faces
    were dropped for NaN/inf vertices or bad indices, the mesh's
    `metadata["onet_dropped"]` says how many (callers report it as a warning).

    Raises:
        MeshLoadError: the file is missing, unreadable, has no triangles, or
            every triangle is invalid. The message names the file.
    """
    return _load(Path(path), materials=False)[0]


def load_mesh_with_appearance(path: str | os.PathLike) -> tuple[trimesh.Trimesh, Appearance | None]:
    """`load_mesh` plus the surface colours of the file, cleaned alike.

    Per part of a scene: a texture map (OBJ map_Kd, glTF baseColorTexture)
    where the part has UVs, else its material colour (OBJ Kd, glTF
    baseColorFactor); vertex colours (PLY, OBJ `v x y z r g b`, glTF COLOR_0)
    and face colours (PLY) are used as given. A glTF texture is multiplied by
    its baseColorFactor as the glTF specification says; an OBJ texture replaces
    Kd, as Blender's importer shows it (Kd is often a placeholder next to a
    texture). Parts without any colour get `appearance.DEFAULT_COLOR`.
    Texture paths may use backslashes and may point outside the mesh's
    folder (ShapeNet v2: ../images/texture0.jpg). Materials that cannot be
    read (a corrupt or missing texture) never fail the load: those parts fall
    back to their material colour, or to the default.

    Returns:
        (mesh, appearance): the same mesh as `load_mesh` (vertices are split
        where one vertex has several UVs); appearance describes it, or is
        None when the file carries no colour at all.
    Raises:
        MeshLoadError: as `load_mesh`.
    """
    path = Path(path)
    if path.suffix.lower() in ASSIMP_EXTENSIONS:  # materials do not change what assimp reads: read once
        return _load(path, materials=True)
    try:
        return _load(path, materials=True, fallback=False)
    except Exception:  # maybe a material broke the loader: the geometry alone decides (and names the error)
        return _load(path, materials=False)


def _load(path: Path, *, materials: bool,
          fallback: bool = True) -> tuple[trimesh.Trimesh, Appearance | None]:
    """The cleaned mesh and its colours (None without materials; assimp's are always read)."""
    if path.is_symlink() and not path.exists():
        raise MeshLoadError(f"{path}: broken symbolic link (points to {os.readlink(path)}, which does not exist)")
    if not path.is_file():
        raise MeshLoadError(f"{path}: no such file")
    if path.suffix.lower() not in MESH_EXTENSIONS:
        raise MeshLoadError(f"{path}: unsupported extension {path.suffix!r} (onet reads {describe_readable()})")
    if path.stat().st_size == 0:
        raise MeshLoadError(f"{path}: file is empty")

    # NaN/inf coordinates are counted and reported below; numpy's warnings about them while a
    # reader applies node transforms would only print a stack line of trimesh's
    with np.errstate(invalid="ignore", over="ignore"):
        vertices, faces, appearance = _read_any(path, materials=materials, fallback=fallback)
    if len(faces) == 0:
        raise MeshLoadError(f"{path}: mesh has no faces")
    n_in = len(faces)
    in_range = ((faces >= 0) & (faces < len(vertices))).all(axis=1)
    n_nonfinite = int((~np.isfinite(vertices[faces[in_range]]).all(axis=(1, 2))).sum())
    n_index = int((~in_range).sum())
    kept_faces, kept_vertices = _clean_indices(vertices, faces)
    vertices, faces = _apply_clean(vertices, faces, kept_faces, kept_vertices)
    if appearance is not None:
        appearance = appearance.subset(kept_faces, kept_vertices)
    if len(faces) == 0:
        # say which problem it is: NaN/inf coordinates and zero-area faces are fixed differently
        reasons = [f"{n} {what}" for n, what in ((n_nonfinite, "use NaN/inf vertices"),
                                                 (n_index, "use out-of-range vertex indices"),
                                                 (n_in - n_nonfinite - n_index, "are degenerate (zero area)"))
                   if n]
        raise MeshLoadError(f"{path}: all {n_in} faces are degenerate or use NaN/inf vertices ({', '.join(reasons)})")
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    # corruption (not mere degenerate faces, common in CAD exports) is worth a warning to the caller
    dropped = [f"{n} of {n_in} faces {what}" for n, what in ((n_nonfinite, "used NaN/inf vertices"),
                                                               (n_index, "used out-of-range vertex indices")) if n]
    if dropped:
        mesh.metadata["onet_dropped"] = "dropped " + " and ".join(dropped)
    return mesh, appearance


def _read_any(path: Path, *, materials: bool, fallback: bool) -> tuple[np.ndarray, np.ndarray, Appearance | None]:
    """Vertices, faces and colours as the file's reader gives them (assimp's formats through assimp)."""
    if path.suffix.lower() in ASSIMP_EXTENSIONS:
        return _read_assimp(path)
    try:
        return _read_trimesh(path, materials=materials)
    except MeshLoadError as first:
        # COLLADA and glTF that trimesh does not read (some animated or instanced COLLADA
        # scenes, glTF 1.0): assimp reads most of them; where it fails too, trimesh's error stands
        if not fallback or path.suffix.lower() not in ASSIMP_FALLBACK or not ASSIMP_AVAILABLE:
            raise
        try:
            return _read_assimp(path)
        except MeshLoadError:
            raise first from None


def _read_trimesh(path: Path, *, materials: bool) -> tuple[np.ndarray, np.ndarray, Appearance | None]:
    kwargs = {}
    if path.suffix.lower() == ".obj" and not materials:
        kwargs["skip_materials"] = True
    if materials:
        kwargs["resolver"] = _LenientResolver(str(path))
    try:
        loaded = trimesh.load(str(path), force="scene", process=False, **kwargs)
    except ImportError as e:  # trimesh's fallback readers (e.g. ASCII STL) import optional packages
        raise MeshLoadError(f"{path}: unreadable mesh file (not valid {path.suffix.lstrip('.').upper()}, "
                            f"or it needs the optional package {e.name!r})") from e
    except FileNotFoundError as e:  # a .gltf's .bin buffers, an .obj's includes: copied without them
        missing = Path(e.filename).name if e.filename else str(e)
        raise MeshLoadError(f"{path}: unreadable mesh file (a file it refers to is missing: {missing}; "
                            "copy it beside the mesh, or export a self-contained file such as .glb)") from e
    except Exception as e:  # trimesh raises anything from KeyError to UnicodeError on garbage
        raise MeshLoadError(f"{path}: unreadable mesh file ({type(e).__name__}: {e})") from e

    if isinstance(loaded, trimesh.Scene) and len(loaded.geometry) == 0:
        # newer trimesh parses some garbage (e.g. a binary STL with a wrong
        # triangle count) into an empty scene instead of raising
        raise MeshLoadError(f"{path}: unreadable mesh file (no geometry found: not a valid "
                            f"{path.suffix.lstrip('.').upper()} file)")
    return _merge_scene(loaded, materials=materials)


def _read_assimp(path: Path) -> tuple[np.ndarray, np.ndarray, Appearance | None]:
    """A scene in one of assimp's formats (geometry/assimp_reader.py) with its colours: per
    part its diffuse texture (found beside the file) where it has UVs, which replaces the
    material colour as in OBJ, else the material colour. Read in any case: they come with
    the geometry from one child process."""
    try:
        scene = assimp_reader.read_scene(path)
    except ValueError as e:
        raise MeshLoadError(str(e)) from e
    textures, parts = _Textures(), []
    uvs = np.split(scene.uv, np.cumsum(scene.part_vertices)[:-1])
    for n_v, n_f, color, texture, uv in zip(scene.part_vertices, scene.part_faces, scene.part_colors,
                                             scene.part_textures, uvs):
        part = _PartColors(int(n_v), int(n_f))
        image = _texture_beside(path, str(texture)) if texture and np.isfinite(uv).all() else None
        index = textures.add(image) if image is not None else -1
        if index >= 0:
            part.uv, part.texture, part.defined = uv.astype(np.float64), index, True
            part.face_colors = np.ones((int(n_f), 3))
        elif np.isfinite(color).all():
            part.face_colors, part.defined = np.broadcast_to(color.astype(np.float64), (int(n_f), 3)), True
        parts.append(part)
    appearance = _combine(parts, textures.images) if any(p.defined for p in parts) else None
    return scene.vertices, scene.faces, appearance


def _texture_beside(mesh_path: Path, name: str):
    """The PIL image a model file names as its texture, looked up as real files are shipped: the
    path as given (relative to the model), else its file name in the model's folder, in any
    letter case (3DS writes TEST.PNG for test.png; FBX keeps the author's absolute D:\\ paths).
    None for embedded textures ("*0") and files not found."""
    from PIL import Image

    if name.startswith("*"):
        return None
    relative = name.replace("\\", "/")
    base = relative.rsplit("/", 1)[-1]
    folder = mesh_path.parent
    candidates = [folder / relative, folder / base]
    try:
        candidates += [p for p in folder.iterdir() if p.name.lower() == base.lower()]
    except OSError:
        pass
    for candidate in candidates:
        try:
            if candidate.is_file():
                return Image.open(candidate)
        except OSError:
            continue
    return None


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
    return _apply_clean(vertices, faces, *_clean_indices(vertices, faces))


def _clean_indices(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the faces kept (F',), indices of the vertices kept (V',)) by `clean_triangles`."""
    keep = np.arange(len(faces))
    in_range = ((faces >= 0) & (faces < len(vertices))).all(axis=1)
    keep = keep[in_range]
    finite_v = np.isfinite(vertices).all(axis=1)
    keep = keep[finite_v[faces[keep]].all(axis=1)]
    f = faces[keep]
    distinct = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    keep = keep[distinct]
    tri = vertices[faces[keep]]  # (F, 3, 3)
    doubled_area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    # relative to the mesh size, so a tiny but valid model keeps its faces
    extent = np.ptp(vertices[finite_v], axis=0).max() if finite_v.any() else 0.0
    keep = keep[doubled_area > 1e-12 * max(extent, 1e-30) ** 2]
    # a mask, not np.unique: linear time, which matters for million-face scans
    used_mask = np.zeros(len(vertices), dtype=bool)
    used_mask[faces[keep].ravel()] = True
    return keep, np.flatnonzero(used_mask)


def _apply_clean(vertices: np.ndarray, faces: np.ndarray, kept_faces: np.ndarray,
                 kept_vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[kept_vertices] = np.arange(len(kept_vertices))
    return vertices[kept_vertices], remap[faces[kept_faces]]


def _merge_scene(loaded, *, materials: bool) -> tuple[np.ndarray, np.ndarray, Appearance | None]:
    """Concatenate every triangle geometry of a scene (transforms applied), with its colours."""
    if isinstance(loaded, trimesh.Trimesh):
        parts = [loaded]
    elif isinstance(loaded, trimesh.Scene):
        parts = [g for g in loaded.dump(concatenate=False) if isinstance(g, trimesh.Trimesh)]
    else:
        parts = []
    vertices, faces, colors, offset = [], [], [], 0
    textures = _Textures()
    for part in parts:
        v = np.asarray(part.vertices, dtype=np.float64).reshape(-1, 3)
        f = np.asarray(part.faces, dtype=np.int64).reshape(-1, 3)
        vertices.append(v)
        faces.append(f + offset)
        offset += len(v)
        if materials:
            colors.append(_part_colors(part, len(v), len(f), textures))
    if not vertices:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), None
    appearance = None
    if materials and any(c.defined for c in colors):
        appearance = _combine(colors, textures.images)
    return np.concatenate(vertices), np.concatenate(faces), appearance


# --------------------------------------------------------------------------- materials


class _LenientResolver(trimesh.resolvers.FilePathResolver):
    """Texture and material paths as real files write them: Windows separators
    (`.\\tex.jpg`) and paths outside the mesh's folder (ShapeNet v2's
    `../images/texture0.jpg`)."""

    def __init__(self, source: str):
        super().__init__(source, allow_anywhere=True)

    def get(self, name: str):
        try:
            return super().get(name)
        except (OSError, ValueError):
            return super().get(name.replace("\\", "/"))


class _Textures:
    """Texture images as uint8 (H, W, 3) arrays, each converted once however many parts share it."""

    def __init__(self):
        self.images: list[np.ndarray] = []
        self._index: dict[int, int] = {}
        self._keep: list = []  # keep the PIL images alive so their ids stay unique

    def add(self, image) -> int:
        """Index of `image` (a PIL image) in `images`, or -1 if it cannot be decoded."""
        key = id(image)
        if key not in self._index:
            try:
                factor = -(-max(image.size) // MAX_TEXTURE_SIZE)
                rgb = image.convert("RGB")
                if factor > 1:
                    rgb = rgb.reduce(factor)
                array = np.asarray(rgb, dtype=np.uint8)
            except Exception:  # a corrupt or truncated image file: PIL decodes lazily, so it fails here
                array = None
            self._keep.append(image)
            if array is None or array.ndim != 3 or min(array.shape[:2]) < 1:
                self._index[key] = -1
            else:
                self._index[key] = len(self.images)
                self.images.append(array)
        return self._index[key]


class _PartColors:
    """The colours of one part of a scene, before the parts are concatenated."""

    def __init__(self, n_vertices: int, n_faces: int):
        self.face_colors = np.broadcast_to(DEFAULT_COLOR.astype(np.float64), (n_faces, 3))
        self.vertex_colors: np.ndarray | None = None
        self.uv: np.ndarray | None = None
        self.texture = -1
        self.defined = False  # the file gave this part any colour at all
        self.n_vertices, self.n_faces = n_vertices, n_faces


def _rgb(color) -> np.ndarray | None:
    """RGB in [0, 1] from trimesh's colours ((..., 3|4), uint8 0-255 or float 0-1); None when absent."""
    if color is None:
        return None
    raw = np.asarray(color)
    if raw.ndim == 0 or raw.shape[-1] not in (3, 4):
        return None
    c = raw[..., :3].astype(np.float64)
    return c / 255.0 if np.issubdtype(raw.dtype, np.integer) or c.max() > 1 else c


def _is_placeholder(material) -> bool:
    """trimesh fills in a 2x2 grey image where a file gives UVs but no material."""
    image = getattr(material, "image", None)
    if image is None or image.size != (2, 2) or getattr(material, "name", None) not in (None, "material_0"):
        return False
    return bool(np.all(np.asarray(image.convert("RGBA")) == trimesh.visual.material.color_image().convert("RGBA")))


def _part_colors(part: trimesh.Trimesh, n_vertices: int, n_faces: int, textures: _Textures) -> _PartColors:
    out = _PartColors(n_vertices, n_faces)
    visual = part.visual
    if isinstance(visual, trimesh.visual.ColorVisuals):
        if visual.kind == "vertex":
            vc = _rgb(visual.vertex_colors)
            if vc is not None and vc.shape == (n_vertices, 3):
                out.vertex_colors, out.face_colors, out.defined = vc, np.ones((n_faces, 3)), True
        elif visual.kind == "face":
            fc = _rgb(visual.face_colors)
            if fc is not None and fc.shape == (n_faces, 3):
                out.face_colors, out.defined = fc, True
        return out
    if not isinstance(visual, trimesh.visual.TextureVisuals):
        return out
    material = visual.material
    if isinstance(material, trimesh.visual.material.PBRMaterial):
        image = material.baseColorTexture
        factor = _rgb(material.baseColorFactor)
        multiply = True  # glTF: texture times factor
    elif isinstance(material, trimesh.visual.material.SimpleMaterial) and not _is_placeholder(material):
        image = material.image
        factor = _rgb(material.diffuse)
        multiply = False  # OBJ: the texture replaces Kd
    else:
        image, factor, multiply = None, None, False
    uv = None if visual.uv is None else np.asarray(visual.uv, dtype=np.float64)
    if image is not None and uv is not None and uv.shape == (n_vertices, 2):
        texture = textures.add(image)
        if texture >= 0:
            out.uv, out.texture, out.defined = uv, texture, True
            out.face_colors = np.broadcast_to(factor if multiply and factor is not None else np.ones(3), (n_faces, 3))
    if out.texture < 0 and factor is not None:
        out.face_colors, out.defined = np.broadcast_to(factor, (n_faces, 3)), True
    vc = _rgb(visual.vertex_attributes.get("color")) if hasattr(visual, "vertex_attributes") else None
    if vc is not None and vc.shape == (n_vertices, 3):
        out.vertex_colors, out.defined = vc, True
    return out


def _combine(parts: list[_PartColors], images: list[np.ndarray]) -> Appearance:
    face_colors = np.concatenate([p.face_colors for p in parts])
    vertex_colors = uv = face_texture = None
    if any(p.vertex_colors is not None for p in parts):
        vertex_colors = np.concatenate([p.vertex_colors if p.vertex_colors is not None else np.ones((p.n_vertices, 3))
                                        for p in parts])
    if any(p.texture >= 0 for p in parts):
        uv = np.concatenate([p.uv if p.uv is not None else np.zeros((p.n_vertices, 2)) for p in parts])
        face_texture = np.concatenate([np.full(p.n_faces, p.texture) for p in parts])
    return Appearance(face_colors=face_colors, vertex_colors=vertex_colors, uv=uv, face_texture=face_texture,
                      textures=tuple(images))
