"""The latent GAN's networks: MLP shapes, no normalisation layers, the sampler's de-standardisation."""

import pytest
import torch
from torch import nn

from onet.models.latent import LatentMLP, LatentSampler, build_latent_networks, is_latent_gan, vae_checkpoint_path


def test_networks_have_the_documented_shapes_and_no_normalisation():
    G, D = build_latent_networks({"noise_dim": 5, "z_dim": 7, "hidden_size": 16, "n_layers": 3})
    assert G(torch.randn(4, 5)).shape == (4, 7)
    assert D(torch.randn(4, 7)).shape == (4, 1)
    assert sum(isinstance(m, nn.Linear) for m in D.modules()) == 4
    norms = (nn.BatchNorm1d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d)
    assert not any(isinstance(m, norms) for m in [*G.modules(), *D.modules()])
    # each logit depends on its own row only (what R1's per-sample gradients need)
    x = torch.randn(3, 7, requires_grad=True)
    (g,) = torch.autograd.grad(D(x)[0, 0], x)
    assert g[0].abs().sum() > 0 and g[1:].abs().sum() == 0
    with pytest.raises(ValueError, match="sizes must be >= 1"):
        LatentMLP(0, 3)


def test_sampler_undoes_the_standardisation():
    G = LatentMLP(2, 3, 8, 1)
    mean, std = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.1, 3.0, 1.0])
    sampler = LatentSampler(G, mean, std)
    noise = torch.randn(6, 2)
    assert torch.allclose(sampler(noise), mean + std * G(noise))
    a = sampler.sample(4, generator=torch.Generator().manual_seed(1))
    b = sampler.sample(4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (4, 3)
    with pytest.raises(ValueError, match="mean and std"):
        LatentSampler(G, torch.zeros(2), torch.ones(2))


def test_a_config_is_a_latent_gan_when_vae_dir_is_set():
    cfg = {"out_dir": "out/x", "test": {"model_file": "model_best.pt"},
           "latent_gan": {"vae_dir": None, "vae_checkpoint": "model_best.pt"}}
    assert not is_latent_gan(cfg)
    assert vae_checkpoint_path(cfg).as_posix() == "out/x/model_best.pt"
    cfg["latent_gan"]["vae_dir"] = "out/vae"
    assert is_latent_gan(cfg) and vae_checkpoint_path(cfg).as_posix() == "out/vae/model_best.pt"
