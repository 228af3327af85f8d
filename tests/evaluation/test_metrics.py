"""Metrics against analytic truth and brute-force references."""

import math

import numpy as np
import pytest
import trimesh

from onet.geometry.inside import inside_mesh
from onet.evaluation.metrics import (
    WORST_CASE_DISTANCE,
    MeshMetrics,
    evaluate_mesh,
    sample_surface,
    surface_metrics,
    worst_case_metrics,
)


def _sphere_samples(radius, n, seed):
    directions = np.random.default_rng(seed).standard_normal((n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return radius * directions, directions


def _uniform(n, seed):
    return np.random.default_rng(seed).uniform(-0.55, 0.55, size=(n, 3))


def test_concentric_spheres_match_analytic_values():
    r1, r2 = 0.5, 0.4
    pred = trimesh.creation.icosphere(subdivisions=5, radius=r1)
    gt_points, gt_normals = _sphere_samples(r2, 50_000, seed=1)
    iou_points = _uniform(100_000, seed=2)
    metrics = evaluate_mesh(
        pred.vertices,
        pred.faces,
        gt_points=gt_points,
        gt_normals=gt_normals,
        iou_points=iou_points,
        iou_occ=np.linalg.norm(iou_points, axis=1) < r2,
        n_points=50_000,
    )
    assert metrics.iou == pytest.approx((r2 / r1) ** 3, rel=0.01)
    assert metrics.accuracy == pytest.approx(r1 - r2, rel=0.01)
    assert metrics.completeness == pytest.approx(r1 - r2, rel=0.01)
    assert metrics.chamfer_l1 == pytest.approx(r1 - r2, rel=0.01)
    assert metrics.chamfer_l2 == pytest.approx((r1 - r2) ** 2, rel=0.02)
    assert metrics.normal_consistency == pytest.approx(1.0, rel=0.01)
    assert metrics.fscore == {0.01: 0.0}  # every sample is 0.1 away
    assert not metrics.empty


def test_mesh_against_itself():
    mesh = trimesh.creation.torus(0.3, 0.1, major_sections=64, minor_sections=32)
    gt_points, gt_normals = sample_surface(mesh.vertices, mesh.faces, 50_000, seed=1)
    iou_points = _uniform(50_000, seed=3)
    metrics = evaluate_mesh(
        mesh.vertices,
        mesh.faces,
        gt_points=gt_points,
        gt_normals=gt_normals,
        iou_points=iou_points,
        iou_occ=inside_mesh(mesh.vertices, mesh.faces, iou_points),
        n_points=50_000,
    )
    assert metrics.iou == 1.0
    assert metrics.chamfer_l1 < 3e-3  # only the sample spacing remains
    assert metrics.normal_consistency > 0.99
    assert metrics.fscore[0.01] > 0.99


def test_cube_against_translated_cube():
    side, shift = 0.5, 0.2
    pred = trimesh.creation.box(extents=(side, side, side))
    pred.apply_translation((shift, 0, 0))
    gt = trimesh.creation.box(extents=(side, side, side))
    gt_points, gt_normals = sample_surface(gt.vertices, gt.faces, 20_000, seed=1)
    iou_points = _uniform(100_000, seed=4)
    metrics = evaluate_mesh(
        pred.vertices,
        pred.faces,
        gt_points=gt_points,
        gt_normals=gt_normals,
        iou_points=iou_points,
        iou_occ=(np.abs(iou_points) < side / 2).all(axis=1),
        n_points=20_000,
    )
    overlap = (side - shift) * side * side
    assert metrics.iou == pytest.approx(overlap / (2 * side**3 - overlap), abs=0.01)


def _brute_force(pred, pred_n, gt, gt_n, t):
    d = np.linalg.norm(pred[:, None] - gt[None], axis=-1)  # (N, M)
    d_pg, i_pg = d.min(1), d.argmin(1)
    d_gp, i_gp = d.min(0), d.argmin(0)
    unit = lambda n: n / np.linalg.norm(n, axis=1, keepdims=True)  # noqa: E731
    nc = 0.5 * (np.abs((unit(pred_n) * unit(gt_n)[i_pg]).sum(1)).mean() + np.abs((unit(gt_n) * unit(pred_n)[i_gp]).sum(1)).mean())
    p, r = (d_pg <= t).mean(), (d_gp <= t).mean()
    return {
        "accuracy": d_pg.mean(),
        "completeness": d_gp.mean(),
        "chamfer_l1": (d_pg.mean() + d_gp.mean()) / 2,
        "chamfer_l2": ((d_pg**2).mean() + (d_gp**2).mean()) / 2,
        "normal_consistency": nc,
        "fscore": 2 * p * r / (p + r),
    }


def test_kdtree_metrics_equal_brute_force():
    rng = np.random.default_rng(5)
    pred, gt = rng.uniform(-0.5, 0.5, (300, 3)), rng.uniform(-0.5, 0.5, (200, 3))
    pred_n, gt_n = rng.standard_normal((300, 3)), rng.standard_normal((200, 3))
    got = surface_metrics(pred, pred_n, gt, gt_n, fscore_thresholds=(0.1,))
    want = _brute_force(pred, pred_n, gt, gt_n, 0.1)
    for key in ("accuracy", "completeness", "chamfer_l1", "chamfer_l2", "normal_consistency"):
        assert got[key] == pytest.approx(want[key], rel=1e-9), key
    assert got["fscore"][0.1] == pytest.approx(want["fscore"], rel=1e-9)


def test_surface_metrics_without_normals():
    points = np.random.default_rng(0).uniform(size=(50, 3))
    got = surface_metrics(points, None, points, None)
    assert got["normal_consistency"] is None
    assert got["chamfer_l1"] == 0.0 and got["fscore"][0.01] == 1.0


def test_empty_prediction_gets_finite_worst_case():
    gt_points, gt_normals = _sphere_samples(0.4, 1000, seed=0)
    iou_points = _uniform(1000, seed=0)
    for vertices, faces in [(np.zeros((0, 3)), np.zeros((0, 3), int)), (None, None), ([], [])]:
        metrics = evaluate_mesh(
            vertices,
            faces,
            gt_points=gt_points,
            gt_normals=gt_normals,
            iou_points=iou_points,
            iou_occ=np.linalg.norm(iou_points, axis=1) < 0.4,
            fscore_thresholds=(0.01, 0.02),
        )
        assert metrics.empty and metrics.iou == 0.0 and metrics.normal_consistency == 0.0
        assert metrics.chamfer_l1 == WORST_CASE_DISTANCE and math.isfinite(metrics.chamfer_l2)
        assert metrics.fscore == {0.01: 0.0, 0.02: 0.0}
    assert worst_case_metrics(with_iou=False).iou is None
    assert WORST_CASE_DISTANCE == pytest.approx(math.sqrt(3) * 1.1)


def test_sampling_is_seeded_and_uniform_by_area():
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    a, na = sample_surface(box.vertices, box.faces, 60_000, seed=7)
    b, _ = sample_surface(box.vertices, box.faces, 60_000, seed=7)
    assert np.array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(na, axis=1), 1.0)
    # the two x faces have area 2*3 out of a total 2*(2 + 3 + 6) = 22
    on_x = np.isclose(np.abs(a[:, 0]), 0.5)
    assert on_x.mean() == pytest.approx(12 / 22, abs=0.01)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="pred_points must have shape"):
        surface_metrics(np.zeros((3, 2)), None, np.zeros((3, 3)), None)
    with pytest.raises(ValueError, match="non-empty"):
        surface_metrics(np.zeros((0, 3)), None, np.zeros((3, 3)), None)
    with pytest.raises(ValueError, match="pred_normals must match"):
        surface_metrics(np.zeros((3, 3)), np.zeros((2, 3)), np.zeros((3, 3)), None)
    with pytest.raises(ValueError, match="fscore_thresholds"):
        surface_metrics(np.zeros((3, 3)), None, np.zeros((3, 3)), None, fscore_thresholds=(0,))
    with pytest.raises(ValueError, match="iou_occ must have shape"):
        evaluate_mesh(np.zeros((3, 3)), [[0, 1, 2]], gt_points=np.zeros((3, 3)), gt_normals=None,
                      iou_points=np.zeros((4, 3)), iou_occ=np.zeros(3, bool))
    assert isinstance(worst_case_metrics(), MeshMetrics)
