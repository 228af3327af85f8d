"""A learned code per training shape: the "encoder" of an auto-decoder.

The representation-power experiment of the thesis (Sec. 11.6.4) embeds every
training shape in a 512-d latent space and trains the occupancy decoder to
reconstruct each shape from its code, with the codes as free parameters.
Used as the encoder of an `OccupancyNetwork`, this module maps object indices
to their codes. It is not in `onet.models.ENCODERS`: its input is an object
index, which only an auto-decoder fit (scripts/representation_power.py)
provides, not an observation from the dataset.
"""

from __future__ import annotations

import torch
from torch import nn


class ShapeEmbedding(nn.Module):
    """Object indices (B,) int64 -> codes c (B, c_dim).

    Args:
        n_shapes: number of shapes (rows of the table).
        c_dim: code size (512 in the thesis).
        init_std: standard deviation of the initial codes (small, so all shapes
            start alike and the decoder learns to tell them apart).
    """

    def __init__(self, n_shapes: int, c_dim: int = 512, init_std: float = 0.1):
        super().__init__()
        if n_shapes < 1 or c_dim < 1:
            raise ValueError(f"n_shapes and c_dim must be >= 1, got {n_shapes} and {c_dim}")
        self.c_dim = c_dim
        self.codes = nn.Embedding(n_shapes, c_dim)
        nn.init.normal_(self.codes.weight, std=init_std)

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        """index: (B,) object indices. Returns c (B, c_dim)."""
        if index.dim() != 1:
            raise ValueError(f"index must be (B,) object indices, got {tuple(index.shape)}")
        return self.codes(index.long())
