import numpy as np
import pytest
import trimesh

from onet.generation.extractor import STAGES, extract_meshes

from fields import batched_eval_fn, field_fn, rod_sdf, sphere_sdf, torus_sdf

SDFS = [sphere_sdf((0.05, -0.02, 0.01), 0.3), torus_sdf(), rod_sdf(radius=0.05)]
OPTIONS = dict(resolution_0=16, upsampling_steps=2, points_chunk=20_000)


def test_batched_equals_one_by_one():
    batched = extract_meshes(batched_eval_fn(SDFS), 3, **OPTIONS)
    for sdf, mesh in zip(SDFS, batched):
        alone = extract_meshes(batched_eval_fn([sdf]), 1, **OPTIONS)[0]
        assert np.array_equal(alone.vertices, mesh.vertices) and np.array_equal(alone.faces, mesh.faces)
        assert alone.n_evaluated == mesh.n_evaluated
        assert mesh.normals is None
        assert trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).is_watertight


def test_full_pipeline():
    meshes = extract_meshes(
        batched_eval_fn(SDFS[:2]),
        2,
        field_fns=[field_fn(s) for s in SDFS[:2]],
        simplify_nfaces=2000,
        refinement_step=3,
        vertex_normals=True,
        **OPTIONS,
    )
    for mesh in meshes:
        assert set(mesh.timings) == set(STAGES) and all(t > 0 for t in mesh.timings.values())
        assert len(mesh.faces) <= 2000
        assert trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).is_watertight
        assert mesh.normals.shape == mesh.vertices.shape
        assert np.allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-5)
    # the sphere's normals point away from its centre
    outward = (meshes[0].normals * (meshes[0].vertices - np.array([0.05, -0.02, 0.01]))).sum(axis=1)
    assert (outward > 0).all()


def test_empty_object_in_a_batch():
    meshes = extract_meshes(
        batched_eval_fn([SDFS[0], sphere_sdf(radius=-1.0)]),
        2,
        field_fns=[field_fn(SDFS[0]), field_fn(sphere_sdf(radius=-1.0))],
        simplify_nfaces=500,
        refinement_step=2,
        vertex_normals=True,
        **OPTIONS,
    )
    assert len(meshes[0].faces) > 0
    assert meshes[1].vertices.shape == (0, 3) and meshes[1].faces.shape == (0, 3)
    assert meshes[1].normals.shape == (0, 3)


def test_field_fns_required_for_refinement_and_normals():
    with pytest.raises(ValueError, match="field_fns"):
        extract_meshes(batched_eval_fn(SDFS), 3, refinement_step=5, **OPTIONS)
    with pytest.raises(ValueError, match="field_fns"):
        extract_meshes(batched_eval_fn(SDFS), 3, field_fns=[field_fn(SDFS[0])], vertex_normals=True, **OPTIONS)


def test_bad_simplify_budget_fails_before_any_work():
    def never(points):
        raise AssertionError("evaluated")

    with pytest.raises(ValueError, match="simplify_nfaces"):
        extract_meshes(never, 1, simplify_nfaces=2)


def test_overlapped_extraction_equals_serial():
    """Marching cubes + simplification in 2 worker processes (batch k while batch k+1 is
    evaluated) gives exactly the meshes of the serial path, batch by batch, in order."""
    from onet.generation.extractor import ExtractionBatch, extract_batches

    # one empty object; the last batch (3 objects, 2 workers) goes out as one task of 2 and one of 1
    groups = [SDFS[:2], SDFS[2:], [sphere_sdf(radius=-1.0), SDFS[0], SDFS[1]]]

    def batches(log):
        for i, sdfs in enumerate(groups):
            log.append(i)  # consumed lazily: at most one batch ahead of what was yielded
            yield ExtractionBatch(batched_eval_fn(sdfs), len(sdfs), payload=f"batch {i}")

    options = dict(OPTIONS, simplify_nfaces=1500, keep_grids=True)
    consumed: list[int] = []
    serial = list(extract_batches(batches([]), workers=0, **options))
    overlapped = []
    for payload, meshes in extract_batches(batches(consumed), workers=2, **options):
        overlapped.append((payload, meshes))
        assert len(consumed) <= len(overlapped) + 1
    assert [p for p, _ in overlapped] == [p for p, _ in serial] == ["batch 0", "batch 1", "batch 2"]
    for (_, a), (_, b) in zip(serial, overlapped):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert np.array_equal(x.vertices, y.vertices) and np.array_equal(x.faces, y.faces)
            assert x.n_evaluated == y.n_evaluated and np.array_equal(x.grid, y.grid)
            assert y.timings["marching_cubes"] > 0 or len(y.faces) == 0
    assert len(overlapped[2][1][0].faces) == 0 and len(overlapped[2][1][1].faces) > 0


@pytest.mark.parametrize("backend", ["torch", "warp"])
def test_device_backends_give_the_same_vertices(backend):
    if backend == "warp":
        pytest.importorskip("warp", reason="optional extra: pip install -e .[gpu]")
    from scipy.spatial import cKDTree

    # an object with no surface between two others
    sdfs = [SDFS[0], sphere_sdf(radius=-1.0), SDFS[1]]
    ref = extract_meshes(batched_eval_fn(sdfs), 3, keep_grids=True, **OPTIONS)
    meshes = extract_meshes(batched_eval_fn(sdfs), 3, marching_cubes_backend=backend, keep_grids=True,
                            **OPTIONS)
    assert [len(m.faces) > 0 for m in ref] == [True, False, True]
    for a, b in zip(ref, meshes):
        assert a.vertices.shape == b.vertices.shape and a.faces.shape == b.faces.shape
        assert np.array_equal(a.grid, b.grid) and a.n_evaluated == b.n_evaluated
        if len(a.faces):
            assert cKDTree(b.vertices).query(a.vertices)[0].max() < 1e-6
            assert trimesh.Trimesh(b.vertices, b.faces, process=False).is_watertight
            assert b.timings["marching_cubes"] > 0


def test_bad_extraction_options():
    with pytest.raises(ValueError, match="marching_cubes_backend"):
        extract_meshes(batched_eval_fn(SDFS[:1]), 1, marching_cubes_backend="gpu", **OPTIONS)
    from onet.generation.extractor import extract_batches
    with pytest.raises(ValueError, match="workers"):
        list(extract_batches([], workers=-1))
