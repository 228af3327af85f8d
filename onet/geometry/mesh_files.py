"""Writing and reading triangle meshes: binary PLY, OBJ, OFF, binary glTF (GLB) and binary STL.

Every write is atomic (onet.utils.io): an interrupted run never leaves a
half-written mesh that looks complete. The readers accept what the writers
produce plus the common variants (ASCII / big-endian PLY, OBJ polygons and
v/vt/vn face tokens, OFF comments, ASCII STL, GLB files with several meshes
and node transforms), enough to read meshes from other tools.

Format notes. GLB is glTF 2.0 in one file: positions (and unit vertex
normals when given) as float32, indices as uint32, one node without a
transform, so coordinates are onet's as they are (glTF is y-up like
ShapeNet). STL stores a soup of triangles with face normals only: vertex
normals are dropped, the reader merges bit-identical corners back into
shared vertices (in order of first use), and vertices no face uses are lost.
"""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import numpy as np

from onet.geometry.mesh import check_mesh
from onet.geometry.formats import MESH_EXTENSIONS
from onet.utils.io import write_bytes_atomic

FORMATS = ("ply", "obj", "off", "glb", "stl")  # written (and read)
# every format onet reads; those not written here are read through mesh_io
READ_SUFFIXES = MESH_EXTENSIONS
READ_FORMATS = tuple(suffix.lstrip(".") for suffix in READ_SUFFIXES)
MESH_IO_FORMATS = tuple(f for f in READ_FORMATS if f not in FORMATS)


def _format_of(path: Path, fmt: str | None, formats: tuple = FORMATS) -> str:
    if fmt is None:
        fmt = path.suffix.lower().lstrip(".")
    fmt = fmt.lower()
    if fmt not in formats:
        raise ValueError(f"unknown mesh format {fmt!r} for {path}: use a suffix (or fmt=) among {', '.join(formats)}")
    return fmt


def export_mesh(path: str | os.PathLike, vertices, faces, *, vertex_normals=None, fmt: str | None = None) -> None:
    """Write a triangle mesh to `path` atomically.

    vertices (V, 3), faces (F, 3) 0-based, vertex_normals (V, 3) or None.
    fmt: "ply" (binary little-endian), "obj", "off", "glb" or "stl"; None -> from the suffix.
    OFF and STL have no vertex normals; they are dropped there.
    """
    path = Path(path)
    fmt = _format_of(path, fmt)
    vertices, faces = check_mesh(vertices, faces)
    if vertex_normals is not None:
        vertex_normals = np.asarray(vertex_normals, dtype=np.float32)
        if vertex_normals.shape != vertices.shape:
            raise ValueError(f"vertex_normals must have shape {vertices.shape}, got {vertex_normals.shape}")
    if fmt == "ply":
        data = _ply_bytes(vertices, faces, vertex_normals)
    elif fmt == "obj":
        data = _obj_bytes(vertices, faces, vertex_normals)
    elif fmt == "glb":
        data = _glb_bytes(vertices, faces, vertex_normals)
    elif fmt == "stl":
        data = _stl_bytes(vertices, faces)
    else:
        data = _off_bytes(vertices, faces)
    write_bytes_atomic(path, data)


