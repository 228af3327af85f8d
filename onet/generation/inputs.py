"""Users' own input files for `onet generate --input DIR`.

Each loader turns one file into the tensor the encoder expects, or raises
`DataFormatError` naming the file and the problem, so a batch can skip it.
Point clouds are normalised like the training data (bounding box centred,
longest edge 1); the inverse transform maps the mesh back to the input frame.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from onet.data.dataset import load_image
from onet.data.formats import DataFormatError, check_array, read_binvox
from onet.geometry.formats import MESH_EXTENSIONS, describe_readable
from onet.geometry.normalize import bounding_box_normalization
from onet.utils.batch import describe
from onet.utils.errors import UsageError

# meshes given to a point-cloud model are sampled on their surface (PLY and OBJ may also be
# bare point clouds: vertices without faces are read as they are)
MESH_SUFFIXES = tuple(s for s in MESH_EXTENSIONS if s not in (".ply", ".obj"))
SUFFIXES = {
    "img": (".jpg", ".jpeg", ".png"),
    "pointcloud": (".ply", ".xyz", ".txt", ".npy", ".npz", ".obj") + MESH_SUFFIXES,
    "voxels": (".binvox", ".npy"),
}
MIN_POINTS = 3
MESH_SURFACE_POINTS = 10_000  # sampled on a mesh given as a point cloud


def describe_suffixes(input_type: str) -> str:
    """What a model of this input type reads, for messages."""
    if input_type == "pointcloud":
        return f"point clouds (ply/obj/xyz/txt/npy/npz) or meshes ({describe_readable()}), sampled on the surface"
    return "/".join(s.lstrip(".") for s in SUFFIXES[input_type])


@dataclass
class UserInput:
    name: str                # output name (relative path without suffix)
    path: Path
    inputs: torch.Tensor     # what the encoder takes for one object (no batch dim)
    loc: np.ndarray          # mesh_in_input_frame = mesh * scale + loc
    scale: float


def find_input_files(input_dir: str | Path, input_type: str) -> tuple[list[Path], Counter]:
    """The files under input_dir that the model's encoder reads (by suffix, hidden files aside),
    sorted, and {suffix: count} of the other files, which are left out (for a notice)."""
    root = Path(input_dir)
    if root.is_file():
        raise UsageError(f"--input takes a folder, and {root} is a file: put it in a folder of its own")
    if not root.is_dir():
        raise FileNotFoundError(f"input folder not found: {root}")
    files, other = [], Counter()
    for p in root.rglob("*"):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix.lower() in SUFFIXES[input_type]:
            files.append(p)
        else:
            other[p.suffix.lower() or "(no suffix)"] += 1
    return sorted(files), other


def output_names(files: list[Path], root: Path) -> list[str]:
    """One output name per input file: its relative path without the suffix.

    Files that differ only by suffix (chair.jpg, chair.png) get it appended
    (chair_jpg, chair_png), so neither mesh overwrites or hides the other.
    """
    stems = [str(p.relative_to(root).with_suffix("")) for p in files]
    counts = Counter(stems)
    return [s if counts[s] == 1 else f"{s}_{p.suffix.lower().lstrip('.')}" for s, p in zip(stems, files)]


def load_user_input(path: Path, root: Path, input_type: str, *, img_size: int = 224, pointcloud_n: int = 300,
                    voxel_resolution: int = 32, seed: int = 0) -> UserInput:
    name = str(path.relative_to(root).with_suffix(""))
    if path.stat().st_size == 0:  # say so plainly; readers' own messages for this are cryptic
        raise DataFormatError(path, "file is empty (0 bytes)")
    if input_type == "img":
        return UserInput(name, path, load_image(path, img_size), np.zeros(3), 1.0)
    if input_type == "pointcloud":
        points, loc, scale = _normalised_points(path, read_point_cloud(path))
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(points), size=pointcloud_n, replace=len(points) < pointcloud_n)
        return UserInput(name, path, torch.from_numpy(points[idx].astype(np.float32)), loc, scale)
    if input_type == "voxels":
        vox = pool_voxels(path, read_voxels(path), voxel_resolution)
        return UserInput(name, path, torch.from_numpy(vox.astype(np.float32)), np.zeros(3), 1.0)
    raise ValueError(f"unsupported input type {input_type!r}")


def read_point_cloud(path: Path) -> np.ndarray:
    """(N, 3) float64 points from ply / obj / xyz / txt / npy / npz (first three columns); a
    mesh (a .ply or .obj with faces, any other mesh format onet reads) gives
    MESH_SURFACE_POINTS points sampled uniformly on its surface."""
    suffix = path.suffix.lower()
    try:
        if suffix in MESH_SUFFIXES or suffix in (".ply", ".obj"):
            points = _surface_or_vertices(path)
        elif suffix in (".xyz", ".txt"):
            points = _read_text_points(path)
        elif suffix == ".npy":
            points = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as data:
                key = "points" if "points" in data.files else (data.files[0] if data.files else None)
                if key is None:
                    raise DataFormatError(path, "npz file holds no arrays")
                points = data[key]
    except DataFormatError:
        raise
    except Exception as exc:  # the mesh reader's messages start with the path already
        raise DataFormatError(path, f"cannot read point cloud ({describe(exc).removeprefix(f'{path}: ')})") from None
    # extra columns (normals, colours) are allowed; rows with NaN/inf (scanner holes) are dropped
    points = check_array(path, "point cloud", points, min_columns=3, finite=False)[:, :3].astype(np.float64)
    finite = np.isfinite(points).all(axis=1)
    points = check_array(path, "point cloud", points[finite], shape=(None, 3))
    if len(points) < MIN_POINTS:
        bad = "" if finite.all() else f" after dropping {int((~finite).sum())} NaN/inf points"
        raise DataFormatError(path, f"point cloud has {len(points)} usable points{bad}; at least {MIN_POINTS} needed")
    return points


def _surface_or_vertices(path: Path) -> np.ndarray:
    """Points on a mesh file's surface (MESH_SURFACE_POINTS by area: a mesh's vertices crowd at
    details and miss flat parts, so the encoder gets points spread as in training); the vertices
    of a .ply / .obj without faces (a scan saved as a mesh format)."""
    import trimesh

    from onet.geometry.mesh_io import load_mesh

    if path.suffix.lower() in (".ply", ".obj"):
        loaded = trimesh.load(path, process=False)
        if not isinstance(loaded, trimesh.Scene):  # one part: used as read (no second reading)
            if not (len(getattr(loaded, "faces", ())) and loaded.area > 0):
                return np.asarray(getattr(loaded, "vertices", np.empty((0, 3))))
            return trimesh.sample.sample_surface(loaded, MESH_SURFACE_POINTS, seed=0)[0]
    mesh = load_mesh(path)  # every part with its transform, cleaned; any format onet reads
    return trimesh.sample.sample_surface(mesh, MESH_SURFACE_POINTS, seed=0)[0]


def _read_text_points(path: Path) -> np.ndarray:
    """Rows of numbers separated by spaces, tabs, commas or semicolons (CSV exports of scanners
    and spreadsheets); one header line of column names ("x,y,z") is skipped. With semicolons,
    commas are decimal marks ("0,5;1,25;2": the spreadsheet export of comma-decimal locales)."""
    import io

    text = path.read_text(errors="replace")
    text = text.replace(",", ".") if ";" in text else text.replace(",", " ")
    lines = text.replace(";", " ").splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None:
        try:
            [float(v) for v in lines[first].split()]
        except ValueError:
            lines = lines[first + 1:]  # the header
    return np.loadtxt(io.StringIO("\n".join(lines)), ndmin=2)


def _normalised_points(path: Path, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    try:
        loc, scale = bounding_box_normalization(points)
    except ValueError:
        raise DataFormatError(path, "all points coincide; cannot normalise the point cloud") from None
    return (points - loc) / scale, loc, scale


def pool_voxels(path: Path, vox: np.ndarray, resolution: int) -> np.ndarray:
    """vox on the model's (R, R, R) grid: as it is, or a finer grid of the same box (k R per side)
    max-pooled: a cell of the model's grid is occupied when it meets the solid, i.e. when any of
    its k^3 sub-cells does. Other shapes raise naming the file."""
    R = resolution
    k = vox.shape[0] // R
    if vox.shape == (R,) * 3:
        return vox
    if k > 1 and vox.shape == (k * R,) * 3:
        return vox.reshape(R, k, R, k, R, k).max(axis=(1, 3, 5))
    raise DataFormatError(path, f"voxel grid must be {R}^3 (or a multiple, e.g. {2 * R}^3, which is pooled), "
                                f"got shape {vox.shape}")


def read_voxels(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".binvox":
        return read_binvox(path)
    try:
        vox = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataFormatError(path, f"cannot read voxel array ({describe(exc)})") from None
    return check_array(path, "voxel array", vox, shape=(None, None, None)) > 0.5
