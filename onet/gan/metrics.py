"""Exact Wasserstein-1 distance between two equal-size point samples (optimal assignment)."""

from __future__ import annotations

import numpy as np


def wasserstein1(a, b) -> float:
    """W1 between the empirical distributions of a (N, d) and b (N, d): the mean Euclidean cost of
    the optimal one-to-one assignment (scipy's linear_sum_assignment; exact, ~1 s at N = 2048)."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"wasserstein1 needs two (N, d) arrays of the same shape, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf")
    cost = cdist(a, b)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())
