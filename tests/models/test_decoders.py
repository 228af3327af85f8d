"""Decoders: conditional batch norm semantics and the fast eval path against decode."""

import pytest
import torch

from onet.models import DECODERS, FIELD, PLANE_DECODERS, fused, output_kind
from onet.models.decoders import OccupancyDecoder, _fold
from onet.models.layers import CBatchNorm

# the occupancy decoders (the baselines' decoders in the registry predict voxels / points)
# decoders of a code vector c (B, c_dim); the plane decoders have their own tests (test_local.py)
FIELD_DECODERS = sorted(name for name in DECODERS if output_kind({"decoder": name}) == FIELD
                        and name not in PLANE_DECODERS)


def randomized(decoder, c_dim, z_dim, scale=0.1, seed=0):
    """Perturb every parameter and move the running statistics away from 0 / 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in decoder.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
        decoder.train()
        for _ in range(3):
            p = 0.6 * torch.randn(5, 64, decoder.dim, generator=g) + 0.2
            z = torch.randn(5, z_dim, generator=g) if z_dim else None
            c = torch.randn(5, c_dim, generator=g)
            decoder(p, z, c)
    return decoder.eval()


def test_cbn_initialised_to_identity_affine():
    cbn = CBatchNorm(c_dim=5, f_dim=7)
    x, c = torch.randn(3, 11, 7), torch.randn(3, 5)
    out = cbn(x, c)
    flat = x.reshape(-1, 7)
    ref = (flat - flat.mean(0)) / torch.sqrt(flat.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(out.reshape(-1, 7), ref, atol=1e-5, rtol=1e-5)
    # running stats updated with momentum 0.1 from the batch-and-points statistics
    torch.testing.assert_close(cbn.bn.running_mean, 0.1 * flat.mean(0))
    assert cbn.bn.momentum == 0.1 and cbn.bn.eps == 1e-5


def test_cbn_eval_uses_running_stats_and_gamma_beta_of_c():
    cbn = CBatchNorm(c_dim=2, f_dim=3)
    with torch.no_grad():
        cbn.gamma.weight.copy_(torch.tensor([[1.0, 0], [0, 1], [1, 1]]))
        cbn.bn.running_mean.copy_(torch.tensor([1.0, 2, 3]))
        cbn.bn.running_var.copy_(torch.tensor([4.0, 1, 0.25]))
    cbn.eval()
    x, c = torch.randn(2, 4, 3), torch.randn(2, 2)
    gamma = c @ cbn.gamma.weight.T + 1
    ref = (x - cbn.bn.running_mean) / torch.sqrt(cbn.bn.running_var + 1e-5) * gamma[:, None]
    torch.testing.assert_close(cbn(x, c), ref)


@pytest.mark.parametrize("name", ["cbn_resnet", "batchnorm", "cbn_noresnet"])
def test_object_independent_of_batch_in_eval_but_not_in_train(name):
    dec = randomized(DECODERS[name](z_dim=0, c_dim=6, hidden_size=16, n_blocks=2), 6, 0)
    p, c = torch.rand(3, 50, 3) - 0.5, torch.randn(3, 6)
    p_other, c_other = p.clone(), c.clone()
    p_other[1:] = 3 * torch.rand(2, 50, 3)
    c_other[1:] = 5 * torch.randn(2, 6)
    with torch.no_grad():
        torch.testing.assert_close(dec(p, None, c)[0], dec(p_other, None, c_other)[0])
        dec.train()
        assert not torch.allclose(dec(p, None, c)[0], dec(p_other, None, c_other)[0], atol=1e-3)


@pytest.mark.parametrize("name", FIELD_DECODERS)
@pytest.mark.parametrize("z_dim", [0, 4])
def test_make_eval_fn_matches_decode(name, z_dim):
    c_dim = 0 if name == "simple" and z_dim == 0 else 6
    dec = randomized(DECODERS[name](z_dim=z_dim, c_dim=c_dim, hidden_size=32, n_blocks=3), c_dim, z_dim)
    B = 3
    c = torch.randn(B, c_dim)
    z = torch.randn(B, z_dim) if z_dim else None
    p = 1.1 * torch.rand(B, 777, 3) - 0.55
    with torch.no_grad():
        ref = dec(p, z, c)
    fn = dec.make_eval_fn(c, z, chunk_points=256)  # several chunks and a ragged last one
    out = fn(p)
    assert out.shape == (B, 777)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    # results do not depend on the chunking
    torch.testing.assert_close(dec.make_eval_fn(c, z)(p), out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", FIELD_DECODERS)
def test_make_eval_fn_is_exact_in_float64(name):
    c_dim = 6
    dec = randomized(DECODERS[name](z_dim=3, c_dim=c_dim, hidden_size=24, n_blocks=2), c_dim, 3, scale=0.5)
    dec = dec.double()
    c, z = torch.randn(2, c_dim, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    p = torch.rand(2, 300, 3, dtype=torch.float64) - 0.5
    with torch.no_grad():
        ref = dec(p, z, c)
    torch.testing.assert_close(dec.make_eval_fn(c, z, chunk_points=100)(p), ref, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name", FIELD_DECODERS)
def test_batched_eval_fn_equals_per_object(name):
    """One batched matmul per layer over all objects (the CUDA default) = one object at a time."""
    dec = randomized(DECODERS[name](z_dim=2, c_dim=6, hidden_size=32, n_blocks=3), 6, 2)
    c, z = torch.randn(4, 6), torch.randn(4, 2)
    p = 1.1 * torch.rand(4, 531, 3) - 0.55
    per_object = dec.make_eval_fn(c, z, batched=False, chunk_points=200)(p)
    for chunk in (None, 4 * 100):  # all points at once; chunks of 100 points per object
        torch.testing.assert_close(dec.make_eval_fn(c, z, batched=True, chunk_points=chunk)(p), per_object,
                                   atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="precision"):
        dec.make_eval_fn(c, z, precision="fp16")


@pytest.mark.parametrize("batched", [False, True])
def test_bf16_eval_fn_is_close_to_fp32(batched):
    torch.manual_seed(0)  # the error depends on the weights: fixed ones, whatever ran before
    dec = randomized(DECODERS["cbn_resnet"](c_dim=6, hidden_size=64, n_blocks=5), 6, 0)
    c = torch.randn(3, 6)
    p = 1.1 * torch.rand(3, 2000, 3) - 0.55
    ref = dec.make_eval_fn(c)(p)
    out = dec.make_eval_fn(c, precision="bf16", batched=batched)(p)
    assert out.dtype == torch.float32
    err = (out - ref).abs()
    # bf16 matmul inputs (8 significant bits) over 10 layers: small, not float rounding. The
    # error follows the hidden activations' scale, not the logits' (0.002-0.006 over seeds 0-7
    # whether the mean |logit| was 0.3 or 1.1): an absolute bound
    assert 0 < err.mean() < 0.01
    assert ((out > 0) != (ref > 0)).float().mean() < 0.01


@pytest.mark.parametrize("batched", [False, True])
def test_bf16_eval_and_field_fns_round_activations_not_raw_features(batched):
    """Channels switched off far from 0 (thresholds near 100, as trained decoders have): the
    folded bf16 path must round the activations (0 there), as autocast does, not the raw
    features; rounding those cost 200x autocast's logit error before the inputs were centred."""
    torch.manual_seed(0)
    dec = randomized(DECODERS["cbn_resnet"](c_dim=6, hidden_size=64, n_blocks=5), 6, 0)
    with torch.no_grad():  # every other channel of every norm: relu(x * s + t) = 0 for all points
        for norm in [n for b in dec.blocks for n in (b.norm_0, b.norm_1)] + [dec.norm_out]:
            norm.bn.running_mean[::2] += 100.37
    c = torch.randn(3, 6)
    p = 1.1 * torch.rand(3, 2000, 3) - 0.55
    with torch.no_grad():
        ref = dec(p, None, c)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast_err = (dec(p, None, c).float() - ref).abs().mean()
    eval_err = (dec.make_eval_fn(c, precision="bf16", batched=batched)(p) - ref).abs().mean()
    field_err = (dec.make_field_fn(c[:1], precision="bf16")(p[:1]).detach() - ref[:1]).abs().mean()
    assert 0 < eval_err < 2 * autocast_err and 0 < field_err < 2 * autocast_err


