"""GAN training dynamics (thesis Part I): a library for onet's generative models and the `onet gan` tool.

Library (generic: discriminators are callables / nn.Modules on tensors (B, ...)):
- losses of the φ-family: `d_loss`, `g_loss` ('standard', 'ns' non-saturating, 'wgan'), `phi`, `RHO`;
  onet's discriminators return logits that are high on real data (the thesis's D is their negative).
- regularisers: `r1_penalty`, `r2_penalty` (γ/2·E||∇_x d||², thesis convention: public code's
  γ = 10 is γ = 20 here), `zero_centred_penalty`, `wgan_gp_penalty`, `instance_noise`,
  `consensus_penalty`, `nagarajan_kolter_penalty`, `roth_penalty` (thesis eq. 6.2).
- updates: `make_optimizer` (SGD, RMSProp, Adam with β1 = 0), `make_ema` / `ema_update`,
  `gan_step` with `GameConfig` (alternating / simultaneous, n_g / n_d, same z, instance noise,
  consensus, NK penalty) and Weber's explicit generator step (`weber_generator_step`, `WeberConfig`).
- `wasserstein1`: exact-assignment W1 between two equal-size samples.

Tool (`onet gan`): `run_dirac` (Dirac-GAN, Ch. 3-4), `run_toy` (Ellipse / Four Points, Ch. 5-6),
`run_bench2d` (the 2-D benchmark of §8.1, many GANs trained at once as one batched program).
"""

from onet.gan.losses import LOSSES, RHO, d_loss, g_loss, g_loss_per_sample, phi
from onet.gan.metrics import wasserstein1
from onet.gan.regularizers import (consensus_penalty, input_grad_sq, instance_noise, nagarajan_kolter_penalty,
                                   r1_penalty, r2_penalty, roth_penalty, wgan_gp_penalty, zero_centred_penalty)
from onet.gan.updates import (OPTIMIZERS, GameConfig, WeberConfig, ema_update, gan_step, make_ema, make_optimizer,
                              weber_generator_step)


def run_gan(args) -> int:
    """`onet gan dirac|toy|bench2d` from parsed CLI arguments; see onet.gan.run."""
    from onet.gan.run import run_gan as _run
    return _run(args)


def run_dirac(*args, **kwargs):
    """`onet gan dirac`; see onet.gan.dirac.run_dirac."""
    from onet.gan.dirac import run_dirac as _run
    return _run(*args, **kwargs)


def run_toy(*args, **kwargs):
    """`onet gan toy`; see onet.gan.toy.run_toy."""
    from onet.gan.toy import run_toy as _run
    return _run(*args, **kwargs)


def run_bench2d(*args, **kwargs):
    """`onet gan bench2d`; see onet.gan.bench2d.run_bench2d."""
    from onet.gan.bench2d import run_bench2d as _run
    return _run(*args, **kwargs)


__all__ = [
    "LOSSES", "RHO", "phi", "d_loss", "g_loss", "g_loss_per_sample",
    "r1_penalty", "r2_penalty", "zero_centred_penalty", "input_grad_sq", "wgan_gp_penalty", "instance_noise",
    "consensus_penalty", "nagarajan_kolter_penalty", "roth_penalty",
    "OPTIMIZERS", "make_optimizer", "make_ema", "ema_update", "GameConfig", "WeberConfig", "gan_step",
    "weber_generator_step", "wasserstein1", "run_gan", "run_dirac", "run_toy", "run_bench2d",
]
