"""Fused decoder trunk (onet/models/fused.py) against the plain modules: values, gradients,
running statistics, in train and eval mode, for every decoder and chunking."""

import copy

import pytest
import torch
import torch.nn.functional as F

from onet.models import DECODERS, FIELD, PLANE_DECODERS, fused, output_kind

# the occupancy-field decoders (the baselines' decoders have no fused path)
# the fused trunk is the code-vector decoders' (the plane decoders have none)
FIELD_DECODERS = sorted(name for name in DECODERS if output_kind({"decoder": name}) == FIELD
                        and name not in PLANE_DECODERS)


def pair(name, z_dim, *, dtype=torch.float64, hidden=24, n_blocks=3, seed=0):
    """(fused decoder, plain copy) with perturbed parameters and non-trivial running statistics."""
    c_dim = 0 if name == "simple" and z_dim == 0 else 5
    torch.manual_seed(seed)
    dec = DECODERS[name](z_dim=z_dim, c_dim=c_dim, hidden_size=hidden, n_blocks=n_blocks).to(dtype)
    with torch.no_grad():
        for q in dec.parameters():
            q.add_(0.3 * torch.randn_like(q))
        for m in dec.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    ref = copy.deepcopy(dec)
    ref.fast_path = False
    return dec, ref, c_dim


