"""PSGN (Point Set Generation Network) as the thesis re-implemented it (App. E.2).

An observation encoder (ResNet-18 for images, PointNet for the point-cloud
variant) gives c; four fully connected layers (hidden size 512, ReLU) map c to
3 * 1024 numbers, reshaped into 1024 points. Trained with the Chamfer distance
to points sampled on the reference surface. The output is a point set, not a
mesh: it has no inside and no normals, so it is scored on the surface
metrics only (accuracy, completeness, Chamfer-L1, F-score).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from onet.models.direct import DirectPredictor
from onet.models.kinds import POINTS


class PSGNDecoder(nn.Module):
    """c (B, c_dim) -> points (B, n_points, 3).

    n_layers linear layers: c_dim -> H, (n_layers - 2) x H -> H, H -> 3 * n_points,
    ReLU between them (thesis: 4 layers, H = 512, 1024 points).
    """

    output_kind = POINTS

    def __init__(self, c_dim: int = 256, hidden_size: int = 512, n_layers: int = 4, n_points: int = 1024):
        super().__init__()
        if c_dim <= 0:
            raise ValueError(f"the psgn decoder needs c_dim > 0, got {c_dim}")
        if n_layers < 2:
            raise ValueError(f"n_layers must be >= 2 (one hidden layer and the output layer), got {n_layers}")
        if n_points < 1:
            raise ValueError(f"n_points must be >= 1, got {n_points}")
        self.c_dim = c_dim
        self.n_points = n_points
        sizes = [c_dim] + [hidden_size] * (n_layers - 1)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.fc_out = nn.Linear(hidden_size, 3 * n_points)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        """c: (B, c_dim). Returns points (B, n_points, 3)."""
        net = c
        for layer in self.hidden:
            net = F.relu(layer(net))
        return self.fc_out(net).view(c.shape[0], self.n_points, 3)


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise squared distances (B, N, M) between a (B, N, 3) and b (B, M, 3).

    Written out (|a|^2 + |b|^2 - 2 a.b, clamped at 0) rather than torch.cdist,
    whose gradient is NaN where two points coincide.
    """
    d = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1).unsqueeze(1) - 2 * a @ b.transpose(1, 2)
    return d.clamp_min(0)


def chamfer_terms(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distance from each predicted point to the nearest target point (B, N), and the reverse (B, M)."""
    d = squared_distances(pred, target)  # (B, N, M)
    return d.min(dim=2).values, d.min(dim=1).values


class PSGN(DirectPredictor):
    """Encoder + point decoder: observation -> a fixed-size point set (output kind "points").

    Args:
        encoder: inputs -> c (B, c_dim) (any of onet.models.ENCODERS).
        decoder: a `PSGNDecoder`.
    """

    output_kind = POINTS
    val_metrics = ("loss", "chamfer")

    @staticmethod
    def _chamfer_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Chamfer distance of the PSGN paper: mean squared nearest-neighbour distance both ways, per object (B,)
        to_target, to_pred = chamfer_terms(pred, target)
        return to_target.mean(1) + to_pred.mean(1)

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """Chamfer distance to batch["pointcloud"] (B, M, 3) surface points, mean over the batch."""
        target = batch["pointcloud"]
        if target.dim() != 3 or target.shape[-1] != 3:
            raise ValueError(f"target points must be (B, M, 3), got {tuple(target.shape)}")
        loss = self._chamfer_loss(self(batch["inputs"]), target).mean()
        return loss, {"loss": loss.detach()}

    def validation_metrics(self, batch: dict, threshold: float, *, points_chunk: int | None = None,
                           encode_points: int | None = None) -> dict[str, torch.Tensor]:
        """Per object (B,): "loss" (the training loss) and "chamfer", the Chamfer-L1 of
        onet.evaluation (mean of the two mean Euclidean nearest-neighbour distances) to
        batch["pointcloud"]. `threshold`, `points_chunk` and `encode_points` are unused: a point
        set has no occupancy to cut and no latent code."""
        pred, target = self(batch["inputs"]), batch["pointcloud"]
        to_target, to_pred = chamfer_terms(pred, target)
        chamfer_l1 = 0.5 * (to_target.sqrt().mean(1) + to_pred.sqrt().mean(1))
        return {"loss": to_target.mean(1) + to_pred.mean(1), "chamfer": chamfer_l1}
