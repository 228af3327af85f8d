"""Regularisers of GAN training, each with its formula and convention.

Sign convention as in `onet.gan.losses`: the discriminator returns a logit
d(x), high on real data, and *minimises* its loss; a discriminator penalty is
*added* to that loss (the thesis subtracts R from the objective D maximises:
the same thing). Generator penalties (Nagarajan–Kolter) are added to the
generator's loss; consensus optimisation adds its term to both.

γ convention (thesis eqs. 6.1 / 6.3 and the ICML-2018 slides):
    R1 = γ/2 · E_{p_D} ||∇_x d(x)||²,   R2 = γ/2 · E_{p_θ} ||∇_x d(x)||².
Much public code adds γ · E||∇_x d||² without the ½: its γ = 10 is γ = 20 here.

Inputs x are tensors (B, ...) with the samples along dim 0; a `discriminator`
is any callable (an nn.Module, a closure over stacked weights, ...) mapping
x (B, ...) to logits (B,) or (B, 1). Every penalty is a scalar built with
create_graph=True, so `.backward()` reaches the discriminator's parameters
(double backpropagation).
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch

Discriminator = Callable[[torch.Tensor], torch.Tensor]


def input_grad_sq(d_out: torch.Tensor, x: torch.Tensor, *, sample_ndim: int = 1) -> torch.Tensor:
    """Per-sample squared input-gradient norms ||∇_x d(x)||².

    d_out: logits computed from x (x must require grad), any shape;
    x: (*S, ...) with the first `sample_ndim` dims indexing samples (S).
    Returns (*S,). Each logit must depend only on its own sample (true for
    any network without cross-sample layers such as batch norm), so the
    gradient of d_out.sum() holds every sample's own gradient.
    """
    (grad,) = torch.autograd.grad(d_out.sum(), x, create_graph=True)
    return grad.pow(2).reshape(*x.shape[:sample_ndim], -1).sum(-1)


def zero_centred_penalty(d_out: torch.Tensor, x: torch.Tensor, gamma: float) -> torch.Tensor:
    """γ/2 · mean_i ||∇_x d(x_i)||² for logits d_out computed from x (B, ...) (requires grad). Scalar."""
    return 0.5 * gamma * input_grad_sq(d_out, x).mean()


def _leaf(x: torch.Tensor) -> torch.Tensor:
    return x.detach().requires_grad_(True)


def r1_penalty(discriminator: Discriminator, x_real: torch.Tensor, gamma: float) -> torch.Tensor:
    """R1 = γ/2 · E_{p_D} ||∇_x d(x)||² on data x_real (B, ...) (thesis eq. 6.1). Scalar.

    Dirac-GAN check: d(x) = −ψ·x with data δ_0 gives γψ²/2.
    """
    x = _leaf(x_real)
    return zero_centred_penalty(discriminator(x), x, gamma)


def r2_penalty(discriminator: Discriminator, x_fake: torch.Tensor, gamma: float) -> torch.Tensor:
    """R2 = γ/2 · E_{p_θ} ||∇_x d(x)||² on generated x_fake (B, ...) (thesis eq. 6.3). Scalar.

    x_fake is detached: R2 belongs to the discriminator's objective only.
    """
    x = _leaf(x_fake)
    return zero_centred_penalty(discriminator(x), x, gamma)


def interpolates(x_real: torch.Tensor, x_fake: torch.Tensor, *, generator: torch.Generator | None = None,
                 sample_ndim: int = 1) -> torch.Tensor:
    """x̂ = t·x_real + (1 − t)·x_fake with t ~ U[0, 1] per sample; x (*S, ...) -> (*S, ...), detached."""
    shape = x_real.shape[:sample_ndim] + (1,) * (x_real.dim() - sample_ndim)
    t = torch.rand(shape, generator=generator, dtype=x_real.dtype, device=x_real.device)
    return (t * x_real.detach() + (1 - t) * x_fake.detach())


def wgan_gp_penalty(discriminator: Discriminator, x_real: torch.Tensor, x_fake: torch.Tensor, gamma: float, *,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP: γ · E_x̂ (||∇_x d(x̂)|| − 1)² on random interpolates x̂ (Gulrajani et al.). Scalar.

    Not zero-centred, and no ½ (the usual λ = γ = 10); thesis eq. 3.46 writes
    γ/2, so its γ is twice ours. x_real, x_fake: (B, ...), same shape.
    """
    x = _leaf(interpolates(x_real, x_fake, generator=generator))
    # clamp: the norm's gradient is undefined at a zero gradient (the Dirac-GAN's ψ = 0)
    norm = input_grad_sq(discriminator(x), x).clamp_min(1e-12).sqrt()
    return gamma * (norm - 1).pow(2).mean()


