"""The grid: shape, snapping, and agreement with pyproj for points at known lon/lat."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyproj import Transformer

from backend.cube.grid import CELL_SIZE, GRID_CRS, Grid

from .conftest import DEATH_VALLEY, DENVER, PORTLAND, SACRAMENTO


def test_conus_grid_is_about_2900_by_1850(conus_grid: Grid) -> None:
    assert conus_grid.crs == GRID_CRS
    assert conus_grid.cell == CELL_SIZE
    rows, cols = conus_grid.shape
    assert abs(cols - 2900) / 2900 < 0.03, cols
    assert abs(rows - 1850) / 1850 < 0.03, rows


def test_origin_is_snapped_to_whole_cells(conus_grid: Grid) -> None:
    for v in (conus_grid.x0 / CELL_SIZE, conus_grid.y0 / CELL_SIZE):
        assert math.isclose(v, round(v), abs_tol=1e-9)


@pytest.mark.parametrize("place", [DENVER, DEATH_VALLEY, SACRAMENTO, PORTLAND, (-80.1918, 25.7617), (-69.0, 47.3)])
def test_site_lands_in_the_cell_pyproj_gives(conus_grid: Grid, place: tuple[float, float]) -> None:
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:5070", always_xy=True).transform(*place)
    a = conus_grid.transform
    expected_col = math.floor((x - a.c) / a.a)
    expected_row = math.floor((y - a.f) / a.e)
    row, col = conus_grid.lonlat_to_rowcol(np.array([place[0]]), np.array([place[1]]))
    assert (int(row[0]), int(col[0])) == (expected_row, expected_col)
    assert conus_grid.contains(row, col).all()
    # and the cell centre is within half a cell diagonal of the point
    clon, clat = conus_grid.cell_lonlat(row, col)
    cx, cy = Transformer.from_crs("EPSG:4326", "EPSG:5070", always_xy=True).transform(clon[0], clat[0])
    assert math.hypot(cx - x, cy - y) <= CELL_SIZE * math.sqrt(2) / 2 + 1e-6


def test_points_outside_are_flagged(conus_grid: Grid) -> None:
    row, col = conus_grid.lonlat_to_rowcol(np.array([-157.86, -150.0]), np.array([21.3, 61.2]))
    assert not conus_grid.contains(row, col).any()


def test_window_for_bbox_covers_the_box(conus_grid: Grid) -> None:
    win = conus_grid.window_for_bbox((-105.5, 39.5, -104.5, 40.0))
    row, col = conus_grid.lonlat_to_rowcol(np.array([DENVER[0]]), np.array([DENVER[1]]))
    assert win.row_off <= row[0] < win.row_off + win.height
    assert win.col_off <= col[0] < win.col_off + win.width
    assert 40 < win.width < 70 and 30 < win.height < 45
    empty = conus_grid.window_for_bounds((1e8, 1e8, 1e8 + 1, 1e8 + 1))
    assert empty.width == 0 or empty.height == 0


def test_json_round_trip(conus_grid: Grid) -> None:
    assert Grid.from_json(conus_grid.to_json()) == conus_grid


def test_from_bounds_rejects_empty_bounds() -> None:
    with pytest.raises(ValueError, match="empty bounds"):
        Grid.from_bounds((0, 0, 0, 10))


def test_window_transform_matches_the_grid(conus_grid: Grid) -> None:
    win = conus_grid.window_for_bbox((-105.5, 39.5, -104.5, 40.0))
    t = conus_grid.window_transform(win)
    x, y = t.c + 0.5 * t.a, t.f + 0.5 * t.e  # centre of the window's first cell
    row, col = conus_grid.xy_to_rowcol(np.array([x]), np.array([y]))
    assert (int(row[0]), int(col[0])) == (win.row_off, win.col_off)
