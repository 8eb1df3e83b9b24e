"""Two reference methods on per-cell features: a gradient-boosted model and terrain-roughness ranking.

The boosted model is what a prospectivity practitioner would build: one HistGradientBoostingClassifier
per species on the covariates at the cell plus neighbourhood statistics of the visible site layers
(never the hidden ones), trained on the scored cells of cases drawn on train blocks. Roughness ranking
needs no learning: every species is scored by the cell's terrain roughness.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.baselines import neighbourhood_density
from model.cube_data import CubeArrays
from model.patches import EvalCase, case_inputs

log = logging.getLogger(__name__)

#: Radii (cells) of the same-species visible density features.
SAME_RADII = (2, 8, 32)
#: Radius of the co-occurrence prior's density and radii of the any-species visible density.
PRIOR_RADIUS = 8
ANY_RADII = (8, 32)
#: The hyperparameter settings the caller tunes on validation cases (mean AUPRC).
HGB_GRID: tuple[dict[str, int | float], ...] = (
    {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 15},
    {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 31},
    {"max_iter": 200, "learning_rate": 0.1, "max_leaf_nodes": 63},
)


def feature_names(covariates: Sequence[str]) -> list[str]:
    """The names of the per-cell features, in the column order of :func:`case_features`."""
    return ([f"cov:{c}" for c in covariates] + [f"same_density_r{r}" for r in SAME_RADII]
            + ["cooccurrence_prior", f"cooccurrence_density_r{PRIOR_RADIUS}"]
            + [f"any_density_r{r}" for r in ANY_RADII])


def case_features(cube: CubeArrays, case: EvalCase, cooccurrence: np.ndarray,
                  species: Sequence[int] | None = None) -> dict[int, np.ndarray]:
    """Features (n_scored, F) float32 of the scored cells of each species that has some.

    Built from the case's raw inputs (:func:`model.patches.case_inputs`): covariates as stored (NaN
    where invalid) and the visible layers only; hidden labels are never read. ``species`` limits the
    species computed (default: every species with scored cells).
    """
    n_s, n_k = len(cube.species), len(cube.covariates)
    wanted = [s for s in (range(n_s) if species is None else species) if case.scored[s].any()]
    if not wanted:
        return {}
    x = case_inputs(cube, case).astype(np.float64)
    visible, known = x[:n_s], 1.0 - x[n_s:2 * n_s]
    cov = x[2 * n_s:2 * n_s + n_k]
    any_visible, any_known = visible.max(axis=0), known.max(axis=0)
    shared = [neighbourhood_density(any_visible, any_known, r) for r in ANY_RADII]
    out = {}
    for s in wanted:
        m = case.scored[s]
        prior = np.tensordot(cooccurrence[s].astype(np.float64), visible, axes=1)
        layers = [*(neighbourhood_density(visible[s], known[s], r) for r in SAME_RADII),
                  prior, neighbourhood_density(prior, any_known, PRIOR_RADIUS), *shared]
        out[s] = np.concatenate([cov[:, m].T, np.stack([a[m] for a in layers], axis=1)], axis=1).astype(np.float32)
    return out


@dataclass
class TrainingTable:
    """Per species: features X (n, F), labels y (n,) and the share of negatives kept.

    Positives are all kept; negatives beyond the cell budget are drawn at random, and the model's
    probabilities are corrected for the share kept (the case-control prior correction) rather than
    fitted with sample weights, which make the fit's binning several times slower.
    """

    x: dict[int, np.ndarray]
    y: dict[int, np.ndarray]
    negatives_kept: dict[int, float]


def training_table(cube: CubeArrays, cases: Sequence[EvalCase], cooccurrence: np.ndarray,
                   max_cells_per_species: int = 100_000, seed: int = 0) -> TrainingTable:
    """The scored cells of training cases as a table per species (seeded subsample of negatives)."""
    feats: dict[int, list[np.ndarray]] = {}
    labels: dict[int, list[np.ndarray]] = {}
    for case in cases:
        for s, f in case_features(cube, case, cooccurrence).items():
            feats.setdefault(s, []).append(f)
            labels.setdefault(s, []).append(case.labels[s][case.scored[s]].astype(np.uint8))
    rng = np.random.default_rng(seed)
    table = TrainingTable({}, {}, {})
    for s in sorted(feats):
        x, y = np.concatenate(feats[s]), np.concatenate(labels[s])
        pos, neg = np.flatnonzero(y > 0), np.flatnonzero(y == 0)
        n_neg = min(neg.size, max(max_cells_per_species - pos.size, 1))
        keep = np.sort(np.r_[pos, rng.choice(neg, size=n_neg, replace=False)])
        table.x[s], table.y[s] = x[keep], y[keep]
        table.negatives_kept[s] = n_neg / neg.size if neg.size else 1.0
    return table


@functools.cache
def _thread_controller() -> Any:
    """The process's threadpoolctl controller (finding the loaded thread pools once is slow)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _thread_limit(threads: int | None) -> Any:
    """A context that caps OpenMP threads (sklearn's) at ``threads``; no cap for None."""
    return _thread_controller().limit(limits=threads, user_api="openmp")


