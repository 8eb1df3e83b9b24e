"""Flagged clusters: far from every known record of the species, the top share of the rest, ranked and listed."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from backend.layers.clusters import far_from_records, find_clusters, flag_threshold, surveyed_share

from .synthetic import small_grid

CELL = 1609.344


def _min_gap_to_records(mask: np.ndarray, labels: np.ndarray) -> float:
    """Brute force: the smallest distance between any point of a masked cell and any point of a labelled cell."""
    cells = np.argwhere(mask)
    records = np.argwhere(labels > 0)
    d = np.abs(cells[:, None, :] - records[None, :, :])
    gaps = np.maximum(d - 1, 0) * CELL
    return float(np.sqrt((gaps ** 2).sum(-1)).min())


@pytest.mark.parametrize("distance", [0.0, 1000.0, 2000.0, 3000.0, 5000.0])
def test_far_cells_keep_the_distance_and_no_more(distance):
    rng = np.random.default_rng(1)
    labels = (rng.random((40, 50)) < 0.02).astype(np.uint8)
    far = far_from_records(labels, CELL, distance)
    assert not far[labels > 0].any()
    assert _min_gap_to_records(far, labels) >= distance
    # every excluded cell without a record is closer than the distance to one (the test is not over-cautious)
    near = ~far & (labels == 0)
    for r, c in np.argwhere(near):
        one = np.zeros_like(far)
        one[r, c] = True
        assert _min_gap_to_records(one, labels) < distance


def test_surveyed_share_counts_the_square_and_treats_the_grid_edge_as_unsurveyed():
    rng = np.random.default_rng(3)
    coverage = rng.random((30, 40)) < 0.6
    coverage[:, 25:] = False    # an unsurveyed neighbour beyond a straight border
    share = surveyed_share(coverage, 3)
    padded = np.pad(coverage, 3)
    for r, c in [(0, 0), (10, 10), (15, 22), (29, 39), (5, 24)]:
        assert np.isclose(share[r, c], padded[r:r + 7, c:c + 7].mean(), atol=1e-6)
    # near the border the share falls: cells there are predicted mostly from unknown ground
    assert share[:, 24].mean() < share[:, 15].mean()
    assert np.array_equal(surveyed_share(coverage, 0), coverage.astype(np.float32))


def test_threshold_is_the_top_share_of_eligible_finite_cells():
    disc = np.arange(100, dtype=np.float32).reshape(10, 10) / 100
    disc[0, 0] = np.nan
    eligible = np.ones((10, 10), dtype=bool)
    eligible[9] = False  # the highest row is not eligible
    t = flag_threshold(disc, eligible, 0.1)
    values = disc[eligible & np.isfinite(disc)]
    assert np.isclose((values >= t).mean(), 0.1, atol=0.02) and t < 0.9
    assert flag_threshold(disc, np.zeros((10, 10), dtype=bool), 0.1) is None


def test_clusters_only_from_eligible_cells_ranked_by_evidence():
    grid = small_grid(rows=40, cols=60)
    disc = np.zeros((40, 60), dtype=np.float32)
    disc[5:15, 5:15] = 0.9      # large, high
    disc[25:28, 40:43] = 0.95   # small, higher
    disc[30:32, 5:7] = 0.99     # below min_cells once its eligible part is cut
    eligible = np.ones_like(disc, dtype=bool)
    eligible[30:32, 6] = False
    found = find_clusters(disc, grid, "gold", eligible=eligible, threshold=0.5, min_cells=4, limit=10)
    assert [c.n_cells for c in found] == [100, 9]
    assert found[0].mean_score == pytest.approx(0.9) and found[0].geometry.geom_type == "MultiPolygon"
    assert find_clusters(disc, grid, "gold", eligible=eligible, threshold=0.5, min_cells=4, limit=1)[0].n_cells == 100


def test_stored_clusters_list_sites_inside_and_the_nearest_of_the_species(serve_engine, published):
    with serve_engine.connect() as c:
        rows = c.execute(sa.text(
            "SELECT species, rank, score, mean_score, n_cells, n_sites, sites, nearest_site, nearest_distance_m, "
            "ST_Distance(ST_Transform(geom, 5070), ST_Transform(ST_SetSRID(ST_MakePoint(-110, 44), 4326), 5070)) "
            "AS far_m FROM clusters WHERE layer_version = :v ORDER BY species, rank"), {"v": published}).all()
    assert rows and {r.species for r in rows} == {"gold", "zinc"}
    for species in ("gold", "zinc"):
        ranks = [(r.rank, r.score) for r in rows if r.species == species]
        assert [k for k, _ in ranks] == list(range(1, len(ranks) + 1))
        assert [s for _, s in ranks] == sorted((s for _, s in ranks), reverse=True)
    gold = [r for r in rows if r.species == "gold"]
    # the only gold site of the database is the Far Away Mine, hundreds of km east of the grid
    assert all(r.nearest_site["name"] == "Far Away Mine" and r.nearest_distance_m == pytest.approx(r.far_m, abs=1)
               for r in gold)
    assert all(r.nearest_site is None and r.nearest_distance_m is None for r in rows if r.species == "zinc")
    for r in rows:
        assert r.score == pytest.approx(r.mean_score * np.log1p(r.n_cells) * np.log1p(50), rel=1e-6)
        assert r.n_sites == len(r.sites)
    inside = {s["name"]: s for r in rows for s in r.sites}
    assert "Far Away Mine" not in inside
    assert inside["Blob Sand and Gravel Pit"]["commodities"] == ["sand_and_gravel"]
