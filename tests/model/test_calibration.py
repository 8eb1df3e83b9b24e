"""Calibration fitted on cross-validated held-out predictions: the form chosen by cross-fitting."""

from __future__ import annotations

import numpy as np

from model import calibration
from model.calibration import choose_and_fit, cross_fitted, fit_species, reliability


def _folds(seed: int = 0, n: int = 20_000, k: int = 4) -> list[dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Over-confident predictions: the truth is sigmoid(0.5 logit(p) - 1.5).

    A model trained with a positive weight and a high base rate gives such predictions.
    """
    rng = np.random.default_rng(seed)
    folds = []
    for _ in range(k):
        fold = {}
        for s in range(2):
            p = rng.beta(0.6, 3.0 + s, n).astype(np.float32)
            logit = np.log(p) - np.log1p(-p)
            truth = 1 / (1 + np.exp(-(0.5 * logit - 1.5)))
            fold[s] = (p, (rng.random(n) < truth).astype(np.uint8))
        folds.append(fold)
    return folds


def test_cross_fitted_calibration_lowers_the_error() -> None:
    folds = _folds()
    fit = choose_and_fit(folds, ["gold", "zinc"])
    raw, chosen = fit["reliability"]["raw"], fit["reliability"][fit["method"]]
    assert fit["method"] in calibration.METHODS and fit["folds"] == 4
    assert chosen["ece"] < 0.25 * raw["ece"] and chosen["log_loss"] < raw["log_loss"]
    for m in fit["species"].values():  # the true map is Platt with a = 0.5, c = -1.5
        assert abs(m["a"] - 0.5) < 0.1 and abs(m["c"] + 1.5) < 0.3
    calibration.check_roundtrip(fit, ["gold", "zinc"])


def test_cross_fitting_never_fits_a_fold_on_itself() -> None:
    folds = _folds(n=3000)
    poisoned = [dict(f) for f in folds]
    p, y = poisoned[0][0]
    poisoned[0][0] = (p, np.ones_like(y))  # fold 0's labels changed: its own calibrated values must not move
    a, b = cross_fitted(folds, "platt"), cross_fitted(poisoned, "platt")
    np.testing.assert_array_equal(a[0][0][0], b[0][0][0])
    assert not np.allclose(a[1][0][0], b[1][0][0])


def test_negative_subsampling_keeps_the_intercept(monkeypatch) -> None:
    rng = np.random.default_rng(3)
    p = rng.beta(0.5, 8.0, 60_000).astype(np.float32)
    y = (rng.random(p.size) < p * 0.5).astype(np.uint8)
    full = fit_species(p, y, "platt")
    monkeypatch.setattr(calibration, "MAX_FIT_CELLS", 15_000)
    sub = fit_species(p, y, "platt")
    grid = np.linspace(0.01, 0.9, 50, dtype=np.float32)
    np.testing.assert_allclose(sub.apply(grid), full.apply(grid), atol=0.02)


def test_a_species_without_positives_keeps_its_probabilities() -> None:
    p = np.linspace(0.01, 0.5, 100, dtype=np.float32)
    m = fit_species(p, np.zeros(100, dtype=np.uint8), "beta")
    np.testing.assert_allclose(m.apply(p), p, atol=1e-5)
    assert reliability([{0: (p, np.zeros(100, dtype=np.uint8))}])["ece"] > 0


def test_the_regime_is_recorded_and_the_service_reads_an_unsurveyed_part() -> None:
    inside = choose_and_fit(_folds(n=4000), ["gold", "zinc"])
    states = choose_and_fit(_folds(seed=1, n=4000, k=3), ["gold", "zinc"], regime="held_out")
    assert inside["regime"] == "region" and states["regime"] == "held_out" and states["folds"] == 3
    cal = calibration.check_roundtrip(dict(inside, unsurveyed=states), ["gold", "zinc"])
    assert cal.unsurveyed is not None and cal.unsurveyed.info["regime"] == "held_out"
