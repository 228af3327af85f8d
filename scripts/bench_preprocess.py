"""Benchmark `onet preprocess`: watertighting quality and per-object speed.

Quality: occupancy agreement, on 100k uniform points in the 1.1 box, between a
clean watertight input and the watertight output made from it or from a
corrupted copy (holes, flipped faces, duplicated faces, inner shells, small
loose parts), per corruption type, and the share of outputs that are
watertight. Speed: seconds per object on one core at default options, split
into stages. Optionally, real messy models from the `assimp-testmodels`
Debian package (--assimp DIR).

Prints tables; asserts nothing. Targets (issue 6): agreement >= 99.5% clean,
>= 98% corrupted, 100% watertight, <= 10 s per object.

    python scripts/bench_preprocess.py                  # everything
    python scripts/bench_preprocess.py --skip-speed
    python scripts/bench_preprocess.py --assimp /usr/share/assimp/models
    python scripts/bench_preprocess.py --skip-quality --depth     # speed with depth maps written too

The speed table includes coloured meshes (a texture-mapped chair and sofa, a
vertex-coloured mug, a face-coloured lamp; scripts/textured_shapes.py), so the
cost of textures shows per stage (older onet versions render them grey).
"""

from __future__ import annotations

import argparse
import os

if __name__ == "__main__":  # one core, as a preprocessing worker runs (not forced on an importer)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh
from skimage.measure import marching_cubes

from onet.geometry.inside import inside_mesh
from onet.geometry.normalize import normalize_mesh
from onet.preprocess.watertight import make_watertight


def chair_mesh() -> trimesh.Trimesh:
    """A chair-like union of boxes (seat, 4 legs, back with slats), closed and manifold."""
    boxes = [  # (centre, half extents)
        ((0.0, 0.0, 0.0), (0.25, 0.25, 0.03)),  # seat
        ((-0.21, -0.21, -0.25), (0.03, 0.03, 0.25)),  # legs
        ((0.21, -0.21, -0.25), (0.03, 0.03, 0.25)),
        ((-0.21, 0.21, -0.25), (0.03, 0.03, 0.25)),
        ((0.21, 0.21, -0.25), (0.03, 0.03, 0.25)),
        ((0.0, 0.22, 0.45), (0.25, 0.03, 0.06)),  # top rail
        ((-0.15, 0.22, 0.2), (0.03, 0.025, 0.2)),  # slats
        ((0.0, 0.22, 0.2), (0.03, 0.025, 0.2)),
        ((0.15, 0.22, 0.2), (0.03, 0.025, 0.2)),
    ]
    res = 160
    g = (np.arange(res) - (res - 1) / 2) * (1.2 / (res - 1))
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    sdf = np.full(x.shape, np.inf)
    for c, e in boxes:
        q = np.stack([np.abs(x - c[0]) - e[0], np.abs(y - c[1]) - e[1], np.abs(z - c[2]) - e[2]], axis=-1)
        box = np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(axis=-1), 0)
        sdf = np.minimum(sdf, box)
    v, f, _, _ = marching_cubes(sdf, 0.0, spacing=(g[1] - g[0],) * 3)
    m = trimesh.Trimesh(v + g[0], f)
    m.fix_normals()
    return m


def clean_shapes() -> dict[str, trimesh.Trimesh]:
    shapes = {
        "sphere": trimesh.creation.icosphere(subdivisions=4),
        "box": trimesh.creation.box(extents=(1.0, 0.6, 0.4)).subdivide_to_size(0.05),
        "cylinder": trimesh.creation.cylinder(radius=0.3, height=1.0, sections=64).subdivide_to_size(0.05),
        "torus": trimesh.creation.torus(major_radius=0.35, minor_radius=0.12, major_sections=64, minor_sections=32),
        "chair": chair_mesh(),
    }
    return {k: normalize_mesh(m)[0] for k, m in shapes.items()}


# ---- corruptions: each takes a clean mesh and an rng, returns a messy one ----


