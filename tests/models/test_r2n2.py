"""3D-R2N2: decoder shapes and size, the voxel loss, trilinear IoU against the extracted mesh."""

import numpy as np
import pytest
import torch

from onet.geometry.inside import inside_mesh
from onet.geometry.voxelize import voxel_isosurface
from onet.models import R2N2, VOXELS, build_model, count_parameters, data_targets, output_kind
from onet.models.r2n2 import R2N2Decoder, probabilities_at_points


def r2n2_cfg(**overrides):
    cfg = {"encoder": "voxel_simple", "encoder_kwargs": {}, "decoder": "r2n2", "decoder_kwargs": {"hidden_size": 16},
           "c_dim": 8, "z_dim": 0, "encoder_latent": None, "encoder_latent_kwargs": {}}
    cfg.update(overrides)
    return cfg


def test_decoder_shape_and_parameter_count():
    dec = R2N2Decoder(c_dim=256, hidden_size=256)
    assert dec(torch.zeros(2, 256)).shape == (2, 32, 32, 32)
    # fc 256 -> 256 * 4^3; transposed convs 256 -> 128 -> 64 -> 32 (3^3 kernels) and 32 -> 1
    expected = 256 * 16384 + 16384 + sum(a * b * 27 + b for a, b in ((256, 128), (128, 64), (64, 32), (32, 1)))
    assert count_parameters(dec) == expected


@pytest.mark.parametrize("encoder, inputs", [
    ("voxel_simple", torch.zeros(2, 32, 32, 32)),
    ("pointnet_resnet", torch.rand(2, 50, 3)),
    ("resnet18", torch.rand(2, 3, 32, 32)),
])
def test_encoders_swap(encoder, inputs):
    kwargs = {"resnet18": {"width": 8}, "pointnet_resnet": {"hidden_dim": 16}}.get(encoder, {})
    cfg = r2n2_cfg(encoder=encoder, encoder_kwargs=kwargs)
    model = build_model(cfg)
    assert isinstance(model, R2N2) and model.output_kind == VOXELS
    assert output_kind(cfg) == VOXELS and data_targets(cfg) == ("voxels",)
    assert model(inputs).shape == (2, 32, 32, 32)


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="set model.encoder"):
        build_model(r2n2_cfg(encoder=None, c_dim=0))
    with pytest.raises(ValueError, match="z_dim: 0"):
        build_model(r2n2_cfg(z_dim=4))
    with pytest.raises(ValueError, match="decoder 'r2n2'.*n_blocks"):
        build_model(r2n2_cfg(decoder_kwargs={"n_blocks": 2}))


def test_loss_is_bce_summed_over_voxels_mean_over_batch():
    model = build_model(r2n2_cfg())
    with torch.no_grad():  # constant logit 0.5 everywhere
        model.decoder.conv_out.weight.zero_()
        model.decoder.conv_out.bias.fill_(0.5)
    voxels = torch.zeros(2, 32, 32, 32)
    voxels[:, :4] = 1  # 4 * 32 * 32 occupied voxels per object
    loss, parts = model.compute_loss({"inputs": torch.zeros(2, 32, 32, 32), "voxels": voxels})
    n_in = 4 * 32 * 32
    expected = n_in * -np.log(1 / (1 + np.exp(-0.5))) + (32**3 - n_in) * -np.log(1 / (1 + np.exp(0.5)))
    assert loss.item() == pytest.approx(expected, rel=1e-5) and parts["loss"] == pytest.approx(loss.item())
    with pytest.raises(ValueError, match="target voxels"):
        model.compute_loss({"inputs": torch.zeros(2, 32, 32, 32), "voxels": torch.zeros(2, 16, 16, 16)})


def test_interpolation_matches_cell_values_and_is_zero_outside():
    rng = np.random.default_rng(0)
    grid = torch.from_numpy(rng.random((1, 4, 4, 4))).float()
    idx = torch.tensor([[0, 0, 0], [3, 1, 2], [1, 2, 3]])
    centers = (idx.float() + 0.5) / 4 - 0.5
    values = probabilities_at_points(grid, centers[None])
    assert torch.allclose(values[0], grid[0, idx[:, 0], idx[:, 1], idx[:, 2]], atol=1e-6)
    # half way between the centres of cells (2, 1, 2) and (3, 1, 2): their mean; far outside the grid: 0
    between = centers[1] - torch.tensor([0.125, 0.0, 0.0])
    values = probabilities_at_points(grid, torch.stack([between, torch.tensor([0.9, 0.0, 0.0])])[None])
    assert values[0, 0].item() == pytest.approx(((grid[0, 3, 1, 2] + grid[0, 2, 1, 2]) / 2).item(), abs=1e-6)
    assert values[0, 1].item() == 0.0


def test_validation_iou_agrees_with_the_extracted_mesh():
    """The trilinear inside test of validation against the inside test of the marching-cubes mesh."""
    c = (np.arange(32) + 0.5) / 32 - 0.5
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    probs = ((x / 0.35) ** 2 + (y / 0.25) ** 2 + (z / 0.3) ** 2 <= 1).astype(np.float32)  # an ellipsoid's voxels
    vertices, faces = voxel_isosurface(probs, 0.4)
    points = np.random.default_rng(0).uniform(-0.55, 0.55, (20000, 3))
    mesh_inside = inside_mesh(vertices, faces, points)
    fast = probabilities_at_points(torch.from_numpy(probs)[None], torch.from_numpy(points).float()[None])[0] >= 0.4
    agreement = (fast.numpy() == mesh_inside).mean()
    assert agreement > 0.995, agreement
