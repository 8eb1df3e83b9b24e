"""The coverage rule and masks."""

from __future__ import annotations

import numpy as np

from backend.cube.coverage import COVERAGE_RULE, coverage_layers, covered_states, rule_to_json
from backend.cube.grid import Grid
from backend.cube.sites import SiteTable

from .conftest import MRDS_CA, NATIONAL, RENO, SACRAMENTO


def _cell(grid: Grid, place: tuple[float, float]) -> tuple[int, int]:
    row, col = grid.lonlat_to_rowcol(np.array([place[0]]), np.array([place[1]]))
    return int(row[0]), int(col[0])


def test_rule_covers_the_seven_systematic_states() -> None:
    every = {r.source: 5 for r in COVERAGE_RULE}
    assert covered_states(every) == ["AL", "CA", "ID", "NC", "OR", "UT", "VA"]


def test_national_thematic_sets_cover_nothing() -> None:
    assert covered_states({NATIONAL: 10_000, "https://doi.org/10.5066/P9K1HBNT": 700}) == []


def test_min_sites_threshold() -> None:
    assert covered_states({MRDS_CA: 3}, min_sites=5) == []
    assert covered_states({MRDS_CA: 5}, min_sites=5) == ["CA"]


def test_coverage_mask_marks_california_only(west_grid: Grid) -> None:
    sites = SiteTable.from_records(
        [SACRAMENTO[0], RENO[0]],
        [SACRAMENTO[1], RENO[1]],
        [("gold",), ("gold",)],
        [MRDS_CA, NATIONAL],
        ["CA", "NV"],
    )
    coverage, conus, covered = coverage_layers(west_grid, sites)
    assert covered == ["CA"]
    assert coverage.dtype == np.uint8 and coverage.shape == west_grid.shape
    assert coverage[_cell(west_grid, SACRAMENTO)] == 1
    assert coverage[_cell(west_grid, RENO)] == 0
    assert conus[_cell(west_grid, RENO)] == 1
    assert conus[_cell(west_grid, (-124.9, 40.0))] == 0  # Pacific
    assert coverage.sum() < conus.sum()


def test_rule_is_documented_in_json() -> None:
    doc = rule_to_json(COVERAGE_RULE, 1, ["CA"])
    assert doc["covered_states"] == ["CA"]
    assert {s["state"] for s in doc["sources"]} == {"CA", "OR", "UT", "VA", "NC", "AL", "ID"}
    assert "not a confirmed negative" in doc["description"]
