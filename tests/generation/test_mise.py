import math

import numpy as np
import pytest
import torch
import trimesh

from onet.geometry.grid import cell_size, grid_points
from onet.geometry.marching_cubes import marching_cubes
from onet.generation.mise import mise

from fields import LEVEL, CountingEvalFn, batched_eval_fn, rod_sdf, sphere_sdf, torus_sdf

SPHERE = sphere_sdf((0.05, -0.02, 0.01), 0.3)
TORUS = torus_sdf((0.02, 0.01, -0.03), 0.3, 0.1)
H128 = cell_size(128, box_size=1.1)


def extract(sdf, **kwargs):
    result = mise(batched_eval_fn([sdf]), 1, **kwargs)[0]
    vertices, faces = marching_cubes(result.values, LEVEL)
    return result, vertices, faces


@pytest.mark.parametrize(
    "sdf, volume",
    [(SPHERE, 4 / 3 * math.pi * 0.3**3), (TORUS, 2 * math.pi**2 * 0.3 * 0.1**2)],
    ids=["sphere", "torus"],
)
def test_mesh_at_128_is_closed_accurate_and_cheap(sdf, volume):
    result, vertices, faces = extract(sdf, resolution_0=32, upsampling_steps=2)
    assert result.values.shape == (129, 129, 129) and result.values.dtype == np.float32
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(volume, rel=0.02)
    distance = sdf(torch.from_numpy(vertices)).abs()
    assert distance.max() < 0.5 * H128
    assert result.n_dense == 129**3
    assert result.n_evaluated < 0.1 * result.n_dense


@pytest.mark.parametrize("sdf", [SPHERE, TORUS], ids=["sphere", "torus"])
def test_mise_gives_the_dense_mesh_on_smooth_shapes(sdf):
    # 16 -> 64: coarser than the default so the dense reference stays cheap
    _, v_mise, f_mise = extract(sdf, resolution_0=16, upsampling_steps=2)
    _, v_dense, f_dense = extract(sdf, resolution_0=64, upsampling_steps=0)
    # same topology (marching cubes emits both in grid order); a vertex moves only
    # where one end of its edge was interpolated instead of evaluated
    assert len(v_mise) == len(v_dense) and np.array_equal(f_mise, f_dense)
    assert np.abs(v_mise - v_dense).max() < 0.01 * cell_size(64)


def test_dense_mode_is_the_field_on_the_grid():
    result = mise(batched_eval_fn([SPHERE]), 1, resolution_0=16, upsampling_steps=0)[0]
    expected = (LEVEL - 20.0 * SPHERE(grid_points(16))).reshape(17, 17, 17).numpy()
    assert result.n_evaluated == result.n_dense == 17**3
    assert np.array_equal(result.values, expected)


def test_evaluated_points_keep_values_and_the_rest_is_trilinear():
    counting = CountingEvalFn(batched_eval_fn([SPHERE]))
    result = mise(counting, 1, resolution_0=8, upsampling_steps=2)[0]
    points = torch.cat([c[0] for c in counting.calls])  # batch 1: no padding
    # no point is evaluated twice and the count is honest
    assert len(points) == result.n_evaluated == len(torch.unique(points, dim=0))
    # the coarse grid is every 4th fine point, all evaluated
    coarse = (LEVEL - 20.0 * SPHERE(grid_points(8))).reshape(9, 9, 9).numpy()
    assert np.array_equal(result.values[::4, ::4, ::4], coarse)
    # fine points never evaluated: trilinear interpolation of their coarse cell,
    # exact for a cell whose corners are all evaluated coarse points (far from the surface)
    i, j, k = 1, 1, 1  # the coarse cell at the box corner, far outside the sphere
    corners = coarse[i : i + 2, j : j + 2, k : k + 2]
    t = np.linspace(0, 1, 5)
    wx, wy, wz = np.meshgrid(t, t, t, indexing="ij")
    expected = sum(
        corners[a, b, c] * (wx if a else 1 - wx) * (wy if b else 1 - wy) * (wz if c else 1 - wz)
        for a in (0, 1)
        for b in (0, 1)
        for c in (0, 1)
    )
    assert np.allclose(result.values[4:9, 4:9, 4:9], expected, atol=1e-5)


def test_chunking_respects_points_chunk_and_changes_nothing():
    sdfs = [SPHERE, TORUS, rod_sdf(radius=0.05)]
    reference = mise(batched_eval_fn(sdfs), 3, resolution_0=16, upsampling_steps=2, points_chunk=10**7)
    counting = CountingEvalFn(batched_eval_fn(sdfs))
    chunked = mise(counting, 3, resolution_0=16, upsampling_steps=2, points_chunk=3000)
    assert len(counting.calls) > 10
    assert all(c.shape[0] == 3 and c.shape[0] * c.shape[1] <= 3000 for c in counting.calls)
    for a, b in zip(reference, chunked):
        assert np.array_equal(a.values, b.values) and a.n_evaluated == b.n_evaluated


