"""Spot checks of the shipped covariates on the real bundled files."""

from __future__ import annotations

import numpy as np
import pytest

from backend.cube.covariates import Covariate
from backend.cube.grid import Grid
from backend.cube.shipped import SHIPPED_COVARIATES, shipped_covariates
from backend.settings import PROJECT_ROOT

from .conftest import DEATH_VALLEY, DENVER


@pytest.fixture(scope="module")
def shipped(conus_grid: Grid) -> dict[str, Covariate]:
    layers = shipped_covariates(PROJECT_ROOT / "data", conus_grid)
    return {c.name: c for c in layers}


def _at(grid: Grid, layer: Covariate, place: tuple[float, float]) -> float:
    row, col = grid.lonlat_to_rowcol(np.array([place[0]]), np.array([place[1]]))
    return float(layer.data[row[0], col[0]])


def test_all_shipped_covariates_are_built(shipped: dict[str, Covariate], conus_grid: Grid) -> None:
    assert list(shipped) == list(SHIPPED_COVARIATES)
    for layer in shipped.values():
        assert layer.data.shape == conus_grid.shape and layer.data.dtype == np.float32


def test_elevation_near_denver(shipped: dict[str, Covariate], conus_grid: Grid) -> None:
    assert 1450 <= _at(conus_grid, shipped["elevation"], DENVER) <= 1750


def test_elevation_in_death_valley(shipped: dict[str, Covariate], conus_grid: Grid) -> None:
    assert _at(conus_grid, shipped["elevation"], DEATH_VALLEY) < 100


def test_gravity_disturbance_is_tens_of_mgal(shipped: dict[str, Covariate], conus_grid: Grid) -> None:
    from backend.cube.coverage import state_mask
    from backend.geo.boundaries import conus_outline

    inside = state_mask(conus_grid, [conus_outline()]).astype(bool)
    values = shipped["gravity_disturbance"].data[inside]
    assert np.isfinite(values).all()
    assert -200 < values.min() < -10 and 10 < values.max() < 200
    assert 5 < values.std() < 60 and abs(values.mean()) < 30


def test_geoid_over_conus_is_negative_tens_of_metres(shipped: dict[str, Covariate], conus_grid: Grid) -> None:
    assert -40 < _at(conus_grid, shipped["geoid"], DENVER) < -5


def test_terrain_derivatives_are_plausible(shipped: dict[str, Covariate], conus_grid: Grid) -> None:
    slope = shipped["slope"].data
    assert 0 <= np.nanmin(slope) and np.nanmax(slope) < 45
    rockies = conus_grid.window_for_bbox((-107.5, 38.0, -105.5, 40.0)).toslices()
    kansas = conus_grid.window_for_bbox((-100.0, 37.5, -98.0, 39.5)).toslices()
    for name in ("slope", "roughness"):
        layer = shipped[name].data
        assert np.nanmedian(layer[rockies]) > 4 * np.nanmedian(layer[kansas]), name