def test_fold_handles_positive_negative_and_zero_scales():
    x = torch.randn(2, 50, 4, dtype=torch.float64)
    s = torch.tensor([[2.0, -3.0, 0.0, 1e-300], [-0.5, 0.0, 4.0, 1.0]], dtype=torch.float64)
    t = torch.tensor([[0.3, 0.2, 0.7, 1.0], [-1.0, -0.2, 0.0, 0.1]], dtype=torch.float64)
    wT = torch.randn(4, 5, dtype=torch.float64)
    b = torch.randn(5, dtype=torch.float64)
    ref = torch.relu(x * s[:, None] + t[:, None]) @ wT + b
    lo, hi, W, bias = _fold(s, t, wT, b)
    out = torch.bmm(torch.clamp(x, lo, hi), W) + bias[:, None]
    torch.testing.assert_close(out, ref)


def test_make_eval_fn_requires_eval_mode_and_checks_shapes():
    dec = DECODERS["cbn_resnet"](c_dim=4, hidden_size=8, n_blocks=1)
    with pytest.raises(RuntimeError, match="eval"):
        dec.make_eval_fn(torch.randn(2, 4))
    dec.eval()
    fn = dec.make_eval_fn(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"\(2, N, 3\)"):
        fn(torch.rand(3, 10, 3))


