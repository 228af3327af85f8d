"""Reading the 3-D formats trimesh does not (3DS, AC3D, FBX, Blender, DirectX .x, LightWave ...)
through the Open Asset Import Library (the `assimp-py` package, bundled binaries).

assimp is native code that crashes outright on some malformed files (a segfault on one of
Debian's assimp test models, for instance), and a crash in the reading process would end a
whole `onet preprocess` run. So every file is read in a child process of its own, which
writes plain arrays to a temporary .npz; a crash, a hang or an error there becomes a
`ValueError` naming the file, and the batch goes on. The child costs about 0.1 s per file.

What is read: every triangle of the scene with the node transforms applied (assimp's
PreTransformVertices), polygons triangulated, identical vertices joined, and per part its
material's diffuse colour, diffuse texture path and texture coordinates (mesh_io turns them
into an Appearance; vertex colours of these formats are not read).
Axes are the file's (no up-axis conversion), as for every other format.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from onet.geometry.formats import ASSIMP_AVAILABLE

# seconds one file may take in the child before it is given up (a hang in native code)
TIMEOUT = 600.0

_ONET_ROOT = Path(__file__).resolve().parents[2]  # the folder holding the onet package


@dataclass
class Scene:
    """Every triangle of a scene file, as parts (one per assimp mesh, concatenated in order).

    vertices (V, 3) float64, faces (F, 3) int64; per part: part_vertices, part_faces (P,)
    counts, part_colors (P, 3) float32 material diffuse colour (NaN: none), part_textures (P,)
    the diffuse texture's path as the file gives it ("": none); uv (V, 2) float32 texture
    coordinates (OBJ convention: v upwards), NaN for parts without them.
    """

    vertices: np.ndarray
    faces: np.ndarray
    part_vertices: np.ndarray
    part_faces: np.ndarray
    part_colors: np.ndarray
    part_textures: np.ndarray
    uv: np.ndarray


def read_scene(path: str | os.PathLike, *, timeout: float = TIMEOUT) -> Scene:
    """All triangles of a scene file with their materials (see Scene).

    Raises:
        ValueError: assimp-py is missing, or the file cannot be read (the message names
            the file and says why: assimp's error, a crash, a timeout).
    """
    path = Path(path)
    if not ASSIMP_AVAILABLE:
        raise ValueError(f"{path}: reading {path.suffix} files needs the assimp-py package "
                         f"(pip install assimp-py; wheels for Python 3.10-3.13)")
    with tempfile.TemporaryDirectory(prefix="onet-assimp-") as tmp:
        out = Path(tmp) / "scene.npz"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(_ONET_ROOT),
                                                                     os.environ.get("PYTHONPATH")])))
        try:
            proc = subprocess.run([sys.executable, "-m", "onet.geometry.assimp_reader", str(path), str(out),
                                   str(os.getpid())],
                                  capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise ValueError(f"{path}: unreadable mesh file (assimp did not finish within {timeout:.0f} s)") from None
        if proc.returncode < 0:
            try:
                name = signal.Signals(-proc.returncode).name
            except ValueError:
                name = f"signal {-proc.returncode}"
            raise ValueError(f"{path}: unreadable mesh file (assimp crashed on it: {name}; the file is probably "
                             f"corrupt or uses a part of the format assimp does not support)")
        if proc.returncode != 0 or not out.is_file():
            lines = (proc.stderr or "").strip().splitlines()
            raise ValueError(f"{path}: unreadable mesh file ({lines[-1] if lines else f'exit {proc.returncode}'})")
        with np.load(out) as data:
            return Scene(**{f.name: data[f.name] for f in fields(Scene)})


# ---------------------------------------------------------------- the child process


def _scene(path: str):
    """The scene in `path` (an assimp_py.Scene); ValueError with assimp's reason when it fails."""
    import assimp_py as ai

    flags = (ai.Process_Triangulate | ai.Process_PreTransformVertices | ai.Process_JoinIdenticalVertices
             | ai.Process_SortByPType)
    try:
        scene = ai.import_file(path, flags)
        scene.meshes  # builds the mesh objects: assimp-py checks their primitives here
        return scene
    except RuntimeError as e:  # "Assimp error loading '<path>': <reason>"
        raise ValueError(str(e).split("': ", 1)[-1].strip() or "assimp could not read it") from None


def _import(path: str) -> dict[str, np.ndarray]:
    """The arrays of a Scene, by field name."""
    import assimp_py as ai

    try:
        scene = _scene(path)
    except ValueError as e:
        if "triangulated" not in str(e):
            raise
        # assimp-py refuses a whole scene with any line or point primitives in it. AC3D files
        # (flight and racing simulators) carry lines for wires and antennas: read without them.
        polygons = _ac3d_polygons_only(path)
        if polygons is None:
            raise ValueError("the file has line or point primitives beside its faces, which assimp-py cannot "
                             "leave out; delete them or convert the file to OBJ or PLY") from None
        with tempfile.TemporaryDirectory(prefix="onet-ac3d-") as tmp:
            copy = Path(tmp) / "polygons.ac"  # texture paths are resolved later against the original's folder
            copy.write_bytes(polygons)
            try:
                scene = _scene(str(copy))
            except ValueError:
                raise ValueError("no faces: its surfaces are lines only") from None
    diffuse, textures = [], []
    for material in scene.materials:
        material = material if isinstance(material, dict) else {}
        color = material.get("COLOR_DIFFUSE")
        diffuse.append(np.asarray(color[:3], np.float32) if color is not None and len(color) >= 3
                       else np.full(3, np.nan, np.float32))
        paths = (material.get("TEXTURES") or {}).get(ai.TextureType_DIFFUSE) or [""]
        textures.append(str(paths[0]))
    parts: dict[str, list] = {name: [] for name in ("vertices", "faces", "uv", "part_vertices", "part_faces",
                                                     "part_colors", "part_textures")}
    offset = 0
    for mesh in scene.meshes:
        v = np.asarray(mesh.vertices, dtype=np.float32).astype(np.float64).reshape(-1, 3)
        f = np.asarray(mesh.indices, dtype=np.uint32).astype(np.int64).reshape(-1, 3)
        uv = np.full((len(v), 2), np.nan, np.float32)
        if mesh.texcoords and (mesh.num_uv_components or [0])[0] >= 2:
            uv = np.asarray(mesh.texcoords[0], dtype=np.float32).reshape(len(v), -1)[:, :2]
        m = mesh.material_index if 0 <= mesh.material_index < len(diffuse) else None
        for name, value in (("vertices", v), ("faces", f + offset), ("uv", uv), ("part_vertices", len(v)),
                            ("part_faces", len(f)),
                            ("part_colors", diffuse[m] if m is not None else np.full(3, np.nan, np.float32)),
                            ("part_textures", textures[m] if m is not None else "")):
            parts[name].append(value)
        offset += len(v)
    if not parts["faces"]:
        raise ValueError("no triangle meshes in the file")
    return {name: np.concatenate(values) if name in ("vertices", "faces", "uv") else np.asarray(values)
            for name, values in parts.items()}


def _ac3d_polygons_only(path: str) -> bytes | None:
    """An AC3D file's bytes without its line surfaces (SURF types 1 and 2), or None when it is
    no AC3D file or has no line surfaces. The file is lines of text: `numsurf N`, then per
    surface `SURF flags`, optionally `mat i`, `refs n` and n lines of `vertex u v`."""
    if Path(path).suffix.lower() not in (".ac", ".ac3d", ".acc"):
        return None
    lines = Path(path).read_bytes().split(b"\n")
    if not lines[0].startswith(b"AC3D"):
        return None
    try:
        return _drop_line_surfaces(lines)
    except (IndexError, ValueError):  # not the layout it should have: assimp's refusal stands
        return None


def _drop_line_surfaces(lines: list[bytes]) -> bytes | None:
    out, i, dropped = [], 0, 0
    while i < len(lines):
        words = lines[i].split()
        if len(words) != 2 or words[0] != b"numsurf":
            out.append(lines[i])
            i += 1
            continue
        header, kept = len(out), 0
        out.append(b"")
        i += 1
        for _ in range(int(words[1])):
            start = i
            kind = int(lines[i].split()[1], 0) & 0xF  # 0 polygon, 1 closed line, 2 open line
            i += 1
            while not lines[i].startswith(b"refs"):
                i += 1
            i += 1 + int(lines[i].split()[1])
            if kind == 0:
                out += lines[start:i]
                kept += 1
            else:
                dropped += 1
        out[header] = b"numsurf %d" % kept
    return b"\n".join(out) if dropped else None


def _die_with_parent(parent: int) -> None:
    """Linux: end this process when the one reading the file ends (a worker stopped by Ctrl-C
    or killed), instead of finishing, or hanging, on its own for up to TIMEOUT."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent was gone before the request took effect
        os._exit(1)


def _child(argv: list[str]) -> int:
    path, out, parent = argv
    _die_with_parent(int(parent))
    try:
        arrays = _import(path)
    except Exception as e:
        print(f"{type(e).__name__}: {e}" if not isinstance(e, ValueError) else str(e), file=sys.stderr)
        return 3
    with open(out + ".part", "wb") as f:
        np.savez(f, **arrays)
    os.replace(out + ".part", out)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
