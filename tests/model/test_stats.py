import numpy as np
import pytest

from model.evaluate import mean_auprc, pool
from model.metrics import average_precision
from model.patches import EvalCase
from model.stats import (
    UnitScores,
    draw_counts,
    mean_auprc_point,
    mean_ci,
    paired_bootstrap,
    paired_bootstrap_units,
    unit_scores,
    weighted_mean_auprc,
)


def _labels_units(rng, n_species=3, cells=4000, n_units=40, rate=0.05):
    labels = [(rng.random(cells) < rate).astype(np.uint8) for _ in range(n_species)]
    units = [rng.integers(0, n_units, cells) for _ in range(n_species)]
    return labels, units


def _method(rng, labels, units, n_units, signal, noise=None):
    scores = [signal * lab + rng.random(lab.size) + (0 if noise is None else noise[s]) for s, lab in enumerate(labels)]
    return UnitScores(scores, labels, units, n_units)


def test_binned_ap_matches_exact_ap_on_the_full_sample():
    rng = np.random.default_rng(0)
    labels, units = _labels_units(rng, cells=20000)
    us = _method(rng, labels, units, 40, signal=0.4)
    us.scores[1] = np.round(us.scores[1], 1)  # heavy ties: kept together, as the exact AP does
    exact = mean_auprc_point(us)
    assert exact == pytest.approx(np.mean([average_precision(s, y) for s, y in zip(us.scores, us.labels, strict=True)]))
    binned = weighted_mean_auprc(us, np.ones((1, 40)), bins=2048)[0]
    assert abs(binned - exact) < 0.01
    assert weighted_mean_auprc(us, np.ones((1, 40)), bins=10**6)[0] == pytest.approx(exact, abs=1e-9)


def test_resampled_ap_is_exact_for_rare_positives_ranked_near_the_top():
    """Half a million cells, 30 positives among the top few hundred: resamples' AP is exact.

    The unit-bootstrap AP of the full sample is the point AP, and the paired interval holds the point difference.
    """
    rng = np.random.default_rng(5)
    cells, n_units = 500_000, 12
    units = [rng.integers(0, n_units, cells)]
    labels = [np.zeros(cells, dtype=np.uint8)]
    labels[0][rng.choice(cells, 30, replace=False)] = 1
    sharp = rng.random(cells)
    sharp[labels[0] > 0] = 1 + rng.random(30) * 0.01  # the positives ranked first, interleaved with a few
    sharp[rng.choice(cells, 200, replace=False)] = 1 + rng.random(200) * 0.01
    a = UnitScores([sharp], labels, units, n_units)
    b = UnitScores([rng.random(cells)], labels, units, n_units)
    exact = mean_auprc_point(a)
    assert weighted_mean_auprc(a, np.ones((1, n_units)))[0] == pytest.approx(exact, rel=1e-6)  # float32 sums
    assert weighted_mean_auprc(a, np.ones((1, n_units)), bins=2048)[0] < 0.9 * exact  # binned: biased low
    c = paired_bootstrap({"a": a, "b": b}, "a", n_resamples=300, seed=0)["b"]
    assert c.lo <= c.diff <= c.hi and c.verdict == "ahead"


def test_weights_count_cells_of_drawn_units():
    """A unit drawn twice counts like its cells duplicated; one not drawn like its cells removed."""
    rng = np.random.default_rng(1)
    labels, units = _labels_units(rng, n_species=2, cells=3000, n_units=5)
    us = _method(rng, labels, units, 5, signal=0.3)
    w = np.array([[2.0, 0.0, 1.0, 1.0, 3.0]])
    got = weighted_mean_auprc(us, w, bins=10**6)[0]
    expected = []
    for s in range(2):
        rep = w[0][us.units[s]].astype(int)
        expected.append(average_precision(np.repeat(us.scores[s], rep), np.repeat(us.labels[s], rep)))
    assert got == pytest.approx(np.mean(expected), abs=1e-9)


def test_a_clearly_better_method_is_ahead():
    rng = np.random.default_rng(2)
    labels, units = _labels_units(rng)
    methods = {"good": _method(rng, labels, units, 40, 0.8), "poor": _method(rng, labels, units, 40, 0.1)}
    out = paired_bootstrap(methods, "good", n_resamples=300, seed=0)
    assert set(out) == {"poor"}
    c = out["poor"]
    assert c.verdict == "ahead" and c.lo > 0 and c.lo <= c.diff <= c.hi
    assert c.diff == pytest.approx(c.reference - c.other)
    assert c.reference == pytest.approx(mean_auprc_point(methods["good"]))
    back = paired_bootstrap(methods, "poor", n_resamples=300, seed=0)["good"]
    assert back.verdict == "behind" and back.hi < 0


def test_identical_methods_are_level_with_zero_difference():
    rng = np.random.default_rng(3)
    labels, units = _labels_units(rng)
    a = _method(rng, labels, units, 40, 0.3)
    b = UnitScores([s.copy() for s in a.scores], labels, units, 40)
    c = paired_bootstrap({"a": a, "b": b}, "a", n_resamples=200)["b"]
    assert c.diff == 0 and c.lo == 0 and c.hi == 0 and c.verdict == "level"


def test_pairing_cancels_shared_noise():
    """Per-unit noise shared by both methods widens each one's spread, not their difference's interval."""
    rng = np.random.default_rng(4)
    n_units = 60
    labels, units = _labels_units(rng, n_units=n_units, cells=12000)
    unit_shift = rng.normal(0, 3.0, size=n_units)  # units differ a lot; both methods see the same shift
    noise = [unit_shift[u] * 0.2 for u in units]
    a = _method(rng, labels, units, n_units, 0.6, noise)
    b = UnitScores([s + 0.02 * rng.standard_normal(s.size) for s in a.scores], labels, units, n_units)
    c = paired_bootstrap({"a": a, "b": b}, "a", n_resamples=400, seed=1)["b"]
    lo_a, hi_a = _spread(a, n_units)
    assert c.hi - c.lo < 0.25 * (hi_a - lo_a), "the paired interval is much narrower than one method's spread"


