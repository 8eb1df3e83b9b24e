import dataclasses

import numpy as np
import pytest

from model.channels import cooccurrence_matrix
from model.cube_data import CubeArrays
from model.metrics import average_precision
from model.patches import evaluation_cases
from model.splits import TRAIN, make_block_split
from model.stats import mean_auprc_point, unit_scores
from model.tabular import (
    HGB_GRID,
    GradientBoostedBaseline,
    RoughnessBaseline,
    case_features,
    feature_names,
    training_table,
    tune_boosted,
)


def signal_cube(seed: int = 0, size: int = 128) -> CubeArrays:
    """Presence of 'a' follows a white-noise covariate (no spatial pattern to copy), 'c' its negative; 'b' is noise."""
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal((size, size))
    rough = rng.random((size, size))
    a = (signal > 1.0) & (rng.random((size, size)) < 0.6)
    b = rng.random((size, size)) < 0.02
    c = (signal < -1.2) & (rng.random((size, size)) < 0.5)
    cov = np.stack([signal, rough]).astype(np.float32)
    cov[1, 20:30, 20:30] = np.nan
    cov[0, :4, :] = np.nan
    coverage = np.ones((size, size), dtype=bool)
    coverage[:, -8:] = False
    return CubeArrays(["a", "b", "c"], ["signal", "roughness"], np.stack([a, b, c]).astype(np.uint8), coverage, cov,
                      np.isfinite(cov).astype(np.uint8))


@pytest.fixture(scope="module")
def setting():
    cube = signal_cube()
    split = make_block_split(cube.coverage, 16, 1, (0.6, 0.2, 0.2), seed=0)
    co = cooccurrence_matrix(cube.labels, split.cell_split == TRAIN)

    def cases(name, regime, seed):
        return evaluation_cases(cube, split, name, regime, margin=8, seed=seed, max_windows=40, min_cells=20)

    train = cases("train", "region", 0) + cases("train", "species", 1)
    return cube, co, train, cases("val", "region", 2), cases("test", "region", 3) + cases("test", "mixed", 4)


@pytest.fixture(scope="module")
def fitted(setting):
    cube, co, train, _, _ = setting
    return GradientBoostedBaseline(max_iter=40, learning_rate=0.1, max_leaf_nodes=15).fit(cube, train, co, seed=0)


def test_features_never_read_hidden_labels(setting, fitted):
    cube, co, _, _, test = setting
    model = fitted
    case = test[-1]  # mixed: whole species layers hidden as well as the block
    assert case.hidden.any() and (~case.hidden).any()
    feats, pred = case_features(cube, case, co), model.predict(case)
    flipped = dataclasses.replace(case, labels=np.where(case.hidden, 1 - case.labels, case.labels).astype(np.uint8))
    again = case_features(cube, flipped, co)
    assert feats.keys() == again.keys() and all(np.array_equal(feats[s], again[s], equal_nan=True) for s in feats)
    assert np.array_equal(pred, model.predict(flipped))
    shown = dataclasses.replace(case, labels=np.where(case.hidden, case.labels, 1 - case.labels).astype(np.uint8))
    changed = case_features(cube, shown, co)
    assert any(not np.array_equal(feats[s], changed[s], equal_nan=True) for s in feats), "visible cells do count"
    s = next(iter(feats))
    assert feats[s].shape == (int(case.scored[s].sum()), len(feature_names(cube.covariates)))


def test_boosted_model_learns_a_covariate_that_sets_presence(setting, fitted):
    cube, co, train, _, test = setting
    preds = [fitted.predict(c) for c in test]
    us = unit_scores(test, preds, [0] * len(test), 3)
    for s in (0, 2):  # the species the covariate determines
        base = us.labels[s].mean()
        assert average_precision(us.scores[s], us.labels[s]) > max(4 * base, 0.3)
    for case, pred in zip(test, preds, strict=True):
        assert pred.shape == case.scored.shape and np.all(pred[~case.scored] == 0)
    one, two = (GradientBoostedBaseline(max_iter=5).fit(cube, train[::4], co, seed=3) for _ in range(2))
    assert np.array_equal(one.predict(test[0]), two.predict(test[0])), "deterministic for a seed"