class GradientBoostedBaseline:
    """One HistGradientBoostingClassifier per species on per-cell covariates and visible-layer neighbourhoods.

    Fit on training cases (drawn on train blocks), then ``predict(case)`` like the other baselines.
    A species without positives (or without cells) in training is scored 0; one without negatives 1.
    ``threads`` caps the OpenMP threads of fitting and prediction (None: every core); one thread is
    the default because small per-case predictions gain nothing from more, and a busy machine's
    waiting threads can slow a fit tenfold.
    """

    def __init__(self, max_iter: int = 200, learning_rate: float = 0.05, max_leaf_nodes: int = 31,
                 threads: int | None = 1) -> None:
        self.max_iter, self.learning_rate = int(max_iter), float(learning_rate)
        self.max_leaf_nodes, self.threads = int(max_leaf_nodes), threads
        self.models: dict[int, Any] = {}
        self.constant: dict[int, float] = {}
        self.negatives_kept: dict[int, float] = {}
        self.cube: CubeArrays | None = None
        self.cooccurrence: np.ndarray | None = None

    @property
    def params(self) -> dict[str, int | float]:
        """The hyperparameters (as in :data:`HGB_GRID`)."""
        return {"max_iter": self.max_iter, "learning_rate": self.learning_rate, "max_leaf_nodes": self.max_leaf_nodes}

    def fit(self, cube: CubeArrays, cases: Sequence[EvalCase], cooccurrence: np.ndarray,
            max_cells_per_species: int = 100_000, seed: int = 0) -> GradientBoostedBaseline:
        """Train on the scored cells of ``cases`` (at most ``max_cells_per_species`` rows per species)."""
        return self.fit_table(cube, training_table(cube, cases, cooccurrence, max_cells_per_species, seed),
                              cooccurrence, seed)

    def fit_table(self, cube: CubeArrays, table: TrainingTable, cooccurrence: np.ndarray,
                  seed: int = 0) -> GradientBoostedBaseline:
        """Train on a prepared :class:`TrainingTable` (reused across the settings of a grid)."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.cube, self.cooccurrence = cube, np.asarray(cooccurrence)
        self.models, self.constant, self.negatives_kept = {}, {}, dict(table.negatives_kept)
        for s in range(len(cube.species)):
            y = table.y.get(s)
            if y is None or not y.any():
                self.constant[s] = 0.0
                continue
            if y.all():
                self.constant[s] = 1.0
                continue
            model = HistGradientBoostingClassifier(
                max_iter=self.max_iter, learning_rate=self.learning_rate, max_leaf_nodes=self.max_leaf_nodes,
                early_stopping=False, random_state=seed)
            with _thread_limit(self.threads):
                model.fit(table.x[s], y)
            self.models[s] = model
        log.info("boosted %s: %d species fitted, %d constant", self.params, len(self.models), len(self.constant))
        return self

    def predict_features(self, case: EvalCase, features: dict[int, np.ndarray]) -> np.ndarray:
        """Scores (S, H, W) from precomputed :func:`case_features` of the case; 0 off the scored cells."""
        out = np.zeros(case.scored.shape, dtype=np.float64)
        for s, x in features.items():
            if s in self.models:
                with _thread_limit(self.threads):
                    p = self.models[s].predict_proba(x)[:, 1]
                q = self.negatives_kept.get(s, 1.0)  # odds were inflated by 1/q where negatives were drawn
                out[s][case.scored[s]] = p * q / (p * q + (1.0 - p))
            else:
                out[s][case.scored[s]] = self.constant.get(s, 0.0)
        return out

    def predict(self, case: EvalCase) -> np.ndarray:
        """Scores (S, H, W) for one case, on its scored cells (0 elsewhere)."""
        if self.cube is None or self.cooccurrence is None:
            raise RuntimeError("GradientBoostedBaseline.predict before fit")
        return self.predict_features(case, case_features(self.cube, case, self.cooccurrence))


def tune_boosted(cube: CubeArrays, train_cases: Sequence[EvalCase], val_cases: Sequence[EvalCase],
                 cooccurrence: np.ndarray, grid: Sequence[dict[str, int | float]] = HGB_GRID,
                 max_cells_per_species: int = 100_000, seed: int = 0,
                 threads: int | None = 1) -> tuple[GradientBoostedBaseline, list[float]]:
    """Fit every setting of ``grid`` on the training cases; the best by validation mean AUPRC, and each one's score.

    The training table and the validation features are computed once and shared by every setting.
    """
    from model.stats import mean_auprc_point, unit_scores

    table = training_table(cube, train_cases, cooccurrence, max_cells_per_species, seed)
    val_features = [case_features(cube, c, cooccurrence) for c in val_cases]
    best, best_score = None, -np.inf
    scores: list[float] = []
    for params in grid:
        model = GradientBoostedBaseline(int(params["max_iter"]), float(params["learning_rate"]),
                                        int(params["max_leaf_nodes"]), threads)
        model.fit_table(cube, table, cooccurrence, seed)
        preds = [model.predict_features(c, f) for c, f in zip(val_cases, val_features, strict=True)]
        score = mean_auprc_point(unit_scores(val_cases, preds, [0] * len(val_cases), len(cube.species)))
        scores.append(score)
        log.info("boosted %s: val mean AUPRC %.4f", params, score)
        if best is None or score > best_score:  # the first setting stands while every score is NaN
            best, best_score = model, score
    if best is None:
        raise ValueError("tune_boosted needs a non-empty grid")
    return best, scores


class RoughnessBaseline:
    """Every species scored by the cell's terrain roughness (no learning); no-data cells rank lowest."""

    def __init__(self, cube: CubeArrays, covariate: str = "roughness") -> None:
        if covariate not in cube.covariates:
            raise ValueError(f"the cube has no {covariate!r} covariate (load it with the covariates); "
                             f"its covariates: {', '.join(cube.covariates) or 'none'}")
        self.cube, self.index = cube, cube.covariates.index(covariate)
        values = cube.cov[self.index]
        finite = np.isfinite(values)
        self.floor = float(values[finite].min()) - 1.0 if finite.any() else 0.0  # below every real value

    def predict(self, case: EvalCase) -> np.ndarray:
        """Scores (S, H, W) for one case: the roughness of each cell, the same for every species."""
        (r0, c0), (n_s, h, w) = case.origin, case.labels.shape
        rough = self.cube.cov[self.index, r0:r0 + h, c0:c0 + w].astype(np.float64)
        rough = np.where(np.isfinite(rough), rough, self.floor)
        return np.broadcast_to(rough, (n_s, h, w)).copy()
