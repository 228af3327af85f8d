"""Readers and writers for the files of an onet dataset (DESIGN §4).

The readers accept the published ONet ShapeNet files as they are; the writers
produce the same layout, always atomically (see `onet.utils.io`).

Camera convention (cameras.npz, `onet.geometry.render`):
    world_mat = [R | t] (3, 4) maps world to camera coordinates, X_cam = R X + t.
    The camera looks along +z, with x to the right and y down (image rows).
    camera_mat = K (3, 3) is in pixels, so a world point X lands at pixel
    (u, v) = (K @ (R X + t)) dehomogenised; u is the column, v the row, and the
    pixel with indices [row, col] covers [col, col + 1) x [row, row + 1).

Depth maps (depth.npz beside cameras.npz, `onet preprocess --depth`):
    depth_i (H, W) float32 is the camera-space z (distance along the viewing
    axis, in normalised object units) of the surface seen through the centre of
    each pixel of view i, 0 where no surface is seen. Pixel [row, col] with
    depth d > 0 shows the world point R^T (d K^-1 (col + 0.5, row + 0.5, 1) - t)
    (`onet.geometry.render.depth_to_points`).

Voxel convention: arrays are indexed [x, y, z]; a (D, D, D) grid covers the
cube [-0.5, 0.5]^3 with cell i centred at (i + 0.5) / D - 0.5 along each axis.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import yaml

from onet.utils.io import savez_atomic, write_bytes_atomic, write_text_atomic

# Occupancy samples around the surface (`onet preprocess --near-surface N`): an optional
# file beside points.npz, same layout (DESIGN §10); loaders never require it.
POINTS_NEAR_SURFACE_FILE = "points_near_surface.npz"

__all__ = [
    "DataFormatError",
    "check_array",
    "read_binvox",
    "write_binvox",
    "OccupancySamples",
    "load_points_npz",
    "write_points_npz",
    "load_pointcloud_npz",
    "write_pointcloud_npz",
    "load_cameras_npz",
    "write_cameras_npz",
    "load_depth_npz",
    "write_depth_npz",
    "read_split",
    "write_split",
    "read_metadata",
    "write_metadata",
]

PathLike = str | os.PathLike


class DataFormatError(ValueError):
    """A dataset file exists but its content is not what the format requires."""

    def __init__(self, path: PathLike, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


# --------------------------------------------------------------------------- arrays


def _shape_text(shape: Sequence[int | None]) -> str:
    names = iter("NMKL")
    dims = [str(d) if d is not None else next(names) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def check_array(path: PathLike, name: str, a: Any, *, shape: Sequence[int | None] | None = None,
                min_columns: int | None = None, finite: bool = True) -> np.ndarray:
    """The one check every array read from a file goes through: numeric, the expected shape, finite.

    Args:
        path: the file the array came from (named in the error).
        name: what the array is ("points", "normals", ...).
        shape: expected shape, None for a free axis: (None, 3) is an (N, 3) array.
        min_columns: a 2D array with at least this many columns (extra columns allowed).
        finite: refuse NaN / inf values.
    A (3, N) array where (N, 3) rows are expected is refused as ambiguous (points stored as
    columns would otherwise be read as 3 points). Raises DataFormatError naming the file.
    Returns the array (np.asarray of `a`).
    """
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise DataFormatError(path, f"{name} must be a numeric array, got dtype {a.dtype}")
    columns = None if shape is None else shape[-1]
    if min_columns is not None or columns is not None:
        need = min_columns if min_columns is not None else columns
        if a.ndim == 2 and a.shape[0] == need and a.shape[1] != need and (columns is None or a.shape[1] != columns):
            raise DataFormatError(path, f"{name} has shape {a.shape}: ambiguous, it looks like {a.shape[1]} points "
                                        f"stored as columns; store one point per row, shape (N, {need})")
    if min_columns is not None and (a.ndim != 2 or a.shape[1] < min_columns):
        raise DataFormatError(path, f"{name} must be an (N, {min_columns}) array, got shape {a.shape} "
                                    "(extra columns are allowed)")
    if shape is not None and (a.ndim != len(shape) or any(d is not None and d != n for d, n in zip(shape, a.shape))):
        raise DataFormatError(path, f"{name} must have shape {_shape_text(shape)}, got {a.shape}")
    if finite and a.dtype.kind == "f":
        bad = _count_nonfinite(a)
        if bad:
            raise DataFormatError(path, f"{name} holds {bad} NaN/inf value{'s' if bad > 1 else ''} "
                                        f"(of {a.size}); the file is corrupt")
    return a


def _count_nonfinite(a: np.ndarray) -> int:
    if a.dtype == np.float16:
        # NaN and inf are the all-ones exponent; on the bits this is 10x faster than np.isfinite,
        # which converts float16 (the published points) element by element
        bits = np.ascontiguousarray(a).view(np.uint16)
        return int(np.count_nonzero((bits & 0x7C00) == 0x7C00))
    return int(a.size - np.count_nonzero(np.isfinite(a)))


# --------------------------------------------------------------------------- binvox


def read_binvox(path: PathLike, *, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Read a binvox file.

    shape: the grid size the caller needs (e.g. (32, 32, 32)); another size is a
    DataFormatError naming the file and both sizes.
    Returns:
        voxels: bool (D, H, W) indexed [x, y, z]; (D, D, D) for the usual cubic
        files. binvox stores the run-length data with y varying fastest, then
        z, then x, so the raw grid is [x, z, y] and is transposed here.
    """
    path = Path(path)
    data = path.read_bytes()
    if not data.startswith(b"#binvox"):
        raise DataFormatError(path, "not a binvox file (missing '#binvox' header)")
    dims = None
    pos = data.index(b"\n") + 1
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            raise DataFormatError(path, "binvox header has no 'data' line")
        line = data[pos:end].strip()
        pos = end + 1
        if line == b"data":
            break
        fields = line.split()
        if not fields:
            continue
        if fields[0] == b"dim":
            try:
                dims = tuple(int(v) for v in fields[1:])
            except ValueError:
                dims = ()
            if len(dims) != 3 or min(dims) < 1:
                raise DataFormatError(path, f"bad binvox dim line {line.decode(errors='replace')!r}")
        elif fields[0] not in (b"translate", b"scale"):
            raise DataFormatError(path, f"unknown binvox header line {line.decode(errors='replace')!r}")
    if dims is None:
        raise DataFormatError(path, "binvox header has no 'dim' line")
    if shape is not None and tuple(dims) != tuple(shape):  # raw [x, z, y] dims: cubic grids compare equal
        raise DataFormatError(path, f"voxel grid is {'x'.join(map(str, dims))}; expected {'x'.join(map(str, shape))}")

    runs = np.frombuffer(data, dtype=np.uint8, offset=pos)
    if runs.size % 2:
        raise DataFormatError(path, f"binvox data has an odd number of bytes ({runs.size}); expected (value, count) pairs")
    values, counts = runs[0::2], runs[1::2].astype(np.int64)
    n_expected = int(np.prod(dims))
    if counts.sum() != n_expected:
        raise DataFormatError(path, f"binvox data holds {counts.sum()} voxels, header dim {dims} needs {n_expected}")
    if np.any(values > 1):
        raise DataFormatError(path, "binvox data values must be 0 or 1")
    flat = np.repeat(values.astype(bool), counts)
    # raw order is [x, z, y] (y fastest); swap the last two axes to get [x, y, z]
    return np.ascontiguousarray(flat.reshape(dims).transpose(0, 2, 1))