def test_training_table_keeps_positives_and_records_the_share_of_negatives(setting):
    cube, co, train, _, _ = setting
    full = training_table(cube, train, co, max_cells_per_species=10**9)
    small = training_table(cube, train, co, max_cells_per_species=500, seed=1)
    for s in full.y:
        n_pos, n_neg = int(full.y[s].sum()), int((full.y[s] == 0).sum())
        assert int(small.y[s].sum()) == n_pos
        assert len(small.y[s]) == max(500, n_pos + 1)
        assert small.negatives_kept[s] == pytest.approx((len(small.y[s]) - n_pos) / n_neg)
        assert full.negatives_kept[s] == 1.0


def test_drawn_negatives_do_not_inflate_probabilities(setting):
    """The probabilities are corrected for the share of negatives kept: their mean stays near the base rate."""
    cube, co, train, _, test = setting
    model = GradientBoostedBaseline(max_iter=40, learning_rate=0.1, max_leaf_nodes=15)
    model.fit(cube, train, co, max_cells_per_species=3000)
    assert all(q < 0.3 for q in model.negatives_kept.values())
    us = unit_scores(test, [model.predict(c) for c in test], [0] * len(test), 3)
    for s in range(3):
        assert 0.6 < us.scores[s].mean() / us.labels[s].mean() < 1.6


def test_species_without_training_positives_score_zero(setting):
    cube, co, train, _, test = setting
    blank = dataclasses.replace(cube, labels=cube.labels.copy())
    blank.labels[1] = 0
    cases = [dataclasses.replace(c, labels=blank.labels[:, c.origin[0]:c.origin[0] + c.labels.shape[1],
                                                         c.origin[1]:c.origin[1] + c.labels.shape[2]]) for c in train]
    model = GradientBoostedBaseline(max_iter=5).fit(blank, cases[::4], co)
    assert 1 not in model.models and model.constant[1] == 0.0
    assert np.all(model.predict(test[0])[1] == 0)


def test_tuning_picks_the_best_setting_on_validation(setting):
    cube, co, train, val, _ = setting
    grid = ({"max_iter": 3, "learning_rate": 0.01, "max_leaf_nodes": 4}, {**HGB_GRID[0], "max_iter": 30})
    best, scores = tune_boosted(cube, train, val, co, grid=grid, max_cells_per_species=5_000)
    assert len(scores) == 2 and best.params == grid[int(np.nanargmax(scores))]
    preds = [best.predict(c) for c in val]
    assert mean_auprc_point(unit_scores(val, preds, [0] * len(val), 3)) == pytest.approx(max(scores))


def test_roughness_ranking_follows_the_covariate(setting):
    cube, _, _, _, test = setting
    model = RoughnessBaseline(cube)
    case = dataclasses.replace(test[0], origin=(15, 15))  # a window over the no-data square at 20..30
    pred = model.predict(case)
    n_s, h, w = case.labels.shape
    rough = cube.cov[1, 15:15 + h, 15:15 + w]
    assert pred.shape == (n_s, h, w) and np.all(pred == pred[0]), "every species gets the same ranking"
    finite = np.isfinite(rough)
    assert (~finite).any() and np.array_equal(pred[0][finite], rough[finite])
    assert np.all(pred[0][~finite] < pred[0][finite].min()), "no-data cells rank lowest"
    assert np.all(np.isfinite(pred))


def test_missing_roughness_is_a_clear_error(tiny_arrays):
    with pytest.raises(ValueError, match="no 'roughness' covariate.*elevation, slope"):
        RoughnessBaseline(tiny_arrays)
