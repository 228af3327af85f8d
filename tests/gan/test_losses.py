import pytest
import torch
import torch.nn.functional as F

from onet.gan import losses as L


@pytest.mark.parametrize("kind", ["standard", "ns", "wgan"])
def test_rho_constants_are_phi_derivatives_at_zero(kind):
    t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    (d1,) = torch.autograd.grad(L.phi(t, kind), t, create_graph=True)
    (d2,) = torch.autograd.grad(d1, t, allow_unused=True) if d1.requires_grad else (None,)
    d2 = 0.0 if d2 is None else float(d2)
    rho1, rho2 = L.RHO[kind]
    assert float(d1.detach()) == pytest.approx(rho1, abs=1e-12)
    assert -2 * d2 == pytest.approx(rho2, abs=1e-12)


def test_losses_match_their_formulas():
    dr, df = torch.tensor([0.3, -1.2, 2.0]), torch.tensor([[0.5], [-0.7]])
    assert L.d_loss(dr, df) == pytest.approx(float(F.softplus(-dr).mean() + F.softplus(df).mean()))
    assert L.d_loss(dr, df, "wgan") == pytest.approx(float(df.mean() - dr.mean()))
    # the zero-sum generator loss is the game value's fake term; NS is Goodfellow's log D trick
    assert L.g_loss(df, "standard") == pytest.approx(float(L.phi(-df).mean()))
    assert L.g_loss(df, "ns") == pytest.approx(float(-torch.log(torch.sigmoid(df)).mean()), rel=1e-6)
    assert L.g_loss(df, "wgan") == pytest.approx(float(-df.mean()))
    assert torch.allclose(L.g_loss_per_sample(df, "ns").mean(), L.g_loss(df, "ns"))


def test_game_value_is_zero_at_the_equilibrium_and_discriminator_cannot_gain():
    # valid pair (Def. 1.9): E φ(d) + E φ(-d) <= 0 = value at d = 0 when p_θ = p_D
    d = torch.linspace(-3, 3, 13)
    value = -L.d_loss(d, d) + 2 * L.phi(torch.zeros(()))
    assert float(value) <= 1e-7
    assert float(-L.d_loss(torch.zeros(4), torch.zeros(4))) == pytest.approx(2 * float(L.phi(torch.zeros(()))))


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="unknown GAN loss 'lsgan'"):
        L.g_loss(torch.zeros(2), "lsgan")