def read_mesh(path: str | os.PathLike, *, fmt: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a triangle mesh: vertices (V, 3) float32, faces (F, 3) int64 (polygons fan-triangulated)."""
    path = Path(path)
    fmt = _format_of(path, fmt, READ_FORMATS)
    # one message per common failure, whatever the format's parser would say about it
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: file is empty (0 bytes)")
    if fmt in MESH_IO_FORMATS:
        from onet.geometry.mesh_io import load_mesh  # trimesh on first use

        mesh = load_mesh(path)  # its MeshLoadError is a ValueError naming the file
        return check_mesh(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64))
    data = path.read_bytes()
    try:
        if fmt == "ply":
            vertices, faces = _parse_ply(data)
        elif fmt == "obj":
            vertices, faces = _parse_obj(data)
        elif fmt == "glb":
            vertices, faces = _parse_glb(data)
        elif fmt == "stl":
            vertices, faces = _parse_stl(data)
        else:
            vertices, faces = _parse_off(data)
    except (ValueError, IndexError, KeyError, TypeError, UnicodeDecodeError, struct.error) as e:
        raise ValueError(f"cannot read {fmt.upper()} mesh {path}: {e}") from e
    return check_mesh(vertices, faces)


# ---------------------------------------------------------------- writers


def _ply_bytes(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None) -> bytes:
    names = ["x", "y", "z"] + (["nx", "ny", "nz"] if normals is not None else [])
    header = ["ply", "format binary_little_endian 1.0", "comment written by onet", f"element vertex {len(vertices)}"]
    header += [f"property float {n}" for n in names]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    vertex_data = vertices if normals is None else np.concatenate([vertices, normals], axis=1)
    face_data = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    face_data["n"] = 3
    face_data["idx"] = faces
    return (
        ("\n".join(header) + "\n").encode("ascii")
        + vertex_data.astype("<f4").tobytes()
        + face_data.tobytes()
    )


def _rows(fmt: str, array: np.ndarray) -> str:
    if len(array) == 0:
        return ""
    buf = io.StringIO()
    np.savetxt(buf, array, fmt=fmt)
    return buf.getvalue()


def _obj_bytes(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None) -> bytes:
    # %.9g round-trips float32 exactly
    parts = ["# written by onet\n", _rows("v %.9g %.9g %.9g", vertices)]
    one_based = faces + 1
    if normals is not None:
        parts.append(_rows("vn %.9g %.9g %.9g", normals))
        parts.append(_rows("f %d//%d %d//%d %d//%d", np.repeat(one_based, 2, axis=1)))
    else:
        parts.append(_rows("f %d %d %d", one_based))
    return "".join(parts).encode("ascii")


def _off_bytes(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    parts = [f"OFF\n{len(vertices)} {len(faces)} 0\n", _rows("%.9g %.9g %.9g", vertices), _rows("3 %d %d %d", faces)]
    return "".join(parts).encode("ascii")


_GLB_MAGIC, _GLB_JSON, _GLB_BIN = 0x46546C67, 0x4E4F534A, 0x004E4942  # 'glTF', 'JSON', 'BIN\0'
_GL_FLOAT, _GL_UNSIGNED_INT = 5126, 5125
_GL_ARRAY_BUFFER, _GL_ELEMENT_ARRAY_BUFFER = 34962, 34963


def _glb_chunk(kind: int, payload: bytes, pad: bytes) -> bytes:
    payload += pad * (-len(payload) % 4)  # chunks are 4-byte aligned
    return struct.pack("<II", len(payload), kind) + payload


def _glb_bytes(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None) -> bytes:
    doc: dict = {"asset": {"version": "2.0", "generator": "onet"}, "scene": 0}
    binary = b""
    if len(faces) == 0:
        doc["scenes"] = [{}]  # a valid, empty scene: glTF has no empty mesh
    else:
        arrays = [("POSITION", vertices.astype("<f4"), _GL_ARRAY_BUFFER)]
        if normals is not None:
            length = np.linalg.norm(normals, axis=1, keepdims=True)
            unit = np.where(length > 0, normals / np.where(length > 0, length, 1), [0.0, 0.0, 1.0])  # glTF: unit length
            arrays.append(("NORMAL", unit.astype("<f4"), _GL_ARRAY_BUFFER))
        arrays.append(("indices", faces.astype("<u4").reshape(-1), _GL_ELEMENT_ARRAY_BUFFER))
        views, accessors, attributes = [], [], {}
        for i, (name, array, target) in enumerate(arrays):
            data = array.tobytes()  # every array is a multiple of 4 bytes: no padding between them
            views.append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(data), "target": target})
            binary += data
            if name == "indices":
                accessors.append({"bufferView": i, "componentType": _GL_UNSIGNED_INT, "count": len(array),
                                  "type": "SCALAR"})
            else:
                accessor = {"bufferView": i, "componentType": _GL_FLOAT, "count": len(array), "type": "VEC3"}
                if name == "POSITION":  # required for positions
                    accessor.update(min=array.min(axis=0).tolist(), max=array.max(axis=0).tolist())
                accessors.append(accessor)
                attributes[name] = i
        primitive = {"attributes": attributes, "indices": len(arrays) - 1, "mode": 4}
        doc.update(scenes=[{"nodes": [0]}], nodes=[{"mesh": 0}], meshes=[{"primitives": [primitive]}],
                   accessors=accessors, bufferViews=views, buffers=[{"byteLength": len(binary)}])
    chunks = _glb_chunk(_GLB_JSON, json.dumps(doc, separators=(",", ":")).encode("utf-8"), b" ")
    if binary:
        chunks += _glb_chunk(_GLB_BIN, binary, b"\0")
    return struct.pack("<III", _GLB_MAGIC, 2, 12 + len(chunks)) + chunks


_STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])


def _stl_bytes(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    corners = vertices.astype(np.float32)[faces]  # (F, 3, 3)
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]).astype(np.float64)
    length = np.linalg.norm(normal, axis=1, keepdims=True)
    normal = np.divide(normal, length, out=np.zeros_like(normal), where=length > 0)  # degenerate face: 0
    records = np.zeros(len(faces), dtype=_STL_RECORD)
    records["normal"] = normal
    records["corners"] = corners
    header = b"binary STL written by onet".ljust(80, b" ")
    return header + struct.pack("<I", len(faces)) + records.tobytes()


# ---------------------------------------------------------------- readers

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip


def _fan(polygons: list[list[int]]) -> np.ndarray:
    tris = [(p[0], p[i], p[i + 1]) for p in polygons for i in range(1, len(p) - 1)]
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def _parse_ply(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise ValueError("not a PLY file (missing 'ply' magic or 'end_header')")
    body_start = data.index(b"\n", end) + 1
    elements: list[tuple[str, int, list[tuple]]] = []  # (name, count, properties)
    encoding = None
    for line in data[:end].decode("ascii").splitlines():
        tokens = line.split()
        if not tokens:
            continue
        if tokens[0] == "format":
            encoding = tokens[1]
        elif tokens[0] == "element":
            elements.append((tokens[1], int(tokens[2]), []))
        elif tokens[0] == "property":
            if tokens[1] == "list":
                elements[-1][2].append(("list", tokens[4], _PLY_TYPES[tokens[2]], _PLY_TYPES[tokens[3]]))
            else:
                elements[-1][2].append(("scalar", tokens[2], _PLY_TYPES[tokens[1]]))
    if encoding not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"unsupported PLY format {encoding!r}")

    vertices = np.zeros((0, 3), np.float32)
    faces = np.zeros((0, 3), np.int64)
    if encoding == "ascii":
        tokens = data[body_start:].split()
        pos = 0
        for name, count, props in elements:
            rows = []
            for _ in range(count):
                row = []
                for prop in props:
                    if prop[0] == "list":
                        n = int(tokens[pos])
                        row.append([int(t) for t in tokens[pos + 1 : pos + 1 + n]])
                        pos += 1 + n
                    else:
                        row.append(float(tokens[pos]))
                        pos += 1
                rows.append(row)
            if name == "vertex":
                names = [p[1] for p in props]
                table = np.asarray(rows, dtype=np.float64).reshape(count, len(props))
                vertices = table[:, [names.index(a) for a in "xyz"]]
            elif name == "face":
                faces = _fan([row[[p[0] for p in props].index("list")] for row in rows])
        return vertices.astype(np.float32), faces

    order = "<" if encoding == "binary_little_endian" else ">"
    offset = body_start
    for name, count, props in elements:
        lists = [p for p in props if p[0] == "list"]
        if not lists:
            dtype = np.dtype([(p[1], order + p[2]) for p in props])
            table = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            offset += count * dtype.itemsize
            if name == "vertex":
                vertices = np.stack([table[a].astype(np.float32) for a in "xyz"], axis=1)
            continue
        if name != "face" or len(props) != 1:
            raise ValueError(f"unsupported PLY element {name!r} with list properties")
        _, _, count_type, index_type = props[0]
        # fast path: every face a triangle
        dtype = np.dtype([("n", order + count_type), ("idx", order + index_type, (3,))])
        if count * dtype.itemsize <= len(data) - offset:
            table = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            if (table["n"] == 3).all():
                faces = table["idx"].astype(np.int64)
                offset += count * dtype.itemsize
                continue
        count_dt, index_dt = np.dtype(order + count_type), np.dtype(order + index_type)
        polygons = []
        for _ in range(count):
            n = int(np.frombuffer(data, count_dt, 1, offset)[0])
            offset += count_dt.itemsize
            polygons.append(np.frombuffer(data, index_dt, n, offset).tolist())
            offset += n * index_dt.itemsize
        faces = _fan(polygons)
    return vertices, faces


def _face_index(token: bytes, n_vertices: int) -> int:
    i = int(token.split(b"/")[0])
    return i - 1 if i > 0 else n_vertices + i  # OBJ is 1-based; negative counts from the end


def _parse_obj(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    vertices: list[list[float]] = []
    polygons: list[list[int]] = []
    for line in data.splitlines():
        tokens = line.split()
        if not tokens:
            continue
        if tokens[0] == b"v":
            vertices.append([float(t) for t in tokens[1:4]])
        elif tokens[0] == b"f":
            polygons.append([_face_index(t, len(vertices)) for t in tokens[1:]])
    return np.asarray(vertices, np.float32).reshape(-1, 3), _fan(polygons)


def _parse_off(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    lines = [line.split(b"#")[0].split() for line in data.splitlines()]
    tokens = [t for line in lines for t in line]
    if not tokens or tokens[0] != b"OFF":
        raise ValueError("not an OFF file (missing 'OFF' header)")
    pos = 1
    n_vertices, n_faces = int(tokens[pos]), int(tokens[pos + 1])
    pos += 3
    vertices = np.asarray(tokens[pos : pos + 3 * n_vertices], dtype=np.float64).reshape(n_vertices, 3)
    pos += 3 * n_vertices
    polygons = []
    for _ in range(n_faces):
        n = int(tokens[pos])
        polygons.append([int(t) for t in tokens[pos + 1 : pos + 1 + n]])
        pos += 1 + n
    return vertices.astype(np.float32), _fan(polygons)


def _merge_corners(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangle soup (F, 3, 3) -> shared vertices (in order of first use) and faces (F, 3)."""
    flat = corners.reshape(-1, 3)
    if len(flat) == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    unique, first, inverse = np.unique(flat, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return unique[order].astype(np.float32), rank[inverse.reshape(-1)].reshape(-1, 3).astype(np.int64)


def _parse_stl(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    if len(data) >= 84:
        (n,) = struct.unpack_from("<I", data, 80)
        if len(data) == 84 + n * _STL_RECORD.itemsize:  # binary (its header may start with "solid" too)
            records = np.frombuffer(data, dtype=_STL_RECORD, count=n, offset=84)
            return _merge_corners(records["corners"])
    if not data.lstrip().startswith(b"solid"):
        raise ValueError("not an STL file (neither a binary STL of consistent size nor ASCII 'solid')")
    values = []
    for line in data.splitlines():
        tokens = line.split()
        if tokens and tokens[0] == b"vertex":
            values.append([float(t) for t in tokens[1:4]])
    if len(values) % 3:
        raise ValueError(f"ASCII STL holds {len(values)} vertices, not a multiple of 3")
    return _merge_corners(np.asarray(values, np.float32).reshape(-1, 3, 3))


_GLTF_COMPONENTS = {5120: "i1", 5121: "u1", 5122: "<i2", 5123: "<u2", 5125: "<u4", 5126: "<f4"}
_GLTF_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


def _gltf_accessor(doc: dict, binary: bytes, index: int) -> np.ndarray:
    """The accessor's elements as an (count, width) array."""
    acc = doc["accessors"][index]
    if "sparse" in acc:
        raise ValueError(f"accessor {index}: sparse accessors are not supported")
    if acc.get("type") not in _GLTF_WIDTH or acc.get("componentType") not in _GLTF_COMPONENTS:
        raise ValueError(f"accessor {index}: unsupported type {acc.get('type')!r} / "
                         f"componentType {acc.get('componentType')!r}")
    width = _GLTF_WIDTH[acc["type"]]
    dtype = np.dtype(_GLTF_COMPONENTS[acc["componentType"]])
    count = acc["count"]
    if "bufferView" not in acc:
        return np.zeros((count, width), dtype)
    view = doc["bufferViews"][acc["bufferView"]]
    if view.get("buffer", 0) != 0 or "uri" in doc["buffers"][view.get("buffer", 0)]:
        raise ValueError("only the GLB's own binary chunk is supported as a buffer (no external files)")
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    stride = view.get("byteStride") or width * dtype.itemsize
    if count and start + (count - 1) * stride + width * dtype.itemsize > len(binary):
        raise ValueError(f"accessor {index} reaches past the end of the binary chunk")
    rows = np.lib.stride_tricks.as_strided(
        np.frombuffer(binary, dtype=np.uint8, offset=start, count=len(binary) - start),
        shape=(count, width * dtype.itemsize), strides=(stride, 1))
    return np.ascontiguousarray(rows).view(dtype).reshape(count, width)


def _node_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.asarray(node["matrix"], np.float64).reshape(4, 4).T  # glTF matrices are column-major
    x, y, z, w = node.get("rotation", (0.0, 0.0, 0.0, 1.0))
    rotation = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    m = np.eye(4)
    m[:3, :3] = rotation * np.asarray(node.get("scale", (1.0, 1.0, 1.0)), np.float64)[None, :]
    m[:3, 3] = node.get("translation", (0.0, 0.0, 0.0))
    return m


def _parse_glb(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != _GLB_MAGIC:
        raise ValueError("not a GLB file (missing 'glTF' magic)")
    if version != 2:
        raise ValueError(f"glTF version {version} is not supported (only 2)")
    doc, binary, pos = None, b"", 12
    while pos + 8 <= min(length, len(data)):
        size, kind = struct.unpack_from("<II", data, pos)
        chunk = data[pos + 8 : pos + 8 + size]
        if len(chunk) != size:
            raise ValueError("truncated GLB chunk")
        if kind == _GLB_JSON:
            doc = json.loads(chunk.decode("utf-8"))
        elif kind == _GLB_BIN and not binary:
            binary = chunk
        pos += 8 + size
    if doc is None:
        raise ValueError("GLB file has no JSON chunk")
    required = doc.get("extensionsRequired", [])
    if required:
        raise ValueError(f"GLB needs the glTF extensions {', '.join(required)}, which onet does not read")

    nodes = doc.get("nodes", [])
    scenes = doc.get("scenes", [])
    if scenes:
        roots = scenes[doc.get("scene", 0)].get("nodes", [])
    else:  # no scene: every node that is nobody's child
        children = {c for n in nodes for c in n.get("children", [])}
        roots = [i for i in range(len(nodes)) if i not in children]
    parts_v, parts_f, n_vertices = [], [], 0
    stack = [(i, np.eye(4)) for i in roots]
    while stack:
        index, parent = stack.pop()
        node = nodes[index]
        world = parent @ _node_matrix(node)
        stack += [(c, world) for c in node.get("children", [])]
        if "mesh" not in node:
            continue
        for primitive in doc["meshes"][node["mesh"]]["primitives"]:
            mode = primitive.get("mode", 4)
            if mode != 4:
                raise ValueError(f"mesh {node['mesh']}: primitive mode {mode} is not triangles (4)")
            positions = _gltf_accessor(doc, binary, primitive["attributes"]["POSITION"]).astype(np.float64)
            if "indices" in primitive:
                indices = _gltf_accessor(doc, binary, primitive["indices"]).reshape(-1).astype(np.int64)
            else:
                indices = np.arange(len(positions), dtype=np.int64)
            if len(indices) % 3:
                raise ValueError(f"mesh {node['mesh']}: {len(indices)} indices is not a multiple of 3")
            if len(indices) and (indices.min() < 0 or indices.max() >= len(positions)):
                raise ValueError(f"mesh {node['mesh']}: an index points past the {len(positions)} positions")
            parts_v.append(positions @ world[:3, :3].T + world[:3, 3])
            parts_f.append(indices.reshape(-1, 3) + n_vertices)
            n_vertices += len(positions)
    if not parts_v:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    return np.concatenate(parts_v).astype(np.float32), np.concatenate(parts_f)
