"""Generative metrics (MMD, COV, 1-NNA) on analytic sets, the fast Chamfer matrix against brute force, and
`onet eval --generative` on folders of meshes."""

import json

import numpy as np
import pytest

from onet.cli import main
from onet.evaluation.generative import (ShapeSet, chamfer_l1, chamfer_matrix, code_matrix, compare, mesh_folder_set,
                                        set_metrics)
from onet.geometry.marching_cubes import marching_cubes
from onet.geometry.mesh_files import export_mesh

N_POINTS = 512


def _sphere_points(rng, center, radius, n=N_POINTS):
    d = rng.standard_normal((n, 3))
    return np.asarray(center) + radius * d / np.linalg.norm(d, axis=1, keepdims=True)


def _cube_points(rng, center, half, n=N_POINTS):
    p = rng.uniform(-1, 1, (n, 3))
    axis = rng.integers(0, 3, n)
    p[np.arange(n), axis] = rng.choice([-1.0, 1.0], n)  # project each point onto one face
    return np.asarray(center) + half * p


def _set(label, points, codes=None):
    return ShapeSet(label, [f"{label}_{i}" for i in range(len(points))], list(points), codes)


def _spheres(seed, n=8):
    """n spheres of distinct radii and centres, sampled with their own seed."""
    rng = np.random.default_rng(seed)
    return [_sphere_points(rng, (0.05 * i, 0, 0), 0.15 + 0.03 * i) for i in range(n)]


def test_chamfer_matrix_matches_brute_force():
    rng = np.random.default_rng(0)
    shapes = [rng.uniform(-0.5, 0.5, (50 + 10 * i, 3)) for i in range(4)] + [None]
    d = chamfer_matrix(shapes)
    for i in range(4):
        for j in range(4):
            a, b = shapes[i], shapes[j]
            dist = np.linalg.norm(a[:, None] - b[None], axis=2)  # (N, M) brute force
            expected = 0.5 * (dist.min(1).mean() + dist.min(0).mean())
            assert d[i, j] == pytest.approx(expected, rel=1e-9, abs=1e-12)
            assert chamfer_l1(a, b) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert np.isinf(d[4]).all() and np.isinf(d[:, 4]).all()
    codes = rng.standard_normal((5, 7))
    assert np.allclose(code_matrix(codes), np.linalg.norm(codes[:, None] - codes[None], axis=2), atol=1e-9)


def test_a_set_against_itself_gives_mmd_0_cov_100_and_nna_0():
    shapes = _spheres(0)
    codes = np.random.default_rng(1).standard_normal((8, 4))
    row = compare(_set("same", shapes, codes), _set("ref", shapes, codes))
    for m in (row.shapes, row.latent):
        assert m.mmd == pytest.approx(0.0, abs=1e-12)
        assert m.cov == 1.0 and m.n_matched == 8
        # every shape's nearest neighbour is its twin in the other set (distance 0): a tie, counted wrong
        assert m.nna == 0.0
        assert not m.collapse
    assert all(ref == name.replace("same", "ref") for name, ref, _ in row.nearest)


def test_two_samples_of_one_distribution_give_1nna_near_half_and_full_coverage():
    # spheres with radii from one distribution, sampled twice independently (shapes and surface points)
    rng = np.random.default_rng(3)
    a = [_sphere_points(rng, (0, 0, 0), r) for r in rng.uniform(0.1, 0.4, 24)]
    b = [_sphere_points(rng, (0, 0, 0), r) for r in rng.uniform(0.1, 0.4, 24)]
    m = compare(_set("a", a), _set("b", b)).shapes
    assert 0.3 <= m.nna <= 0.7
    assert m.cov >= 0.4 and m.mmd < 0.03  # the floor: sampling noise of 512 surface points


def test_spheres_against_cubes_give_1nna_100():
    # sizes vary a little within each set, much less than a sphere differs from a cube
    rng = np.random.default_rng(0)
    spheres = [_sphere_points(rng, (0, 0, 0), 0.3 + 0.004 * i) for i in range(8)]
    cubes = [_cube_points(rng, (0, 0, 0), 0.25 + 0.004 * i) for i in range(8)]
    m = compare(_set("spheres", spheres), _set("cubes", cubes)).shapes
    assert m.nna == 1.0
    assert m.mmd > 0.005


