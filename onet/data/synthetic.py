"""Procedural ShapeNet-like shapes and the built-in synthetic dataset.

Each shape is a union of parts; a part is a primitive solid (box, frustum or
cylinder, ellipsoid, torus) minus optional primitive holes. The mesh is the
exact boolean union of tessellated primitives (manifold3d), so it is
watertight, and `SyntheticShape.occupancy` evaluates the same union
analytically on the exact (untessellated) primitives: ground truth with no
ray casting. World axes are y-up like ShapeNet; every shape is normalised so
its mesh bounding box is centred at 0 with longest edge 1.
"""

from __future__ import annotations

import io
import zlib
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import manifold3d
import numpy as np
import yaml
from PIL import Image
from tqdm import tqdm

from onet.data.formats import (
    write_binvox,
    write_cameras_npz,
    write_metadata,
    write_pointcloud_npz,
    write_points_npz,
    write_split,
)
from onet.geometry.render import default_cameras, render_mesh
from onet.geometry.sampling import sample_surface, sample_uniform_points
from onet.geometry.voxelize import voxelize
from onet.utils.io import write_bytes_atomic, write_text_atomic
from onet.utils.lazy import lazy_import
from onet.utils.parallel import usable_cpus, worker_pool

trimesh = lazy_import("trimesh")  # 1-1.5 s of start-up: imported on first use

__all__ = [
    "CATEGORIES",
    "Primitive",
    "Box",
    "Frustum",
    "Ellipsoid",
    "Torus",
    "Part",
    "SyntheticShape",
    "make_shape",
    "build_synthetic_dataset",
    "IMAGE_FOLDER",
    "STAMP_NAME",
]

# category folder id -> human-readable name (metadata.yaml)
CATEGORIES: dict[str, str] = {
    "table": "table",
    "chair": "chair",
    "lamp": "lamp",
    "sofa": "sofa,couch,lounge",
    "bottle": "bottle",
    "mug": "mug",
}

IMAGE_FOLDER = "img_choy2016"
STAMP_NAME = "synthetic.yaml"
# bump when shapes or file contents change, so stale datasets are detected
GENERATOR_VERSION = 1

# tessellation: polygon vertices lie on the true surface, so the mesh is a
# little inside the analytic solid; 64 segments lose 0.16% of a disc's area
CIRCLE_SEGMENTS = 64
SPHERE_SEGMENTS = 48
TORUS_TUBE_SEGMENTS = 24


# --------------------------------------------------------------------------- primitives


def _axis_frame(axis: Sequence[float]) -> np.ndarray:
    """A rotation (3, 3) whose third column is the unit vector along `axis`."""
    z = np.asarray(axis, dtype=np.float64)
    z = z / np.linalg.norm(z)
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


