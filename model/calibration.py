"""Calibrating the exported model on a protocol run's cross-validated held-out predictions.

For each species a strictly increasing map of the predicted probability (backend/inference/calibration.py
applies it) is fitted by logistic regression on the ResNet-UNet's held-out predictions of every
cross-validation fold, in the regime the served map uses (regions hidden). Two forms compete:

- ``platt``: q = sigmoid(a logit(p) + c);
- ``beta``: q = sigmoid(a ln p - b ln(1 - p) + c), a, b >= 0 (a species whose fit breaks monotonicity falls
  back to Platt).

Unsurveyed cells are predicted from a context unlike any training patch's (every empty cell around them is
hidden), so their probabilities get a map of their own, fitted the same way on the leave-one-state-out
predictions (each state held out in turn, hidden as an unsurveyed state is, scored against its survey
records), each state a fold.

The form is chosen by cross-fitting: each fold's predictions are calibrated by a map fitted on the other
folds, and the form with the lower pooled log-loss wins. Nothing is chosen on the cells it is scored on,
and the sealed test is never read (the protocol's folds exclude it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from backend.inference.calibration import EPS, Calibration, SpeciesMap

log = logging.getLogger(__name__)

#: The calibration forms, in the order they are tried.
METHODS = ("platt", "beta")
#: The cross-validation regime whose predictions are calibrated: the served map hides whole regions.
CALIBRATION_REGIME = "region"
#: At most this many cells per species and fit (a seeded subsample; every positive is kept).
MAX_FIT_CELLS = 400_000

# one species' predictions and labels
Pairs = tuple[np.ndarray, np.ndarray]


def _features(p: np.ndarray, method: str) -> np.ndarray:
    """The logistic-regression inputs of probabilities ``p`` for a form."""
    q = np.clip(p.astype(np.float64), EPS, 1.0 - EPS)
    if method == "platt":
        return (np.log(q) - np.log1p(-q))[:, None]
    return np.stack([np.log(q), -np.log1p(-q)], axis=1)


def _subsample(p: np.ndarray, y: np.ndarray, seed: int = 0) -> Pairs:
    """At most MAX_FIT_CELLS cells: every positive and a seeded sample of the negatives.

    The fit restores the negatives' share through its intercept (:func:`fit_species`).
    """
    if p.size <= MAX_FIT_CELLS:
        return p, y
    rng = np.random.default_rng(seed)
    keep = (y > 0) | (rng.random(p.size) < (MAX_FIT_CELLS - int((y > 0).sum())) / max(int((y == 0).sum()), 1))
    return p[keep], y[keep]


def fit_species(p: np.ndarray, y: np.ndarray, method: str) -> SpeciesMap:
    """The map of one species fitted on its predictions ``p`` and labels ``y``."""
    from sklearn.linear_model import LogisticRegression

    if method not in METHODS:
        raise ValueError(f"calibration method {method!r} unknown; known: {', '.join(METHODS)}")
    n_pos, n = int((y > 0).sum()), int(y.size)
    if n_pos == 0 or n_pos == n:  # nothing to fit: keep the raw probabilities
        return SpeciesMap(1.0, 1.0, 0.0)
    ps, ys = _subsample(p, y)
    model = LogisticRegression(C=1e6, max_iter=500)
    model.fit(_features(ps, method), ys)
    # undo the negative subsampling: the odds of the subsample are the full odds times the sampling ratio
    neg_full, neg_kept = n - n_pos, int((ys == 0).sum())
    c = float(model.intercept_[0]) + float(np.log(neg_kept / neg_full)) if neg_full else float(model.intercept_[0])
    coef = model.coef_[0]
    if method == "platt":
        a = max(float(coef[0]), 1e-3)
        return SpeciesMap(a, a, c)
    if coef[0] < 0 or coef[1] < 0:  # not increasing: fall back to Platt for this species
        return fit_species(p, y, "platt")
    return SpeciesMap(float(coef[0]), float(coef[1]), c)


def _pooled(folds: list[dict[int, Pairs]], skip: int | None, s: int) -> Pairs:
    """Species ``s``'s predictions and labels pooled over every fold but ``skip``."""
    parts = [f[s] for k, f in enumerate(folds) if k != skip]
    return np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])


