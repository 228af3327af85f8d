"""PointNet encoders: point-cloud encoders and the VAE latent encoder.

Global features are computed by max-pooling over points and expanding the
pooled vector back to every point, concatenated to the per-point features
("max-pool/expand/concat" between blocks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from onet.models.layers import ResnetBlockFC, maxpool_concat, maxpool_concat_block


def _check_points(p: torch.Tensor, dim: int, name: str = "points") -> None:
    if p.dim() != 3 or p.shape[2] != dim:
        raise ValueError(f"{name} must be (B, T, {dim}), got {tuple(p.shape)}")


class ResnetPointnet(nn.Module):
    """PointNet with five ResNet blocks and max-pool/expand between blocks (DESIGN §5).

    fc_pos dim -> 2h; block_0 2h -> h; then 4 times [maxpool_concat -> 2h, block -> h];
    max-pool over points; c = fc_c(relu(.)).

    Args:
        c_dim: output code size (512 in the paper); dim: point dimension; hidden_dim: h (512).
    Input: points (B, T, dim). Output: c (B, c_dim).
    """

    def __init__(self, c_dim: int = 512, dim: int = 3, hidden_dim: int = 512, n_blocks: int = 5):
        super().__init__()
        if n_blocks < 1:
            raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
        self.c_dim = c_dim
        self.dim = dim
        self.fc_pos = nn.Linear(dim, 2 * hidden_dim)
        self.blocks = nn.ModuleList(ResnetBlockFC(2 * hidden_dim, hidden_dim) for _ in range(n_blocks))
        self.fc_c = nn.Linear(hidden_dim, c_dim)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        """p: (B, T, dim). Returns c (B, c_dim)."""
        _check_points(p, self.dim)
        net = self.blocks[0](self.fc_pos(p))  # (B, T, h)
        for block in self.blocks[1:]:
            net = maxpool_concat_block(block, net)  # = block(maxpool_concat(net)): (B, T, h) -> (B, T, h)
        net = net.max(dim=1).values  # (B, h)
        return self.fc_c(F.relu(net))


class SimplePointnet(nn.Module):
    """Plain PointNet: linear layers with max-pool/expand/concat in between.

    fc_pos dim -> 2h; fc_0 2h -> h; then 3 times [maxpool_concat -> 2h, fc -> h];
    max-pool over points; c = fc_c(relu(.)).

    Args:
        c_dim: output code size; dim: point dimension; hidden_dim: h.
    Input: points (B, T, dim). Output: c (B, c_dim).
    """

    def __init__(self, c_dim: int = 128, dim: int = 3, hidden_dim: int = 128, n_layers: int = 4):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.c_dim = c_dim
        self.dim = dim
        self.fc_pos = nn.Linear(dim, 2 * hidden_dim)
        self.fcs = nn.ModuleList(nn.Linear(2 * hidden_dim, hidden_dim) for _ in range(n_layers))
        self.fc_c = nn.Linear(hidden_dim, c_dim)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        """p: (B, T, dim). Returns c (B, c_dim)."""
        _check_points(p, self.dim)
        net = self.fcs[0](F.relu(self.fc_pos(p)))  # (B, T, h)
        for fc in self.fcs[1:]:
            net = fc(F.relu(maxpool_concat(net)))
        net = net.max(dim=1).values  # (B, h)
        return self.fc_c(F.relu(net))


class LatentPointnet(nn.Module):
    """VAE latent encoder q(z | p, occ, c): a PointNet over (points, occupancies).

    Per point: fc_pos(p) + fc_occ(occ) (+ fc_c(c) when c_dim > 0), then
    fc_1, [maxpool_concat, fc_2], [maxpool_concat, fc_3] with ReLUs, max-pool
    over points, and two linear heads for the mean and the log-std of z.

    Args:
        z_dim: latent size (128 in the thesis); c_dim: observation code size (0: none);
        dim: point dimension; hidden_size: feature size.
    Returns from forward: mean (B, z_dim), logstd (B, z_dim).
    """

    def __init__(self, z_dim: int = 128, c_dim: int = 0, dim: int = 3, hidden_size: int = 128):
        super().__init__()
        if z_dim <= 0:
            raise ValueError(f"a latent encoder needs z_dim > 0, got {z_dim}")
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.dim = dim
        self.fc_pos = nn.Linear(dim, hidden_size)
        self.fc_occ = nn.Linear(1, hidden_size)
        self.fc_c = nn.Linear(c_dim, hidden_size) if c_dim > 0 else None
        self.fc_1 = nn.Linear(hidden_size, hidden_size)
        self.fc_2 = nn.Linear(2 * hidden_size, hidden_size)
        self.fc_3 = nn.Linear(2 * hidden_size, hidden_size)
        self.fc_mean = nn.Linear(hidden_size, z_dim)
        self.fc_logstd = nn.Linear(hidden_size, z_dim)

    def forward(
        self, p: torch.Tensor, occ: torch.Tensor, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """p: (B, T, dim); occ: (B, T) in {0, 1}; c: (B, c_dim) or None.

        Returns mean (B, z_dim), logstd (B, z_dim).
        """
        _check_points(p, self.dim)
        if occ.shape != p.shape[:2]:
            raise ValueError(f"occ must be {tuple(p.shape[:2])}, got {tuple(occ.shape)}")
        net = self.fc_pos(p) + self.fc_occ(occ.to(p.dtype).unsqueeze(2))  # (B, T, h)
        if self.fc_c is not None:
            net = net + self.fc_c(c).unsqueeze(1)
        net = self.fc_1(F.relu(net))
        net = self.fc_2(F.relu(maxpool_concat(net)))
        net = self.fc_3(F.relu(maxpool_concat(net)))
        net = net.max(dim=1).values  # (B, h)
        return self.fc_mean(net), self.fc_logstd(net)
