"""Intersection over union of occupancy sets: numpy for one object, torch for batches at many thresholds."""

from __future__ import annotations

import math

import numpy as np
import torch


def iou(occ_a, occ_b) -> float:
    """Intersection over union of two boolean occupancy arrays of equal shape.

    Accepts bool or 0/1 integer arrays (threshold probabilities first). Two
    empty sets (union 0) have IoU 1 by definition: they are identical.
    """
    occ_a, occ_b = np.asarray(occ_a), np.asarray(occ_b)
    if occ_a.shape != occ_b.shape:
        raise ValueError(f"occupancy shapes differ: {occ_a.shape} vs {occ_b.shape}")
    for name, occ in (("occ_a", occ_a), ("occ_b", occ_b)):
        if occ.dtype != bool:
            if occ.dtype.kind not in "iu" or (occ.size and not np.isin(occ, (0, 1)).all()):
                raise ValueError(f"{name} must be bool or 0/1 integers (threshold probabilities first), got {occ.dtype}")
    occ_a, occ_b = occ_a.astype(bool), occ_b.astype(bool)
    union = np.count_nonzero(occ_a | occ_b)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(occ_a & occ_b) / union)


def iou_per_threshold(logits: torch.Tensor, occ: torch.Tensor, taus: list[float]) -> torch.Tensor:
    """IoU of each object at each tau.

    logits: (B, T) network outputs; occ: (B, T) reference occupancies (>= 0.5
    is inside); taus: K thresholds in probability. Returns (B, K) float64.
    An object with an empty union at some tau (nothing inside, nothing
    predicted) has IoU 1 there, as in training validation.
    """
    logit_taus = torch.tensor([math.log(t / (1 - t)) for t in taus], dtype=logits.dtype, device=logits.device)
    pred = logits.unsqueeze(-1) >= logit_taus  # (B, T, K)
    gt = (occ >= 0.5).unsqueeze(-1)  # (B, T, 1)
    inter = (pred & gt).sum(1).double()  # (B, K)
    union = (pred | gt).sum(1).double()  # (B, K)
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).cpu()