def _spread(us, n_units):
    values = weighted_mean_auprc(us, draw_counts(n_units, 400, 1))
    lo, hi = np.percentile(values, [2.5, 97.5])
    return lo, hi


def test_reproducible_for_a_seed():
    rng = np.random.default_rng(5)
    labels, units = _labels_units(rng)
    methods = {"a": _method(rng, labels, units, 40, 0.4), "b": _method(rng, labels, units, 40, 0.35)}
    one = paired_bootstrap(methods, "a", n_resamples=200, seed=7)["b"]
    two = paired_bootstrap(methods, "a", n_resamples=200, seed=7)["b"]
    other = paired_bootstrap(methods, "a", n_resamples=200, seed=8)["b"]
    assert one == two
    assert (one.lo, one.hi) != (other.lo, other.hi)


def test_species_without_positives_and_units_without_cells():
    rng = np.random.default_rng(6)
    labels, units = _labels_units(rng, n_species=3, n_units=10)
    labels[2] = np.zeros_like(labels[2])  # no positives at all: left out of every mean
    units = [np.where(u == 3, 4, u) for u in units]  # unit 3 holds no cell
    labels[1] = np.where(units[1] == 0, labels[1], 0).astype(np.uint8)  # positives only in unit 0
    methods = {"a": _method(rng, labels, units, 10, 0.5), "b": _method(rng, labels, units, 10, 0.1)}
    point = mean_auprc_point(methods["a"])
    assert point == pytest.approx(np.mean([average_precision(methods["a"].scores[s], labels[s]) for s in (0, 1)]))
    c = paired_bootstrap(methods, "a", n_resamples=200, seed=0)["b"]
    assert np.isfinite([c.lo, c.hi]).all() and c.lo <= c.hi
    w = np.ones((1, 10))
    w[0, 0] = 0  # species 1 has no weighted positive: the mean is over species 0 alone
    assert weighted_mean_auprc(methods["a"], w, bins=10**6)[0] == pytest.approx(
        average_precision(methods["a"].scores[0][units[0] != 0], labels[0][units[0] != 0]))
    empty = UnitScores([np.zeros(0)], [np.zeros(0, np.uint8)], [np.zeros(0, int)], 0)
    none = paired_bootstrap({"a": empty, "b": empty}, "a", n_resamples=10)["b"]
    assert np.isnan(none.diff) and none.verdict == "level"


def test_unpaired_methods_are_refused():
    rng = np.random.default_rng(7)
    labels, units = _labels_units(rng)
    a = _method(rng, labels, units, 40, 0.4)
    b = _method(rng, [lab[::-1].copy() for lab in labels], units, 40, 0.4)
    with pytest.raises(ValueError, match="not paired"):
        paired_bootstrap({"a": a, "b": b}, "a", n_resamples=10)
    with pytest.raises(ValueError, match="reference 'c'"):
        paired_bootstrap({"a": a, "b": b}, "c", n_resamples=10)


def test_unit_scores_from_cases_match_pooling():
    rng = np.random.default_rng(8)
    cases, preds = [], []
    for i in range(4):
        labels = (rng.random((2, 8, 8)) < 0.2).astype(np.uint8)
        hidden = np.zeros((2, 8, 8), dtype=bool)
        hidden[:, 2:6, 2:6] = True
        scored = hidden.copy()
        scored[1] = False if i % 2 else scored[1]
        cases.append(EvalCase("test", "region", (0, 0), hidden, labels, scored, np.ones((8, 8), bool)))
        preds.append(rng.random((2, 8, 8)))
    state = np.full((8, 8), 30)
    state[:, 4:] = -1  # outside any state: left out
    us = unit_scores(cases, preds, [7, 3, 7, state], n_species=2)
    assert us.n_units == 3 and us.unit_ids == [3, 7, 30]
    pooled = pool(cases[:3], iter(preds[:3]), 2)
    for s in range(2):
        n = pooled[s][1].size
        assert np.array_equal(us.labels[s][:n], pooled[s][1]) and np.allclose(us.scores[s][:n], pooled[s][0])
    assert us.units[0].size == 3 * 16 + 8 and set(us.units[0][-8:]) == {2}
    full = unit_scores(cases[:3], preds[:3], [0, 1, 2], n_species=2)
    assert mean_auprc_point(full) == pytest.approx(mean_auprc(pooled))


def test_per_unit_comparison_and_mean_ci():
    rng = np.random.default_rng(9)
    base = rng.random(50)
    better = base + 0.1 + 0.01 * rng.standard_normal(50)
    better[3] = np.nan  # dropped from the comparison, with the reference's value of that unit
    out = paired_bootstrap_units({"ref": better, "base": base, "same": better.copy()}, "ref", n_resamples=500)
    keep = np.isfinite(better)
    assert out["base"].verdict == "ahead" and out["base"].diff == pytest.approx(np.mean(better[keep] - base[keep]))
    assert out["same"].verdict == "level" and out["same"].diff == 0
    mean, lo, hi = mean_ci(base, n_resamples=500, seed=0)
    assert lo < mean < hi and mean == pytest.approx(base.mean())
    assert mean_ci(base, 500, 0) == (mean, lo, hi)
    assert all(np.isnan(mean_ci(np.array([np.nan]))))