def test_batched_equals_one_by_one():
    sdfs = [SPHERE, TORUS, rod_sdf()]
    batched = mise(batched_eval_fn(sdfs), 3, resolution_0=16, upsampling_steps=2, points_chunk=20_000)
    for sdf, got in zip(sdfs, batched):
        alone = mise(batched_eval_fn([sdf]), 1, resolution_0=16, upsampling_steps=2, points_chunk=20_000)[0]
        assert np.array_equal(alone.values, got.values) and alone.n_evaluated == got.n_evaluated


def test_thin_rod_on_coarse_grid_lines_is_found():
    # radius 0.02 < a coarse cell (0.034): found because it covers coarse points
    rod = rod_sdf(center=(0.0, 0.0, 0.0), direction=(0.0, 0.0, 1.0), radius=0.02)
    _, v_mise, f_mise = extract(rod)
    _, v_dense, f_dense = extract(rod, resolution_0=128, upsampling_steps=0)
    assert len(v_mise) == len(v_dense) and np.array_equal(f_mise, f_dense)
    assert np.abs(v_mise - v_dense).max() < 0.01 * H128


def test_safety_margin_recovers_a_tilted_thin_rod():
    rod = rod_sdf(center=(0.01, 0.013, 0.0), direction=(0.3, 0.2, 1.0), radius=0.013)
    volume = {}
    for name, kwargs in [
        ("dense", dict(resolution_0=128, upsampling_steps=0)),
        ("mise", {}),
        ("margin", dict(safety_margin=True)),
    ]:
        _, vertices, faces = extract(rod, **kwargs)
        volume[name] = trimesh.Trimesh(vertices, faces, process=False).volume
    assert volume["mise"] < 0.9 * volume["dense"]  # plain MISE drops pieces of the rod
    assert volume["margin"] == pytest.approx(volume["dense"], rel=1e-3)


def test_known_weakness_rod_between_coarse_points_is_missed():
    # the rod passes through coarse cell centres and touches no coarse point:
    # no cell becomes active, so MISE (with or without margin) sees nothing
    h0 = cell_size(32, box_size=1.1)
    rod = rod_sdf(center=(h0 / 2, h0 / 2, 0.0), direction=(0.0, 0.0, 1.0), radius=0.02)
    assert len(extract(rod, resolution_0=64, upsampling_steps=0)[1]) > 0
    assert len(extract(rod, safety_margin=True)[1]) == 0


def test_logit_margin_finds_the_rod_between_coarse_points():
    # the same rod: no coarse point is inside, but the nearest ones come within 0.1 logits of
    # the level, so a margin looks into their cells; the mesh is then the dense grid's
    h0 = cell_size(32, box_size=1.1)
    rod = rod_sdf(center=(h0 / 2, h0 / 2, 0.0), direction=(0.0, 0.0, 1.0), radius=0.02)
    result, v_margin, f_margin = extract(rod, logit_margin=1.0)
    _, v_dense, f_dense = extract(rod, resolution_0=128, upsampling_steps=0)
    assert len(f_margin) > 0 and len(v_margin) == len(v_dense) and np.array_equal(f_margin, f_dense)
    assert np.abs(v_margin - v_dense).max() < 0.01 * H128
    assert result.n_evaluated < 0.2 * result.n_dense
    # a margin smaller than the gap to the level changes nothing
    assert len(extract(rod, logit_margin=0.05)[1]) == 0


def test_zero_logit_margin_is_the_thesis_rule():
    plain = mise(batched_eval_fn([TORUS]), 1)[0]
    zero = mise(batched_eval_fn([TORUS]), 1, logit_margin=0.0)[0]
    wide = mise(batched_eval_fn([TORUS]), 1, logit_margin=2.0)[0]
    assert np.array_equal(plain.values, zero.values) and plain.n_evaluated == zero.n_evaluated
    assert wide.n_evaluated > plain.n_evaluated


