"""OccupancyNetwork: encode / infer_z / prior / loss / training step / fast path."""

import pytest
import torch

from onet.models import build_model


def model_cfg(**overrides):
    cfg = {
        "encoder": None, "encoder_kwargs": {}, "decoder": "cbn_resnet",
        "decoder_kwargs": {"hidden_size": 16, "n_blocks": 2},
        "c_dim": 0, "z_dim": 0, "encoder_latent": None, "encoder_latent_kwargs": {},
    }
    cfg.update(overrides)
    return cfg


def test_vae_shapes_and_kl_term():
    torch.manual_seed(0)
    model = build_model(model_cfg(encoder="pointnet_simple", encoder_kwargs={"hidden_dim": 16}, c_dim=8,
                                  z_dim=5, encoder_latent="pointnet_latent",
                                  encoder_latent_kwargs={"hidden_size": 16}))
    p, occ, x = torch.rand(3, 40, 3) - 0.5, (torch.rand(3, 40) > 0.5).float(), torch.rand(3, 30, 3)
    c = model.encode_inputs(x)
    assert c.shape == (3, 8)
    mean, logstd = model.infer_z(p, occ, c)
    assert mean.shape == logstd.shape == (3, 5)
    assert model.get_z_from_prior(3).shape == (3, 5)
    assert torch.equal(model.get_z_from_prior(3, sample=False), torch.zeros(3, 5))
    assert model(p, x).shape == (3, 40)

    with torch.no_grad():  # a posterior away from the prior has a positive KL
        model.encoder_latent.fc_mean.bias.fill_(1.0)
    loss, stats = model.compute_loss({"points": p, "points.occ": occ, "inputs": x})
    assert set(stats) == {"loss", "rec", "kl"}
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in stats.values())
    assert stats["kl"].item() > 0
    assert loss.item() == pytest.approx(stats["rec"].item() + stats["kl"].item(), rel=1e-5)
    # KL(N(1, 1) || N(0, 1)) = 0.5 per dimension when logstd is 0
    with torch.no_grad():
        for lin in (model.encoder_latent.fc_mean, model.encoder_latent.fc_logstd):
            lin.weight.zero_()
        model.encoder_latent.fc_logstd.bias.zero_()
    _, stats = model.compute_loss({"points": p, "points.occ": occ, "inputs": x})
    assert stats["kl"].item() == pytest.approx(0.5 * 5, rel=1e-5)


def test_reconstruction_loss_is_bce_summed_over_points_mean_over_batch():
    model = build_model(model_cfg(encoder="voxel_simple", c_dim=4))
    with torch.no_grad():  # constant logit 0.5 everywhere
        model.decoder.fc_out.weight.zero_()
        model.decoder.fc_out.bias.fill_(0.5)
    occ = torch.zeros(2, 10)
    occ[:, :3] = 1
    loss, stats = model.compute_loss({"points": torch.rand(2, 10, 3), "points.occ": occ,
                                        "inputs": torch.zeros(2, 32, 32, 32)})
    expected = (3 * -torch.log(torch.sigmoid(torch.tensor(0.5))) + 7 * -torch.log(torch.sigmoid(torch.tensor(-0.5))))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert stats["kl"].item() == 0.0


def test_gradient_reaches_the_encoder_in_a_training_step():
    torch.manual_seed(0)
    model = build_model(model_cfg(encoder="resnet18", encoder_kwargs={"width": 8}, c_dim=8))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    img = torch.rand(2, 3, 32, 32)
    p, occ = torch.rand(2, 64, 3) - 0.5, (torch.rand(2, 64) > 0.5).float()
    # gamma(c) / beta(c) start with zero weights (identity CBN), so c -- and the
    # encoder -- gets its first non-zero gradient once they have taken one step
    for step in range(2):
        before = model.encoder.conv1.weight.detach().clone()
        loss, _ = model.compute_loss({"points": p, "points.occ": occ, "inputs": img})
        opt.zero_grad()
        loss.backward()
        assert all(q.grad is not None for q in model.encoder.parameters())
        opt.step()
    assert model.encoder.conv1.weight.grad.abs().sum() > 0
    assert model.encoder.fc.weight.grad.abs().sum() > 0
    assert not torch.equal(model.encoder.conv1.weight, before)