def test_noresnet_ablation_structure():
    dec = DECODERS["cbn_noresnet"](c_dim=4, hidden_size=8, n_blocks=5)
    linears = [m for m in dec.modules() if isinstance(m, torch.nn.Linear) and m.in_features == 8 and m.out_features == 8]
    cbns = [m for m in dec.modules() if isinstance(m, CBatchNorm)]
    assert len(linears) == 5 and len(cbns) == 6


def test_variants_are_parameters():
    dec = DECODERS["batchnorm"](c_dim=4, hidden_size=8)
    assert isinstance(dec, OccupancyDecoder) and dec.norm == "bn" and dec.residual
    assert dec.fc_c is not None
    assert DECODERS["cbn_resnet"](c_dim=4, hidden_size=8).fc_c is None


def _field_quantities(fn, p):
    """Logits, d(sum logits)/dp, and d(sum |d logits/dp|^2 + sum sigmoid(logits)^2)/dp.

    The last goes through the create_graph gradient (double backprop, as in
    refinement). The decoders are piecewise linear in p, so d logits/dp is
    piecewise constant and its own derivative is zero: with decode autograd
    computes those zeros, with make_field_fn (constant folded weights) the
    gradient carries no graph at all; the sigmoid term keeps the result non-zero.
    """
    p = p.clone().requires_grad_(True)
    logits = fn(p)
    (grad,) = torch.autograd.grad(logits.sum(), p, create_graph=True)
    loss = (grad**2).sum() + (torch.sigmoid(logits) ** 2).sum()
    (grad2,) = torch.autograd.grad(loss, p)
    return logits.detach(), grad.detach(), grad2