def write_binvox(
    path: PathLike,
    voxels: np.ndarray,
    *,
    translate: Sequence[float] = (-0.5, -0.5, -0.5),
    scale: float = 1.0,
) -> None:
    """Write `voxels` (bool (D, H, W) indexed [x, y, z]) as a binvox file, atomically.

    `translate` and `scale` are the binvox header fields: the grid spans
    translate + [0, scale] along each axis; the defaults describe [-0.5, 0.5]^3.
    """
    voxels = np.asarray(voxels)
    if voxels.ndim != 3 or min(voxels.shape) < 1:
        raise ValueError(f"voxels must be a non-empty 3D array, got shape {voxels.shape}")
    translate = np.asarray(translate, dtype=np.float64)
    if translate.shape != (3,):
        raise ValueError(f"translate must have 3 values, got shape {translate.shape}")
    # binvox order: [x, z, y] with y fastest
    flat = voxels.astype(bool).transpose(0, 2, 1).reshape(-1).astype(np.uint8)
    starts = np.flatnonzero(np.concatenate([[True], flat[1:] != flat[:-1]]))
    lengths = np.diff(np.append(starts, flat.size))
    values = flat[starts]
    # a run is stored as (value, count) with count <= 255, so long runs are split
    n_pieces = -(-lengths // 255)
    run_values = np.repeat(values, n_pieces)
    run_counts = np.full(run_values.size, 255, dtype=np.int64)
    last = np.cumsum(n_pieces) - 1
    run_counts[last] = lengths - 255 * (n_pieces - 1)
    body = np.stack([run_values, run_counts.astype(np.uint8)], axis=1).reshape(-1)
    xs, zs, ys = voxels.transpose(0, 2, 1).shape
    header = (
        "#binvox 1\n"
        f"dim {xs} {zs} {ys}\n"
        f"translate {translate[0]:.9g} {translate[1]:.9g} {translate[2]:.9g}\n"
        f"scale {float(scale):.9g}\n"
        "data\n"
    )
    write_bytes_atomic(path, header.encode("ascii") + body.tobytes())


# --------------------------------------------------------------------------- npz


_LOC_SCALE = ("loc", "scale")


def _load_npz(path: PathLike, required: Iterable[str], *, also: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an npz file: all of them, or with `also` only `required` and those of `also`
    present (the others are neither read nor CRC-checked: a loader wanting the surface points
    of pointcloud.npz skips its normals, half the file). Errors name the file."""
    path = Path(path)
    required = tuple(required)
    wanted = None if also is None else set(required) | set(also)
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in required if k not in f.files]
            if missing:
                raise DataFormatError(path, f"missing arrays {missing} (has {sorted(f.files)})")
            arrays = {k: f[k] for k in f.files if wanted is None or k in wanted}
    except (FileNotFoundError, DataFormatError):
        raise
    except Exception as e:  # a truncated or non-zip file raises several types
        raise DataFormatError(path, f"cannot read as .npz ({e})") from e
    return arrays


def _loc_scale(path: Path, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
    # files written without a normalisation record mean the identity transform
    loc = check_array(path, "loc", np.asarray(arrays.get("loc", np.zeros(3))).reshape(-1), shape=(3,))
    scale = check_array(path, "scale", arrays.get("scale", 1.0))
    if scale.size != 1:
        raise DataFormatError(path, f"scale must be a scalar, got shape {scale.shape}")
    scale = float(scale.reshape(()))
    if not scale > 0:
        raise DataFormatError(path, f"scale must be positive, got {scale}")
    return loc.astype(np.float32), scale


def _points3(path: Path, name: str, a: np.ndarray) -> np.ndarray:
    a = check_array(path, name, a, shape=(None, 3))
    if len(a) == 0:  # nothing to sample from: say so here, not as a sampler's "high <= 0"
        raise DataFormatError(path, f"{name} is empty (0 points)")
    return a


class OccupancySamples:
    """A points.npz as stored (float16 points, packed occupancies), checked; rows convert when taken.

    A training item draws 2,048 of a file's 100,000 points: converting the whole file to
    float32 and unpacking every label took 1.5 of the item's 3.7 ms (the loader, not the
    step, sets a GPU's pace). `take` converts the drawn rows only, to the same values.
    """

    def __init__(self, path: PathLike):
        self.path = Path(path)
        arrays = _load_npz(self.path, ("points", "occupancies"), also=_LOC_SCALE)
        self.points = _points3(self.path, "points", arrays["points"])  # stored dtype, checked finite
        n = len(self.points)
        occ = check_array(self.path, "occupancies", arrays["occupancies"]).reshape(-1)
        self.packed = occ.size != n
        if self.packed and not (occ.size == (n + 7) // 8 and occ.dtype == np.uint8):
            raise DataFormatError(
                self.path, f"occupancies have {occ.size} values ({occ.dtype}); expected {n} or {(n + 7) // 8} "
                           "packed uint8 bytes")
        self.occupancies = occ
        self.loc, self.scale = _loc_scale(self.path, arrays)

    def __len__(self) -> int:
        return len(self.points)

    def take(self, sel: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(points float32 (n, 3), occupancies bool (n,)) of rows sel (integer indices), all rows for None."""
        if sel is None:
            points = self.points.astype(np.float32)
            if self.packed:
                return points, np.unpackbits(self.occupancies)[:len(points)].astype(bool)
            return points, self.occupancies != 0
        sel = np.asarray(sel, dtype=np.int64)
        points = self.points[sel].astype(np.float32)
        if self.packed:  # np.packbits' order: the first of 8 labels is a byte's highest bit
            return points, ((self.occupancies[sel >> 3] >> (7 - (sel & 7)).astype(np.uint8)) & 1) != 0
        return points, self.occupancies[sel] != 0


def load_points_npz(path: PathLike, *, jitter: float = 0.0, rng: np.random.Generator | None = None) -> dict[str, Any]:
    """Load a points.npz file (uniform points with occupancy labels).

    Occupancies may be stored packed (np.packbits, ceil(N/8) bytes, as in the
    published data) or unpacked (N values); both are returned unpacked.
    `jitter` > 0 adds Gaussian noise of that standard deviation to the points;
    ONet uses 1e-4 for float16 files so the training points do not all sit on
    the float16 lattice. (`OccupancySamples` reads the file without converting it.)

    Returns:
        dict with points float32 (N, 3), occupancies bool (N,), loc float32 (3,),
        scale float.
    """
    samples = OccupancySamples(path)
    points, occupancies = samples.take()
    if jitter > 0:
        rng = np.random.default_rng() if rng is None else rng
        points += (jitter * rng.standard_normal(points.shape)).astype(np.float32)
    return {"points": points, "occupancies": occupancies, "loc": samples.loc, "scale": samples.scale}


def write_points_npz(
    path: PathLike, points: np.ndarray, occupancies: np.ndarray, *, loc: Sequence[float], scale: float
) -> None:
    """Write points (N, 3) as float16 and occupancies (N,) bool as np.packbits, atomically."""
    points = np.asarray(points)
    occupancies = np.asarray(occupancies).reshape(-1)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {points.shape}")
    if occupancies.shape != (points.shape[0],):
        raise ValueError(f"occupancies must have shape ({points.shape[0]},), got {occupancies.shape}")
    savez_atomic(
        path,
        points=points.astype(np.float16),
        occupancies=np.packbits(occupancies.astype(bool)),
        loc=np.asarray(loc, dtype=np.float32).reshape(3),
        scale=np.asarray(scale, dtype=np.float32).reshape(()),
    )


def load_pointcloud_npz(path: PathLike, *, as_stored: bool = False, normals: bool = True) -> dict[str, Any]:
    """Load a pointcloud.npz file (surface samples with normals).

    as_stored: keep the arrays in the file's dtype (float16 in published files) for a
    caller that converts only the rows it draws. normals=False: the points alone (the
    normals are not read; "normals" is None).
    Returns:
        dict with points float32 (N, 3), normals float32 (N, 3), loc float32 (3,),
        scale float.
    """
    path = Path(path)
    names = ("points", "normals") if normals else ("points",)
    arrays = _load_npz(path, names, also=_LOC_SCALE)
    out = {name: _points3(path, name, arrays[name]) for name in names}
    if not as_stored:
        out = {name: a.astype(np.float32) for name, a in out.items()}
    if normals and out["normals"].shape != out["points"].shape:
        raise DataFormatError(path, f"normals {out['normals'].shape} and points {out['points'].shape} differ in shape")
    loc, scale = _loc_scale(path, arrays)
    return {"points": out["points"], "normals": out.get("normals"), "loc": loc, "scale": scale}


def write_pointcloud_npz(
    path: PathLike, points: np.ndarray, normals: np.ndarray, *, loc: Sequence[float], scale: float
) -> None:
    """Write surface points and normals (N, 3) as float16, atomically."""
    points, normals = np.asarray(points), np.asarray(normals)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {points.shape}")
    if normals.shape != points.shape:
        raise ValueError(f"normals must have the shape of points {points.shape}, got {normals.shape}")
    savez_atomic(
        path,
        points=points.astype(np.float16),
        normals=normals.astype(np.float16),
        loc=np.asarray(loc, dtype=np.float32).reshape(3),
        scale=np.asarray(scale, dtype=np.float32).reshape(()),
    )


# --------------------------------------------------------------------------- cameras

_CAMERA_KEY = re.compile(r"^(camera_mat|world_mat)(_inv)?_(\d+)$")


def write_cameras_npz(path: PathLike, cameras: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
    """Write cameras [(K (3, 3), RT (3, 4)), ...] as camera_mat_i / world_mat_i, atomically."""
    arrays = {}
    for i, (K, RT) in enumerate(cameras):
        K, RT = np.asarray(K, dtype=np.float32), np.asarray(RT, dtype=np.float32)
        if K.shape != (3, 3) or RT.shape != (3, 4):
            raise ValueError(f"camera {i}: K must be (3, 3) and RT (3, 4), got {K.shape} and {RT.shape}")
        arrays[f"camera_mat_{i}"] = K
        arrays[f"world_mat_{i}"] = RT
    if not arrays:
        raise ValueError("cameras must not be empty")
    savez_atomic(path, **arrays)


def load_cameras_npz(path: PathLike) -> list[tuple[np.ndarray, np.ndarray]]:
    """Load cameras.npz as a list of (K float32 (3, 3), RT float32 (3, 4)), view i at index i.

    The inverse matrices some files carry (camera_mat_inv_i, world_mat_inv_i)
    are ignored; a 4x4 world_mat with last row [0, 0, 0, 1] is accepted.
    """
    path = Path(path)
    arrays = _load_npz(path, ())
    views: dict[int, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        m = _CAMERA_KEY.match(key)
        if m is None or m.group(2):
            continue
        views.setdefault(int(m.group(3)), {})[m.group(1)] = value
    if not views:
        raise DataFormatError(path, f"no camera_mat_i / world_mat_i arrays (has {sorted(arrays)})")
    if sorted(views) != list(range(len(views))):
        raise DataFormatError(path, f"view indices must be 0..{len(views) - 1}, got {sorted(views)}")
    cameras = []
    for i in range(len(views)):
        if set(views[i]) != {"camera_mat", "world_mat"}:
            raise DataFormatError(path, f"view {i} needs both camera_mat_{i} and world_mat_{i}")
        K = check_array(path, f"camera_mat_{i}", views[i]["camera_mat"], shape=(3, 3)).astype(np.float32)
        RT = check_array(path, f"world_mat_{i}", views[i]["world_mat"]).astype(np.float32)
        if RT.shape == (4, 4) and np.allclose(RT[3], [0, 0, 0, 1]):
            RT = RT[:3]
        cameras.append((K, check_array(path, f"world_mat_{i}", RT, shape=(3, 4))))
    return cameras


_DEPTH_KEY = re.compile(r"^depth_(\d+)$")


def write_depth_npz(path: PathLike, depth: Sequence[np.ndarray]) -> None:
    """Write depth maps [(H, W)] * n_views as depth_0 .. depth_{n-1}, compressed, atomically."""
    arrays = {}
    for i, d in enumerate(depth):
        d = np.asarray(d, dtype=np.float32)
        if d.ndim != 2:
            raise ValueError(f"depth {i} must be (H, W), got {d.shape}")
        if not np.isfinite(d).all() or (d < 0).any():
            raise ValueError(f"depth {i} must be finite and >= 0 (0: no surface)")
        arrays[f"depth_{i}"] = d
    if not arrays:
        raise ValueError("depth must not be empty")
    savez_atomic(path, compressed=True, **arrays)


def load_depth_npz(path: PathLike) -> list[np.ndarray]:
    """Load depth.npz as [float32 (H, W)] * n_views, view i at index i (0 where no surface)."""
    path = Path(path)
    arrays = _load_npz(path, ())
    views = {int(m.group(1)): v for k, v in arrays.items() if (m := _DEPTH_KEY.match(k))}
    if not views:
        raise DataFormatError(path, f"no depth_i arrays (has {sorted(arrays)})")
    if sorted(views) != list(range(len(views))):
        raise DataFormatError(path, f"view indices must be 0..{len(views) - 1}, got {sorted(views)}")
    out = []
    for i in range(len(views)):
        out.append(check_array(path, f"depth_{i}", views[i], shape=(None, None)).astype(np.float32))
    return out


# --------------------------------------------------------------------------- lists


def read_split(path: PathLike) -> list[str]:
    """Read a split list (train.lst, ...): one model id per line; blank lines are ignored.

    An id given twice (it would be trained on twice as often) or holding a path
    separator or '..' (it would reach outside its category folder) is a
    DataFormatError naming the file and the line.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"not a UTF-8 text file (byte {exc.start})") from None
    ids, seen = [], {}
    for number, line in enumerate(text.splitlines(), 1):
        model_id = line.strip()
        if not model_id:
            continue
        if "/" in model_id or "\\" in model_id or model_id in (".", ".."):
            raise DataFormatError(path, f"line {number}: model id {model_id!r} must be a plain folder name "
                                        "(no path separators)")
        if model_id in seen:
            raise DataFormatError(path, f"line {number}: model id {model_id!r} is listed twice "
                                        f"(first on line {seen[model_id]})")
        seen[model_id] = number
        ids.append(model_id)
    return ids


def write_split(path: PathLike, ids: Iterable[str]) -> None:
    """Write a split list, one id per line, atomically."""
    ids = [str(i) for i in ids]
    bad = [i for i in ids if not i or i != i.strip() or "\n" in i]
    if bad:
        raise ValueError(f"model ids must be non-empty without surrounding whitespace, got {bad[:3]}")
    write_text_atomic(path, "".join(i + "\n" for i in ids))


def read_metadata(path: PathLike) -> dict[str, dict[str, str]]:
    """Read metadata.yaml: {category_id: {"id": category_id, "name": "chair,..."}}."""
    path = Path(path)
    # BaseLoader keeps every scalar a string: ShapeNet synset ids such as
    # 04256520 would otherwise be read as octal integers
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    except yaml.YAMLError as e:
        raise DataFormatError(path, f"invalid YAML ({e})") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataFormatError(path, "metadata must be a mapping {category_id: {id: ..., name: ...}}")
    out = {}
    for key, entry in data.items():
        if not isinstance(entry, dict):
            raise DataFormatError(path, f"entry {key!r} must be a mapping with 'id' and 'name'")
        out[str(key)] = {**entry, "id": entry.get("id", str(key)), "name": entry.get("name", str(key))}
    return out


def write_metadata(path: PathLike, metadata: dict[str, dict[str, str]]) -> None:
    """Write metadata.yaml ({category_id: {"id": ..., "name": ...}}), atomically."""
    clean = {}
    for key, entry in metadata.items():
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError(f"metadata entry {key!r} must be a dict with at least 'name', got {entry!r}")
        clean[str(key)] = {"id": str(entry.get("id", key)), "name": str(entry["name"])}
    buf = io.StringIO()
    yaml.safe_dump(clean, buf, sort_keys=True, default_flow_style=False)
    write_text_atomic(path, buf.getvalue())
