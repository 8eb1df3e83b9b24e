"""Round sums folded in round order are the local ensemble's running sums, bit for bit (no Ray needed)."""

from __future__ import annotations

import numpy as np

from backend.inference.ensemble import WeightedSums, run_ensemble
from backend.inference.masks import MaskSchedule
from backend.inference.ray_ensemble import fold, round_sums
from model.config import MaskConfig


def _evaluate(hidden: np.ndarray, shift: int, member: int = 0) -> np.ndarray:
    """A stand-in model: probabilities that depend on the hidden cells around each cell, the shift and the member."""
    h = hidden.astype(np.float32)
    around = (np.roll(h, 3, axis=1) + np.roll(h, -5, axis=2) + h) / 3
    rows = np.arange(hidden.shape[1], dtype=np.float32)[None, :, None]
    p = 0.5 + 0.4 * np.sin(around * 2.1 + rows * 0.037 + (shift % 97) * 0.01 + member * 0.3)
    p[:, :2, :2] = np.nan  # cells no window reached
    return p.astype(np.float32)


def test_rounds_folded_in_order_are_the_local_sums_bit_for_bit():
    schedule = MaskSchedule((60, 90), MaskConfig(region_min_cells=6, region_max_cells=20, region_fraction=1 / 3), 7,
                            seed=5)
    for members in (1, 3):
        local = run_ensemble(_evaluate, ("a", "b"), schedule, taper=4, threads=2, members=members)
        total = None
        for r in range(schedule.rounds):
            _, total = fold(total, round_sums(_evaluate, 2, schedule, r, taper=4, members=members))
        assert total is not None
        sums = WeightedSums(2, schedule.shape, 1)
        sums.acc, sums.acc2, sums.wsum, sums.count = (np.array(a) for a in total)
        mean, std = sums.mean_std()
        assert np.array_equal(mean, local.mean, equal_nan=True) and np.array_equal(std, local.std, equal_nan=True)
        assert np.array_equal(sums.count, local.count) and np.isnan(mean[:, :2, :2]).all()
        assert np.isfinite(mean[:, 2:, 2:]).all() and np.nanmax(std) > 0.01