def test_a_sampler_returning_one_training_shape_has_cov_one_over_n_and_is_flagged():
    reference = _spheres(0, n=10)
    one = _spheres(5, n=10)[3]  # a shape close to reference 3, returned every time
    row = compare(_set("copycat", [one] * 16), _set("test", reference))
    assert row.shapes.cov <= 1 / len(reference)
    assert row.shapes.n_matched == 1 and row.shapes.collapse
    # a varied sampler of the same family is not flagged
    assert not compare(_set("varied", _spheres(5, n=10)), _set("test", reference)).shapes.collapse


def test_empty_samples_count_as_failures():
    reference = _spheres(0, n=4)
    good = _spheres(1, n=4)
    m = compare(_set("half", good[:2] + [None, None]), _set("test", reference)).shapes
    assert m.n_empty == 2 and m.n_generated == 4
    d = chamfer_matrix(good[:2] + reference)
    assert m.mmd == pytest.approx(d[:2, 2:].min(0).mean())  # the minimum over the non-empty samples
    all_empty = set_metrics(np.full((2, 3), np.inf), np.full((2, 2), np.inf), np.zeros((3, 3)),
                            empty=np.array([True, True]), worst=1.5)
    assert all_empty.mmd == 1.5 and all_empty.cov == 0.0 and all_empty.collapse


def _write_mesh(path, sdf, res=24):
    """A mesh of the zero level set of sdf (vectorised over (N, 3) points) in the unit box."""
    xs = np.linspace(-0.55, 0.55, res)
    grid = np.stack(np.meshgrid(xs, xs, xs, indexing="ij"), -1).reshape(-1, 3)
    vertices, faces = marching_cubes(-sdf(grid).reshape(res, res, res), 0.0, box_size=1.1)
    export_mesh(path, vertices, faces)


def test_eval_generative_on_two_folders_writes_tables(tmp_path, capsys):
    pred, gt = tmp_path / "samples" / "meshes", tmp_path / "reference"
    pred.mkdir(parents=True)
    gt.mkdir()
    for i, r in enumerate((0.3, 0.31, 0.32)):
        _write_mesh(gt / f"sphere_{i}.ply", lambda p, r=r: np.linalg.norm(p, axis=1) - r)
        _write_mesh(pred / f"sample_{i:03d}.ply", lambda p, r=r: np.abs(p).max(1) - 0.8 * r)  # cubes
    (pred / "sample_003.ply").write_text("ply\nformat ascii 1.0\nelement vertex 0\nelement face 0\nend_header\n")
    # an interpolation is not an independent sample: left out of the set
    _write_mesh(pred / "interpolation_000.ply", lambda p: np.linalg.norm(p, axis=1) - 0.3)
    out = tmp_path / "tables"
    assert main(["eval", "--generative", "--pred", str(tmp_path / "samples"), "--gt", str(gt), "--output", str(out),
                 "--no-progress"]) == 0
    doc = json.loads((out / "generative.json").read_text())
    (row,) = doc["samplers"]
    assert row["shapes"]["n_generated"] == 4 and row["shapes"]["n_empty"] == 1
    assert row["shapes"]["n_reference"] == 3 and row["shapes"]["nna"] == 1.0  # cubes vs spheres
    assert row["latent"] is None  # no codes.npz beside the samples
    assert any("sample_003" in p for p in doc["problems"])
    assert "MMD-CD" in (out / "generative.md").read_text()
    assert "1-NNA" in capsys.readouterr().out


def test_mesh_folder_set_is_reproducible(tmp_path):
    _write_mesh(tmp_path / "a.obj", lambda p: np.linalg.norm(p, axis=1) - 0.3)
    s1, s2 = mesh_folder_set(tmp_path, n_points=300), mesh_folder_set(tmp_path, n_points=300)
    assert s1.names == ["a"] and s1.points[0].shape == (300, 3)
    assert np.array_equal(s1.points[0], s2.points[0])


def test_eval_generative_on_an_empty_folder_exits_1(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "gt").mkdir()
    _write_mesh(tmp_path / "gt" / "a.ply", lambda p: np.linalg.norm(p, axis=1) - 0.3)
    assert main(["eval", "--generative", "--pred", str(tmp_path / "empty"), "--gt", str(tmp_path / "gt")]) == 1
    err = capsys.readouterr().err
    assert "no meshes" in err and str(tmp_path / "empty") in err
    assert main(["eval", "--generative", "--gt", str(tmp_path / "gt")]) == 2  # --gt without --pred
