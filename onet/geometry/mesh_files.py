"""Writing and reading triangle meshes: binary PLY, OBJ and OFF.

Every write is atomic (onet.utils.io): an interrupted run never leaves a
half-written mesh that looks complete. The readers accept what the writers
produce plus the common variants (ASCII / big-endian PLY, OBJ polygons and
v/vt/vn face tokens, OFF comments), enough to read meshes from other tools.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from onet.geometry.mesh import check_mesh
from onet.utils.io import write_bytes_atomic

FORMATS = ("ply", "obj", "off")


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is None:
        fmt = path.suffix.lower().lstrip(".")
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown mesh format {fmt!r} for {path}: use a .ply, .obj or .off suffix or fmt=")
    return fmt


def export_mesh(path: str | os.PathLike, vertices, faces, *, vertex_normals=None, fmt: str | None = None) -> None:
    """Write a triangle mesh to `path` atomically.

    vertices (V, 3), faces (F, 3) 0-based, vertex_normals (V, 3) or None.
    fmt: "ply" (binary little-endian), "obj" or "off"; None -> from the suffix.
    OFF has no normals; they are dropped there.
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
    else:
        data = _off_bytes(vertices, faces)
    write_bytes_atomic(path, data)


def read_mesh(path: str | os.PathLike, *, fmt: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a triangle mesh: vertices (V, 3) float32, faces (F, 3) int64 (polygons fan-triangulated)."""
    path = Path(path)
    fmt = _format_of(path, fmt)
    data = path.read_bytes()
    try:
        if fmt == "ply":
            vertices, faces = _parse_ply(data)
        elif fmt == "obj":
            vertices, faces = _parse_obj(data)
        else:
            vertices, faces = _parse_off(data)
    except (ValueError, IndexError, UnicodeDecodeError) as e:
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