def _patches(mesh: trimesh.Trimesh, fraction: float, n_patches: int, rng) -> np.ndarray:
    """Face ids of n_patches connected patches covering about `fraction` of the area."""
    adjacency = mesh.face_adjacency
    neighbours = [[] for _ in range(len(mesh.faces))]
    for a, b in adjacency:
        neighbours[a].append(b)
        neighbours[b].append(a)
    area = mesh.area_faces
    target = fraction * area.sum() / n_patches
    removed: set[int] = set()
    for seed in rng.choice(len(mesh.faces), n_patches, replace=False):
        frontier, got = [int(seed)], 0.0
        while frontier and got < target:
            f = frontier.pop(0)
            if f in removed:
                continue
            removed.add(f)
            got += area[f]
            frontier.extend(neighbours[f])
    return np.array(sorted(removed))


def holes_one(mesh, rng):
    keep = np.setdiff1d(np.arange(len(mesh.faces)), _patches(mesh, 0.02, 1, rng))
    return trimesh.Trimesh(mesh.vertices, mesh.faces[keep], process=False)


def holes_many(mesh, rng):
    keep = np.setdiff1d(np.arange(len(mesh.faces)), _patches(mesh, 0.02, 20, rng))
    return trimesh.Trimesh(mesh.vertices, mesh.faces[keep], process=False)


def flipped(mesh, rng):
    faces = mesh.faces.copy()
    flip = rng.random(len(faces)) < 0.3
    faces[flip] = faces[flip][:, ::-1]
    return trimesh.Trimesh(mesh.vertices, faces, process=False)


def duplicated(mesh, rng):
    dup = rng.random(len(mesh.faces)) < 0.3
    faces = np.concatenate([mesh.faces, mesh.faces[dup][:, ::-1]])
    return trimesh.Trimesh(mesh.vertices, faces, process=False)


def inner_shell(mesh, rng):
    inner = mesh.copy()
    inner.vertices = inner.vertices - 0.01 * inner.vertex_normals  # a double wall 0.01 thick
    inner.invert()
    return trimesh.util.concatenate([mesh, inner])


def loose_parts(mesh, rng):
    parts = [mesh]
    for _ in range(10):  # small floating cubes and stray triangles
        c = rng.uniform(-0.45, 0.45, 3)
        parts.append(trimesh.creation.box(extents=(0.02, 0.02, 0.02)).apply_translation(c))
        t = c + rng.normal(0, 0.02, (3, 3))
        parts.append(trimesh.Trimesh(t, [[0, 1, 2]], process=False))
    return trimesh.util.concatenate(parts)


def all_combined(mesh, rng):
    return loose_parts(inner_shell(duplicated(flipped(holes_many(mesh, rng), rng), rng), rng), rng)


CORRUPTIONS = {
    "clean": lambda m, rng: m,
    "holes 2% (1 patch)": holes_one,
    "holes 2% (20 patches)": holes_many,
    "flipped 30%": flipped,
    "duplicated 30%": duplicated,
    "inner shell": inner_shell,
    "loose parts": loose_parts,
    "all combined": all_combined,
}


def measure_quality(n_points: int, watertight_kwargs: dict, shapes: dict[str, trimesh.Trimesh] | None = None,
                    corruptions: dict | None = None) -> dict[tuple[str, str], tuple[float, bool, float]]:
    """{(corruption, shape): (agreement %, output watertight, seconds)} of make_watertight."""
    rng = np.random.default_rng(0)
    points = (rng.random((n_points, 3)) - 0.5) * 1.1
    shapes = clean_shapes() if shapes is None else shapes
    corruptions = CORRUPTIONS if corruptions is None else corruptions
    truth = {k: inside_mesh(m.vertices, m.faces, points) for k, m in shapes.items()}
    out = {}
    for name, corrupt in corruptions.items():
        for shape, mesh in shapes.items():
            messy = corrupt(mesh, np.random.default_rng(1))
            t0 = time.perf_counter()
            v, f = make_watertight(messy.vertices, messy.faces, **watertight_kwargs)
            secs = time.perf_counter() - t0
            tight = bool(trimesh.Trimesh(v, f, process=False).is_watertight)
            out[name, shape] = (100.0 * float(np.mean(inside_mesh(v, f, points) == truth[shape])), tight, secs)
    return out


