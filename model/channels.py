"""The input channel vocabulary of the contract (visible:, hidden:, cov:, valid:) and species co-occurrence."""

from __future__ import annotations

import numpy as np

from backend.cube.contract import channel_names

__all__ = ["channel_names", "cooccurrence_matrix"]


def cooccurrence_matrix(labels: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """P(species s present | species j present) over the given cells, zero on the diagonal, (S, S) float32."""
    sel = labels[:, cells].astype(np.float64)  # (S, n)
    joint = sel @ sel.T
    counts = np.diag(joint).copy()
    prob = joint / np.maximum(counts[None, :], 1.0)
    np.fill_diagonal(prob, 0.0)
    return prob.astype(np.float32)
