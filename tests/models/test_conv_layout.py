"""The convolutional encoders keep their conv weights channels-last (faster oneDNN/cuDNN
convolutions); values, gradients and state_dicts are those of the plain NCHW layout."""

import copy

import pytest
import torch

from onet.models.image import ResNet18Encoder
from onet.models.voxels import VoxelEncoder


def _plain_copy(encoder):
    """The same encoder with every parameter stored contiguously (the plain layout)."""
    plain = copy.deepcopy(encoder)
    plain.to(memory_format=torch.contiguous_format)
    return plain


@pytest.mark.parametrize("make, x, fmt", [
    # 8 images of 64 px: batch norm over fewer values (1x1 maps of 2 images) amplifies rounding
    (lambda: ResNet18Encoder(c_dim=8, width=8), lambda: torch.rand(8, 3, 64, 64), torch.channels_last),
    (lambda: VoxelEncoder(c_dim=8), lambda: (torch.rand(2, 32, 32, 32) > 0.6).float(), torch.channels_last_3d),
])
def test_channels_last_weights_same_values_and_gradients(make, x, fmt):
    torch.manual_seed(0)
    encoder, x = make(), x()
    convs = [m for m in encoder.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    assert convs and all(m.weight.is_contiguous(memory_format=fmt) for m in convs)
    assert not all(m.weight.is_contiguous() for m in convs)  # the layout really differs
    plain = _plain_copy(encoder)
    assert all(m.weight.is_contiguous() for m in plain.modules() if isinstance(m, type(convs[0])))
    out, ref = encoder(x), plain(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    out.square().sum().backward()
    ref.square().sum().backward()
    for (name, p), q in zip(encoder.named_parameters(), plain.parameters()):
        # float32 sums in another order: compare against the gradient's own scale
        assert (p.grad - q.grad).abs().max() <= 1e-4 * q.grad.abs().max(), name
    # a state_dict round trip into a fresh encoder keeps the fast layout and the values
    fresh = make()
    fresh.load_state_dict(plain.state_dict())
    assert all(m.weight.is_contiguous(memory_format=fmt) for m in fresh.modules() if isinstance(m, type(convs[0])))
    torch.testing.assert_close(fresh(x), ref, rtol=1e-5, atol=1e-5)