def quality_table(n_points: int, watertight_kwargs: dict) -> None:
    shapes = clean_shapes()
    results = measure_quality(n_points, watertight_kwargs, shapes)
    print(f"\n## Quality: occupancy agreement (%) on {n_points} uniform points, watertight output?  {watertight_kwargs}")
    print(f"{'corruption':<24}" + "".join(f"{k:>10}" for k in shapes) + f"{'mean':>9}{'min':>9}{'watertight':>12}{'s/obj':>7}")
    for name in CORRUPTIONS:
        agree = [results[name, shape][0] for shape in shapes]
        tight = sum(results[name, shape][1] for shape in shapes)
        secs = sum(results[name, shape][2] for shape in shapes)
        row = "".join(f"{a:>10.2f}" for a in agree)
        print(f"{name:<24}{row}{np.mean(agree):>9.2f}{np.min(agree):>9.2f}{f'{tight}/{len(shapes)}':>12}{secs / len(shapes):>7.2f}")


def measure_speed(shapes: dict[str, trimesh.Trimesh | Path], n_repeat: int = 1, options=None) -> list[tuple]:
    """[(name, faces, stage timings or failure reason, wall s, cpu s)] through the real
    per-object pipeline at default options (or `options`). A shape is a mesh or a mesh file."""
    from onet.preprocess.discover import InputItem
    from onet.preprocess.pipeline import PreprocessOptions, process_object

    options = PreprocessOptions() if options is None else options
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, mesh in shapes.items():
            if isinstance(mesh, Path):
                path = mesh
                mesh = trimesh.load(path, force="mesh", process=False)
            else:
                path = Path(tmp) / "in" / f"{name.replace('+', '_')}.obj"
                path.parent.mkdir(parents=True, exist_ok=True)
                mesh.export(path)
            for r in range(n_repeat):
                c0, t0 = time.process_time(), time.perf_counter()
                res = process_object(InputItem("bench", f"{path.stem}{r}", path), Path(tmp) / "out", options)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                out.append((name, len(mesh.faces), res.timings if res.status == "ok" else res.reason, wall, cpu))
    return out


def speed_table(n_repeat: int, depth: bool = False) -> None:
    """Seconds per object at default options through the real per-object pipeline."""
    from onet.preprocess.pipeline import STAGES, PreprocessOptions

    options = PreprocessOptions(depth=True) if depth else PreprocessOptions()  # depth: this version only
    print(f"\n## Speed: seconds per object, one process, default options (watertight {options.watertight_resolution}^3)"
          + (", with depth maps" if depth else ""))
    print(f"{'object':<12}{'faces':>8}" + "".join(f"{s:>11}" for s in STAGES) + f"{'total':>9}{'cpu':>8}")
    shapes = clean_shapes()
    shapes["chair+all"] = all_combined(shapes["chair"], np.random.default_rng(1))
    with tempfile.TemporaryDirectory() as tmp:
        from textured_shapes import write_textured_shapes  # beside this script

        for name, path in write_textured_shapes(tmp).items():
            shapes[name.split(" ")[0] + "+color"] = path
        for name, faces, timings, wall, cpu in measure_speed(shapes, n_repeat, options):
            if isinstance(timings, str):
                print(f"{name:<12} failed: {timings}")
                continue
            row = "".join(f"{timings.get(s, 0.0):>11.2f}" for s in STAGES)
            print(f"{name:<12}{faces:>8}{row}{wall:>9.2f}{cpu:>8.2f}")
    print("(stage columns are wall seconds; cpu = process CPU seconds, the number that matters on a shared machine)")


