import numpy as np

from backend.inference.ensemble import discrepancy, run_ensemble
from backend.inference.masks import MaskSchedule
from backend.layers.quality import seam_index
from model.config import MaskConfig

MASKING = MaskConfig(region_min_cells=6, region_max_cells=14, region_fraction=0.5)


def test_weighted_mean_and_std_over_the_evaluations_that_hid_the_cell():
    shape, species = (30, 40), ("gold", "zinc", "lead")
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    rng = np.random.default_rng(1)

    def evaluate(hidden, shift):
        prob = rng.random((3, *shape)).astype(np.float32)
        seen.append((hidden.copy(), prob))
        return prob

    schedule = MaskSchedule(shape, MASKING, rounds=4, seed=2)
    result = run_ensemble(evaluate, species, schedule, taper=3)
    assert result.evaluations == len(seen) == 8
    hid = np.stack([h for h, _ in seen])
    assert (hid == hid[:, :1]).all(), "every species is hidden with the region"
    weights = np.stack([schedule.round(r).weights(3) for r in range(4) for _ in range(2)])[:, None]
    w = np.where(hid, weights, 0)
    probs = np.stack([p for _, p in seen])
    assert (result.count == hid[:, 0].sum(0)).all() and (result.count == 4).all()
    mean = (w * probs).sum(0) / w.sum(0)
    var = (w * (probs - mean) ** 2).sum(0) / w.sum(0)
    np.testing.assert_allclose(result.mean, mean, atol=1e-5)
    np.testing.assert_allclose(result.std, np.sqrt(var), atol=1e-3)
    assert not np.allclose(result.mean, np.where(hid, probs, 0).sum(0) / 4, atol=1e-3), "the taper weighs cells"


def test_a_constant_model_gives_a_constant_map_and_one_evaluation_no_uncertainty():
    shape = (50, 70)
    result = run_ensemble(lambda h, shift: np.full((2, *shape), 0.3, np.float32), ("gold", "zinc"),
                          MaskSchedule(shape, MASKING, rounds=3), taper=4)
    np.testing.assert_allclose(result.mean, 0.3, rtol=1e-6)
    np.testing.assert_allclose(result.std, 0, atol=1e-3)
    once = run_ensemble(lambda h, shift: np.full((2, *shape), 0.3, np.float32), ("gold", "zinc"),
                        MaskSchedule(shape, MASKING, rounds=1), taper=4)
    assert (once.count == 1).all() and np.isnan(once.std).all() and np.isfinite(once.mean).all()


def _box_mean(a: np.ndarray, r: int) -> np.ndarray:
    """Mean of ``a`` over the (2r + 1)² box around each cell (zero outside)."""
    p = np.pad(a, r)
    c = np.pad(p.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    k = 2 * r + 1
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / k ** 2


def test_region_edges_do_not_show_in_the_tapered_mean():
    """A model that reads the records beside a hidden cell prints the region edges; the taper removes them."""
    shape = (256, 384)
    rng = np.random.default_rng(0)
    sites = (rng.random(shape) < 0.02).astype(np.float32)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    smooth = 0.3 + 0.1 * np.sin(yy / 40) * np.cos(xx / 55)

    def evaluate(hidden, shift):
        visible = sites * ~hidden[0]
        return np.broadcast_to(smooth + 3 * _box_mean(visible, 3), (1, *shape)).astype(np.float32)

    def index(rounds: int, taper: int) -> float:
        schedule = MaskSchedule(shape, MaskConfig(region_min_cells=24, region_max_cells=64), rounds)
        return seam_index(run_ensemble(evaluate, ("gold",), schedule, taper).mean[0])

    assert seam_index(smooth) < 2.5
    one_round, flat, tapered = index(1, 0), index(8, 0), index(8, 4)
    assert one_round > 10 and flat > 4 >= tapered


def test_discrepancy_only_inside_coverage_and_without_records():
    mean = np.full((1, 2, 3), 0.8, dtype=np.float32)
    labels = np.array([[[0, 1, 0], [0, 0, 0]]], dtype=np.uint8)
    coverage = np.array([[True, True, True], [False, False, True]])
    d = discrepancy(mean, labels, coverage)[0]
    assert np.isnan(d[0, 1]) and np.isnan(d[1, 0]) and np.isnan(d[1, 1])
    assert d[0, 0] == np.float32(0.8) and d[1, 2] == np.float32(0.8)


def test_never_visible_cells_take_the_members_unmasked_evaluations():
    from backend.inference.ensemble import fill_never_visible

    shape, species = (30, 40), ("gold", "zinc")
    rng = np.random.default_rng(4)
    unmasked = [rng.random((2, *shape)).astype(np.float32) for _ in range(3)]

    def evaluate(hidden, shift, member=0):
        if not hidden.any():  # the unmasked evaluation of a member: nothing hidden but the unknown cells
            return unmasked[member]
        return rng.random((2, *shape)).astype(np.float32)  # masked: a draw that differs every time

    never = np.zeros(shape, dtype=bool)
    never[5:20, 10:30] = True
    schedule = MaskSchedule(shape, MASKING, rounds=4, seed=2)
    result = run_ensemble(evaluate, species, schedule, taper=3, members=3)
    before_mean, before_std = result.mean.copy(), result.std.copy()
    assert fill_never_visible(result, evaluate, never, members=3) == 3
    stack = np.stack(unmasked)[:, :, never]
    np.testing.assert_allclose(result.mean[:, never], stack.mean(0), atol=1e-6)
    np.testing.assert_allclose(result.std[:, never], stack.std(0), atol=1e-5)
    np.testing.assert_array_equal(result.mean[:, ~never], before_mean[:, ~never])
    np.testing.assert_array_equal(result.std[:, ~never], before_std[:, ~never])
    assert (result.count[never] == 4 + 3).all() and (result.count[~never] == 4).all()
    assert result.evaluations == 8 + 3
    # another mask draw changes the map only outside the never-visible cells
    other = run_ensemble(evaluate, species, MaskSchedule(shape, MASKING, rounds=4, seed=9), taper=3, members=3)
    fill_never_visible(other, evaluate, never, members=3)
    np.testing.assert_allclose(other.mean[:, never], result.mean[:, never], atol=1e-6)
    one = run_ensemble(lambda h, shift: unmasked[0], species, schedule, taper=3)
    fill_never_visible(one, lambda h, shift: unmasked[0], never)
    assert np.isnan(one.std[:, never]).all() and np.isfinite(one.mean[:, never]).all()
    assert fill_never_visible(one, evaluate, np.zeros(shape, dtype=bool)) == 0