def test_nothing_inside_gives_a_grid_below_the_level():
    result = mise(batched_eval_fn([sphere_sdf(radius=-1.0)]), 1, resolution_0=8, upsampling_steps=3)[0]
    assert result.values.shape == (65, 65, 65) and (result.values < LEVEL).all()
    assert result.n_evaluated == 9**3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(threshold=1.0), "threshold"),
        (dict(points_chunk=1), "points_chunk"),
        (dict(resolution_0=0), "resolution"),
        (dict(upsampling_steps=-1), "upsampling_steps"),
        (dict(logit_margin=-0.5), "logit_margin"),
        (dict(logit_margin=float("nan")), "logit_margin"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mise(batched_eval_fn([SPHERE, SPHERE]), 2, **kwargs)


def test_eval_fn_with_wrong_output_shape():
    with pytest.raises(ValueError, match="eval_fn must return logits of shape"):
        mise(lambda p: p.sum(-1, keepdim=True), 1, resolution_0=4, upsampling_steps=0)


# ---- the vectorised building blocks against slow references


def test_building_blocks_match_slow_references():
    from scipy import ndimage

    from onet.generation.mise import _active_cells, _corners_of_cells, _dilate_cells, _upsample_values

    rng = np.random.default_rng(0)
    occ = rng.random((2, 6, 7, 5)) > 0.7  # (B, S, S, S); non-cubic to catch axis mix-ups
    active = _active_cells(torch.from_numpy(occ)).numpy()
    expected = np.zeros((2, 5, 6, 4), bool)
    for b, i, j, k in np.ndindex(*expected.shape):
        corners = occ[b, i : i + 2, j : j + 2, k : k + 2]
        expected[b, i, j, k] = corners.any() and not corners.all()
    assert np.array_equal(active, expected)
    near = occ | (rng.random(occ.shape) > 0.7)  # a superset of occ, as with a logit margin
    active = _active_cells(torch.from_numpy(occ), torch.from_numpy(near)).numpy()
    for b, i, j, k in np.ndindex(*expected.shape):
        corners = (slice(i, i + 2), slice(j, j + 2), slice(k, k + 2))
        expected[b, i, j, k] = near[b][corners].any() and not occ[b][corners].all()
    assert np.array_equal(active, expected)

    cells = rng.random((2, 5, 6, 4)) > 0.9
    dilated = _dilate_cells(torch.from_numpy(cells)).numpy()
    for b in range(2):
        assert np.array_equal(dilated[b], ndimage.binary_dilation(cells[b], structure=np.ones((3, 3, 3), bool)))

    covered = _corners_of_cells(torch.from_numpy(cells)).numpy()
    expected = np.zeros((2, 11, 13, 9), bool)
    for b, i, j, k in zip(*np.nonzero(cells)):
        expected[b, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, 2 * k : 2 * k + 3] = True
    assert np.array_equal(covered, expected)

    values = torch.from_numpy(rng.standard_normal((2, 4, 5, 3)).astype(np.float32))
    fine = _upsample_values(values)
    reference = torch.nn.functional.interpolate(values[:, None], size=(7, 9, 5), mode="trilinear", align_corners=True)
    assert torch.allclose(fine, reference[:, 0], atol=1e-6)
    assert torch.equal(fine[:, ::2, ::2, ::2], values)


def test_sink_index_update_equals_the_masked_one():
    """_scatter writes through a sink slot; the reference is the boolean-mask assignment."""
    from onet.generation.mise import _scatter, _with_sink

    g = torch.Generator().manual_seed(0)
    shape = (3, 9, 9, 9)
    numel = math.prod(shape)
    values = _with_sink(shape, "cpu")
    values.copy_(torch.randn(shape, generator=g))
    reference = values.clone()
    for _ in range(4):  # several calls, as in one MISE level
        idx = torch.randperm(numel, generator=g)[:3 * 40].view(3, 40)  # distinct targets, like MISE's points
        valid = torch.rand((3, 40), generator=g) < 0.7
        idx = torch.where(valid, idx, torch.randint(numel, (3, 40), generator=g))  # garbage where invalid
        out = torch.randn((3, 40), generator=g)
        reference.view(-1)[idx[valid]] = out[valid]
        _scatter(values, idx, valid, out)
        assert torch.equal(values, reference)


def test_mise_grids_stay_on_the_device_and_match_mise():
    from onet.generation.mise import mise_grids

    sdfs = [SPHERE, TORUS]
    grids = mise_grids(batched_eval_fn(sdfs), 2, resolution_0=8, upsampling_steps=2, points_chunk=500)
    assert isinstance(grids.values, torch.Tensor) and grids.values.shape == (2, 33, 33, 33)
    results = mise(batched_eval_fn(sdfs), 2, resolution_0=8, upsampling_steps=2, points_chunk=500)
    for b, result in enumerate(results):
        assert np.array_equal(result.values, grids.values[b].numpy())
        assert result.n_evaluated == int(grids.n_evaluated[b]) and result.n_dense == grids.n_dense == 33**3
