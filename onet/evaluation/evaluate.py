"""Evaluation drivers: predicted meshes, input baselines and plain mesh pairs.

All three score objects with `onet.evaluation.metrics`, tabulate them with
`onet.evaluation.tables` and write, atomically, into out_dir:
eval_meshes.csv (per object), eval_classes.csv, eval_classes.md,
eval_classes.tex and eval.json. They print nothing; the Markdown table comes
back in `EvalResult.markdown`.

References on a dataset (DESIGN §4, §7):
- IoU: the uniform points and occupancies of points.npz, as stored (no
  jitter: evaluation is deterministic).
- Surface metrics: the surface points and normals of pointcloud.npz. Only when
  pointcloud.npz is missing and the model folder holds a watertight mesh.ply,
  that mesh is sampled instead (n_points, seeded): pointcloud.npz is what the
  published numbers use.

Point-set predictions (models of output kind "points", e.g. PSGN) are
vertex-only files scored on the surface metrics only: a point set has no
inside (IoU) and no normals, so those columns print as "–".

Every object goes through one per-item runner (`onet.utils.batch`): an
exception while scoring one object is named with its file, recorded in
`EvalResult.failures` (and failures.csv beside the tables) and the others
go on. A missing prediction is scored with worst-case values, marked
`missing`; a prediction that cannot be read or holds NaN/inf is scored
worst-case too, marked `unreadable`, and counts as a failed item; both are
counted in every mean. An object whose reference files are missing or
corrupt cannot be scored: it is a failed item without a row. No object
scored at all, or no prediction found at all, raises.

Shards: with shard=(I, N) the dataset and input modes score every N-th object
from the I-th and append per-object records (`onet.evaluation.records`)
instead of writing tables; an unsharded evaluation of the same out_dir takes
the objects it finds recorded (same settings, unchanged files) from there,
scores the rest, and writes the tables one process would (a recorded
unreadable prediction still counts as a failed item there).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onet.data.formats import check_array, load_pointcloud_npz, load_points_npz, read_binvox, read_metadata
from onet.geometry.inside import inside_mesh
from onet.geometry.mesh_files import READ_SUFFIXES, read_mesh
from onet.utils.ranks import Share
from onet.evaluation.metrics import (
    MeshMetrics,
    evaluate_mesh,
    sample_surface,
    surface_metrics,
    worst_case_metrics,
)
from onet.evaluation.records import RECORDS_DIR, RecordStore, file_stamp
from onet.evaluation.tables import (
    ObjectRow,
    ResultTable,
    build_table,
    class_names_from_metadata,
    format_markdown,
    write_tables,
)
from onet.utils.batch import ItemRunner, Problem

MESH_EXTENSIONS = READ_SUFFIXES  # what read_mesh reads
INPUT_TYPES = ("voxels", "pointcloud")
PREDICTIONS = ("mesh", "points")


@dataclass
class EvalResult:
    """What an evaluation produced.

    rows: one ObjectRow per evaluated object; table: per-class means;
    markdown: the Markdown table (also written to eval_classes.md);
    files: {file name: path} of everything written; problems: human-readable
    notes on missing/unreadable predictions and unmatched files.
    """

    rows: list[ObjectRow]
    table: ResultTable
    markdown: str
    files: dict[str, Path]
    problems: list[str] = field(default_factory=list)
    failures: list[Problem] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when any object failed (the batch rule of onet.utils.batch), else 0."""
        return 1 if self.failures else 0


# --------------------------------------------------------------------------- helpers


def _progress(iterable, *, enabled: bool, desc: str, total: int):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit="obj")


# a spawned worker takes 1-2 s to import onet and embree: not worth it for a few objects
MIN_OBJECTS_PER_WORKER = 8