def inputs(B, T, c_dim, z_dim, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    p = (torch.rand(B, T, 3, generator=g) - 0.5).to(dtype).requires_grad_(True)
    c = torch.randn(B, c_dim, generator=g).to(dtype).requires_grad_(True)
    z = torch.randn(B, z_dim, generator=g).to(dtype).requires_grad_(True) if z_dim else None
    occ = (torch.rand(B, T, generator=g) < 0.4).to(dtype)
    return p, c, z, occ


def step(dec, p, c, z, occ):
    """Logits and the gradients of the training loss w.r.t. every parameter and input."""
    dec.zero_grad(set_to_none=True)
    for t in (p, c, z):
        if t is not None:
            t.grad = None
    logits = dec(p, z, c)
    F.binary_cross_entropy_with_logits(logits, occ, reduction="none").sum(-1).mean().backward()
    grads = {k: q.grad for k, q in dec.named_parameters() if q.grad is not None}
    grads.update(p=p.grad, c=c.grad if c.shape[1] else None, z=None if z is None else z.grad)
    return logits.detach(), grads


def assert_same(a, b, **tol):
    assert a.keys() == b.keys()
    for k in a:
        if a[k] is None or b[k] is None:
            assert a[k] is None and b[k] is None, k
        else:
            torch.testing.assert_close(a[k], b[k], **tol, msg=lambda m, k=k: f"{k}: {m}")


@pytest.mark.parametrize("name", FIELD_DECODERS)
@pytest.mark.parametrize("z_dim", [0, 3])
@pytest.mark.parametrize("chunk_rows", [None, 16, 150])  # one chunk; parts of objects; two whole objects
def test_train_step_equals_plain_modules(name, z_dim, chunk_rows):
    dec, ref, c_dim = pair(name, z_dim)
    dec.fused_chunk_rows = chunk_rows
    dec.train(), ref.train()
    for it in range(2):  # the second step normalises with statistics the first one updated
        p, c, z, occ = inputs(4, 75, c_dim, z_dim, torch.float64, seed=it)
        out, grads = step(dec, p, c, z, occ)
        out_ref, grads_ref = step(ref, p, c, z, occ)
        torch.testing.assert_close(out, out_ref, atol=1e-10, rtol=1e-10)
        assert_same(grads, grads_ref, atol=1e-10, rtol=1e-10)
        # running means, unbiased running variances, num_batches_tracked
        assert_same(dec.state_dict(), ref.state_dict(), atol=1e-12, rtol=1e-12)
    assert int(dec.state_dict().get("norm_out.bn.num_batches_tracked", 2)) == 2


@pytest.mark.parametrize("name", FIELD_DECODERS)
def test_eval_mode_values_and_gradients_equal_plain_modules(name):
    """Eval mode: running statistics; the fused Function's gradients (used directly here, since an
    eval-mode forward with autograd runs the plain modules) equal the plain modules'."""
    dec, ref, c_dim = pair(name, 3)
    dec.eval(), ref.eval()
    dec.fused_chunk_rows = 32
    p, c, z, occ = inputs(3, 50, c_dim, 3, torch.float64)
    with torch.no_grad():  # the path validation takes
        torch.testing.assert_close(dec(p, z, c), ref(p, z, c), atol=1e-10, rtol=1e-10)
    state = copy.deepcopy(dec.state_dict())

    def trunk_forward(p, z, c):
        net = dec.fc_p(p)
        off = dec._offset(z, c if c_dim else c[:, :0])
        net = net if off is None else net + off.unsqueeze(1)
        return fused.trunk(*dec._units(c if c_dim else c[:, :0]), net, chunk_rows=32)

    dec.forward = trunk_forward
    out, grads = step(dec, p, c, z, occ)
    out_ref, grads_ref = step(ref, p, c, z, occ)
    torch.testing.assert_close(out, out_ref, atol=1e-10, rtol=1e-10)
    assert_same(grads, grads_ref, atol=1e-10, rtol=1e-10)
    assert_same(dec.state_dict(), state, atol=0, rtol=0)  # eval mode leaves running statistics alone


def test_float32_close_to_plain_and_chunking_does_not_matter():
    dec, ref, c_dim = pair("cbn_resnet", 0, dtype=torch.float32, hidden=32)
    dec.train(), ref.train()
    p, c, z, occ = inputs(6, 300, c_dim, 0, torch.float32)
    out, grads = step(dec, p, c, z, occ)
    out_ref, grads_ref = step(ref, p, c, z, occ)
    torch.testing.assert_close(out, out_ref, atol=1e-4, rtol=1e-4)
    assert_same(grads, grads_ref, atol=2e-4, rtol=1e-3)
    dec.fused_chunk_rows = 64
    out_chunked, grads_chunked = step(copy.deepcopy(dec), p, c, z, occ)
    torch.testing.assert_close(out_chunked, out, atol=1e-5, rtol=1e-5)


def test_batch_statistics_are_exact_far_from_zero():
    """Features whose mean is 1e4 times their spread: the one-pass statistics must not cancel.
    Fused and plain float32 against the same decoder in float64: the fused error is no larger."""
    dec, ref, c_dim = pair("cbn_resnet", 0, dtype=torch.float32, hidden=16, n_blocks=1)
    with torch.no_grad():
        for m in (dec, ref):
            m.fc_p.bias.fill_(300.0)
            m.fc_p.weight.mul_(0.03)
    exact = copy.deepcopy(ref).double()
    dec.train(), ref.train(), exact.train()
    p, c, z, occ = inputs(4, 200, c_dim, 0, torch.float32)
    out, _ = step(dec, p, c, z, occ)
    out_ref, _ = step(ref, p, c, z, occ)
    out_exact, _ = step(exact, p.detach().double().requires_grad_(True), c.detach().double().requires_grad_(True),
                        None, occ.double())
    assert (out.double() - out_exact).abs().max() <= (out_ref.double() - out_exact).abs().max()
    var, var_exact = dec.blocks[0].norm_0.bn.running_var, exact.blocks[0].norm_0.bn.running_var
    assert ((var.double() - var_exact) / var_exact).abs().max() < 1e-5


@pytest.mark.parametrize("name", FIELD_DECODERS)
def test_bf16_autocast_keeps_statistics_fp32_and_stays_close(name):
    dec, ref, c_dim = pair(name, 0, dtype=torch.float32, hidden=64)
    dec.train(), ref.train()
    p, c, z, occ = inputs(4, 256, c_dim, 0, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = dec(p, z, c)
    assert out.dtype == torch.float32
    with torch.no_grad():
        out_ref = ref(p, z, c)
    # bf16 matmul inputs: about 3 significant digits per layer
    assert (out - out_ref).abs().mean() < 0.02 * out_ref.abs().mean()
    for (k, a), b in zip(dec.state_dict().items(), ref.state_dict().values()):
        assert a.dtype == b.dtype, k  # running statistics stay fp32
        if "running" in k:
            torch.testing.assert_close(a, b, atol=0.05, rtol=0.05)
    F.binary_cross_entropy_with_logits(out, occ).backward()
    assert all(q.grad is not None and q.grad.dtype == torch.float32 for q in dec.parameters())


def test_fused_path_falls_back_where_it_does_not_apply():
    dec, _, c_dim = pair("cbn_resnet", 0, dtype=torch.float32)
    p = torch.rand(2, 10, 3)
    assert fused.supported(dec, p)
    sync = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(dec))
    assert not fused.supported(sync, p)  # needs its collective
    with torch.autocast("cpu", dtype=torch.float16):
        assert fused.autocast_mm_dtype("cpu") is False
    assert fused.autocast_mm_dtype("cpu") is None
    dec.train()
    assert not fused.supported(dec, torch.rand(1, 1, 3))  # the plain modules raise for one value


def test_fused_training_forward_refuses_double_backprop():
    dec, _, c_dim = pair("cbn_resnet", 0, dtype=torch.float32)
    dec.train()
    p = (torch.rand(2, 20, 3) - 0.5).requires_grad_(True)
    (g,) = torch.autograd.grad(dec(p, None, torch.randn(2, c_dim)).sum(), p, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(g.sum(), p)


@pytest.mark.parametrize("B, T, rows", [(3, 10, 4), (5, 7, 15), (2, 8, 100), (1, 1, 1)])
def test_chunk_plan_covers_every_point_once_within_objects(B, T, rows):
    seen = torch.zeros(B, T, dtype=torch.int64)
    for b0, b1, t0, t1 in fused.chunk_plan(B, T, rows):
        assert b1 - b0 == 1 or (t0, t1) == (0, T)  # contiguous, per-object broadcastable
        assert (b1 - b0) * (t1 - t0) <= max(rows, T if b1 - b0 == 1 else rows)
        seen[b0:b1, t0:t1] += 1
    assert torch.equal(seen, torch.ones_like(seen))


needs_native = pytest.mark.skipif(fused.native() is None, reason="no compiled kernels here (see onet/utils/native.py)")


@pytest.fixture
def counted_native(monkeypatch):
    """The compiled kernels, with a count of their calls (a test of them must see them run)."""
    calls = []
    for name in ("act", "bias_stats", "relu_back", "input_grad"):
        f = getattr(fused._Native, name)
        monkeypatch.setattr(fused._Native, name, lambda self, *a, f=f, name=name: (calls.append(name), f(self, *a))[1])
    return calls


@needs_native
@pytest.mark.parametrize("name", FIELD_DECODERS)
@pytest.mark.parametrize("z_dim", [0, 3])
@pytest.mark.parametrize("chunk_rows", [None, 16, 150])  # one chunk; parts of objects; two whole objects
def test_compiled_kernels_train_step_equals_plain_modules(name, z_dim, chunk_rows, counted_native):
    """The fp32 path with the C kernels against the plain modules in float64, two training steps."""
    dec, ref, c_dim = pair(name, z_dim, dtype=torch.float32, hidden=32)
    ref.double()
    dec.fused_chunk_rows = chunk_rows
    dec.train(), ref.train()
    for it in range(2):
        p, c, z, occ = inputs(4, 75, c_dim, z_dim, torch.float32, seed=it)
        out, grads = step(dec, p, c, z, occ)
        out_ref, grads_ref = step(ref, *(None if x is None else x.detach().double().requires_grad_(x.requires_grad)
                                         for x in (p, c, z, occ)))
        torch.testing.assert_close(out, out_ref.float(), atol=1e-4, rtol=1e-4)
        assert_same(grads, {k: None if g is None else g.float() for k, g in grads_ref.items()}, atol=2e-4, rtol=1e-3)
        assert_same(dec.state_dict(), {k: v.to(dec.state_dict()[k].dtype) for k, v in ref.state_dict().items()},
                    atol=1e-5, rtol=1e-5)
    assert set(counted_native) == {"act", "bias_stats", "relu_back", "input_grad"}


@needs_native
@pytest.mark.parametrize("chunk_rows", [16, 150])
def test_compiled_kernels_eval_mode_and_torch_op_path_agree(chunk_rows, counted_native, monkeypatch):
    """Eval-mode trunk gradients (constant statistics) with and without the kernels: same to fp32 rounding."""
    dec, _, c_dim = pair("cbn_resnet", 3, dtype=torch.float32, hidden=32)
    dec.eval()
    p, c, z, occ = inputs(3, 50, c_dim, 3, torch.float32)

    def trunk_forward(p, z, c):
        net = dec.fc_p(p) + dec._offset(z, c).unsqueeze(1)
        return fused.trunk(*dec._units(c), net, chunk_rows=chunk_rows)

    dec.forward = trunk_forward
    out, grads = step(dec, p, c, z, occ)
    assert "input_grad" in counted_native
    monkeypatch.setenv("ONET_NATIVE", "0")
    n_calls = len(counted_native)
    out_ops, grads_ops = step(dec, p, c, z, occ)
    assert len(counted_native) == n_calls  # turned off: the torch ops ran
    torch.testing.assert_close(out, out_ops, atol=1e-5, rtol=1e-5)
    assert_same(grads, grads_ops, atol=1e-5, rtol=1e-4)


def test_the_training_log_says_how_the_passes_run(monkeypatch):
    monkeypatch.setenv("ONET_NATIVE", "0")
    assert fused.describe_kernels() == "torch ops: turned off (ONET_NATIVE=0)"
    monkeypatch.setenv("ONET_NATIVE", "1")
    text = fused.describe_kernels()
    assert text == "compiled C loops (fused_kernels.c)" if fused.native() is not None else text.startswith("torch ops: ")


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("points_grad", [True, False])
def test_point_linear_equals_linear(bias, points_grad):
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(3, 6, bias=bias).double()
    p = torch.randn(2, 5, 3, generator=g, dtype=torch.float64).requires_grad_(points_grad)
    dy = torch.randn(2, 5, 6, generator=g, dtype=torch.float64)
    y = fused.point_linear(p, lin)
    torch.testing.assert_close(y, lin(p), rtol=1e-12, atol=1e-12)
    inputs = [p] * points_grad + list(lin.parameters())
    got = torch.autograd.grad(y, inputs, dy)
    want = torch.autograd.grad(lin(p), inputs, dy)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@needs_native
@pytest.mark.parametrize("name", FIELD_DECODERS)
@pytest.mark.parametrize("chunk_rows", [None, 16, 150])  # one chunk; parts of objects; two whole objects
def test_bf16_compiled_kernels_are_as_accurate_as_the_torch_ops(name, chunk_rows, counted_native, monkeypatch):
    """bf16 training through the fused trunk, the compiled passes against the torch ops, two steps,
    both measured against the plain modules in float64. The two take the same bf16 products and
    roundings but sum in another order, and a bf16 gradient moves by a few % when one value crosses a
    rounding boundary: so each is held to the float64 reference, the compiled one no further from it."""
    def rel_errors(grads, ref):
        return torch.stack([(grads[k].double() - ref[k]).abs().max() / ref[k].abs().max()
                            for k in ref if ref[k] is not None and ref[k].abs().max() > 1e-3])

    errors, states = {}, {}
    for flag in ("1", "0"):
        monkeypatch.setenv("ONET_NATIVE", flag)
        dec, ref, c_dim = pair(name, 3, dtype=torch.float32, hidden=32)
        ref.double()
        dec.fused_chunk_rows = chunk_rows
        dec.train(), ref.train()
        errors[flag] = []
        for it in range(2):
            p, c, z, occ = inputs(4, 75, c_dim, 3, torch.float32, seed=it)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out, grads = step(dec, p, c, z, occ)
            out_ref, grads_ref = step(ref, *(None if x is None else x.detach().double().requires_grad_(x.requires_grad)
                                             for x in (p, c, z, occ)))
            errors[flag].append(((out.double() - out_ref).abs().max(), rel_errors(grads, grads_ref)))
        states[flag] = dec.state_dict()
        if flag == "1":
            assert {"act", "relu_back", "input_grad"} <= set(counted_native)
            n_calls = len(counted_native)
    assert len(counted_native) == n_calls  # ONET_NATIVE=0: the torch ops ran
    for (out_err, grad_err), (out_err_ops, grad_err_ops) in zip(errors["1"], errors["0"]):
        assert out_err <= 1.25 * out_err_ops + 1e-3
        assert grad_err.mean() <= 1.25 * grad_err_ops.mean() + 0.01
        assert grad_err.max() <= 1.25 * grad_err_ops.max() + 0.02
        assert grad_err_ops.mean() < 0.25  # and the torch ops' bf16 gradients are gradients at all
    assert_same(states["1"], states["0"], atol=2e-3, rtol=2e-3)


@needs_native
@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
def test_bf16_passes_of_the_compiled_kernels_on_random_chunks(x_dtype):
    """Each compiled pass with bf16 operands (the bf16 trunk's) against torch on the same values:
    masks, copies and conversions exactly, sums to float rounding. 3 objects of 50 rows, H = 40."""
    k = fused.native()
    g = torch.Generator().manual_seed(0)
    n, tt, H = 150, 50, 40
    x = torch.randn(n, H, generator=g).to(x_dtype)
    s, t = torch.randn(3, H, generator=g), torch.randn(3, H, generator=g)
    per_row = lambda v: v.repeat_interleave(tt, 0)  # noqa: E731  (object b's vector on its rows)

    a = torch.empty(n, H, dtype=torch.bfloat16)
    k.act(x, s, t, a, tt)
    want = (x.float() * per_row(s) + per_row(t)).relu()
    torch.testing.assert_close(a.float(), want, rtol=8e-3, atol=1e-6)  # one bf16 step at most (FMA or not)
    assert (a.float() == want.bfloat16().float()).float().mean() > 0.99

    da = torch.randn(n, H, generator=g).bfloat16()
    dz, S1, S2 = torch.empty(n, H), torch.empty(3, H), torch.empty(3, H)
    k.relu_back(da, a, x, dz, tt, S1, S2)
    assert torch.equal(dz, torch.where(a.float() > 0, da.float(), 0.0))
    torch.testing.assert_close(S1, dz.double().view(3, tt, H).sum(1).float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(S2, (dz.double() * x.double()).view(3, tt, H).sum(1).float(), rtol=1e-5, atol=1e-5)

    v, c0, add = torch.randn(H, generator=g), torch.randn(H, generator=g), torch.randn(n, H, generator=g)
    out, keep, low, db = torch.empty(n, H), torch.empty(n, H), torch.empty(n, H, dtype=torch.bfloat16), torch.empty(H)
    k.input_grad(dz, x, s, v, c0, add, out, keep, tt, db, low)
    torch.testing.assert_close(out, dz * per_row(s) + (x.float() * v + c0) + add, rtol=1e-5, atol=1e-5)
    assert torch.equal(keep, out) and torch.equal(low, out.bfloat16())
    torch.testing.assert_close(db, out.double().sum(0).float(), rtol=1e-5, atol=1e-4)

    m, skip, K = torch.randn(n, H, generator=g).bfloat16(), torch.randn(n, H, generator=g), torch.randn(H, generator=g)
    res, s1, s2 = torch.empty(n, H), torch.empty(H), torch.empty(H)
    k.bias_stats(m, None, skip, res, K, s1, s2)
    assert torch.equal(res, m.float() + skip)
    torch.testing.assert_close(s1, (res.double() - K.double()).sum(0).float(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(s2, ((res.double() - K.double()) ** 2).sum(0).float(), rtol=1e-5, atol=1e-4)


def test_a_library_without_the_kernels_means_torch_ops_not_a_crash(monkeypatch):
    """A loaded library that lacks a kernel (built from another version of the source) is refused with
    its reason, and training runs on the torch ops."""
    import ctypes
    monkeypatch.setattr(fused, "_native", [])
    monkeypatch.setattr(fused, "_bind_error", [])
    monkeypatch.setattr(fused.native_lib, "load", lambda source: (ctypes.CDLL(None), ""))  # this process: no onet_*
    monkeypatch.setenv("ONET_NATIVE", "1")
    assert fused.native() is None
    assert fused.describe_kernels().startswith("torch ops: fused_kernels.c built without a kernel this module uses")
    dec, ref, c_dim = pair("cbn_resnet", 0, dtype=torch.float32)
    dec.train(), ref.train()
    p, c, z, occ = inputs(2, 40, c_dim, 0, torch.float32)
    out, _ = step(dec, p, c, z, occ)
    torch.testing.assert_close(out, step(ref, p, c, z, occ)[0], atol=1e-4, rtol=1e-4)