def run(quick: bool = False, device: str = "cpu") -> list[dict]:
    """Preprocessing figures as rows {stage, figure, value, unit, note}: seconds per object
    at default options (process CPU time, i.e. one-core seconds, and wall), and watertight
    quality on clean and corrupted shapes (quick: the chair, clean and all corruptions
    combined; else every shape and corruption type). `device` is unused (CPU only)."""
    shapes = clean_shapes()
    if quick:
        shapes = {"chair": shapes["chair"]}
        corruptions = {k: CORRUPTIONS[k] for k in ("clean", "all combined")}
    else:
        corruptions = CORRUPTIONS
    rows = []
    speed_shapes = {"chair": shapes["chair"], "chair+all": all_combined(shapes["chair"], np.random.default_rng(1))}
    speed = [r for r in measure_speed(speed_shapes) if not isinstance(r[2], str)]
    if speed:
        worst = max(speed, key=lambda r: r[4])
        stages = ", ".join(f"{k} {v:.1f}" for k, v in worst[2].items())
        rows.append({"stage": "preprocess", "figure": "preprocess s/object (CPU time, default options)",
                     "value": worst[4], "unit": "s",
                     "note": f"worst of {', '.join(r[0] for r in speed)}: {worst[0]}, wall {worst[3]:.1f} s; {stages}"})
    else:
        rows.append({"stage": "preprocess", "figure": "preprocess s/object (CPU time, default options)",
                     "value": None, "unit": "s", "note": "every object failed"})
    results = measure_quality(100_000, {}, shapes, corruptions)
    clean = [v for (c, _), v in results.items() if c == "clean"]
    messy = {k: v for k, v in results.items() if k[0] != "clean"}
    worst_clean = min(clean, key=lambda v: v[0])
    rows.append({"stage": "preprocess", "figure": "watertight agreement clean (min over shapes)",
                 "value": worst_clean[0], "unit": "%", "note": ", ".join(shapes)})
    if messy:
        (corr, shape), v = min(messy.items(), key=lambda kv: kv[1][0])
        rows.append({"stage": "preprocess", "figure": "watertight agreement corrupted (min)",
                     "value": v[0], "unit": "%", "note": f"worst: {shape}, {corr}"})
    rows.append({"stage": "preprocess", "figure": "watertight outputs", "unit": "%",
                 "value": 100.0 * sum(v[1] for v in results.values()) / len(results),
                 "note": f"{len(results)} outputs"})
    return rows


def assimp_table(folder: Path) -> None:
    """How many real test models load and come out watertight."""
    from onet.geometry.mesh_io import MESH_EXTENSIONS, MeshLoadError, load_mesh

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in MESH_EXTENSIONS and p.is_file())
    n_load = n_tight = 0
    errors: dict[str, int] = {}
    t0 = time.perf_counter()
    for p in files:
        try:
            mesh, _, _ = normalize_mesh(load_mesh(p))
        except (MeshLoadError, ValueError) as e:
            key = str(e).split(": ", 1)[-1][:60]
            errors[key] = errors.get(key, 0) + 1
            continue
        n_load += 1
        try:
            v, f = make_watertight(mesh.vertices, mesh.faces)
            n_tight += trimesh.Trimesh(v, f, process=False).is_watertight
        except Exception as e:
            errors[f"watertight: {type(e).__name__}"] = errors.get(f"watertight: {type(e).__name__}", 0) + 1
    print(f"\n## Real models under {folder}: {len(files)} mesh files, {n_load} load, {n_tight} watertight"
          f" ({time.perf_counter() - t0:.0f} s)")
    for k, v in sorted(errors.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {v:>4} x {k}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100000, help="uniform points for the agreement")
    parser.add_argument("--resolution", type=int, default=None, help="watertight grid resolution (default: library default)")
    parser.add_argument("--visible-fraction", type=float, default=None)
    parser.add_argument("--directions", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1, help="speed runs per object")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--assimp", type=Path, default=None, help="folder of real test models (assimp-testmodels)")
    parser.add_argument("--depth", action="store_true", help="speed runs also write depth maps")
    args = parser.parse_args()
    kwargs = {}
    if args.resolution is not None:
        kwargs["resolution"] = args.resolution
    if args.visible_fraction is not None:
        kwargs["visible_fraction"] = args.visible_fraction
    if args.directions is not None:
        kwargs["n_directions"] = args.directions
    if not args.skip_quality:
        quality_table(args.points, kwargs)
    if not args.skip_speed:
        speed_table(args.repeat, depth=args.depth)
    if args.assimp is not None:
        assimp_table(args.assimp)


if __name__ == "__main__":
    main()
