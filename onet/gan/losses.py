"""The φ-family of GAN losses (thesis eq. 1.28 / 5.5), in the sign convention of public code.

Thesis: L(θ, ψ) = E_{p_θ}[φ1(D_ψ(x))] + E_{p_D}[φ2(−D_ψ(x))], the generator
minimises L, the discriminator maximises it; there D_ψ is *high on generated*
samples. onet follows the convention of public GAN code instead: a
discriminator returns a logit that is *high on real data*, ``d = −D_ψ``.
With φ1 = φ2 = φ the game reads

    L = E_{p_D}[φ(d(x))] + E_{p_θ}[φ(−d(x))]      (D maximises, G minimises)

and every constant of the thesis is unchanged: ρ1 = φ'(0), ρ2 = −2 φ''(0)
(`RHO`). Losses here are quantities to *minimise*; inputs are logits of any
shape (B, ...), reduced by the mean over all entries.

    kind        φ(t)                 ρ1    ρ2    discriminator loss              generator loss
    standard    −softplus(−t)        1/2   1/2   softplus(−d_r) + softplus(d_f)  −softplus(d_f)   (zero-sum, saturating)
    ns          (standard D)         1/2   1/2   as standard                     softplus(−d_f)   (non-saturating)
    wgan        t                    1     0     −d_r + d_f                      −d_f
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("standard", "ns", "wgan")
# (ρ1, ρ2) = (φ'(0), −φ1''(0) − φ2''(0)); "ns" shares the standard discriminator (thesis Lemma 3.6 / 6.9)
RHO = {"standard": (0.5, 0.5), "ns": (0.5, 0.5), "wgan": (1.0, 0.0)}


def _check(kind: str) -> str:
    if kind not in LOSSES:
        raise ValueError(f"unknown GAN loss {kind!r}; choose one of {', '.join(LOSSES)}")
    return kind


def phi(t: torch.Tensor, kind: str = "standard") -> torch.Tensor:
    """φ(t) of the family: −softplus(−t) for standard / ns (log σ(t)), t for wgan. Same shape as t."""
    return t if _check(kind) == "wgan" else -F.softplus(-t)


def d_loss(d_real: torch.Tensor, d_fake: torch.Tensor, kind: str = "standard") -> torch.Tensor:
    """Discriminator loss −(E φ(d_real) + E φ(−d_fake)).

    d_real: (B, ...) logits on data; d_fake: (B', ...) logits on generated samples.
    Returns a scalar (means over all entries).
    """
    if _check(kind) == "wgan":
        return d_fake.mean() - d_real.mean()
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


def g_loss(d_fake: torch.Tensor, kind: str = "ns") -> torch.Tensor:
    """Generator loss on logits d_fake (B, ...) of generated samples; a scalar.

    standard: E φ(−d_fake) = −E softplus(d_fake), the zero-sum game L itself;
    ns: E softplus(−d_fake) (Goodfellow's non-saturating loss, thesis eq. 3.21);
    wgan: −E d_fake.
    """
    kind = _check(kind)
    if kind == "wgan":
        return -d_fake.mean()
    if kind == "standard":
        return -F.softplus(d_fake).mean()
    return F.softplus(-d_fake).mean()


def g_loss_per_sample(d_fake: torch.Tensor, kind: str = "ns") -> torch.Tensor:
    """The generator loss of each sample, same shape as d_fake (its mean is `g_loss`)."""
    kind = _check(kind)
    if kind == "wgan":
        return -d_fake
    if kind == "standard":
        return -F.softplus(d_fake)
    return F.softplus(-d_fake)