def resolve_workers(workers: int | None, n_items: int) -> int:
    """Processes for an evaluation of n_items objects: `workers`, or None for one per usable CPU
    (up to 8) when there are at least MIN_OBJECTS_PER_WORKER objects for each."""
    from onet.utils.parallel import usable_cpus

    if workers is None:
        return max(1, min(usable_cpus(), 8, n_items // MIN_OBJECTS_PER_WORKER))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    return workers


def _score_shard(evaluate, kwargs: dict, index: int, count: int) -> int:
    """In a worker: score share (index, count) into the records; returns how many it took."""
    return len(evaluate(**kwargs, shard=(index, count), workers=1, progress=False).rows)


def _score_in_workers(evaluate, kwargs: dict, n_items: int, workers: int, progress: bool) -> bool:
    """Score every object in `workers` single-threaded processes, a few shares each.

    Each share appends its per-object records (`onet.evaluation.records`), which the
    caller's own unsharded pass then takes instead of scoring again: the tables are
    those of one process. A share that fails leaves its objects unrecorded; the
    unsharded pass scores them and reports any failure in the usual way. Returns whether
    the workers started."""
    from concurrent.futures import as_completed
    from concurrent.futures.process import BrokenProcessPool

    from onet.utils.parallel import worker_pool

    count = min(n_items, workers * 4)  # several shares per worker: an even finish, a moving bar
    try:
        with worker_pool(workers) as pool:
            futures = [pool.submit(_score_shard, evaluate, kwargs, i, count) for i in range(count)]
            done = _progress(as_completed(futures), enabled=progress, desc=f"eval ({workers} processes)",
                             total=count)
            for fut in done:
                try:
                    fut.result()
                except Exception:  # noqa: BLE001 -- the unsharded pass scores (and names) these objects
                    pass
    except (BrokenProcessPool, OSError):  # no processes to be had (e.g. a script without a __main__ guard)
        return False  # the caller scores everything itself
    return True


def _prescore(evaluate, kwargs: dict, items, records: RecordStore, stamp_of, share: Share, workers: int | None,
              progress: bool) -> bool:
    """Score in worker processes the objects without a record (`_score_in_workers`), where it pays,
    and read their records into `records`. Returns whether workers ran (else this process scores)."""
    if not share.whole or workers == 1:
        return False
    pending = sum(records.get(c, m, stamp_of(c, m)) is None for c, m in items)
    n_workers = min(resolve_workers(workers, pending), pending)  # none when all is recorded
    if n_workers <= 1 or not _score_in_workers(evaluate, kwargs, len(items), n_workers, progress):
        return False
    records.reload()
    return True


def _load_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V, 3) float64, faces (F, 3) int64) through the shared reader (every format onet
    reads); raises naming the file when unreadable, empty or not finite."""
    try:
        vertices, faces = read_mesh(path)
    except ValueError as e:
        message = str(e)
        raise ValueError(message if str(path) in message else f"cannot read {path}: {message}") from None
    vertices = check_array(path, "vertices", vertices, shape=(None, 3))
    return vertices.astype(np.float64), faces


def _check_items(items) -> list[tuple[str, str]]:
    checked = []
    for item in items:
        if len(item) != 2:
            raise ValueError(f"items must be (category, model_id) pairs, got {item!r}")
        checked.append((str(item[0]), str(item[1])))
    if not checked:
        raise ValueError("items is empty: nothing to evaluate")
    return checked


def _object_seed(seed: int, category: str, model_id: str) -> np.random.Generator:
    # depends on the object, not on its position in the list: a subset reproduces
    return np.random.default_rng([seed, zlib.crc32(f"{category}/{model_id}".encode())])


def _class_names(dataset_root: Path) -> dict[str, str]:
    path = dataset_root / "metadata.yaml"
    return class_names_from_metadata(read_metadata(path)) if path.exists() else {}


def _surface_reference(folder: Path, *, n_points: int, seed: int,
                       pointcloud_file: str = "pointcloud.npz") -> tuple[np.ndarray, np.ndarray]:
    """Reference surface points and normals: the point cloud file, else samples of mesh.ply."""
    if (folder / pointcloud_file).exists() or not (folder / "mesh.ply").exists():
        cloud = load_pointcloud_npz(folder / pointcloud_file)
        return cloud["points"].astype(np.float64), cloud["normals"].astype(np.float64)
    vertices, faces = _load_mesh(folder / "mesh.ply")
    return sample_surface(vertices, faces, n_points, seed=seed + 1)


def _score_prediction(runner: ItemRunner, name: str, path: Path, score, *, fscore_thresholds, empty_reason: str,
                      with_iou: bool = True, with_normals: bool = True):
    """Run `score()` (load + metrics of one prediction) through the runner.

    Returns (metrics, status, reason): a failure is scored worst-case (with the
    columns the prediction kind has), marked 'unreadable' and recorded by the
    runner; an empty surface is 'empty'.
    """
    outcome = runner.run(name, path, score)
    if not outcome.ok:
        return (worst_case_metrics(fscore_thresholds=fscore_thresholds, with_iou=with_iou, with_normals=with_normals),
                "unreadable", outcome.error)
    if outcome.value.empty:
        return outcome.value, "empty", empty_reason
    return outcome.value, "ok", ""


def _none_scored(runner: ItemRunner, n: int) -> RuntimeError:
    first = runner.failures[0] if runner.failures else None
    return RuntimeError(f"none of the {n} objects could be evaluated" +
                        (f"; first: {first.name}: {first.reason}" if first else ""))


def _problems(rows: list[ObjectRow]) -> list[str]:
    return [f"{r.category}/{r.model_id}: {r.reason}" for r in rows if r.reason]


def _shard_result(rows, records: RecordStore, *, class_names, chamfer_scale, runner: ItemRunner) -> EvalResult:
    """A shard writes no tables: its records are merged by the final unsharded evaluation."""
    table = build_table(rows, class_names=class_names) if rows else None
    markdown = format_markdown(table, chamfer_scale=chamfer_scale) if rows else ""
    return EvalResult(rows=rows, table=table, markdown=markdown, files={"records": records.path},
                      problems=_problems(rows), failures=list(runner.failures))


def _recorded(records: RecordStore, runner: ItemRunner, category: str, model_id: str, stamp, path) -> ObjectRow | None:
    """A row an earlier shard scored; its unreadable prediction is a failed item of this run too."""
    row = records.get(category, model_id, stamp)
    if row is not None and row.status == "unreadable":
        runner.fail(f"{category}/{model_id}", path, row.reason)
    return row


def _finish(rows, out_dir, *, class_names, chamfer_scale, problems, extra, runner: ItemRunner) -> EvalResult:
    if not rows:
        raise _none_scored(runner, len(runner.failures))
    table = build_table(rows, class_names=class_names)
    markdown = format_markdown(table, chamfer_scale=chamfer_scale)
    failures = [{"name": p.name, "path": p.path, "reason": p.reason} for p in runner.failures]
    files = write_tables(rows, table, out_dir, chamfer_scale=chamfer_scale,
                         extra_json={"problems": problems, "failures": failures, **extra})
    runner.write(out_dir)
    if runner.failures:
        files["failures.csv"] = Path(out_dir) / "failures.csv"
    return EvalResult(rows=rows, table=table, markdown=markdown, files=files, problems=problems,
                      failures=list(runner.failures))


# --------------------------------------------------------------------------- dataset mode


def evaluate_dataset(
    dataset_root,
    items,
    mesh_dir,
    out_dir,
    *,
    mesh_format: str = "ply",
    n_points: int = 100000,
    fscore_thresholds=(0.01,),
    seed: int = 0,
    progress: bool = True,
    chamfer_scale: float = 10,
    points_file: str = "points.npz",
    pointcloud_file: str = "pointcloud.npz",
    log=None,
    shard: tuple[int, int] = (0, 1),
    prediction: str = "mesh",
    split: str | None = None,
    workers: int | None = 1,
) -> EvalResult:
    """Score predicted meshes mesh_dir/<category>/<model_id>.<mesh_format> against the dataset.

    Args:
        dataset_root: dataset folder (DESIGN §4).
        items: [(category, model_id), ...] to evaluate (e.g. the test split).
        mesh_dir: folder of predicted meshes, in the dataset's normalised frame.
        out_dir: where the tables go.
        n_points: samples drawn on each predicted mesh for the surface metrics.
        fscore_thresholds: F-score distance thresholds in box units.
        seed: seeds the surface sampling (same seed -> same numbers).
        progress: show a tqdm bar on stderr.
        chamfer_scale: distance factor of the printed (md/tex) tables.
        points_file, pointcloud_file: the reference files in each object folder
            (data.points_file, data.pointcloud_file).
        log: where failed objects are named as they happen (default: silent).
        shard: (I, N): score every N-th object from the I-th into per-object
            records, write no tables (see the module docstring).
        prediction: "mesh", or "points" for vertex-only point sets (surface metrics only).
        split: the split's name, recorded in eval.json (so runs can be compared).
        workers: processes scoring objects side by side (`resolve_workers`; None: one per
            usable CPU when there are enough objects); unsharded evaluations only. Same
            tables as one process: the workers write records that this call then merges.
    Raises when no prediction exists at all, or no object could be scored.
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    points_only = prediction == "points"
    dataset_root, mesh_dir = Path(dataset_root), Path(mesh_dir)
    items = _check_items(items)
    mesh_format = mesh_format.lstrip(".")
    share = Share(*shard)
    settings = {"mode": "dataset", "prediction": prediction, "mesh_dir": os.path.abspath(mesh_dir),
                "mesh_format": mesh_format,
                "n_points": n_points, "seed": seed, "fscore_thresholds": [float(t) for t in fscore_thresholds],
                "points_file": points_file, "pointcloud_file": pointcloud_file}
    records = RecordStore(Path(out_dir) / RECORDS_DIR, "dataset", settings, share)
    paths = {item: mesh_dir / item[0] / f"{item[1]}.{mesh_format}" for item in items}
    if not any(p.exists() for p in paths.values()):
        raise FileNotFoundError(f"no predicted meshes found: none of the {len(items)} objects has a "
                                f"{mesh_dir}/<category>/<model_id>.{mesh_format}; run `onet generate` first, "
                                "or check the folder and mesh format")
    runner = ItemRunner(log=log or (lambda *a: None))

    def stamp_of(category: str, model_id: str) -> list:
        folder = dataset_root / category / model_id
        return file_stamp([paths[(category, model_id)], *(folder / f for f in (points_file, pointcloud_file,
                                                                                  "mesh.ply"))])

    in_workers = _prescore(evaluate_dataset, dict(
        dataset_root=dataset_root, items=items, mesh_dir=mesh_dir, out_dir=out_dir, mesh_format=mesh_format,
        n_points=n_points, fscore_thresholds=tuple(fscore_thresholds), seed=seed, chamfer_scale=chamfer_scale,
        points_file=points_file, pointcloud_file=pointcloud_file, prediction=prediction, split=split),
        items, records, stamp_of, share, workers, progress)

    rows = []
    mine = share.take(items)
    for category, model_id in _progress(mine, enabled=progress and not in_workers, desc="eval", total=len(mine)):
        name, folder, mesh_path = f"{category}/{model_id}", dataset_root / category / model_id, paths[(category, model_id)]
        stamp = stamp_of(category, model_id)
        recorded = _recorded(records, runner, category, model_id, stamp, mesh_path)
        if recorded is not None:
            rows.append(recorded)
            continue
        reference = runner.run(name, folder, lambda: (
            None if points_only else load_points_npz(folder / points_file),
            _surface_reference(folder, n_points=n_points, seed=seed, pointcloud_file=pointcloud_file)))
        if not reference.ok:
            continue
        occ, (gt_points, gt_normals) = reference.value
        if not mesh_path.exists():
            metrics, status, reason = worst_case_metrics(fscore_thresholds=fscore_thresholds, with_iou=not points_only,
                                                         with_normals=not points_only), "missing", \
                f"no prediction at {mesh_path}"
        else:
            def score():
                if points_only:
                    vertices, _ = read_mesh(mesh_path)
                    vertices = check_array(mesh_path, "vertices", vertices, shape=(None, 3))
                    return _score_point_set(vertices, gt_points, fscore_thresholds)
                vertices, faces = _load_mesh(mesh_path)
                return evaluate_mesh(vertices, faces, gt_points=gt_points, gt_normals=gt_normals,
                                     iou_points=occ["points"], iou_occ=occ["occupancies"], n_points=n_points,
                                     fscore_thresholds=fscore_thresholds, seed=seed)
            metrics, status, reason = _score_prediction(
                runner, name, mesh_path, score, fscore_thresholds=fscore_thresholds,
                empty_reason=f"{mesh_path} has no {'points' if points_only else 'surface'}",
                with_iou=not points_only, with_normals=not points_only)
        rows.append(ObjectRow(category, model_id, metrics, status, reason))
        if not share.whole:
            records.add(rows[-1], stamp)

    if not share.whole:
        return _shard_result(rows, records, class_names=_class_names(dataset_root), chamfer_scale=chamfer_scale,
                             runner=runner)
    return _finish(
        rows,
        out_dir,
        class_names=_class_names(dataset_root),
        chamfer_scale=chamfer_scale,
        problems=_problems(rows),
        extra={"mode": "dataset", "prediction": prediction, "dataset": str(dataset_root.resolve()), "split": split,
               "mesh_dir": str(mesh_dir), "n_points": n_points, "seed": seed},
        runner=runner,
    )


