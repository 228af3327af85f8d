import numpy as np
import pytest
import torch

from onet.geometry.marching_cubes import marching_cubes
from onet.generation.mise import mise
from onet.generation.refine import refine_mesh, vertex_normals_from_field

from fields import LEVEL, TAU, batched_eval_fn, field_fn, sphere_sdf

CENTER = np.array([0.05, -0.02, 0.01])
SPHERE = sphere_sdf(tuple(CENTER), 0.3)


@pytest.fixture(scope="module")
def coarse_sphere():
    values = mise(batched_eval_fn([SPHERE]), 1, resolution_0=16, upsampling_steps=0)[0].values
    return marching_cubes(values, LEVEL)


def surface_error(vertices, faces):
    """mean |sigmoid(f) - tau| at fixed random points on the faces."""
    weights = np.random.default_rng(123).dirichlet([1, 1, 1], size=len(faces))  # (F, 3)
    points = (weights[:, :, None] * vertices[faces]).sum(axis=1)
    logits = field_fn(SPHERE)(torch.tensor(points, dtype=torch.float32)[None])[0]
    return (torch.sigmoid(logits) - TAU).abs().mean().item()


def test_refinement_lowers_the_error(coarse_sphere):
    vertices, faces = coarse_sphere
    refined = refine_mesh(vertices, faces, field_fn(SPHERE), threshold=TAU, n_steps=30, lr=1e-4)
    assert refined.shape == vertices.shape and refined.dtype == np.float32
    before, after = surface_error(vertices, faces), surface_error(refined, faces)
    assert after < 0.6 * before


def test_chunked_and_subsampled_refinement(coarse_sphere):
    vertices, faces = coarse_sphere
    full = refine_mesh(vertices, faces, field_fn(SPHERE), n_steps=5, seed=1)
    chunked = refine_mesh(vertices, faces, field_fn(SPHERE), n_steps=5, seed=1, points_chunk=100)
    assert np.allclose(full, chunked, atol=1e-6)
    sampled = refine_mesh(vertices, faces, field_fn(SPHERE), n_steps=20, n_samples_per_step=2000, lr=1e-4)
    assert surface_error(sampled, faces) < surface_error(vertices, faces)


def test_zero_steps_is_a_copy(coarse_sphere):
    vertices, faces = coarse_sphere
    assert np.array_equal(refine_mesh(vertices, faces, field_fn(SPHERE), n_steps=0), vertices)


def test_vertex_normals_point_outward(coarse_sphere):
    vertices, _ = coarse_sphere
    normals = vertex_normals_from_field(vertices, field_fn(SPHERE), points_chunk=100)
    radial = (vertices - CENTER) / np.linalg.norm(vertices - CENTER, axis=1, keepdims=True)
    assert normals.shape == vertices.shape and normals.dtype == np.float32
    assert np.allclose((normals * radial).sum(axis=1), 1.0, atol=1e-5)


def test_bad_field_shape(coarse_sphere):
    vertices, faces = coarse_sphere
    with pytest.raises(ValueError, match="field_fn must return logits of shape"):
        vertex_normals_from_field(vertices, lambda p: p.sum(-1)[0])


def test_hand_written_adam_matches_torch_optim():
    from onet.generation.refine import _Adam

    target = torch.linspace(-1, 1, 12).reshape(4, 3)
    ours = torch.zeros(4, 3, requires_grad=True)
    theirs = torch.nn.Parameter(torch.zeros(4, 3))
    adam, reference = _Adam(ours, lr=1e-2), torch.optim.Adam([theirs], lr=1e-2)
    for _ in range(20):
        adam.step(torch.autograd.grad(((ours - target) ** 4).sum(), ours)[0])
        reference.zero_grad()
        ((theirs - target) ** 4).sum().backward()
        reference.step()
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_refinement_samples_are_seeded_on_the_given_device(coarse_sphere):
    """Samples come from a generator on `device` (here the CPU, by name or torch.device)."""
    vertices, faces = coarse_sphere
    kwargs = dict(n_steps=3, n_samples_per_step=500)
    a = refine_mesh(vertices, faces, field_fn(SPHERE), seed=3, device="cpu", **kwargs)
    b = refine_mesh(vertices, faces, field_fn(SPHERE), seed=3, device=torch.device("cpu"), **kwargs)
    c = refine_mesh(vertices, faces, field_fn(SPHERE), seed=4, device="cpu", **kwargs)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def _decoder_field(seed: int):
    """The folded field fn of a small CBN decoder with perturbed (non-identity) weights."""
    from onet.models import DECODERS

    torch.manual_seed(seed)
    dec = DECODERS["cbn_resnet"](c_dim=4, hidden_size=32, n_blocks=2)
    with torch.no_grad():
        for q in dec.parameters():
            q.add_(0.3 * torch.randn_like(q))
    return dec.eval().make_field_fn(torch.randn(1, 4))


def test_piecewise_linear_field_skips_double_backprop_with_the_same_result(coarse_sphere):
    """The folded decoder field is piecewise linear: the first-order loss moves the vertices
    exactly like the double-backprop loss (whose second-order term is zero there)."""
    fast = _decoder_field(0)
    assert fast.piecewise_linear

    def general(p):  # the same field without the marker: refinement double-backprops
        return fast(p)

    vertices, faces = coarse_sphere
    a = refine_mesh(vertices, faces, fast, n_steps=5, lr=1e-3, seed=3)
    b = refine_mesh(vertices, faces, general, n_steps=5, lr=1e-3, seed=3)
    assert np.abs(a - vertices).max() > 1e-3  # the vertices did move
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_vertex_normals_through_the_decoders_own_gradient_equal_autograds(coarse_sphere):
    """A field with `value_and_grad` (the folded decoder's hand-written backward) gives the
    normals autograd gives for the same field."""
    fast = _decoder_field(1)
    assert callable(fast.value_and_grad)

    def general(p):  # the same field, differentiated by autograd
        return fast(p)

    vertices, _ = coarse_sphere
    a = vertex_normals_from_field(vertices, fast, points_chunk=50)
    b = vertex_normals_from_field(vertices, general)
    assert a.shape == vertices.shape and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)