@dataclass(frozen=True, eq=False)
class Primitive:
    """A solid in its local frame, placed by a rigid pose: world = rotation @ local + center."""

    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def contains(self, points: np.ndarray) -> np.ndarray:
        """points (N, 3) world -> bool (N,), boundary included."""
        local = (np.asarray(points, dtype=np.float64) - self.center) @ self.rotation
        return self._contains_local(local)

    def manifold(self) -> manifold3d.Manifold:
        affine = np.concatenate([self.rotation, self.center[:, None]], axis=1)
        return self._manifold_local().transform(affine)

    def _contains_local(self, p: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _manifold_local(self) -> manifold3d.Manifold:
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Box(Primitive):
    """Axis-aligned (in its frame) box centred at the origin with half extents `half` (3,)."""

    half: np.ndarray = field(default_factory=lambda: np.full(3, 0.5))

    def _contains_local(self, p):
        a = np.abs(p)  # per axis: numpy's all() over a length-3 row is several times slower
        return (a[:, 0] <= self.half[0]) & (a[:, 1] <= self.half[1]) & (a[:, 2] <= self.half[2])

    def _manifold_local(self):
        return manifold3d.Manifold.cube(tuple(2 * self.half), center=True)


@dataclass(frozen=True, eq=False)
class Frustum(Primitive):
    """Truncated cone along local z in [0, height], radius r0 at z=0 and r1 at z=height."""

    r0: float = 0.5
    r1: float = 0.5
    height: float = 1.0

    def _contains_local(self, p):
        z = p[:, 2]
        radius = self.r0 + (self.r1 - self.r0) * z / self.height
        return (z >= 0) & (z <= self.height) & (np.hypot(p[:, 0], p[:, 1]) <= radius)

    def _manifold_local(self):
        return manifold3d.Manifold.cylinder(self.height, self.r0, self.r1, CIRCLE_SEGMENTS)


@dataclass(frozen=True, eq=False)
class Ellipsoid(Primitive):
    """Ellipsoid centred at the origin with semi-axes `radii` (3,)."""

    radii: np.ndarray = field(default_factory=lambda: np.full(3, 0.5))

    def _contains_local(self, p):
        q = p / self.radii
        return q[:, 0] ** 2 + q[:, 1] ** 2 + q[:, 2] ** 2 <= 1

    def _manifold_local(self):
        return manifold3d.Manifold.sphere(1.0, SPHERE_SEGMENTS).scale(tuple(self.radii))


@dataclass(frozen=True, eq=False)
class Torus(Primitive):
    """Torus around local z: tube radius `minor` swept along a circle of radius `major`."""

    major: float = 0.5
    minor: float = 0.1

    def _contains_local(self, p):
        return (np.hypot(p[:, 0], p[:, 1]) - self.major) ** 2 + p[:, 2] ** 2 <= self.minor**2

    def _manifold_local(self):
        tube = manifold3d.CrossSection.circle(self.minor, TORUS_TUBE_SEGMENTS).translate((self.major, 0.0))
        return manifold3d.Manifold.revolve(tube, CIRCLE_SEGMENTS)


@dataclass(frozen=True, eq=False)
class Part:
    """A solid minus holes that only apply to it (a mug's cavity, a lamp shade's hollow)."""

    solid: Primitive
    holes: tuple[Primitive, ...] = ()

    def contains(self, points: np.ndarray) -> np.ndarray:
        inside = self.solid.contains(points)
        for hole in self.holes:
            inside &= ~hole.contains(points)
        return inside

    def manifold(self) -> manifold3d.Manifold:
        m = self.solid.manifold()
        for hole in self.holes:
            m = m - hole.manifold()
        return m


_UP = _axis_frame([0, 1, 0])  # local z -> world +y


def _box(lo, hi) -> Box:
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return Box(center=(lo + hi) / 2, half=(hi - lo) / 2)


def _vcyl(x, z, y0, y1, r0, r1=None) -> Frustum:
    """Vertical frustum (cylinder when r1 is None) on the axis (x, z), from y0 up to y1."""
    return Frustum(center=np.array([x, y0, z], dtype=np.float64), rotation=_UP, r0=r0, r1=r0 if r1 is None else r1, height=y1 - y0)


# --------------------------------------------------------------------------- categories
# Sizes are in metres-like units before normalisation. Touching parts overlap a
# little so the union is one connected solid without coincident faces.


def _legs(xs, zs, y_top, round_legs, size) -> list[Part]:
    parts = []
    for x in xs:
        for z in zs:
            if round_legs:
                parts.append(Part(_vcyl(x, z, 0.0, y_top, size / 2)))
            else:
                parts.append(Part(_box([x - size / 2, 0, z - size / 2], [x + size / 2, y_top, z + size / 2])))
    return parts


def _table(rng) -> list[Part]:
    height = rng.uniform(0.6, 0.85)
    top = rng.uniform(0.03, 0.07)
    if rng.random() < 0.3:  # round table on a pedestal
        r = rng.uniform(0.4, 0.7)
        parts = [Part(_vcyl(0, 0, height - top, height, r))]
        parts.append(Part(_vcyl(0, 0, 0.02, height - top + 0.01, rng.uniform(0.04, 0.08))))
        parts.append(Part(_vcyl(0, 0, 0.0, 0.03, r * rng.uniform(0.4, 0.7))))
        return parts
    width = rng.uniform(0.9, 1.6)
    depth = width * rng.uniform(0.45, 0.9)
    parts = [Part(_box([-width / 2, height - top, -depth / 2], [width / 2, height, depth / 2]))]
    leg = rng.uniform(0.04, 0.08)
    inset = leg / 2 + rng.uniform(0.0, 0.08)
    xs, zs = (-width / 2 + inset, width / 2 - inset), (-depth / 2 + inset, depth / 2 - inset)
    parts += _legs(xs, zs, height - top + 0.01, rng.random() < 0.4, leg)
    if rng.random() < 0.5:  # apron below the top
        apron = rng.uniform(0.06, 0.12)
        t = 0.02
        lo_y = height - top - apron
        parts.append(Part(_box([xs[0], lo_y, zs[0] - t / 2], [xs[1], height - top + 0.005, zs[0] + t / 2])))
        parts.append(Part(_box([xs[0], lo_y, zs[1] - t / 2], [xs[1], height - top + 0.005, zs[1] + t / 2])))
    return parts


def _chair(rng) -> list[Part]:
    width, depth = rng.uniform(0.42, 0.6), rng.uniform(0.42, 0.58)
    seat_y, seat_t = rng.uniform(0.38, 0.5), rng.uniform(0.04, 0.08)
    parts = [Part(_box([-width / 2, seat_y - seat_t, -depth / 2], [width / 2, seat_y, depth / 2]))]
    leg = rng.uniform(0.03, 0.06)
    inset = leg / 2 + rng.uniform(0.0, 0.03)
    xs, zs = (-width / 2 + inset, width / 2 - inset), (-depth / 2 + inset, depth / 2 - inset)
    parts += _legs(xs, zs, seat_y - seat_t + 0.01, rng.random() < 0.4, leg)
    # backrest at the -z edge, possibly tilted back
    back_h, back_t = rng.uniform(0.35, 0.6), rng.uniform(0.03, 0.06)
    tilt = np.deg2rad(rng.uniform(0, 12))
    rot = np.array([[1, 0, 0], [0, np.cos(tilt), np.sin(tilt)], [0, -np.sin(tilt), np.cos(tilt)]])  # top leans to -z
    half = np.array([width / 2, back_h / 2 + 0.01, back_t / 2])
    local_center = np.array([0.0, back_h / 2 - 0.01, 0.0])
    base = np.array([0.0, seat_y, -depth / 2 + back_t / 2])
    parts.append(Part(Box(center=base + rot @ local_center, rotation=rot, half=half)))
    if rng.random() < 0.35:  # armrests: a post and a bar on each side
        arm_h, arm_t = rng.uniform(0.18, 0.28), rng.uniform(0.03, 0.05)
        for sx in (-1, 1):
            x = sx * (width / 2 - arm_t / 2)
            z_front = depth / 2 - arm_t
            parts.append(Part(_box([x - arm_t / 2, seat_y - 0.01, z_front - arm_t / 2], [x + arm_t / 2, seat_y + arm_h, z_front + arm_t / 2])))
            parts.append(Part(_box([x - arm_t / 2, seat_y + arm_h - arm_t, -depth / 2 + back_t / 2], [x + arm_t / 2, seat_y + arm_h, depth / 2 - arm_t / 2])))
    return parts


def _lamp(rng) -> list[Part]:
    base_r, base_h = rng.uniform(0.1, 0.2), rng.uniform(0.02, 0.05)
    stem_r, stem_h = rng.uniform(0.012, 0.025), rng.uniform(0.35, 0.8)
    if rng.random() < 0.3:
        parts = [Part(_box([-base_r, 0, -base_r], [base_r, base_h, base_r]))]
    else:
        parts = [Part(_vcyl(0, 0, 0.0, base_h, base_r))]
    shade_h = rng.uniform(0.15, 0.3)
    r_bottom = rng.uniform(0.12, 0.25)
    r_top = r_bottom * rng.uniform(0.4, 0.85)
    shade_y0 = base_h + stem_h - 0.6 * shade_h
    wall = rng.uniform(0.015, 0.03)
    # the stem rises to the shade top so the hollow shade stays attached
    parts.append(Part(_vcyl(0, 0, base_h - 0.01, shade_y0 + shade_h - wall / 2, stem_r)))
    # hollow from below: the cavity follows the slanted wall and pokes out of the bottom
    slope = (r_top - r_bottom) / shade_h
    poke = 0.02
    cavity = _vcyl(0, 0, shade_y0 - poke, shade_y0 + shade_h - wall, r_bottom - wall - slope * poke, r_top - wall - slope * wall)
    parts.append(Part(_vcyl(0, 0, shade_y0, shade_y0 + shade_h, r_bottom, r_top), holes=(cavity,)))
    return parts


def _sofa(rng) -> list[Part]:
    width, depth = rng.uniform(1.4, 2.2), rng.uniform(0.7, 0.95)
    leg_h = rng.uniform(0.0, 0.08) if rng.random() < 0.6 else 0.0
    seat_y = rng.uniform(0.35, 0.45)
    back_y, back_t = rng.uniform(0.7, 0.9), rng.uniform(0.12, 0.22)
    arm_y, arm_w = rng.uniform(0.5, 0.65), rng.uniform(0.1, 0.2)
    y0 = leg_h
    parts = [
        Part(_box([-width / 2 + arm_w - 0.01, y0, -depth / 2], [width / 2 - arm_w + 0.01, seat_y, depth / 2])),
        Part(_box([-width / 2, y0, -depth / 2], [width / 2, back_y, -depth / 2 + back_t])),
    ]
    for sx in (-1, 1):
        x_in, x_out = sx * (width / 2 - arm_w), sx * width / 2
        parts.append(Part(_box([min(x_in, x_out), y0, -depth / 2], [max(x_in, x_out), arm_y, depth / 2])))
    if leg_h > 0:
        r = rng.uniform(0.02, 0.035)
        xs, zs = (-width / 2 + 2 * r, width / 2 - 2 * r), (-depth / 2 + 2 * r, depth / 2 - 2 * r)
        parts += _legs(xs, zs, leg_h + 0.01, True, 2 * r)
    return parts


def _bottle(rng) -> list[Part]:
    body_r, body_h = rng.uniform(0.08, 0.16), rng.uniform(0.3, 0.6)
    shoulder_h = rng.uniform(0.04, 0.15)
    neck_r, neck_h = body_r * rng.uniform(0.25, 0.45), rng.uniform(0.05, 0.15)
    cap_h = rng.uniform(0.02, 0.05)
    y = body_h
    parts = [Part(_vcyl(0, 0, 0.0, body_h, body_r))]
    if rng.random() < 0.5:
        parts.append(Part(_vcyl(0, 0, y - 0.005, y + shoulder_h, body_r, neck_r)))
    else:  # rounded shoulder: half an ellipsoid sitting on the body
        parts.append(Part(Ellipsoid(center=np.array([0, y, 0.0]), radii=np.array([body_r, shoulder_h, body_r]))))
    y += shoulder_h
    parts.append(Part(_vcyl(0, 0, y - 0.01, y + neck_h, neck_r)))
    y += neck_h
    parts.append(Part(_vcyl(0, 0, y - 0.005, y + cap_h, neck_r * rng.uniform(1.05, 1.25))))
    return parts


def _mug(rng) -> list[Part]:
    r, h = rng.uniform(0.035, 0.055), rng.uniform(0.08, 0.12)
    wall, bottom = rng.uniform(0.004, 0.008), rng.uniform(0.005, 0.01)
    cavity = _vcyl(0, 0, bottom, h + 0.01, r - wall)
    parts = [Part(_vcyl(0, 0, 0.0, h, r), holes=(cavity,))]
    # handle: a torus standing in the xy plane beside the body; the piece
    # inside the body is cut away so it does not poke into the cavity
    minor = rng.uniform(0.005, 0.009)
    major = rng.uniform(0.22, 0.34) * h
    centre = np.array([r + 0.3 * major, rng.uniform(0.45, 0.55) * h, 0.0])
    handle = Torus(center=centre, rotation=np.eye(3), major=major, minor=minor)
    parts.append(Part(handle, holes=(_vcyl(0, 0, -0.01, h + 0.01, r - wall / 2),)))
    return parts


_BUILDERS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "table": _table,
    "chair": _chair,
    "lamp": _lamp,
    "sofa": _sofa,
    "bottle": _bottle,
    "mug": _mug,
}


