import numpy as np
import pytest

from backend.inference.windows import blend_weights, plan_windows, sliding_predict


def _identity(x):
    return x[:, :2].copy()


@pytest.mark.parametrize(("shape", "size", "overlap", "multiple"),
                         [((100, 130), 32, 8, 8), ((7, 5), 64, 16, 8), ((64, 64), 64, 16, 16), ((97, 33), 40, 39, 1)])
def test_constant_field_stays_constant_and_every_cell_is_covered(shape, size, overlap, multiple):
    x = np.full((2, *shape), 0.37, dtype=np.float32)
    out = sliding_predict(_identity, x, 2, size, overlap, multiple, batch=3)
    assert out.shape == (2, *shape)
    np.testing.assert_allclose(out, 0.37, rtol=1e-6)


def test_a_local_model_is_reproduced_exactly_across_seams():
    rng = np.random.default_rng(0)
    x = rng.random((2, 90, 150)).astype(np.float32)
    out = sliding_predict(_identity, x, 2, size=32, overlap=12, multiple=8)
    np.testing.assert_allclose(out, x, rtol=1e-5)


def test_windows_are_multiples_and_cover_the_raster():
    plan = plan_windows((100, 130), size=30, overlap=8, multiple=16)
    assert plan.size_rows % 16 == 0 and plan.size_cols % 16 == 0
    covered = np.zeros((100, 130), dtype=int)
    for r, c in plan:
        covered[r:r + plan.size_rows, c:c + plan.size_cols] += 1
    assert covered.min() >= 1


def test_blend_weights_are_positive_and_symmetric():
    w = blend_weights(32, 48, 8)
    assert w.min() > 0 and w.max() == 1
    np.testing.assert_allclose(w, w[::-1, ::-1])


def test_needed_windows_cover_every_needed_cell_and_skip_empty_bands():
    rng = np.random.default_rng(1)
    needed = np.zeros((300, 500), dtype=bool)
    needed[20:90, 30:120] = True      # two separate areas in the same rows
    needed[40:60, 400:470] = True
    needed[250:260, 10:490] = True    # a long thin strip: split by the cell budget
    x = rng.random((2, 300, 500)).astype(np.float32)
    out = sliding_predict(_identity, x, 2, size=96, overlap=8, multiple=8, batch=2, needed=needed, band_rows=48)
    np.testing.assert_allclose(out[:, needed], x[:, needed], rtol=1e-5)
    assert np.isnan(out[:, 150:200]).all(), "rows with nothing needed are not evaluated"
    assert np.isnan(out[:, 40:60, 200:350]).all(), "the gap between two areas of a band is not evaluated"


def test_needed_windows_stay_within_the_cell_budget_and_multiples():
    from backend.inference.windows import plan_needed

    needed = np.ones((100, 1000), dtype=bool)
    windows = plan_needed(needed.shape, needed, band_rows=40, max_cells=40 * 200, overlap=10, multiple=8)
    covered = np.zeros(needed.shape, dtype=int)
    for r, c, h, w in windows:
        assert h % 8 == 0 and w % 8 == 0 and h * w <= 40 * 200
        covered[r:r + h, c:c + w] += 1
    assert covered.min() >= 1


def test_an_offset_moves_the_inner_band_edges_and_keeps_the_overlap():
    from backend.inference.windows import plan_needed

    needed = np.ones((500, 300), dtype=bool)
    starts = {}
    for offset in (0, 5, 37, 32 + 5):
        windows = plan_needed(needed.shape, needed, band_rows=48, max_cells=48 * 300, overlap=16, multiple=8,
                              offset=offset)
        rows = sorted({r for r, _, _, _ in windows})
        starts[offset] = rows
        assert rows[0] == 0 and rows[-1] == 500 - 48
        assert all(0 < b - a <= 48 - 16 for a, b in zip(rows, rows[1:], strict=False)), "overlap of 16 or more"
    assert starts[0][1] == 32 and starts[5][1] == 5 and starts[37] == starts[5], "the offset is taken modulo the step"
    inner = set(starts[0][1:-1])
    assert not inner & set(starts[5][1:-1])
    x = np.random.default_rng(2).random((2, 500, 300)).astype(np.float32)
    out = sliding_predict(_identity, x, 2, size=64, overlap=16, multiple=8, needed=needed, band_rows=48, offset=5)
    np.testing.assert_allclose(out, x, rtol=1e-5)


def test_blend_weights_leave_out_the_margin_and_ramps_sum_to_one():
    from backend.inference.windows import MARGIN_WEIGHT

    w = blend_weights(1, 100, overlap=24, margin=8)[0]
    assert (w[:8] == np.float32(MARGIN_WEIGHT)).all() and (w[-8:] == np.float32(MARGIN_WEIGHT)).all()
    assert (w[24:-24] == 1).all() and (np.diff(w[:24]) >= 0).all()
    # two windows overlapping by 24 cells: their weights over the overlap sum to 1
    np.testing.assert_allclose(w[-24:] + w[:24], 1, rtol=1e-5)


def test_a_margin_removes_what_a_model_gets_wrong_at_its_window_edge():
    """A model whose output is off within 5 cells of its window's edge: a margin of 6 blends it away."""

    def edgy(x):
        out = x[:, :2].copy()
        out[:, :, :5] += 1
        out[:, :, -5:] += 1
        out[:, :, :, :5] += 1
        out[:, :, :, -5:] += 1
        return out

    x = np.random.default_rng(3).random((2, 300, 260)).astype(np.float32)
    needed = np.ones((300, 260), dtype=bool)
    clean = sliding_predict(edgy, x, 2, size=64, overlap=32, multiple=8, needed=needed, band_rows=64, margin=6)
    plain = sliding_predict(edgy, x, 2, size=64, overlap=32, multiple=8, needed=needed, band_rows=64)
    inner = (slice(None), slice(6, -6), slice(6, -6))  # within the margin of the raster border no window is clean
    np.testing.assert_allclose(clean[inner], x[inner], atol=1e-4)
    assert np.abs(plain[inner] - x[inner]).max() > 0.1
