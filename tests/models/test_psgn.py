"""PSGN: decoder shapes, Chamfer terms against brute force and onet.evaluation, finite gradients."""

import pytest
import torch

from onet.evaluation.metrics import surface_metrics
from onet.models import POINTS, PSGN, build_model, count_parameters, data_targets, output_kind
from onet.models.psgn import PSGNDecoder, chamfer_terms, squared_distances


def psgn_cfg(**overrides):
    cfg = {"encoder": "pointnet_simple", "encoder_kwargs": {"hidden_dim": 16}, "decoder": "psgn",
           "decoder_kwargs": {"hidden_size": 32, "n_points": 64}, "c_dim": 8, "z_dim": 0,
           "encoder_latent": None, "encoder_latent_kwargs": {}}
    cfg.update(overrides)
    return cfg


def test_thesis_decoder_shape_and_size():
    dec = PSGNDecoder(c_dim=256)  # four layers of 512, 1024 points (thesis App. E.2)
    assert dec(torch.zeros(2, 256)).shape == (2, 1024, 3)
    assert count_parameters(dec) == (256 * 512 + 512) + 2 * (512 * 512 + 512) + (512 * 3072 + 3072)


def test_build_and_kind():
    cfg = psgn_cfg()
    model = build_model(cfg)
    assert isinstance(model, PSGN) and model.output_kind == POINTS == output_kind(cfg)
    assert data_targets(cfg) == ("pointcloud",)
    assert model(torch.rand(3, 40, 3)).shape == (3, 64, 3)


def test_chamfer_terms_match_brute_force():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 30, 3, generator=g), torch.rand(2, 45, 3, generator=g)
    d = squared_distances(a, b)
    brute = ((a[:, :, None, :] - b[:, None, :, :]) ** 2).sum(-1)
    assert torch.allclose(d, brute, atol=1e-6)
    to_b, to_a = chamfer_terms(a, b)
    assert torch.allclose(to_b, brute.min(2).values, atol=1e-6) and torch.allclose(to_a, brute.min(1).values, atol=1e-6)


def test_validation_chamfer_equals_the_evaluation_metric():
    model = build_model(psgn_cfg()).eval()
    g = torch.Generator().manual_seed(1)
    inputs, target = torch.rand(2, 40, 3, generator=g), torch.rand(2, 500, 3, generator=g) - 0.5
    with torch.no_grad():
        pred = model(inputs)
        metrics = model.validation_metrics({"inputs": inputs, "pointcloud": target}, threshold=0.2)
    for i in range(2):
        reference = surface_metrics(pred[i].numpy(), None, target[i].numpy(), None)["chamfer_l1"]
        assert metrics["chamfer"][i].item() == pytest.approx(reference, rel=1e-4)
    assert torch.all(metrics["loss"] > 0)


def test_loss_is_zero_on_the_target_and_gradients_stay_finite():
    model = build_model(psgn_cfg())
    inputs = torch.rand(2, 40, 3)
    with torch.no_grad():
        target = model(inputs).clone()
    loss, parts = model.compute_loss({"inputs": inputs, "pointcloud": target})
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()  # coinciding points: the written-out distance keeps gradients finite (cdist would give NaN)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with pytest.raises(ValueError, match="target points"):
        model.compute_loss({"inputs": inputs, "pointcloud": torch.zeros(2, 10)})


def test_bad_sizes_are_errors():
    with pytest.raises(ValueError, match="n_layers"):
        PSGNDecoder(c_dim=4, n_layers=1)
    with pytest.raises(ValueError, match="z_dim: 0"):
        build_model(psgn_cfg(z_dim=2))