# --------------------------------------------------------------------------- shapes


@dataclass(frozen=True, eq=False)
class SyntheticShape:
    """A procedural shape: its normalised watertight mesh and exact occupancy.

    `parts` live in the raw frame; normalized = (raw - loc) / scale.
    """

    category: str
    mesh: trimesh.Trimesh
    parts: tuple[Part, ...]
    loc: np.ndarray
    scale: float

    def occupancy(self, points: np.ndarray) -> np.ndarray:
        """Exact inside test for the union of parts.

        Args:
            points: (N, 3) in the normalised frame
        Returns:
            bool (N,)
        """
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points must have shape (N, 3), got {points.shape}")
        raw = points * self.scale + self.loc
        inside = np.zeros(len(points), dtype=bool)
        for part in self.parts:
            inside |= part.contains(raw)
        return inside


def make_shape(category: str, rng: np.random.Generator | int) -> SyntheticShape:
    """Build a random shape of `category` (a key of CATEGORIES)."""
    if category not in _BUILDERS:
        raise ValueError(f"unknown synthetic category {category!r}; choose from {sorted(_BUILDERS)}")
    rng = np.random.default_rng(rng)
    parts = tuple(_BUILDERS[category](rng))
    solid = manifold3d.Manifold.batch_boolean([p.manifold() for p in parts], manifold3d.OpType.Add)
    m = solid.to_mesh()
    vertices = np.asarray(m.vert_properties, dtype=np.float64)[:, :3]
    faces = np.asarray(m.tri_verts, dtype=np.int64)
    bmin, bmax = vertices.min(axis=0), vertices.max(axis=0)
    loc = (bmin + bmax) / 2
    scale = float((bmax - bmin).max())
    mesh = trimesh.Trimesh((vertices - loc) / scale, faces, process=True)
    return SyntheticShape(category=category, mesh=mesh, parts=parts, loc=loc, scale=scale)


