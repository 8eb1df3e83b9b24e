"""The baselines, scored on the same evaluation cases: neighbourhood / co-occurrence and kriging."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from model.patches import EvalCase

log = logging.getLogger(__name__)


def neighbourhood_density(values: np.ndarray, known: np.ndarray, radius: int) -> np.ndarray:
    """Share of known cells within a (2r+1)^2 square where ``values`` is set (0 where none is known)."""
    size = (1, 2 * radius + 1, 2 * radius + 1) if values.ndim == 3 else 2 * radius + 1
    num = ndimage.uniform_filter(values * known, size=size, mode="constant")
    den = ndimage.uniform_filter(known, size=size, mode="constant")
    return np.where(den > 1e-6, num / np.maximum(den, 1e-6), 0.0)


@dataclass(frozen=True)
class NeighbourhoodBaseline:
    """Blurred visible same-species density plus weighted co-occurrence with the visible species.

    score_s = w * density_r(visible_s) + (1 - w) * (prior_s + density_r(prior_s)) / 2 where
    prior_s = sum_j P(s | j) visible_j; radius r and weight w are tuned on validation blocks.
    """

    cooccurrence: np.ndarray  # (S, S) P(s | j), zero diagonal
    radius: int = 2
    weight: float = 0.5

    def components(self, case: EvalCase, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """The same-species density and the co-occurrence term of one case, each (S, H, W)."""
        known = (~case.hidden).astype(np.float64)
        visible = np.where(case.hidden, 0, case.labels).astype(np.float64)
        same = neighbourhood_density(visible, known, radius)
        prior = np.einsum("sj,jhw->shw", self.cooccurrence, visible)
        any_known = known.max(axis=0)
        co = 0.5 * (prior + neighbourhood_density(prior, any_known[None].repeat(len(prior), 0), radius))
        return same, co

    def predict(self, case: EvalCase) -> np.ndarray:
        """Scores (S, H, W) for one case."""
        same, co = self.components(case, self.radius)
        return self.weight * same + (1 - self.weight) * co


@dataclass(frozen=True)
class KrigingBaseline:
    """Ordinary kriging (PyKrige) of each hidden species' presence from visible covered cells in the window.

    Points are all visible positives (up to half the budget) plus random visible covered negatives;
    cells outside coverage are never used as negatives. Without any visible positive of the species in
    the window the prediction is 0 everywhere (kriging has nothing to interpolate).
    """

    variogram: str = "spherical"
    points: int = 150
    seed: int = 0

    def predict(self, case: EvalCase) -> np.ndarray:
        """Scores (S, H, W) for one case, computed only on its scored cells."""
        from pykrige.ok import OrdinaryKriging

        rng = np.random.default_rng(self.seed)
        out = np.zeros(case.hidden.shape, dtype=np.float64)
        for s in np.flatnonzero(case.scored.any(axis=(1, 2))):
            known = ~case.hidden[s] & case.covered
            pos = np.argwhere(known & (case.labels[s] > 0))
            if len(pos) == 0:
                continue
            neg = np.argwhere(known & (case.labels[s] == 0))
            pos = pos[rng.permutation(len(pos))[: self.points // 2]]
            neg = neg[rng.permutation(len(neg))[: self.points - len(pos)]]
            pts = np.concatenate([pos, neg]).astype(float)
            z = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
            target = np.argwhere(case.scored[s]).astype(float)
            if len(neg) == 0:
                out[s][case.scored[s]] = 1.0
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ok = OrdinaryKriging(pts[:, 1], pts[:, 0], z, variogram_model=self.variogram,
                                         enable_plotting=False, verbose=False)
                    pred, _ = ok.execute("points", target[:, 1], target[:, 0], backend="vectorized")
            except (np.linalg.LinAlgError, ValueError) as exc:
                log.debug("kriging failed for species %d: %s; using the visible mean", s, exc)
                pred = np.full(len(target), z.mean())
            out[s][case.scored[s]] = np.asarray(pred, dtype=np.float64)
        return out