def cross_fitted(folds: list[dict[int, Pairs]], method: str) -> list[dict[int, Pairs]]:
    """Each fold's predictions calibrated by maps fitted on the other folds (labels unchanged)."""
    out = []
    for k, fold in enumerate(folds):
        done = {}
        for s, (p, y) in fold.items():
            m = fit_species(*_pooled(folds, k, s), method)
            done[s] = (m.apply(p.astype(np.float32)), y)
        out.append(done)
    return out


def log_loss(folds: list[dict[int, Pairs]]) -> float:
    """Mean negative log-likelihood over every cell-species of the folds."""
    total, n = 0.0, 0
    for fold in folds:
        for p, y in fold.values():
            q = np.clip(p.astype(np.float64), EPS, 1.0 - EPS)
            total += float(-(y * np.log(q) + (1 - y) * np.log1p(-q)).sum())
            n += int(y.size)
    return total / max(n, 1)


def reliability(folds: list[dict[int, Pairs]], bins: int = 10) -> dict[str, Any]:
    """Ten bins of predicted probability over every cell-species: mean predicted, observed rate, ECE."""
    p = np.concatenate([a for f in folds for a, _ in f.values()]).astype(np.float64)
    y = np.concatenate([b for f in folds for _, b in f.values()]).astype(np.float64)
    which = np.clip((p * bins).astype(int), 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(float)
    pred, obs = np.bincount(which, weights=p, minlength=bins), np.bincount(which, weights=y, minlength=bins)
    full = count > 0
    gap = np.abs(pred[full] / count[full] - obs[full] / count[full])
    return {"ece": float(np.sum(count[full] / max(count.sum(), 1.0) * gap)),
            "bin_predicted": (pred[full] / count[full]).tolist(), "bin_observed": (obs[full] / count[full]).tolist(),
            "bin_count": count[full].astype(int).tolist(), "log_loss": log_loss(folds)}


def choose_and_fit(folds: list[dict[int, Pairs]], species: list[str], regime: str = CALIBRATION_REGIME
                   ) -> dict[str, Any]:
    """Cross-fit every form, keep the one with the lower log-loss, fit it on every fold: calibration.json.

    ``regime`` names the predictions: a CV regime, or ``held_out`` for the leave-one-state-out predictions
    (each state a fold), which calibrate the unsurveyed cells.
    """
    scored = {m: cross_fitted(folds, m) for m in METHODS}
    losses = {m: log_loss(f) for m, f in scored.items()}
    chosen = min(METHODS, key=lambda m: losses[m])
    maps = {name: fit_species(*_pooled(folds, None, s), chosen) for s, name in enumerate(species)}
    log.info("calibration: %s (cross-fitted log-loss %s)", chosen,
             ", ".join(f"{m} {v:.5f}" for m, v in losses.items()))
    return {
        "method": chosen, "regime": regime, "folds": len(folds),
        "species": {n: {"a": m.a, "b": m.b, "c": m.c} for n, m in maps.items()},
        "cross_fitted_log_loss": {"raw": log_loss(folds), **losses},
        "reliability": {"raw": reliability(folds), **{m: reliability(f) for m, f in scored.items()}},
    }


def check_roundtrip(fit: dict[str, Any], species: list[str]) -> Calibration:
    """The service's reading of a fitted calibration (an error here would reach model.json otherwise)."""
    cal = Calibration.parse(fit, tuple(species))
    assert cal is not None
    return cal


def fold_pairs(cv_dirs: list[Path], load: Any) -> list[dict[int, Pairs]]:
    """Each CV fold's exported-model predictions and labels per species (``load(dir) -> Scores``)."""
    return [{s: (sc, lb) for s, (sc, lb, _) in load(d).items()} for d in cv_dirs]
