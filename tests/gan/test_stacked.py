"""The hand-derived gradients of onet.gan.stacked against autograd through the library, run by run."""

import pytest
import torch

from onet.gan import losses as L
from onet.gan import regularizers as R
from onet.gan import stacked as S


def _setup(act, r=4, b=7, width=8):
    gen = torch.Generator().manual_seed(0)
    # doubles, so that the comparison checks the algebra, not the rounding
    D = S.StackedMLP(r, 2, width, 1, act, gen, "cpu", dtype=torch.float64)
    G = S.StackedMLP(r, 2, width, 2, act, gen, "cpu", dtype=torch.float64)
    xr, fake = (torch.randn(r, b, 2, dtype=torch.float64, generator=gen) for _ in range(2))
    return gen, D, G, xr, fake


def _per_run(net, i):
    params = [p[i:i + 1].detach().clone().requires_grad_(True) for p in net.params]
    return params, (lambda x: net(x[None], params)[0])


@pytest.mark.parametrize("act", ["leaky", "tanh"])
@pytest.mark.parametrize("kind", ["none", "zc", "gp"])
def test_discriminator_gradients_equal_autograd_through_the_library(kind, act):
    gen, D, _, xr, fake = _setup(act)
    r, b = xr.shape[:2]
    t = torch.rand(r, b, 1, dtype=torch.float64, generator=gen)
    gamma = torch.tensor([1.0, 3.0, 10.0, 0.5], dtype=torch.float64)
    on_fake = torch.tensor([[False], [True], [False], [True]])
    grads = S.d_grads(D.params, act, kind, xr, fake, gamma, on_fake, t)
    assert [g.shape for g in grads] == [p.shape for p in D.params]
    for i in range(r):
        params, net = _per_run(D, i)
        disc = lambda x: net(x).squeeze(-1)   # noqa: E731
        if kind == "gp":
            loss = L.d_loss(disc(xr[i]), disc(fake[i]), "wgan")
            xi = (t[i] * xr[i] + (1 - t[i]) * fake[i]).requires_grad_(True)
            norm = R.input_grad_sq(disc(xi), xi).clamp_min(1e-12).sqrt()
            loss = loss + gamma[i] * (norm - 1).pow(2).mean()
        else:
            loss = L.d_loss(disc(xr[i]), disc(fake[i]))
            if kind == "zc":
                pen = R.r2_penalty if on_fake[i] else R.r1_penalty
                loss = loss + pen(disc, fake[i] if on_fake[i] else xr[i], float(gamma[i]))
        ref = torch.autograd.grad(loss, params)
        for g, rg in zip(grads, ref):
            assert torch.allclose(g[i], rg[0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("act", ["leaky", "tanh"])
@pytest.mark.parametrize("wgan", [False, True])
def test_generator_gradients_equal_autograd_through_the_library(act, wgan):
    gen, D, G, z, _ = _setup(act)
    grads = S.g_grads(G.params, D.params, act, z, wgan)
    for i in range(z.shape[0]):
        gp, g_net = _per_run(G, i)
        _, d_net = _per_run(D, i)
        loss = L.g_loss(d_net(g_net(z[i])).squeeze(-1), "wgan" if wgan else "ns")
        ref = torch.autograd.grad(loss, gp)
        for g, rg in zip(grads, ref):
            assert torch.allclose(g[i], rg[0], rtol=1e-9, atol=1e-12)


def test_params_are_views_of_one_buffer_and_the_forward_matches_autograd():
    gen = torch.Generator().manual_seed(1)
    net = S.StackedMLP(3, 2, 16, 1, "tanh", gen, "cpu")
    net.flat.mul_(0.5)   # one in-place op on the buffer reaches every layer
    x = torch.randn(3, 5, 2, generator=gen)
    hs, out = S.forward(net.params, x.transpose(1, 2), "tanh")   # feature-major
    assert torch.allclose(out.transpose(1, 2), net(x), atol=1e-6) and len(hs) == 4
    assert torch.allclose(S.sample(net.params, x, "tanh"), net(x), atol=1e-6)
    with pytest.raises(ValueError, match="activation"):
        S.StackedMLP(1, 2, 8, 1, "relu", gen, "cpu")
