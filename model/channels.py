"""The input channel vocabulary of the contract (visible:, hidden:, cov:, valid:) and its assembly."""

from __future__ import annotations

import numpy as np


def channel_names(species: list[str], covariates: list[str]) -> list[str]:
    """The channel order fed to the network (and written to model.json)."""
    return ([f"visible:{s}" for s in species] + [f"hidden:{s}" for s in species]
            + [f"cov:{c}" for c in covariates] + [f"valid:{c}" for c in covariates])


def assemble_inputs(labels: np.ndarray, hidden: np.ndarray, cov: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Stack one window's raw inputs (C, H, W) float32 in the contract's order.

    ``labels`` (S, H, W) presence, ``hidden`` (S, H, W) bool, ``cov`` (K, H, W) as stored with NaN where
    invalid, ``valid`` (K, H, W). Visible presence is 0 where hidden; covariates stay raw (NaN kept):
    the network maps NaN to 0 itself, as the exported graph does.
    """
    visible = np.where(hidden, 0, labels).astype(np.float32)
    return np.concatenate([visible, hidden.astype(np.float32), cov.astype(np.float32),
                           valid.astype(np.float32)], axis=0)


def cooccurrence_matrix(labels: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """P(species s present | species j present) over the given cells, zero on the diagonal, (S, S) float32."""
    sel = labels[:, cells].astype(np.float64)  # (S, n)
    joint = sel @ sel.T
    counts = np.diag(joint).copy()
    prob = joint / np.maximum(counts[None, :], 1.0)
    np.fill_diagonal(prob, 0.0)
    return prob.astype(np.float32)
