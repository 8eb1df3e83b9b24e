"""The ensemble's mask draw: training-shaped regions, guaranteed coverage, reproducible by seed, tapered weights."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from backend.inference.contract import load_model_card
from backend.inference.masks import DEMO_CONFIG, MaskSchedule, band_edges, draw_round, training_masking
from model.config import MaskConfig, load_config
from model.masking import MaskGenerator

from .synthetic import write_tiny_model

DEMO_MODEL = Path(__file__).resolve().parents[2] / "runs" / "demo"
#: The CONUS grid of the cube (rows, cols).
CONUS = (1846, 2907)
DEMO_MASKING = load_config(DEMO_CONFIG).masking


def _runs(line: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of the runs of True in a 1-D boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], line.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _inner_run_lengths(region: np.ndarray) -> list[int]:
    """Lengths of the runs of hidden cells along rows and columns that touch neither end of their line."""
    out = []
    for grid in (region, region.T):
        n = grid.shape[1]
        out += [b - a for line in grid for a, b in _runs(line) if a > 0 and b < n]
    return out


def test_the_evaluation_reads_the_regions_the_model_was_trained_with(tmp_path: Path) -> None:
    """model.json's recorded masking, else the demo configuration's; both as the training reads them."""
    card = load_model_card(DEMO_MODEL, verify=False)
    trained = load_config(DEMO_MODEL.parents[1] / card.raw["run"] / "config.yaml").masking  # the run it came from
    assert training_masking(card) == trained
    tiny = load_model_card(write_tiny_model(tmp_path / "tiny"))
    assert "masking" not in tiny.raw["config"] and training_masking(tiny) == DEMO_MASKING
    raw = json.loads((DEMO_MODEL / "model.json").read_text())
    raw["config"]["masking"]["region_sides"] = 3
    strange = dataclasses.replace(card, raw=raw)
    with pytest.raises(ValueError, match="region_sides"):
        training_masking(strange)


@pytest.mark.parametrize("masking", [DEMO_MASKING, MaskConfig(region_min_cells=8, region_max_cells=20,
                                                                region_fraction=0.3)])
def test_regions_are_shaped_like_the_training_masks(masking: MaskConfig) -> None:
    """Rectangles of region_min_cells..region_max_cells a side hiding about region_fraction, as in training."""
    lo, hi = masking.region_min_cells, masking.region_max_cells
    patch = (96, 96)
    training = MaskGenerator(masking, n_species=3)
    rng = np.random.default_rng(0)
    trained = [training.hidden_region(rng, patch) for _ in range(200)]
    ours = [draw_round((7, i), (400, 600), masking).region(0) for i in range(20)]
    share_trained = float(np.mean([r.mean() for r in trained]))
    share_ours = float(np.mean([r.mean() for r in ours]))
    assert share_trained == pytest.approx(masking.region_fraction, abs=0.1)
    assert share_ours == pytest.approx(1 / round(1 / masking.region_fraction), abs=0.03)
    # a run of hidden cells away from the patch border is at least one rectangle's side, in both draws
    assert min(n for r in trained for n in _inner_run_lengths(r)) >= lo
    inner = [n for r in ours for n in _inner_run_lengths(r)]
    assert lo <= min(inner) and max(inner) <= hi
    # and every rectangle of a round has sides in lo..hi (the grid's border may cut the first and last)
    for i in range(20):
        edges = band_edges(np.random.default_rng(i), 600, lo, hi)
        sides = np.diff(edges)
        assert edges[0] == 0 and edges[-1] == 600 and (sides > 0).all()
        assert ((sides[1:-1] >= lo) & (sides[1:-1] <= hi)).all() and (sides[[0, -1]] <= hi).all()


def test_every_conus_cell_is_hidden_at_least_the_demo_minimum() -> None:
    """At the demo setting (8 rounds) on the CONUS grid every cell is hidden in 8 evaluations, each hiding ~half."""
    schedule = MaskSchedule(CONUS, DEMO_MASKING, rounds=8, seed=0)
    count = np.zeros(CONUS, dtype=np.uint16)
    for evaluation in schedule:
        region = evaluation.region()
        assert 0.4 < region.mean() < 0.6
        count += region
    assert len(schedule) == 16
    assert count.min() >= 8 and count.max() == 8


@pytest.mark.parametrize("fraction", [0.5, 0.3, 1.0])
def test_every_cell_is_hidden_at_least_the_paper_minimum(fraction: float) -> None:
    """At the paper setting (50 rounds) every cell of a representative grid is hidden 50 times, whatever the share."""
    shape = (300, 410)
    masking = dataclasses.replace(DEMO_MASKING, region_fraction=fraction)
    schedule = MaskSchedule(shape, masking, rounds=50, seed=3)
    count = np.zeros(shape, dtype=np.uint16)
    for evaluation in schedule:
        count += evaluation.region()
    assert count.min() >= 50 and count.max() == 50
    assert len(schedule) == 50 * round(1 / fraction)


def test_the_mask_seed_makes_the_draw_reproducible_and_changeable() -> None:
    def regions(seed: int) -> np.ndarray:
        return np.stack([e.region() for e in MaskSchedule((200, 300), DEMO_MASKING, rounds=3, seed=seed)])

    a, b, c = regions(5), regions(5), regions(6)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and (a != c).mean() > 0.2
    rounds = [draw_round((5, r), (200, 300), DEMO_MASKING) for r in range(3)]
    assert len({tuple(r.row_edges) for r in rounds}) == 3, "each round cuts the grid anew"


def test_taper_weights_ramp_from_the_edge_of_each_rectangle() -> None:
    cover = draw_round((1, 0), (300, 400), DEMO_MASKING)
    taper = 4
    weights = cover.weights(taper)
    part = cover.part()
    assert weights.dtype == np.float32 and (weights > 0).all() and (weights <= 1).all()
    # next to a cell another evaluation hides, the weight is the smallest step; 'taper' cells in, it is 1
    r0, r1 = int(cover.row_edges[1]), int(cover.row_edges[2])
    c0, c1 = int(cover.col_edges[1]), int(cover.col_edges[2])
    tile = weights[r0:r1, c0:c1]
    assert (part[r0:r1, c0:c1] == part[r0, c0]).all() and part[r0 - 1, c0] != part[r0, c0]
    np.testing.assert_allclose(tile[0, :], 0.5 / taper)
    np.testing.assert_allclose(tile[:, -1], 0.5 / taper)
    np.testing.assert_allclose(tile[1, 1:-1], 1.5 / taper)
    assert (tile[taper:-taper, taper:-taper] == 1).all()
    # the grid's own border is no edge (nothing is visible beyond it): a first band thicker than the taper
    # keeps weight 1 at the border
    thick = next(c for c in (draw_round((s, 0), (300, 400), DEMO_MASKING) for s in range(100))
                 if c.row_edges[1] > taper)
    w = thick.weights(taper)
    a, b = int(thick.col_edges[1]), int(thick.col_edges[2])
    assert (w[0, a + taper:b - taper] == 1).all()
    assert (cover.weights(0) == 1).all()