@pytest.mark.parametrize("name", ["cbn_resnet", "batchnorm", "cbn_noresnet", "simple"])
@pytest.mark.parametrize("z_dim", [0, 4])
def test_make_field_fn_matches_decode_with_gradients(name, z_dim):
    torch.manual_seed(0)  # the decoder's initialisation: the same whatever ran before
    c_dim = 0 if name == "simple" and z_dim == 0 else 6
    dec = randomized(DECODERS[name](z_dim=z_dim, c_dim=c_dim, hidden_size=32, n_blocks=3), c_dim, z_dim, scale=0.3)
    c = torch.randn(1, c_dim)
    z = torch.randn(1, z_dim) if z_dim else None
    p = 1.1 * torch.rand(1, 500, 3) - 0.55
    ref = _field_quantities(lambda q: dec(q, z, c), p)
    out = _field_quantities(dec.make_field_fn(c, z), p)
    # decode's pure second-order term is exactly zero (piecewise-linear field)
    q = p.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(dec(q, z, c).sum(), q, create_graph=True)
    assert torch.autograd.grad((g**2).sum(), q)[0].abs().max() == 0
    assert out[0].shape == (1, 500)
    assert ref[2].abs().max() > 0  # the double-backprop quantity is not trivially zero
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # no gradients flow into the network's parameters
    assert all(q.grad is None for q in dec.parameters())


def _agree_on_almost_all_points(grad, ref, frac=0.99):
    """Gradients of a piecewise-linear field computed two ways: equal (to float rounding) on all
    but the points whose rounding differences fall on another side of some ReLU kink."""
    close = ((grad - ref).abs() <= 1e-4 + 1e-4 * ref.abs()).all(dim=-1)
    assert close.float().mean() >= frac, f"{close.float().mean():.3f} of the points agree"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", ["cbn_resnet", "batchnorm", "cbn_noresnet", "simple"])
@pytest.mark.parametrize("z_dim", [0, 4])
def test_value_and_grad_matches_the_field_fn_and_autograd(name, z_dim, precision, monkeypatch):
    """The hand-written backward of the field fn (what refinement and vertex normals use): the
    field's logits and autograd's gradient of them, in chunks of fewer points than N, with a
    few channels of zero scale (their clamp is the identity on a zeroed weight row)."""
    from onet.models import decoders

    monkeypatch.setattr(decoders, "_CPU_GRAD_CHUNK_POINTS_PER_THREAD", 48)  # several chunks
    torch.manual_seed(0)
    c_dim = 0 if name == "simple" and z_dim == 0 else 6
    dec = randomized(DECODERS[name](z_dim=z_dim, c_dim=c_dim, hidden_size=32, n_blocks=3), c_dim, z_dim, scale=0.3)
    with torch.no_grad():
        for m in dec.modules():
            if isinstance(m, CBatchNorm):  # s = 0 on three channels of every CBN layer
                m.gamma.weight[:3] = 0
                m.gamma.bias[:3] = 0
    c = torch.randn(1, c_dim)
    z = torch.randn(1, z_dim) if z_dim else None
    fn = dec.make_field_fn(c, z, precision=precision)
    p = 1.1 * torch.rand(500, 3) - 0.55
    q = p.clone().requires_grad_(True)
    logits = fn(q.unsqueeze(0))[0]
    (ref_grad,) = torch.autograd.grad(logits.sum(), q)
    out, grad = fn.value_and_grad(p)
    assert out.shape == (500,) and grad.shape == (500, 3)
    assert not out.requires_grad and not grad.requires_grad
    assert ref_grad.abs().max() > 0
    torch.testing.assert_close(out, logits.detach(), atol=1e-4, rtol=1e-4)
    _agree_on_almost_all_points(grad, ref_grad)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        fn.value_and_grad(p.unsqueeze(0))
    empty = fn.value_and_grad(p[:0])
    assert empty[0].shape == (0,) and empty[1].shape == (0, 3)