def test_unconditional_model():
    model = build_model(model_cfg(decoder="simple", z_dim=4, encoder_latent="pointnet_latent"))
    c = model.encode_inputs(None, batch_size=3)
    assert c.shape == (3, 0)
    assert model.encode_inputs(torch.zeros(5, 7)).shape == (5, 0)
    with pytest.raises(ValueError, match="batch_size"):
        model.encode_inputs(None)
    p = torch.rand(3, 20, 3)
    assert model(p, None).shape == (3, 20)
    loss, stats = model.compute_loss({"points": p, "points.occ": torch.ones(3, 20), "inputs": None})
    assert loss.ndim == 0 and stats["kl"] >= 0
    model.eval()
    fn = model.make_eval_fn(c)
    with torch.no_grad():
        torch.testing.assert_close(fn(p), model.decode(p, torch.zeros(3, 4), c), atol=1e-4, rtol=1e-4)


def test_model_make_eval_fn_matches_decode_with_default_z():
    torch.manual_seed(0)
    model = build_model(model_cfg(encoder="pointnet_resnet", encoder_kwargs={"hidden_dim": 16}, c_dim=8, z_dim=3,
                                  encoder_latent="pointnet_latent"))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 50, 3) - 0.5, torch.rand(4, 30, 3))
    with pytest.raises(RuntimeError, match="eval"):
        model.make_eval_fn(torch.zeros(2, 8))
    model.eval()
    x, p = torch.rand(2, 30, 3), torch.rand(2, 500, 3) - 0.5
    with torch.no_grad():
        c = model.encode_inputs(x)
        ref = model(p, x, sample=False)
    out = model.make_eval_fn(c)(p)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_vae_validation_scores_the_reconstruction_through_the_posterior_mean():
    """Two shapes that are each other's complement (x > 0 vs x < 0): a VAE that learned them
    reconstructs both through q(z | points), while its prior mean z = 0 can only draw one
    compromise, so validation on the prior mean would rate the model near chance."""
    torch.manual_seed(0)
    model = build_model(model_cfg(decoder="simple", decoder_kwargs={"hidden_size": 32}, z_dim=2,
                                  encoder_latent="pointnet_latent", encoder_latent_kwargs={"hidden_size": 32}))
    p = torch.rand(2, 512, 3) - 0.5
    occ = torch.stack([(p[0, :, 0] > 0), (p[1, :, 0] < 0)]).float()
    batch = {"points": p, "points.occ": occ, "inputs": None}
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss, _ = model.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        got = model.validation_metrics(batch, 0.5, encode_points=256, points_chunk=300)
        z, logstd = model.infer_z(p[:, :256], occ[:, :256], model.encode_inputs(None, batch_size=2))
        prior = model.decode(p, torch.zeros(2, 2), None)
    assert got["iou"].min() > 0.9
    prior_iou = ((prior > 0) & (occ > 0)).sum(1) / ((prior > 0) | (occ > 0)).sum(1).clamp(min=1)
    assert prior_iou.mean() < 0.7  # what validation on the prior mean would have reported
    # loss = BCE at the posterior mean, summed over points, + KL: a negative ELBO per object
    bce = torch.nn.functional.binary_cross_entropy_with_logits(model.decode(p, z, None), occ, reduction="none").sum(1)
    kl = (0.5 * (torch.exp(2 * logstd) + z**2 - 1) - logstd).sum(1)
    torch.testing.assert_close(got["loss"], (bce + kl).detach(), rtol=1e-4, atol=1e-3)
