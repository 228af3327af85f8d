import pytest
import torch
from torch import nn

from onet.gan import losses as L
from onet.gan import regularizers as R

# the penalties keep their graph (create_graph) for the step's backward; these tests read their values
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True to a scalar")


def linear_disc(psi):
    return lambda x: -(x @ psi)


@pytest.mark.parametrize("psi_value, gamma", [(0.7, 1.0), (-1.3, 10.0), (0.0, 3.0)])
def test_r1_on_linear_discriminator_with_dirac_data_is_gamma_psi_squared_over_two(psi_value, gamma):
    psi = torch.tensor([psi_value])
    assert float(R.r1_penalty(linear_disc(psi), torch.zeros(1, 1), gamma)) == pytest.approx(
        gamma * psi_value ** 2 / 2, abs=1e-12)


def test_r1_r2_gradient_reaches_discriminator_parameters():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    x = torch.randn(5, 3)
    for pen in (R.r1_penalty(D, x, 2.0), R.r2_penalty(D, x, 2.0)):
        grads = [g for g in torch.autograd.grad(pen, list(D.parameters()), allow_unused=True) if g is not None]
        assert all(torch.isfinite(g).all() for g in grads) and sum(g.abs().sum() for g in grads) > 0
    # a per-sample check of input_grad_sq against a loop
    xs = x.clone().requires_grad_(True)
    sq = R.input_grad_sq(D(xs), xs)
    for i in range(5):
        xi = x[i:i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(D(xi).sum(), xi)
        assert float(sq[i]) == pytest.approx(float(g.pow(2).sum()), rel=1e-5)  # float32: batched and single products round apart


def test_wgan_gp_is_centred_at_one_and_not_halved():
    psi = torch.tensor([3.0, 4.0])   # ||∇d|| = 5 everywhere
    pen = R.wgan_gp_penalty(linear_disc(psi), torch.zeros(4, 2), torch.ones(4, 2), 2.0)
    assert float(pen) == pytest.approx(2.0 * (5 - 1) ** 2)


def test_consensus_penalty_is_half_gamma_squared_field_norm():
    theta, psi = torch.tensor([0.4], requires_grad=True), torch.tensor([-0.9], requires_grad=True)
    value = theta * psi  # bilinear game: v = (-ψ, θ)
    pen = R.consensus_penalty(value.sum(), -value.sum(), [theta], [psi], 3.0)
    assert float(pen) == pytest.approx(1.5 * (0.4 ** 2 + 0.9 ** 2))


def test_nagarajan_kolter_penalty_gradient_matches_finite_differences():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 2))
    D = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 1))
    z, x = torch.randn(7, 2), torch.randn(7, 2)
    d_params = list(D.parameters())

    def penalty():
        return R.nagarajan_kolter_penalty(L.d_loss(D(x), D(G(z))), d_params, 0.5)

    theta = list(G.parameters())
    analytic = torch.autograd.grad(penalty(), theta)
    eps = 1e-6
    for p, g in zip(theta, analytic):
        flat = p.data.view(-1)
        for i in range(0, flat.numel(), 3):
            old = float(flat[i])
            flat[i] = old + eps
            up = float(penalty())
            flat[i] = old - eps
            down = float(penalty())
            flat[i] = old
            assert float(g.view(-1)[i]) == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-9)


def test_roth_penalty_matches_eq_6_2_and_equals_r1_hessian_weighting_at_zero_logits():
    torch.manual_seed(1)
    D = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 1))
    xr, xf = torch.randn(6, 2), torch.randn(6, 2)
    got = float(R.roth_penalty(D, xr, xf, 2.0))
    xr_, xf_ = xr.clone().requires_grad_(True), xf.clone().requires_grad_(True)
    dr, df = D(xr_), D(xf_)
    gr, gf = R.input_grad_sq(dr, xr_), R.input_grad_sq(df, xf_)
    want = 2.0 * ((torch.sigmoid(df).view(-1) ** 2 * gf).mean() + ((1 - torch.sigmoid(dr)).view(-1) ** 2 * gr).mean())
    assert got == pytest.approx(float(want), rel=1e-12)
    # zero logits: weights 1/4 each, so Roth(γ) = (R1(γ) + R2(γ)) / 2
    lin = linear_disc(torch.tensor([0.6, -0.2]))
    zero = torch.zeros(3, 2)
    roth = float(R.roth_penalty(lin, zero, zero, 4.0))
    assert roth == pytest.approx(0.5 * float(R.r1_penalty(lin, zero, 4.0) + R.r2_penalty(lin, zero, 4.0)))


def test_instance_noise_uses_given_noise():
    x, e = torch.zeros(3, 2), torch.ones(3, 2)
    assert torch.equal(R.instance_noise(x, 0.5, noise=e), 0.5 * e)
    assert R.instance_noise(x, 0.5).shape == x.shape