@pytest.mark.skipif(fused.native() is None, reason="no compiled kernels here (see onet/utils/native.py)")
@pytest.mark.parametrize("name", ["cbn_resnet", "cbn_noresnet", "simple"])
def test_bf16_eval_paths_compiled_equal_the_torch_ops(name, monkeypatch):
    """bf16 `value_and_grad` (refinement, normals) and the per-object bf16 eval fn (MISE) with their
    elementwise steps as compiled loops (fused_kernels.c) against the same networks on torch ops:
    the same bf16 roundings, so values and gradients agree to float rounding on every point (logits
    up to the output layer's order of summation); residual and plain blocks, several chunks."""
    from onet.models import decoders

    monkeypatch.setattr(decoders, "_CPU_GRAD_CHUNK_POINTS_PER_THREAD", 48)  # several chunks, a ragged one
    calls = []
    for kernel in ("bf16_head", "bf16_clamp"):
        f = getattr(fused._Native, kernel)
        monkeypatch.setattr(fused._Native, kernel, lambda self, *a, f=f, k=kernel: (calls.append(k), f(self, *a))[1])
    torch.manual_seed(0)
    c_dim = 6
    dec = randomized(DECODERS[name](c_dim=c_dim, hidden_size=48, n_blocks=3), c_dim, 0, scale=0.3)
    c = torch.randn(2, c_dim)
    p = 1.1 * torch.rand(2, 517, 3) - 0.55
    compiled = dec.make_field_fn(c[:1], precision="bf16"), dec.make_eval_fn(c, precision="bf16", chunk_points=100)
    out, grad = compiled[0].value_and_grad(p[0])
    logits = compiled[1](p)
    assert set(calls) == {"bf16_head", "bf16_clamp"}  # the compiled loops ran
    monkeypatch.setenv("ONET_NATIVE", "0")
    n_calls = len(calls)
    out_ref, grad_ref = dec.make_field_fn(c[:1], precision="bf16").value_and_grad(p[0])
    logits_ref = dec.make_eval_fn(c, precision="bf16", chunk_points=100)(p)
    assert len(calls) == n_calls  # and the references did not use them
    assert grad_ref.abs().max() > 0
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, grad_ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logits, logits_ref, atol=1e-6, rtol=1e-6)


def test_make_field_fn_works_when_built_under_inference_mode():
    torch.manual_seed(0)
    dec = randomized(DECODERS["cbn_resnet"](c_dim=5, hidden_size=16, n_blocks=2), 5, 0)
    c = torch.randn(1, 5)
    with torch.inference_mode():
        fn = dec.make_field_fn(c)
    p = torch.rand(1, 40, 3) - 0.5
    out = _field_quantities(fn, p)
    ref = _field_quantities(lambda q: dec(q, None, c), p)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_make_field_fn_requires_eval_mode_and_one_object():
    dec = DECODERS["cbn_resnet"](c_dim=4, hidden_size=8, n_blocks=1)
    with pytest.raises(RuntimeError, match="eval"):
        dec.make_field_fn(torch.randn(1, 4))
    dec.eval()
    with pytest.raises(ValueError, match="one object"):
        dec.make_field_fn(torch.randn(2, 4))
    fn = dec.make_field_fn(torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"\(1, N, 3\)"):
        fn(torch.rand(2, 10, 3))


def test_bf16_field_fn_is_close_to_fp32_and_differentiable():
    dec = randomized(DECODERS["cbn_resnet"](c_dim=5, hidden_size=64, n_blocks=3), 5, 0)
    c = torch.randn(1, 5)
    p = 1.1 * torch.rand(1, 800, 3) - 0.55
    ref = _field_quantities(dec.make_field_fn(c), p)
    out = _field_quantities(dec.make_field_fn(c, precision="bf16"), p)
    assert all(t.dtype == torch.float32 for t in out)
    # bf16 matmul inputs: logits within a few per mille; gradients within several percent
    # (near a kink of the piecewise-linear field the rounding can switch the linear piece)
    for a, b, rel in zip(out[:2], ref[:2], (0.02, 0.1)):
        assert (a - b).abs().mean() < rel * b.abs().mean()
    assert dec.make_field_fn(c, precision="bf16").piecewise_linear
