import numpy as np
import pytest
import trimesh

from onet.geometry.inside import inside_mesh
from onet.preprocess.watertight import fibonacci_hemisphere, make_watertight, point_triangle_distance

RES = 48  # small grid: fast, still far finer than the shapes


def _sphere(r=0.45):
    m = trimesh.creation.icosphere(subdivisions=3, radius=r)
    return m.vertices, m.faces


def _box():
    m = trimesh.creation.box(extents=(1.0, 0.6, 0.4)).subdivide_to_size(0.1)
    return m.vertices, m.faces


def _agreement(v, f, ref_v, ref_f, n=20000):
    p = (np.random.default_rng(0).random((n, 3)) - 0.5) * 1.1
    return np.mean(inside_mesh(v, f, p) == inside_mesh(ref_v, ref_f, p))


def _watertight(v, f, **kw):
    out_v, out_f = make_watertight(v, f, resolution=RES, **kw)
    mesh = trimesh.Trimesh(out_v, out_f, process=False)
    assert mesh.is_watertight
    assert mesh.volume > 0  # outward orientation
    return out_v, out_f


def test_sphere_volume_matches_analytic():
    v, f = _sphere()
    out_v, out_f = _watertight(v, f)
    ref = trimesh.Trimesh(v, f).volume  # the polyhedron, not the ideal sphere
    assert trimesh.Trimesh(out_v, out_f).volume == pytest.approx(ref, rel=0.02)
    assert _agreement(out_v, out_f, v, f) > 0.99


def _remove_patch(v, f, fraction=0.02):
    """Drop the faces nearest to one point, about `fraction` of the area."""
    mesh = trimesh.Trimesh(v, f, process=False)
    order = np.argsort(np.linalg.norm(mesh.triangles_center - mesh.triangles_center[0], axis=1))
    cum = np.cumsum(mesh.area_faces[order])
    drop = order[: np.searchsorted(cum, fraction * cum[-1]) + 1]
    return v, np.delete(f, drop, axis=0)


def _flip(v, f):
    f = f.copy()
    f[::3] = f[::3, ::-1]
    return v, f


def _duplicate(v, f):
    return v, np.concatenate([f, f[::2]])


def _inner_shell(v, f):
    inner = trimesh.Trimesh(v, f).copy()
    inner.vertices = inner.vertices - 0.02 * inner.vertex_normals
    return np.concatenate([v, inner.vertices]), np.concatenate([f, inner.faces[:, ::-1] + len(v)])


@pytest.mark.parametrize("corrupt", [_remove_patch, _flip, _duplicate, _inner_shell], ids=["hole", "flip", "dup", "shell"])
@pytest.mark.parametrize("shape", [_sphere, _box], ids=["sphere", "box"])
def test_corrupted_inputs_give_watertight_close_output(shape, corrupt):
    v, f = shape()
    cv, cf = corrupt(v, f)
    out_v, out_f = _watertight(cv, cf)
    assert _agreement(out_v, out_f, v, f) > 0.97


def test_open_sheet_becomes_thin_closed_shell():
    plane = trimesh.creation.box(extents=(0.8, 0.8, 0.0001)).subdivide_to_size(0.2)
    top = plane.faces[plane.triangles_center[:, 2] > 0]  # a single-sided square: no volume at all
    out_v, out_f = _watertight(plane.vertices, top)
    out = trimesh.Trimesh(out_v, out_f)
    assert out.extents[0] == pytest.approx(0.8, abs=0.05)
    assert out.extents[2] < 0.1  # thin
    assert out.volume > 0


@pytest.mark.parametrize("depth,visible_fraction", [(0.3, 0.2), (0.6, 0.1)])
def test_concavity_is_not_filled(depth, visible_fraction):
    # a thick-walled open cup: its cavity is outside; a deep one needs a lower
    # visible_fraction (seen along fewer lines), the documented trade-off
    outer = trimesh.creation.box(extents=(0.8, 0.8, 0.8))
    inner = trimesh.creation.box(extents=(0.6, 0.6, depth)).apply_translation([0, 0, 0.401 - depth / 2])
    cup = outer.difference(inner)
    out_v, out_f = _watertight(cup.vertices, cup.faces, visible_fraction=visible_fraction)
    assert not inside_mesh(out_v, out_f, np.array([[0.0, 0.0, 0.42 - depth]]))[0]
    assert _agreement(out_v, out_f, cup.vertices, cup.faces) > 0.98


def test_point_triangle_distance_matches_trimesh():
    rng = np.random.default_rng(0)
    tri = rng.normal(size=(200, 3, 3))
    p = rng.normal(size=(200, 3)) * 2
    ours = point_triangle_distance(p, tri)
    for i in range(0, 200, 20):  # slow reference, a few rows
        ref = trimesh.Trimesh(tri[i], [[0, 1, 2]], process=False)
        _, d, _ = trimesh.proximity.closest_point(ref, p[i : i + 1])
        assert ours[i] == pytest.approx(d[0], abs=1e-9)


def test_directions_are_unit_and_start_with_axes():
    d = fibonacci_hemisphere(24)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0)
    np.testing.assert_allclose(d[:3], np.eye(3))
    assert (d[:, 2] >= 0).all()


def test_bad_arguments():
    v, f = _sphere()
    with pytest.raises(ValueError, match="method"):
        make_watertight(v, f, method="tsdf")
    with pytest.raises(ValueError, match="normalise"):
        make_watertight(v * 3, f)
    with pytest.raises(ValueError, match="resolution"):
        make_watertight(v, f, resolution=33)
    with pytest.raises(ValueError, match="face"):
        make_watertight(v, f[:0])