# --------------------------------------------------------------------------- dataset


def _object_files(n_views: int) -> list[str]:
    files = ["points.npz", "pointcloud.npz", "model.binvox", "mesh.ply", f"{IMAGE_FOLDER}/cameras.npz"]
    return files + [f"{IMAGE_FOLDER}/{i:03d}.jpg" for i in range(n_views)]


def _object_seed(seed: int, category: str, index: int) -> np.random.SeedSequence:
    # crc32 rather than hash(): stable across processes and Python versions
    return np.random.SeedSequence(entropy=seed, spawn_key=(zlib.crc32(category.encode()), index))


def _build_object(folder: Path, category: str, seq: np.random.SeedSequence, p: dict) -> None:
    shape_seq, points_seq, surface_seq, camera_seq = seq.spawn(4)
    shape = make_shape(category, np.random.default_rng(shape_seq))
    mesh = shape.mesh

    # round to float16 first: the labels must be exact for the stored points
    points = sample_uniform_points(p["n_points"], box_size=1.1, rng=np.random.default_rng(points_seq))
    points = points.astype(np.float16).astype(np.float32)
    write_points_npz(folder / "points.npz", points, shape.occupancy(points), loc=shape.loc, scale=shape.scale)

    surface, normals = sample_surface(mesh.vertices, mesh.faces, p["n_surface"], rng=np.random.default_rng(surface_seq))
    write_pointcloud_npz(folder / "pointcloud.npz", surface, normals, loc=shape.loc, scale=shape.scale)

    write_binvox(folder / "model.binvox", voxelize(mesh.vertices, mesh.faces, resolution=32, occupancy_fn=shape.occupancy))
    write_bytes_atomic(folder / "mesh.ply", mesh.export(file_type="ply"))

    camera_seed = int(np.random.default_rng(camera_seq).integers(2**31))
    cameras = default_cameras(p["n_views"], size=p["img_size"], seed=camera_seed)
    images = render_mesh(mesh.vertices, mesh.faces, cameras, size=p["img_size"])
    for i, image in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=95)
        write_bytes_atomic(folder / IMAGE_FOLDER / f"{i:03d}.jpg", buf.getvalue())
    # written last: its presence with all images means the views are complete
    write_cameras_npz(folder / IMAGE_FOLDER / "cameras.npz", cameras)


