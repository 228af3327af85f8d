"""Benchmark the evaluation stages: seconds per object for each metric stage.

    python scripts/bench_eval.py [--objects 3] [--faces 100000] [--points 100000]

Each object is a predicted torus of about --faces faces scored against a
slightly different reference torus (typical distances ~0.01, as for a decent
prediction): loading the predicted mesh from a .ply, sampling its surface,
the inside test for the IoU points, the kd-tree queries of the surface
metrics, and the whole `evaluate_mesh` call. One more row times the kd-tree
queries for a far-off prediction (reference samples on a sphere through the
torus hole): nearest-neighbour search is much slower when many reference
points are almost equidistant from a query. Prints a table; never asserts.
Set OMP_NUM_THREADS=1 to time pykdtree on one core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onet.evaluation.evaluate import _load_mesh  # noqa: E402
from onet.geometry.inside import inside_mesh  # noqa: E402
from onet.evaluation.metrics import evaluate_mesh, nearest_neighbors, sample_surface  # noqa: E402


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def measure(objects: int = 3, faces: int = 100_000, n_points: int = 100_000) -> tuple[int, dict[str, list[float]]]:
    """(faces of the predicted mesh, {stage: seconds per object}) for `objects` objects."""
    # a torus with major:minor sections of 4:1 has 2 * major * minor faces
    minor_sections = max(8, int(round((faces / 8) ** 0.5)))
    torus = trimesh.creation.torus(0.3, 0.12, major_sections=4 * minor_sections, minor_sections=minor_sections)
    reference = trimesh.creation.torus(0.31, 0.11, major_sections=256, minor_sections=64)
    gt_points, gt_normals = sample_surface(reference.vertices, reference.faces, n_points, seed=100)
    rng = np.random.default_rng(0)
    iou_points = rng.uniform(-0.55, 0.55, size=(n_points, 3))
    ring = np.hypot(iou_points[:, 0], iou_points[:, 1])
    iou_occ = np.hypot(ring - 0.31, iou_points[:, 2]) < 0.11
    far_points = rng.standard_normal((n_points, 3))
    far_points *= 0.4 / np.linalg.norm(far_points, axis=1, keepdims=True)

    names = ("load", "surface sampling", "inside test", "kd-tree queries", "kd-tree queries (far)", "evaluate_mesh total")
    stages = {k: [] for k in names}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pred.ply"
        torus.export(path)
        for i in range(objects):
            t, (vertices, faces_) = _timed(_load_mesh, path)
            stages["load"].append(t)
            t, (points, _) = _timed(sample_surface, vertices, faces_, n_points, seed=i)
            stages["surface sampling"].append(t)
            t, _ = _timed(inside_mesh, vertices, faces_, iou_points)
            stages["inside test"].append(t)
            start = time.perf_counter()
            nearest_neighbors(points, gt_points)
            nearest_neighbors(gt_points, points)
            stages["kd-tree queries"].append(time.perf_counter() - start)
            start = time.perf_counter()
            nearest_neighbors(points, far_points)
            nearest_neighbors(far_points, points)
            stages["kd-tree queries (far)"].append(time.perf_counter() - start)
            t, _ = _timed(
                evaluate_mesh, vertices, faces_, gt_points=gt_points, gt_normals=gt_normals,
                iou_points=iou_points, iou_occ=iou_occ, n_points=n_points, seed=i,
            )
            stages["evaluate_mesh total"].append(t + stages["load"][-1])
    return len(torus.faces), stages


def run(quick: bool = False, device: str = "cpu") -> list[dict]:
    """Evaluation figures as rows {stage, figure, value, unit, note}: median seconds per
    object of each stage (100k points, a ~100k-face prediction; quick: 1 object, else 3).
    `device` is unused: evaluation runs on the CPU."""
    n_faces, stages = measure(1 if quick else 3)
    threads = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    rows = []
    for name, times in stages.items():
        figure = {"inside test": "inside test s, 100k points vs 100k-face mesh",
                  "evaluate_mesh total": "evaluate_mesh s/object (100k points per metric)"}.get(name, f"{name} s/object")
        note = f"{n_faces} faces; {threads}" if name == "inside test" else ""
        rows.append({"stage": "eval", "figure": figure, "value": statistics.median(times), "unit": "s", "note": note})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=3, help="objects to time (default 3)")
    parser.add_argument("--faces", type=int, default=100_000, help="faces of the predicted mesh (default 100000)")
    parser.add_argument("--points", type=int, default=100_000, help="IoU points and surface samples (default 100000)")
    args = parser.parse_args(argv)
    n_faces, stages = measure(args.objects, args.faces, args.points)

    print(f"mesh: {n_faces} faces; {args.points} IoU points; {args.points} samples per side; "
          f"{args.objects} objects; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"{'stage':<24}{'median s/object':>16}{'min':>10}{'max':>10}")
    for name, times in stages.items():
        print(f"{name:<24}{statistics.median(times):>16.3f}{min(times):>10.3f}{max(times):>10.3f}")
    print("(evaluate_mesh total = load + sampling + inside test + kd-tree queries + metric arithmetic;"
          " the far row is not part of it)")


if __name__ == "__main__":
    main()
