"""The shared frame of the baselines that predict their output in one pass (3D-R2N2, PSGN).

Unlike an occupancy network, they take no query points: observation -> c ->
the whole output (a voxel grid or a point set). Subclasses set `output_kind`
and `val_metrics` and add their loss and validation metrics (onet.models.kinds).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class DirectPredictor(nn.Module):
    """Encoder + decoder: inputs -> c (B, c_dim) -> the decoder's output for the whole object.

    Args:
        encoder: inputs -> c (B, c_dim) (any of onet.models.ENCODERS).
        decoder: c (B, c_dim) -> output (a module with a `c_dim` attribute).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        if getattr(encoder, "c_dim", decoder.c_dim) != decoder.c_dim:
            raise ValueError(f"encoder c_dim {encoder.c_dim} != decoder c_dim {decoder.c_dim}")
        self.c_dim = decoder.c_dim
        self.encoder = encoder
        self.decoder = decoder

    def encode_inputs(self, inputs: Any) -> torch.Tensor:
        """The encoder's input (images (B, 3, H, W), points (B, N, 3), voxels (B, 32, 32, 32)) -> c (B, c_dim)."""
        return self.encoder(inputs)

    def decode(self, c: torch.Tensor) -> torch.Tensor:
        """c (B, c_dim) -> the decoder's output for each object."""
        return self.decoder(c)

    def forward(self, inputs: Any) -> torch.Tensor:
        """The decoder's output for a batch of observations."""
        return self.decode(self.encode_inputs(inputs))
