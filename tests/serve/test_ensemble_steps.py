"""The steps of run_ensemble: the hidden regions of a schedule and the weighted running sums."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from backend.inference.ensemble import WeightedSums, hidden_regions
from backend.inference.masks import MaskSchedule
from model.config import MaskConfig

MASKING = MaskConfig(region_min_cells=6, region_max_cells=14, region_fraction=0.5)


def test_hidden_regions_cover_the_grid_once_per_round() -> None:
    shape = (30, 40)
    schedule = MaskSchedule(shape, MASKING, rounds=3, seed=4)
    regions = list(hidden_regions(schedule, 3))
    assert len(regions) == len(schedule)
    start = 0
    for r in range(schedule.rounds):
        cover = schedule.round(r)
        mine = regions[start:start + cover.parts]
        start += cover.parts
        assert (np.sum([region for region, _, _, _ in mine], axis=0) == 1).all()
        assert [shift for _, _, shift, _ in mine] == list(cover.shifts)
        assert {rnd for _, _, _, rnd in mine} == {r}
        for _, weights, _, _ in mine:
            assert np.array_equal(weights, cover.weights(3))


@pytest.mark.parametrize("workers", [1, 3, 7])
def test_weighted_sums_give_the_weighted_mean_and_std(workers: int) -> None:
    rng = np.random.default_rng(0)
    shape, n = (11, 6), 4
    regions = rng.random((n, *shape)) < 0.7
    regions[:2] = True  # every cell hidden at least twice
    weights = np.where(regions, rng.random((n, *shape)).astype(np.float32) + 0.1, np.float32(0))
    probs = rng.random((n, 2, *shape)).astype(np.float32)
    sums = WeightedSums(2, shape, workers)
    assert sums.blocks[0][0] == 0 and sums.blocks[-1][1] == shape[0] and len(sums.blocks) <= workers
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for region, weight, prob in zip(regions, weights, probs, strict=True):
            sums.add(pool, region, weight, prob)
    assert np.array_equal(sums.count, regions.sum(0))
    mean, std = sums.mean_std()
    w = weights[:, None]
    want = (w * probs).sum(0) / w.sum(0)
    np.testing.assert_allclose(mean, want, atol=1e-5)
    np.testing.assert_allclose(std, np.sqrt((w * (probs - want) ** 2).sum(0) / w.sum(0)), atol=1e-3)


def test_weighted_std_is_nan_where_fewer_than_two_evaluations_hid_the_cell() -> None:
    shape = (4, 5)
    sums = WeightedSums(1, shape, 2)
    once = np.zeros(shape, dtype=bool)
    once[0] = True
    with ThreadPoolExecutor(max_workers=2) as pool:
        sums.add(pool, np.ones(shape, dtype=bool), np.ones(shape, np.float32), np.full((1, *shape), 0.2, np.float32))
        sums.add(pool, once, once.astype(np.float32), np.full((1, *shape), 0.4, np.float32))
    mean, std = sums.mean_std()
    np.testing.assert_allclose(mean[0, 0], 0.3, atol=1e-6)
    np.testing.assert_allclose(mean[0, 1:], 0.2, atol=1e-6)
    assert np.isfinite(std[0, 0]).all() and np.isnan(std[0, 1:]).all()
