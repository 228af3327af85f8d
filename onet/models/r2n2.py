"""3D-R2N2 as the thesis re-implemented it (App. E.2): single view, no 3D-LSTM.

An observation encoder (ResNet-18 for images; PointNet or the 3D CNN for the
point-cloud and voxel-input variants) gives c; one fully connected layer and
four transposed 3D convolutions with ReLUs turn c into 32^3 occupancy logits.
Trained with binary cross-entropy against the dataset's 32^3 voxels
(model.binvox); meshes come from marching cubes on the grid's probabilities
(`onet.geometry.voxelize.voxel_isosurface`), at threshold 0.4 in the thesis.

Voxel convention (onet.data.formats): the grid is indexed [x, y, z] and cell
i is centred at (i + 0.5) / 32 - 0.5, so the grid covers [-0.5, 0.5]^3.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from onet.geometry.iou import iou_per_threshold
from onet.models.direct import DirectPredictor
from onet.models.kinds import VOXELS

# the grid the decoder starts from; three 2x up-convolutions then reach 32
_BASE_RESOLUTION = 4
RESOLUTION = 32


class R2N2Decoder(nn.Module):
    """c (B, c_dim) -> occupancy logits (B, 32, 32, 32) indexed [x, y, z].

    fc: c_dim -> H * 4^3, reshaped to (B, H, 4, 4, 4); three transposed convs
    (kernel 3, stride 2) H -> H/2 -> H/4 -> H/8 grow the grid 4 -> 8 -> 16 -> 32;
    a last transposed conv (kernel 3, stride 1) H/8 -> 1 gives the logits. ReLU
    after every layer but the last.

    Args:
        c_dim: size of the code c.
        hidden_size: H, channels of the 4^3 grid (divisible by 8; 256 by default).
    """

    output_kind = VOXELS

    def __init__(self, c_dim: int = 256, hidden_size: int = 256):
        super().__init__()
        if c_dim <= 0:
            raise ValueError(f"the r2n2 decoder needs c_dim > 0, got {c_dim}")
        if hidden_size < 8 or hidden_size % 8:
            raise ValueError(f"hidden_size must be a positive multiple of 8, got {hidden_size}")
        self.c_dim = c_dim
        self.hidden_size = hidden_size
        h = hidden_size
        self.fc = nn.Linear(c_dim, h * _BASE_RESOLUTION**3)
        self.up = nn.ModuleList(
            nn.ConvTranspose3d(h // 2**i, h // 2 ** (i + 1), 3, stride=2, padding=1, output_padding=1)
            for i in range(3)
        )
        self.conv_out = nn.ConvTranspose3d(h // 8, 1, 3, stride=1, padding=1)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        """c: (B, c_dim). Returns logits (B, 32, 32, 32)."""
        b = _BASE_RESOLUTION
        net = F.relu(self.fc(c)).view(c.shape[0], self.hidden_size, b, b, b)  # (B, H, 4, 4, 4)
        for up in self.up:
            net = F.relu(up(net))  # doubles the grid: ... -> (B, H/8, 32, 32, 32)
        return self.conv_out(net).squeeze(1)  # (B, 32, 32, 32)


def probabilities_at_points(probabilities: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Trilinear interpolation of cell-centred grid probabilities at points.

    probabilities: (B, R, R, R) indexed [x, y, z] over [-0.5, 0.5]^3; p: (B, T, 3).
    Returns (B, T); outside the outermost cell centres the grid is continued
    with 0 (empty space), as marching cubes on the zero-padded grid does, so
    {value >= tau} is the inside of the extracted mesh up to the difference
    between trilinear and marching-cubes interpolation.
    """
    # grid_sample wants coordinates in [-1, 1] ordered (W, H, D) = (z, y, x); with
    # align_corners=False, -1 and 1 are the outer faces of the grid, i.e. -0.5 and 0.5
    grid = (2 * p).flip(-1)[:, :, None, None, :]  # (B, T, 1, 1, 3)
    values = F.grid_sample(probabilities.unsqueeze(1), grid.to(probabilities.dtype), mode="bilinear",
                           padding_mode="zeros", align_corners=False)  # (B, 1, T, 1, 1)
    return values.view(p.shape[0], p.shape[1])


class R2N2(DirectPredictor):
    """Encoder + voxel decoder: observation -> 32^3 occupancy logits (output kind "voxels").

    Args:
        encoder: inputs -> c (B, c_dim) (any of onet.models.ENCODERS).
        decoder: an `R2N2Decoder`.
    """

    output_kind = VOXELS
    val_metrics = ("loss", "iou")

    def _voxel_bce(self, logits: torch.Tensor, voxels: torch.Tensor) -> torch.Tensor:
        if voxels.shape != logits.shape:
            raise ValueError(f"target voxels must be (B, {RESOLUTION}, {RESOLUTION}, {RESOLUTION}), "
                             f"got {tuple(voxels.shape)}")
        # summed over voxels like the occupancy loss is summed over points; per object (B,)
        return F.binary_cross_entropy_with_logits(logits, voxels.to(logits.dtype), reduction="none").flatten(1).sum(1)

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """BCE with logits against batch["voxels"] (B, 32, 32, 32), summed over voxels, mean over the batch."""
        loss = self._voxel_bce(self(batch["inputs"]), batch["voxels"]).mean()
        return loss, {"loss": loss.detach()}

    def validation_metrics(self, batch: dict, threshold: float, *, points_chunk: int | None = None,
                           encode_points: int | None = None) -> dict[str, torch.Tensor]:
        """Per object (B,): "loss" (the training loss) and "iou" at batch["points"] against
        batch["points.occ"], the grid's probabilities interpolated at the points and cut at `threshold`
        (a lookup in one grid: `points_chunk` is unused; no latent code: `encode_points` is unused)."""
        logits = self(batch["inputs"])
        p, occ = batch["points"], batch["points.occ"]
        probs = probabilities_at_points(torch.sigmoid(logits), p)
        iou = iou_per_threshold(torch.logit(probs, eps=1e-6), occ, [threshold])[:, 0]  # it compares logits
        return {"loss": self._voxel_bce(logits, batch["voxels"]), "iou": iou.to(logits.device)}

