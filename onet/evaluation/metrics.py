"""Reconstruction metrics (DESIGN §7): IoU, accuracy, completeness, Chamfer,
normal consistency and F-score.

Units. Distances are in the units of the inputs; on the dataset they are in
box units (the normalised object's longest bounding-box edge is 1). Tables in
the literature print Chamfer-L1 x10 (see onet.evaluation.tables).

Conventions (ONet's):
- accuracy = mean distance from predicted samples to the nearest reference
  sample; completeness = the reverse; Chamfer-L1 = (accuracy + completeness) / 2;
  Chamfer-L2 = the same mean of the squared distances.
- normal consistency = mean |n_pred . n_nearest_ref| and the reverse, averaged.
- F-score at threshold d = harmonic mean of precision (fraction of predicted
  samples within d of the reference, distance <= d) and recall (the reverse).
- IoU of two empty occupancy sets is defined as 1 (the sets are identical);
  ONet divides 0 by 0 there.

Empty or unreadable predictions get worst-case values (`worst_case_metrics`)
so that they count in every mean instead of vanishing as NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from pykdtree.kdtree import KDTree

from onet.geometry.inside import inside_mesh
from onet.geometry.iou import iou
from onet.geometry.mesh import check_mesh_arrays, check_points
from onet.geometry.sampling import sample_surface as _sample_surface

# Worst-case values for empty or unreadable predictions. Distances use the
# diagonal of the evaluation box (edge 1.1, DESIGN §4): no sample inside the
# box can be farther than that from another one. Finite on purpose: a NaN
# would silently drop the object from a mean.
WORST_CASE_DISTANCE = math.sqrt(3.0) * 1.1
WORST_CASE_IOU = 0.0
WORST_CASE_NORMAL_CONSISTENCY = 0.0
WORST_CASE_FSCORE = 0.0


@dataclass
class MeshMetrics:
    """Metrics of one prediction against one reference.

    `iou` and `normal_consistency` are None where they do not apply (a point
    cloud has no inside and no normals); tables then leave the column out.
    `fscore` maps each distance threshold to the F-score at that threshold.
    `empty` marks a prediction scored with worst-case values.
    """

    iou: float | None
    accuracy: float
    completeness: float
    chamfer_l1: float
    chamfer_l2: float
    normal_consistency: float | None
    fscore: dict[float, float] = field(default_factory=dict)
    empty: bool = False


def worst_case_metrics(
    *,
    fscore_thresholds=(0.01,),
    with_iou: bool = True,
    with_normals: bool = True,
    worst_case_distance: float = WORST_CASE_DISTANCE,
) -> MeshMetrics:
    """Metrics of an empty or unreadable prediction (`empty=True`)."""
    return MeshMetrics(
        iou=WORST_CASE_IOU if with_iou else None,
        accuracy=worst_case_distance,
        completeness=worst_case_distance,
        chamfer_l1=worst_case_distance,
        chamfer_l2=worst_case_distance**2,
        normal_consistency=WORST_CASE_NORMAL_CONSISTENCY if with_normals else None,
        fscore={float(t): WORST_CASE_FSCORE for t in _check_thresholds(fscore_thresholds)},
        empty=True,
    )


def _check_thresholds(thresholds) -> tuple[float, ...]:
    thresholds = tuple(float(t) for t in thresholds)
    if any(not (t > 0 and math.isfinite(t)) for t in thresholds):
        raise ValueError(f"fscore_thresholds must be positive and finite, got {thresholds}")
    return thresholds


def _check_points(name: str, array, *, allow_none: bool = False) -> np.ndarray | None:
    if array is None:
        if allow_none:
            return None
        raise ValueError(f"{name} is required")
    return check_points(name, array)


def _unit(normals: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(normals, axis=1, keepdims=True)
    # a zero normal stays zero (it then scores 0 consistency) instead of NaN
    return normals / np.where(norm > 0, norm, 1.0)


def nearest_neighbors(query, reference) -> tuple[np.ndarray, np.ndarray]:
    """Distance to and index of the nearest `reference` point for each `query` point.

    Args:
        query: (N, 3) points; reference: (M, 3) points, M >= 1.
    Returns:
        distances (N,) float64, indices (N,) int64.
    """
    query = _check_points("query", query)
    reference = _check_points("reference", reference)
    if len(reference) == 0:
        raise ValueError("reference must contain at least one point")
    tree = KDTree(reference)
    distances, indices = tree.query(query, k=1)
    return distances.astype(np.float64), indices.astype(np.int64)


def surface_metrics(
    pred_points,
    pred_normals,
    gt_points,
    gt_normals,
    *,
    fscore_thresholds=(0.01,),
) -> dict:
    """Surface metrics between two point samples.

    Args:
        pred_points: (N, 3) samples of the prediction, N >= 1.
        pred_normals: (N, 3) their normals, or None.
        gt_points: (M, 3) samples of the reference, M >= 1.
        gt_normals: (M, 3) their normals, or None.
        fscore_thresholds: distance thresholds for the F-score.

    Returns:
        dict with float values "accuracy", "completeness", "chamfer_l1",
        "chamfer_l2", "normal_consistency" (None unless both normals are
        given), "precision", "recall" and "fscore" (each a dict threshold ->
        value).
    """
    pred_points = _check_points("pred_points", pred_points)
    gt_points = _check_points("gt_points", gt_points)
    pred_normals = _check_points("pred_normals", pred_normals, allow_none=True)
    gt_normals = _check_points("gt_normals", gt_normals, allow_none=True)
    thresholds = _check_thresholds(fscore_thresholds)
    if len(pred_points) == 0 or len(gt_points) == 0:
        raise ValueError(
            f"pred_points and gt_points must be non-empty, got {len(pred_points)} and {len(gt_points)} points "
            "(score an empty prediction with worst_case_metrics)"
        )
    for name, normals, points in (("pred", pred_normals, pred_points), ("gt", gt_normals, gt_points)):
        if normals is not None and normals.shape != points.shape:
            raise ValueError(f"{name}_normals must match {name}_points {points.shape}, got {normals.shape}")

    dist_pred_to_gt, idx_pred_to_gt = nearest_neighbors(pred_points, gt_points)
    dist_gt_to_pred, idx_gt_to_pred = nearest_neighbors(gt_points, pred_points)

    accuracy = float(dist_pred_to_gt.mean())
    completeness = float(dist_gt_to_pred.mean())
    result = {
        "accuracy": accuracy,
        "completeness": completeness,
        "chamfer_l1": 0.5 * (accuracy + completeness),
        "chamfer_l2": 0.5 * float((dist_pred_to_gt**2).mean() + (dist_gt_to_pred**2).mean()),
        "normal_consistency": None,
    }
    if pred_normals is not None and gt_normals is not None:
        pred_unit, gt_unit = _unit(pred_normals), _unit(gt_normals)
        # orientation-free: |cos| of the angle to the nearest sample's normal
        accuracy_normals = np.abs((pred_unit * gt_unit[idx_pred_to_gt]).sum(axis=1)).mean()
        completeness_normals = np.abs((gt_unit * pred_unit[idx_gt_to_pred]).sum(axis=1)).mean()
        result["normal_consistency"] = float(0.5 * (accuracy_normals + completeness_normals))

    precision, recall, fscore = {}, {}, {}
    for t in thresholds:
        p = float((dist_pred_to_gt <= t).mean())
        r = float((dist_gt_to_pred <= t).mean())
        precision[t], recall[t] = p, r
        fscore[t] = 2 * p * r / (p + r) if p + r > 0 else 0.0
    result.update(precision=precision, recall=recall, fscore=fscore)
    return result


def sample_surface(vertices, faces, n_points: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform samples (float64) on a triangle mesh with the normals of their faces, seeded.

    The evaluation's view of `onet.geometry.sampling.sample_surface`: returns
    points (n_points, 3), normals (n_points, 3); n_points >= 1.
    """
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    return _sample_surface(vertices, faces, n_points, rng=seed, dtype=np.float64)


