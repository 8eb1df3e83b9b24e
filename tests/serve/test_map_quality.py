"""The seam index and the stability of a served layer (backend.layers.quality)."""

import numpy as np
import pytest

from backend.layers.quality import layer_seam_scores, seam_index, stability, window_seam_scores


def _smooth_field(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A smooth random field: white noise blurred by repeated 3 x 3 means."""
    a = np.random.default_rng(seed).random(shape)
    for _ in range(20):
        p = np.pad(a, 1, mode="edge")
        a = sum(p[i:i + shape[0], j:j + shape[1]] for i in range(3) for j in range(3)) / 9
    return a


def test_a_straight_step_scores_high_and_a_smooth_field_low():
    field = _smooth_field((256, 384), 0)
    step = field.copy()
    step[:, 200:] += 0.05 * field.std() * 50   # one straight vertical boundary
    assert seam_index(field) < 3
    assert seam_index(step) > 10
    col, row = window_seam_scores(step[:128, 128:256])
    assert col > 10 and row < 3, "the step is across columns"
    # the same step along rows is found by the row score
    col_t, row_t = window_seam_scores(step[:128, 128:256].T)
    assert row_t == pytest.approx(col) and col_t == pytest.approx(row)


def test_seam_index_uses_full_windows_with_data_only():
    field = _smooth_field((256, 256), 1)
    field[:5, :5] = np.nan                       # the top-left window has a hole
    assert layer_seam_scores(field).shape == (3, 2)
    field[:, :] = 0.5
    assert np.isnan(seam_index(field)), "a constant layer has no jumps to compare"
    assert np.isnan(seam_index(np.zeros((100, 100)))), "no full window"


def test_stability_of_identical_shifted_and_unrelated_maps():
    a = _smooth_field((200, 200), 2)
    same = stability(a, a)
    assert same.spearman == pytest.approx(1.0) and same.p99_abs_diff == 0 and same.cells == 40_000
    shifted = stability(a, a + 0.01)
    assert shifted.spearman == pytest.approx(1.0) and shifted.p99_abs_diff == pytest.approx(0.01)
    other = stability(a, _smooth_field((200, 200), 3))
    assert abs(other.spearman) < 0.5
    where = np.zeros(a.shape, dtype=bool)
    where[:10] = True
    b = a.copy()
    b[5, 5] = np.nan
    assert stability(a, b, where).cells == 1999
