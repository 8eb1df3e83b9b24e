import numpy as np
import pytest

from model.baselines import KrigingBaseline, NeighbourhoodBaseline, neighbourhood_density
from model.config import MaskConfig
from model.masking import MaskGenerator
from model.patches import PatchSampler, case_inputs, evaluation_cases, symmetry
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


def test_symmetry_covers_the_eight_turns_and_flips():
    a = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    images = {symmetry(a, k, f).tobytes() for k in range(4) for f in (False, True)}
    assert len(images) == 8, "the 8 symmetries of the square are distinct on an asymmetric array"
    assert np.array_equal(symmetry(a, 0, False), a)
    assert np.array_equal(symmetry(a, 1, False)[0], np.rot90(a[0]))
    assert np.array_equal(symmetry(a, 0, True)[1], a[1][:, ::-1])


def test_augmented_patches_stay_consistent(tiny_arrays):
    """Turned patches keep inputs, targets and loss mask aligned; covariate noise touches covariates only."""
    split = make_block_split(tiny_arrays.coverage, 16, 1, (0.5, 0.25, 0.25), seed=0)
    masks = MaskGenerator(MaskConfig(), 3)
    plain = PatchSampler(tiny_arrays, split, masks, 32)
    turned = PatchSampler(tiny_arrays, split, masks, 32, augment=True, covariate_noise=0.5)
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    changed = 0
    for _ in range(8):
        x0, y0, m0 = plain.patch(r1)
        x1, y1, m1 = turned.patch(r2)
        r1.normal(0.0, 0.5, size=(2, 32, 32))  # the draws noise and augmentation add
        r1.integers(4), r1.integers(2)
        found = [(k, f) for k in range(4) for f in (False, True)
                 if np.array_equal(symmetry(y0, k, f), y1) and np.array_equal(symmetry(m0, k, f), m1)
                 and np.array_equal(symmetry(x0[:6], k, f), x1[:6])]
        assert found, "targets, loss mask, presence and hidden channels turn together"
        k, f = found[0]
        cov0, cov1 = symmetry(x0[6:8], k, f), x1[6:8]
        assert np.array_equal(np.isnan(cov0), np.isnan(cov1)), "no-data covariate cells stay no-data"
        valid = ~np.isnan(cov0)
        assert 0.3 < np.std(cov1[valid] - cov0[valid]) < 0.7, "covariates carry noise of the configured std"
        assert np.array_equal(symmetry(x0[8:], k, f), x1[8:]), "validity masks are not perturbed"
        changed += (k, f) != (0, False)
        hidden = x1[3:6] > 0
        assert np.all(x1[:3][hidden] == 0) and np.all(hidden[m1 > 0])
    assert changed, "some patches are actually turned"


def test_covariate_noise_must_not_be_negative(tiny_arrays):
    split = make_block_split(tiny_arrays.coverage, 16, 1, (0.5, 0.25, 0.25), seed=0)
    with pytest.raises(ValueError, match="covariate_noise"):
        PatchSampler(tiny_arrays, split, MaskGenerator(MaskConfig(), 3), 32, covariate_noise=-1.0)


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