def _score_point_set(points: np.ndarray | None, gt_points: np.ndarray, fscore_thresholds) -> MeshMetrics:
    """Surface metrics of a predicted point set (no IoU, no normal consistency); worst case when empty."""
    if points is None or len(points) == 0:
        return worst_case_metrics(fscore_thresholds=fscore_thresholds, with_iou=False, with_normals=False)
    surface = surface_metrics(points, None, gt_points, None, fscore_thresholds=fscore_thresholds)
    return MeshMetrics(iou=None, accuracy=surface["accuracy"], completeness=surface["completeness"],
                       chamfer_l1=surface["chamfer_l1"], chamfer_l2=surface["chamfer_l2"],
                       normal_consistency=None, fscore=surface["fscore"], empty=False)


# --------------------------------------------------------------------------- input baselines


def evaluate_inputs(
    dataset_root,
    items,
    out_dir,
    *,
    input_type: str,
    n_points: int = 100000,
    fscore_thresholds=(0.01,),
    seed: int = 0,
    progress: bool = True,
    chamfer_scale: float = 10,
    pointcloud_n: int = 300,
    pointcloud_noise: float = 0.005,
    points_file: str = "points.npz",
    pointcloud_file: str = "pointcloud.npz",
    voxels_file: str = "model.binvox",
    log=None,
    shard: tuple[int, int] = (0, 1),
    split: str | None = None,
    workers: int | None = 1,
) -> EvalResult:
    """Score the inputs themselves (the "Input" rows of the thesis tables).

    input_type "voxels": the voxel file (32^3 over [-0.5, 0.5]^3) becomes the
    closed mesh of its occupied cells and is scored like a prediction.
    input_type "pointcloud": the point cloud file subsampled to `pointcloud_n`
    points with Gaussian noise `pointcloud_noise` (what the model sees, seeded
    per object); scored with the surface metrics only: a point cloud has no
    inside (IoU) and no normals, so those columns print as "–".
    File names as in the data.* config keys; shard (I, N) and workers as in
    `evaluate_dataset`; split: the split's name, recorded in eval.json.
    """
    if input_type not in INPUT_TYPES:
        raise ValueError(f"input_type must be one of {INPUT_TYPES}, got {input_type!r}")
    dataset_root = Path(dataset_root)
    items = _check_items(items)
    runner = ItemRunner(log=log or (lambda *a: None))
    share = Share(*shard)
    settings = {"mode": f"input:{input_type}", "n_points": n_points, "seed": seed,
                "fscore_thresholds": [float(t) for t in fscore_thresholds], "pointcloud_n": pointcloud_n,
                "pointcloud_noise": pointcloud_noise, "files": [points_file, pointcloud_file, voxels_file]}
    records = RecordStore(Path(out_dir) / RECORDS_DIR, f"input_{input_type}", settings, share)

    def stamp_of(category: str, model_id: str) -> list:
        folder = dataset_root / category / model_id
        return file_stamp([folder / f for f in (voxels_file, points_file, pointcloud_file, "mesh.ply")])

    in_workers = _prescore(evaluate_inputs, dict(
        dataset_root=dataset_root, items=items, out_dir=out_dir, input_type=input_type, n_points=n_points,
        fscore_thresholds=tuple(fscore_thresholds), seed=seed, chamfer_scale=chamfer_scale,
        pointcloud_n=pointcloud_n, pointcloud_noise=pointcloud_noise, points_file=points_file,
        pointcloud_file=pointcloud_file, voxels_file=voxels_file, split=split),
        items, records, stamp_of, share, workers, progress)

    rows = []
    mine = share.take(items)
    for category, model_id in _progress(mine, enabled=progress and not in_workers, desc=f"eval {input_type}",
                                        total=len(mine)):
        name, folder = f"{category}/{model_id}", dataset_root / category / model_id
        stamp = stamp_of(category, model_id)
        recorded = _recorded(records, runner, category, model_id, stamp, folder / voxels_file)
        if recorded is not None:
            rows.append(recorded)
            continue
        reference = runner.run(name, folder, lambda: (
            load_points_npz(folder / points_file) if input_type == "voxels" else None,
            _surface_reference(folder, n_points=n_points, seed=seed, pointcloud_file=pointcloud_file)))
        if not reference.ok:
            continue
        occ, (gt_points, gt_normals) = reference.value
        if input_type == "voxels":
            from onet.geometry.voxelize import voxels_to_mesh  # written alongside; heavy deps stay lazy

            voxel_path = folder / voxels_file
            if not voxel_path.exists():
                metrics, status, reason = worst_case_metrics(fscore_thresholds=fscore_thresholds), "missing", \
                    f"no input at {voxel_path}"
            else:
                def score():
                    vertices, faces = voxels_to_mesh(read_binvox(voxel_path))
                    return evaluate_mesh(vertices, faces, gt_points=gt_points, gt_normals=gt_normals,
                                         iou_points=occ["points"], iou_occ=occ["occupancies"], n_points=n_points,
                                         fscore_thresholds=fscore_thresholds, seed=seed)
                metrics, status, reason = _score_prediction(runner, name, voxel_path, score,
                                                            fscore_thresholds=fscore_thresholds,
                                                            empty_reason="the voxel grid is empty")
        else:
            def score_points():
                cloud = load_pointcloud_npz(folder / pointcloud_file)["points"].astype(np.float64)
                rng = _object_seed(seed, category, model_id)
                chosen = rng.integers(0, len(cloud), size=pointcloud_n)
                points = cloud[chosen] + pointcloud_noise * rng.standard_normal((pointcloud_n, 3))
                surface = surface_metrics(points, None, gt_points, None, fscore_thresholds=fscore_thresholds)
                return MeshMetrics(iou=None, accuracy=surface["accuracy"], completeness=surface["completeness"],
                                   chamfer_l1=surface["chamfer_l1"], chamfer_l2=surface["chamfer_l2"],
                                   normal_consistency=None, fscore=surface["fscore"], empty=False)
            outcome = runner.run(name, folder / pointcloud_file, score_points)
            if not outcome.ok:
                continue  # the reference cloud itself: nothing to score
            metrics, status, reason = outcome.value, "ok", ""
        rows.append(ObjectRow(category, model_id, metrics, status, reason))
        if not share.whole:
            records.add(rows[-1], stamp)

    if not share.whole:
        return _shard_result(rows, records, class_names=_class_names(dataset_root), chamfer_scale=chamfer_scale,
                             runner=runner)
    extra = {"mode": f"input:{input_type}", "dataset": str(dataset_root.resolve()), "split": split,
             "n_points": n_points, "seed": seed}
    if input_type == "pointcloud":
        extra.update(pointcloud_n=pointcloud_n, pointcloud_noise=pointcloud_noise)
    return _finish(rows, out_dir, class_names=_class_names(dataset_root), chamfer_scale=chamfer_scale,
                   problems=_problems(rows), extra=extra, runner=runner)


