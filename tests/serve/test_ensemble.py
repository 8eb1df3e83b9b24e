import numpy as np

from backend.inference.ensemble import discrepancy, draw_mask, run_ensemble


def test_masks_are_seeded():
    a = draw_mask("species_in_regions", (0, 1, 2), 5, (40, 50), 8, 0.5).dense((40, 50))
    b = draw_mask("species_in_regions", (0, 1, 2), 5, (40, 50), 8, 0.5).dense((40, 50))
    c = draw_mask("species_in_regions", (0, 1, 3), 5, (40, 50), 8, 0.5).dense((40, 50))
    assert (a == b).all() and not (a == c).all() and a.any()


def test_mean_and_std_over_the_evaluations_that_hid_the_cell():
    shape, species = (30, 40), ("gold", "zinc", "lead")
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    rng = np.random.default_rng(1)

    def evaluate(hidden):
        prob = rng.random((3, *shape)).astype(np.float32)
        seen.append((hidden.copy(), prob))
        return prob

    result = run_ensemble(evaluate, species, shape, n_masks=3, n_seeds=4, region_cells=8, fraction=0.5)
    assert result.evaluations == len(seen) >= 12
    hid = np.stack([h for h, _ in seen])
    probs = np.stack([p for _, p in seen])
    count = hid.sum(0)
    assert (result.count == count).all() and count.min() >= 1
    mean = np.where(hid, probs, 0).sum(0) / count
    var = np.where(hid, (probs - mean) ** 2, 0).sum(0) / count
    np.testing.assert_allclose(result.mean, mean, atol=1e-5)
    np.testing.assert_allclose(result.std, np.sqrt(var), atol=1e-3)


def test_discrepancy_only_inside_coverage_and_without_records():
    mean = np.full((1, 2, 3), 0.8, dtype=np.float32)
    labels = np.array([[[0, 1, 0], [0, 0, 0]]], dtype=np.uint8)
    coverage = np.array([[True, True, True], [False, False, True]])
    d = discrepancy(mean, labels, coverage)[0]
    assert np.isnan(d[0, 1]) and np.isnan(d[1, 0]) and np.isnan(d[1, 1])
    assert d[0, 0] == np.float32(0.8) and d[1, 2] == np.float32(0.8)
