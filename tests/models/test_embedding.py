"""ShapeEmbedding: one learned code per shape, as the encoder of an auto-decoder."""

import pytest
import torch

from onet.models import DECODERS, OccupancyNetwork, ShapeEmbedding


def test_codes_are_rows_of_a_table_and_train():
    emb = ShapeEmbedding(5, c_dim=8)
    idx = torch.tensor([0, 3, 3])
    c = emb(idx)
    assert c.shape == (3, 8) and torch.equal(c[1], c[2]) and torch.equal(c[0], emb.codes.weight[0])
    model = OccupancyNetwork(DECODERS["cbn_resnet"](c_dim=8, hidden_size=16, n_blocks=1), encoder=emb)
    batch = {"points": torch.rand(3, 20, 3) - 0.5, "points.occ": torch.ones(3, 20), "inputs": idx}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    # CBN's gamma(c) / beta(c) start as constants (zero weights), so the codes get gradients from step 2 on
    for _ in range(2):
        opt.zero_grad()
        model.compute_loss(batch)[0].backward()
        opt.step()
    grad = emb.codes.weight.grad
    assert grad[[0, 3]].abs().sum() > 0 and grad[[1, 2, 4]].abs().sum() == 0  # only the used codes move
    with pytest.raises(ValueError, match="object indices"):
        emb(torch.zeros(2, 3, dtype=torch.long))