# --------------------------------------------------------------------------- direct pairs


def _mesh_files(root: Path) -> dict[str, Path]:
    """{relative path without extension: file} of the meshes under root (or root itself)."""
    if root.is_file():
        return {root.stem: root}
    if not root.is_dir():
        raise FileNotFoundError(f"{root} does not exist; give a mesh file or a folder of meshes")
    files = {}
    for path in sorted(root.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(root).parts)  # e.g. temporaries
        if path.is_file() and path.suffix.lower() in MESH_EXTENSIONS and not hidden:
            key = path.relative_to(root).with_suffix("").as_posix()
            if key in files:
                raise ValueError(f"{files[key]} and {path} have the same name; keep one mesh per name")
            files[key] = path
    return files


def evaluate_pairs(
    pred,
    gt,
    out_dir,
    *,
    n_points: int = 100000,
    n_iou_points: int = 100000,
    fscore_thresholds=(0.01,),
    seed: int = 0,
    progress: bool = True,
    chamfer_scale: float = 10,
    log=None,
) -> EvalResult:
    """Score predicted meshes against watertight reference meshes directly.

    pred and gt are two mesh files, or two folders whose meshes are matched by
    relative path without extension ("chair/a.ply" <-> "chair/a.obj"; a
    reference "chair/a/mesh.ply", as in onet datasets, matches "chair/a"); the
    first folder level is the class. Both meshes of a pair are put in the
    reference's normalised frame (bounding box centred at 0, longest edge 1,
    DESIGN §4), so numbers are in box units and comparable with dataset
    tables. IoU: `n_iou_points` uniform points in the padded cube
    [-0.55, 0.55]^3 (seeded) with the inside test on both meshes; a
    non-watertight reference makes IoU best effort (noted per object).
    Surface metrics: `n_points` samples of each mesh with face normals.

    A reference without prediction is scored worst-case ("missing"); a
    prediction without reference is listed in `problems`; an unreadable
    reference is a failed item (no row). No matching name at all raises.
    """
    pred, gt = Path(pred), Path(gt)
    if pred.is_file() != gt.is_file():
        raise ValueError(f"give two mesh files or two folders, got {pred} and {gt}")
    pred_files, gt_files = _mesh_files(pred), _mesh_files(gt)
    # A dataset folder as reference keeps each object's mesh as <id>/mesh.ply: match it to <id>.
    gt_files = {(k[: -len("/mesh")] if k.endswith("/mesh") else k): v for k, v in gt_files.items()}
    if pred.is_file():  # a single pair is matched whatever the names
        pred_files = {next(iter(gt_files)): pred}
    if not gt_files:
        raise FileNotFoundError(f"no reference meshes ({', '.join(MESH_EXTENSIONS)}) under {gt}")
    if not set(pred_files) & set(gt_files):
        raise FileNotFoundError(
            f"no prediction under {pred} matches a reference under {gt} ({len(pred_files)} predictions, "
            f"{len(gt_files)} references): meshes are matched by relative path without extension "
            "(chair/a.ply <-> chair/a.obj, or chair/a/mesh.ply)")
    runner = ItemRunner(log=log or (lambda *a: None))

    problems = [f"{key}: prediction {pred_files[key]} has no reference" for key in sorted(set(pred_files) - set(gt_files))]
    open_refs: list[str] = []
    rng_points = np.random.default_rng(seed)
    iou_points = rng_points.uniform(-0.55, 0.55, size=(n_iou_points, 3))
    rows = []
    for key in _progress(sorted(gt_files), enabled=progress, desc="eval pairs", total=len(gt_files)):
        # the first folder level is the class; flat folders form one class "all"
        category, _, model_id = key.partition("/") if "/" in key else ("all", "", key)

        def reference():
            vertices, faces = _load_mesh(gt_files[key])
            if len(faces) == 0:
                raise ValueError(f"reference {gt_files[key]} has no faces")
            lo, hi = vertices.min(axis=0), vertices.max(axis=0)
            loc, scale = (lo + hi) / 2, float((hi - lo).max())
            if not scale > 0:
                raise ValueError(f"reference {gt_files[key]} is degenerate (zero extent)")
            vertices = (vertices - loc) / scale
            occ = inside_mesh(vertices, faces, iou_points)
            return loc, scale, _is_watertight(vertices, faces), occ, sample_surface(vertices, faces, n_points,
                                                                                     seed=seed + 1)
        ref = runner.run(key, gt_files[key], reference)
        if not ref.ok:
            continue
        loc, scale, watertight, gt_occ, (gt_points, gt_normals) = ref.value
        note = "" if watertight else "reference not watertight: IoU is best effort"

        if key not in pred_files:
            metrics, status, reason = worst_case_metrics(fscore_thresholds=fscore_thresholds), "missing", \
                f"no prediction for {gt_files[key]}"
        else:
            def score():
                vertices, faces = _load_mesh(pred_files[key])
                return evaluate_mesh((vertices - loc) / scale, faces, gt_points=gt_points, gt_normals=gt_normals,
                                     iou_points=iou_points, iou_occ=gt_occ, n_points=n_points,
                                     fscore_thresholds=fscore_thresholds, seed=seed)
            metrics, status, reason = _score_prediction(runner, key, pred_files[key], score,
                                                        fscore_thresholds=fscore_thresholds,
                                                        empty_reason=f"{pred_files[key]} has no surface")
        if status != "ok":
            problems.append(f"{key}: {reason}")
        elif note:
            open_refs.append(key)
        rows.append(ObjectRow(category, model_id, metrics, status, reason or note))
    if open_refs:
        # IoU needs an inside; scored anyway, but the user should know which rows to trust less
        problems.append(f"{len(open_refs)} reference mesh(es) not watertight, their IoU is best effort (noted in "
                        f"eval_meshes.csv): {', '.join(open_refs[:5])}{', ...' if len(open_refs) > 5 else ''}")

    return _finish(
        rows,
        out_dir,
        class_names={},
        chamfer_scale=chamfer_scale,
        problems=problems,
        extra={"mode": "pairs", "pred": str(pred), "gt": str(gt), "n_points": n_points, "seed": seed},
        runner=runner,
    )


def _is_watertight(vertices: np.ndarray, faces: np.ndarray) -> bool:
    import trimesh

    return bool(trimesh.Trimesh(vertices=vertices, faces=faces, process=True).is_watertight)


__all__ = ["EvalResult", "evaluate_dataset", "evaluate_inputs", "evaluate_pairs", "MESH_EXTENSIONS", "INPUT_TYPES"]
