"""Layers shared by encoders and decoders: the concat-free max-pool block against its definition."""

import pytest
import torch
import torch.nn.functional as F

from onet.models import ENCODERS
from onet.models.layers import ResnetBlockFC, maxpool_concat, maxpool_concat_block


@pytest.mark.parametrize("size_out", [5, 14])  # h -> h (a shortcut projection), 2h -> 2h (identity skip)
def test_maxpool_concat_block_equals_block_of_concatenation(size_out):
    torch.manual_seed(0)
    block = ResnetBlockFC(14, size_out).double()
    with torch.no_grad():
        block.fc_1.weight.normal_()  # not the zero initialisation: exercise every term
    net = torch.randn(3, 9, 7, dtype=torch.float64, requires_grad=True)
    out = maxpool_concat_block(block, net)
    ref = block(maxpool_concat(net))
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [net, *block.parameters()], g)
    grads_ref = torch.autograd.grad(ref, [net, *block.parameters()], g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    with pytest.raises(ValueError, match="features"):
        maxpool_concat_block(block, torch.randn(3, 9, 6, dtype=torch.float64))


def test_resnet_pointnet_is_the_maxpool_concat_network():
    """The PointNet encoder (DESIGN §5) computed with the concatenation spelled out."""
    torch.manual_seed(0)
    enc = ENCODERS["pointnet_resnet"](c_dim=6, hidden_dim=8).double()
    with torch.no_grad():
        for block in enc.blocks:
            block.fc_1.weight.normal_()
    p = torch.randn(2, 30, 3, dtype=torch.float64)
    net = enc.blocks[0](enc.fc_pos(p))
    for block in enc.blocks[1:]:
        net = block(maxpool_concat(net))
    ref = enc.fc_c(F.relu(net.max(dim=1).values))
    torch.testing.assert_close(enc(p), ref, atol=1e-12, rtol=1e-12)