def _surface_area(vertices: np.ndarray, faces: np.ndarray) -> float:
    if len(faces) == 0:
        return 0.0
    t = vertices[faces]
    return 0.5 * float(np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1).sum())


def evaluate_mesh(
    pred_vertices,
    pred_faces,
    *,
    gt_points,
    gt_normals,
    iou_points=None,
    iou_occ=None,
    n_points: int = 100000,
    fscore_thresholds=(0.01,),
    seed: int = 0,
    worst_case_distance: float = WORST_CASE_DISTANCE,
) -> MeshMetrics:
    """Score a predicted mesh against reference surface samples and occupancies.

    Args:
        pred_vertices: (V, 3) predicted mesh vertices (None or empty: empty mesh).
        pred_faces: (F, 3) predicted faces.
        gt_points: (M, 3) reference surface samples.
        gt_normals: (M, 3) their normals, or None (normal consistency None).
        iou_points: (K, 3) points with known occupancy, or None (IoU None).
        iou_occ: (K,) bool reference occupancy of `iou_points`.
        n_points: samples drawn on the prediction (seeded by `seed`).
        worst_case_distance: distance given to an empty prediction.

    Returns:
        MeshMetrics; an empty prediction (no faces or zero area) gets
        `worst_case_metrics(...)` (IoU 0 even if the reference is empty too).
    """
    if (iou_points is None) != (iou_occ is None):
        raise ValueError("give both iou_points and iou_occ, or neither")
    gt_points = _check_points("gt_points", gt_points)
    gt_normals = _check_points("gt_normals", gt_normals, allow_none=True)
    if iou_points is not None:
        iou_points = _check_points("iou_points", iou_points)
        iou_occ = np.asarray(iou_occ)
        if iou_occ.shape != (len(iou_points),):
            raise ValueError(f"iou_occ must have shape ({len(iou_points)},), got {iou_occ.shape}")

    if pred_vertices is None or pred_faces is None:
        pred_vertices, pred_faces = np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    pred_vertices, pred_faces = np.asarray(pred_vertices), np.asarray(pred_faces)
    # tolerate [] and (0,) for "no vertices" / "no faces"
    if pred_vertices.size == 0:
        pred_vertices = np.zeros((0, 3))
    if pred_faces.size == 0:
        pred_faces = np.zeros((0, 3), dtype=np.int64)
    pred_vertices, pred_faces = check_mesh_arrays(pred_vertices, pred_faces, finite=True)
    if _surface_area(pred_vertices, pred_faces) <= 0:
        return worst_case_metrics(
            fscore_thresholds=fscore_thresholds,
            with_iou=iou_points is not None,
            with_normals=gt_normals is not None,
            worst_case_distance=worst_case_distance,
        )

    points, normals = sample_surface(pred_vertices, pred_faces, n_points, seed=seed)
    surface = surface_metrics(points, normals, gt_points, gt_normals, fscore_thresholds=fscore_thresholds)
    iou_value = None
    if iou_points is not None:
        iou_value = iou(inside_mesh(pred_vertices, pred_faces, iou_points), iou_occ)
    return MeshMetrics(
        iou=iou_value,
        accuracy=surface["accuracy"],
        completeness=surface["completeness"],
        chamfer_l1=surface["chamfer_l1"],
        chamfer_l2=surface["chamfer_l2"],
        normal_consistency=surface["normal_consistency"],
        fscore=surface["fscore"],
        empty=False,
    )