def _split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    counts = [int(round(f * n)) for f in fractions[:2]]
    counts.append(n - sum(counts))
    # a non-empty val/test split is worth one training object when n allows it
    for k in (1, 2):
        if fractions[k] > 0 and counts[k] == 0 and counts[0] > 1:
            counts[0] -= 1
            counts[k] += 1
    if counts[2] < 0:
        counts[0] += counts[2]
        counts[2] = 0
    return counts[0], counts[1], counts[2]


def build_synthetic_dataset(
    root: str | Path,
    *,
    n_per_class: int = 20,
    classes: Sequence[str] | None = None,
    seed: int = 0,
    n_views: int = 24,
    img_size: int = 137,
    n_points: int = 100000,
    n_surface: int = 100000,
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write a synthetic dataset in the layout of DESIGN §4 and return its root.

    root/metadata.yaml, root/<cat>/{train,val,test}.lst and for each object
    root/<cat>/<cat>_NNNN/: points.npz, pointcloud.npz, model.binvox (32^3),
    mesh.ply (the watertight normalised reference mesh), img_choy2016/NNN.jpg
    and img_choy2016/cameras.npz.

    Resumable and deterministic from `seed`: root/synthetic.yaml records the
    parameters, an object whose files all exist is skipped, so a second call
    with the same parameters redoes nothing. Changing n_per_class, classes or
    split_fractions only rewrites the lists; changing anything that alters
    the objects' files is an error (use a new root or delete this one).

    workers: processes building objects side by side (None: one per usable CPU, up to
    8, when there are enough objects to pay for starting them). Every object is
    seeded by its own index, so the files do not depend on it.
    """
    root = Path(root)
    classes = list(CATEGORIES) if classes is None else list(classes)
    unknown = [c for c in classes if c not in CATEGORIES]
    if unknown or not classes:
        raise ValueError(f"unknown synthetic classes {unknown}; choose from {sorted(CATEGORIES)}")
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    fractions = tuple(float(f) for f in split_fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split_fractions must be 3 non-negative numbers summing to 1, got {split_fractions}")
    for name, value in (("n_views", n_views), ("img_size", img_size), ("n_points", n_points), ("n_surface", n_surface)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")

    object_params = {
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "n_views": int(n_views),
        "img_size": int(img_size),
        "n_points": int(n_points),
        "n_surface": int(n_surface),
    }
    stamp_path = root / STAMP_NAME
    if stamp_path.exists():
        old = yaml.safe_load(stamp_path.read_text(encoding="utf-8")) or {}
        changed = {k: (old.get(k), v) for k, v in object_params.items() if old.get(k) != v}
        if changed:
            diff = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in changed.items())
            raise ValueError(
                f"{stamp_path}: the dataset there was built with other parameters ({diff}); "
                "choose another folder or delete this one to rebuild"
            )
    stamp = {**object_params, "n_per_class": int(n_per_class), "classes": classes, "split_fractions": list(fractions)}
    # written first so an interrupted build resumes instead of being rejected
    write_text_atomic(stamp_path, yaml.safe_dump(stamp, sort_keys=False))

    write_metadata(root / "metadata.yaml", {c: {"id": c, "name": CATEGORIES[c]} for c in classes})
    files = _object_files(n_views)
    jobs = [(c, i) for c in classes for i in range(n_per_class)]
    todo = [(c, i) for c, i in jobs if not all((root / c / f"{c}_{i:04d}" / f).exists() for f in files)]
    if workers is None:
        # a spawned worker takes 1-2 s to import onet: not worth it for a handful of objects
        workers = min(usable_cpus(), 8) if len(todo) >= 16 else 1
    elif isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="synthetic dataset", unit="object",
               disable=not progress)
    with bar:
        args = [(root / c / f"{c}_{i:04d}", c, _object_seed(seed, c, i), object_params) for c, i in todo]
        if workers == 1 or len(todo) <= 1:
            for a in args:
                _build_object(*a)
                bar.update()
        else:
            with worker_pool(min(workers, len(todo))) as pool:  # an error or Ctrl-C stops the workers
                futures = [pool.submit(_build_object, *a) for a in args]
                for fut in as_completed(futures):
                    fut.result()  # a failure here is a bug in the generator: stop and show it
                    bar.update()

    for category in classes:
        ids = [f"{category}_{i:04d}" for i in range(n_per_class)]
        order = np.random.default_rng([seed, zlib.crc32(category.encode())]).permutation(n_per_class)
        n_train, n_val, _ = _split_counts(n_per_class, fractions)
        chosen = [ids[k] for k in order]
        splits = {
            "train": sorted(chosen[:n_train]),
            "val": sorted(chosen[n_train : n_train + n_val]),
            "test": sorted(chosen[n_train + n_val :]),
        }
        for name, split_ids in splits.items():
            write_split(root / category / f"{name}.lst", split_ids)
    return root