def instance_noise(x: torch.Tensor, sigma: float, *, noise: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """x + σ·ε with ε ~ N(0, I) (or the given `noise`, same shape as x); add to real *and* fake samples.

    Thesis Lemma 3.11 / 4.5: the Jacobian's ψψ-block gains −ρ2 σ² I.
    """
    if noise is None:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x + sigma * noise


def _grad_sq_sum(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, list(params), create_graph=True, allow_unused=True)
    return sum((g.pow(2).sum() for g in grads if g is not None), loss.new_zeros(()))


def consensus_penalty(loss_g: torch.Tensor, loss_d: torch.Tensor, params_g: Iterable[torch.Tensor],
                      params_d: Iterable[torch.Tensor], gamma: float) -> torch.Tensor:
    """Consensus optimisation: γ/2 · ||v||² = γ/2 (||∇_θ loss_g||² + ||∇_ψ loss_d||²) (thesis eq. 3.50).

    Add the result to *both* players' losses (Algorithm 3); it is
    differentiated through the gradients (double backprop). Dirac-GAN:
    eigenvalues −γρ1² ± iρ1 (Lemma 3.10).
    """
    return 0.5 * gamma * (_grad_sq_sum(loss_g, tuple(params_g)) + _grad_sq_sum(loss_d, tuple(params_d)))


def nagarajan_kolter_penalty(loss_d: torch.Tensor, params_d: Iterable[torch.Tensor], eta: float) -> torch.Tensor:
    """Nagarajan & Kolter's generator penalty η ||∇_ψ V||², V the game's value (= −loss_d for a zero-sum game).

    Add to the *generator's* loss only; the discriminator's update is
    unchanged. The squared norm of the discriminator's parameter gradient,
    built with create_graph=True so its θ-gradient exists. Scalar.
    """
    return eta * _grad_sq_sum(loss_d, tuple(params_d))


def roth_penalty(discriminator: Discriminator, x_real: torch.Tensor, x_fake: torch.Tensor,
                 gamma: float) -> torch.Tensor:
    """Roth et al.'s weighted gradient penalty, thesis eq. 6.2, in onet's sign convention. Scalar.

    γ E_{p_θ}[σ(d(x))² ||∇_x d(x)||²] + γ E_{p_D}[(1 − σ(d(x)))² ||∇_x d(x)||²]
    (the thesis's D is −d, so its (1 − σ(D))² on fakes is σ(d)² here). The
    weights are differentiated too. No ½: both weights are ¼ at the
    equilibrium, so its Hessian there equals that of R1 with the same γ (Lemma 6.11).
    """
    xr, xf = _leaf(x_real), _leaf(x_fake)
    dr, df = discriminator(xr), discriminator(xf)
    wr = (1 - torch.sigmoid(dr)).pow(2).reshape(-1)
    wf = torch.sigmoid(df).pow(2).reshape(-1)
    return gamma * ((wf * input_grad_sq(df, xf)).mean() + (wr * input_grad_sq(dr, xr)).mean())
