import numpy as np
import pytest

from model.baselines import KrigingBaseline, NeighbourhoodBaseline, neighbourhood_density
from model.config import MaskConfig
from model.masking import MaskGenerator
from model.patches import PatchSampler, case_inputs, evaluation_cases
from model.splits import TEST, TRAIN, make_block_split


def test_training_patches_hide_non_train_cells(tiny_arrays):
    split = make_block_split(tiny_arrays.coverage, 16, 1, (0.5, 0.25, 0.25), seed=0)
    sampler = PatchSampler(tiny_arrays, split, MaskGenerator(MaskConfig(), 3), 32)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y, loss_mask = sampler.patch(rng)
        assert x.shape == (10, 32, 32) and y.shape == loss_mask.shape == (3, 32, 32)
        hidden = x[3:6] > 0
        assert np.all(x[:3][hidden] == 0), "hidden cells must not show their presence"
        assert np.all(hidden[loss_mask > 0]), "loss only on hidden cells"
    batch = sampler.batch(rng, 2)
    assert batch.x.shape == (2, 10, 32, 32)


@pytest.mark.parametrize(("split_name", "code"), [("test", TEST), ("train", TRAIN)])
def test_evaluation_cases_score_covered_cells_of_the_split(tiny_arrays, split_name, code):
    """Test-block cases, and train-block ones (for the memorisation check), score that split's cells only."""
    split = make_block_split(tiny_arrays.coverage, 16, 1, (0.5, 0.25, 0.25), seed=0)
    cases = evaluation_cases(tiny_arrays, split, split_name, "region", margin=8, seed=0, max_windows=10, min_cells=10)
    assert cases
    for case in cases:
        r0, c0 = case.origin
        cells = split.cell_split[r0:r0 + 32, c0:c0 + 32]
        assert np.all(cells[case.scored.any(axis=0)] == code)
        assert np.all(case.covered[case.scored.any(axis=0)])
        assert np.all(case.hidden[case.scored])
        assert case_inputs(tiny_arrays, case).shape == (10, 32, 32)
    assert not np.any(split.cell_split == TEST) or TRAIN in split.cell_split


def test_neighbourhood_density_ignores_unknown_cells():
    values = np.zeros((5, 5))
    values[2, 2] = 1
    known = np.ones((5, 5))
    known[2, 3] = 0
    d = neighbourhood_density(values, known, 1)
    assert d[2, 2] == np.float64(1 / 8) or abs(d[2, 2] - 1 / 8) < 1e-12


def test_baselines_score_cases(tiny_arrays):
    split = make_block_split(tiny_arrays.coverage, 16, 1, (0.5, 0.25, 0.25), seed=0)
    cases = evaluation_cases(tiny_arrays, split, "test", "region", margin=8, seed=0, max_windows=2, min_cells=10)
    co = np.full((3, 3), 0.5, dtype=np.float32)
    np.fill_diagonal(co, 0)
    for model in (NeighbourhoodBaseline(co, radius=2, weight=0.5), KrigingBaseline("spherical", 30, 0)):
        pred = model.predict(cases[0])
        assert pred.shape == cases[0].hidden.shape and np.all(np.isfinite(pred))
    species = evaluation_cases(tiny_arrays, split, "test", "species", margin=8, seed=0, max_windows=1, min_cells=10)
    assert np.all(KrigingBaseline("spherical", 30, 0).predict(species[0]) == 0)


def test_evaluation_cases_refuse_an_unknown_split(tiny_arrays):
    split = make_block_split(tiny_arrays.coverage, 16, 1, (0.5, 0.25, 0.25), seed=0)
    with pytest.raises(ValueError, match="split 'buffer' is unknown"):
        evaluation_cases(tiny_arrays, split, "buffer", "region", margin=8, seed=0, max_windows=10, min_cells=10)
