import numpy as np
import pytest
import torch

from onet.geometry.grid import cell_size, flat_index_to_world, grid_points, index_to_world, world_to_index


def test_index_zero_and_r_are_the_box_corners():
    assert index_to_world(np.array([0, 64, 128]), 128, box_size=1.1).tolist() == pytest.approx([-0.55, 0.0, 0.55])
    t = index_to_world(torch.tensor([0, 32]), 32, box_size=2.0)
    assert t.dtype == torch.float32 and t.tolist() == [-1.0, 1.0]
    assert cell_size(128, box_size=1.1) == pytest.approx(1.1 / 128)


def test_world_to_index_inverts_index_to_world():
    idx = np.random.default_rng(0).uniform(0, 64, size=(100, 3))
    assert np.allclose(world_to_index(index_to_world(idx, 64, box_size=1.1), 64, box_size=1.1), idx)


def test_per_axis_resolution():
    w = index_to_world(np.array([[4.0, 8.0, 2.0]]), [8, 16, 4], box_size=1.0)
    assert np.allclose(w, 0.0)


def test_grid_points_order_matches_flat_indices():
    pts = grid_points(4, box_size=1.1)  # (125, 3), [i, j, k] row-major
    assert pts.shape == (125, 3)
    assert torch.equal(pts, flat_index_to_world(torch.arange(125), 4, box_size=1.1))
    assert pts[1].tolist() == pytest.approx([-0.55, -0.55, -0.55 + 1.1 / 4])
    assert pts[25].tolist() == pytest.approx([-0.55 + 1.1 / 4, -0.55, -0.55])


@pytest.mark.parametrize("kwargs", [dict(resolution=0), dict(resolution=2.5), dict(resolution=4, box_size=-1.0)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        index_to_world(np.zeros(3), **kwargs)
