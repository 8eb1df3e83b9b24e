"""Covariates: user GeoTIFFs in any CRS land in the right cells; terrain and normalisation maths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer

from backend.cube.covariates import (
    normalisation,
    parse_covariate_option,
    roughness,
    slope_degrees,
    user_covariate,
)
from backend.cube.grid import Grid
from backend.cube.sources import CovariateError

from .conftest import DENVER


def _write(path: Path, data: np.ndarray, transform: Affine, crs: str | None, nodata: float | None = None) -> Path:
    profile = {
        "driver": "GTiff",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": str(data.dtype),
        "transform": transform,
        "nodata": nodata,
    }
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


def _denver_cell(grid: Grid) -> tuple[int, int]:
    row, col = grid.lonlat_to_rowcol(np.array([DENVER[0]]), np.array([DENVER[1]]))
    return int(row[0]), int(col[0])


def test_lonlat_covariate_lands_in_the_right_cells(tmp_path: Path, conus_grid: Grid) -> None:
    # 0.005 degree cells (finer than the grid: averaged) whose value is the cell's longitude
    step = 0.005
    lon0, lat0 = -106.0, 41.0
    cols, rows = 400, 400
    lons = lon0 + (np.arange(cols) + 0.5) * step
    data = np.tile(lons.astype(np.float32), (rows, 1))
    # a hot spot of about 1 x 1 km at the centre of Denver's grid cell, 1000 above the ramp
    row, col = _denver_cell(conus_grid)
    clon, clat = conus_grid.cell_lonlat(np.array([row]), np.array([col]))
    r = round((lat0 - clat[0]) / step)
    c = round((clon[0] - lon0) / step)
    spot = data.copy()
    spot[r - 1 : r + 1, c - 1 : c + 1] += 1000
    path = _write(tmp_path / "lon.tif", spot, Affine(step, 0, lon0, 0, -step, lat0), "EPSG:4326")
    cov = user_covariate("lon_ramp", path, conus_grid)
    assert cov.resampling == "average"
    assert cov.data[row, col] > 50  # the spot lies in the Denver cell ...
    neighbours = cov.data[row - 2 : row + 3, col - 2 : col + 3].copy()
    neighbours[2, 2] = np.nan
    assert np.nanmax(neighbours) < -100  # ... and in no other
    # elsewhere the value is the longitude of the cell centre
    valid = np.argwhere(np.isfinite(cov.data))
    pick = valid[:: max(1, len(valid) // 200)]
    pick = pick[cov.data[pick[:, 0], pick[:, 1]] < 0]
    clon, _ = conus_grid.cell_lonlat(pick[:, 0], pick[:, 1])
    inner = (clon > lon0 + 0.05) & (clon < lon0 + cols * step - 0.05)
    assert inner.sum() > 20
    assert np.abs(cov.data[pick[inner, 0], pick[inner, 1]] - clon[inner]).max() < 0.01
    assert np.isnan(cov.data[0, 0])  # outside the raster: invalid
    assert cov.valid[row, col] == 1 and cov.valid[0, 0] == 0


def test_utm_covariate_lands_in_the_right_cells(tmp_path: Path, conus_grid: Grid) -> None:
    # UTM zone 13N, 5 km cells (coarser than the grid: bilinear) whose value is the northing in km
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32613", always_xy=True)
    ex, ny = to_utm.transform(*DENVER)
    size = 5000.0
    x0, y0 = ex - 100 * size, ny + 100 * size
    northing_km = (y0 - (np.arange(200) + 0.5) * size) / 1000.0
    data = np.repeat(northing_km[:, None], 200, axis=1).astype(np.float32)
    path = _write(tmp_path / "utm.tif", data, Affine(size, 0, x0, 0, -size, y0), "EPSG:32613", nodata=-9999.0)
    cov = user_covariate("northing", path, conus_grid)
    assert cov.resampling == "bilinear"
    row, col = _denver_cell(conus_grid)
    rows = np.arange(row - 40, row + 41, 8)
    cols = np.arange(col - 40, col + 41, 8)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    clon, clat = conus_grid.cell_lonlat(rr.ravel(), cc.ravel())
    _, n = to_utm.transform(clon, clat)
    assert np.abs(cov.data[rr.ravel(), cc.ravel()] - n / 1000.0).max() < 0.05  # 50 m of 1.6 km cells


def test_nodata_becomes_invalid(tmp_path: Path, conus_grid: Grid) -> None:
    data = np.full((100, 100), 7, dtype=np.int16)
    data[:50] = -1
    path = _write(tmp_path / "nd.tif", data, Affine(0.05, 0, -107.5, 0, -0.05, 42.0), "EPSG:4326", nodata=-1)
    cov = user_covariate("half", path, conus_grid)
    finite = cov.data[np.isfinite(cov.data)]
    assert finite.size > 0 and np.allclose(finite, 7)
    north = conus_grid.lonlat_to_rowcol(np.array([-105.0]), np.array([41.5]))
    south = conus_grid.lonlat_to_rowcol(np.array([-105.0]), np.array([39.0]))
    assert np.isnan(cov.data[north[0][0], north[1][0]])
    assert cov.data[south[0][0], south[1][0]] == pytest.approx(7)


def test_covariate_without_crs_is_refused(tmp_path: Path, conus_grid: Grid) -> None:
    path = _write(tmp_path / "nocrs.tif", np.ones((4, 4), np.float32), Affine(2, 0, 10, 0, -2, 10), None)
    with pytest.raises(CovariateError, match="has no CRS"):
        user_covariate("nocrs", path, conus_grid)


def test_unreadable_and_missing_covariates_are_refused(tmp_path: Path, conus_grid: Grid) -> None:
    junk = tmp_path / "junk.tif"
    junk.write_text("not a raster")
    with pytest.raises(CovariateError, match="cannot read"):
        user_covariate("junk", junk, conus_grid)
    with pytest.raises(CovariateError, match="does not exist"):
        user_covariate("gone", tmp_path / "gone.tif", conus_grid)
    with pytest.raises(CovariateError, match="not valid"):
        user_covariate("Bad Name", junk, conus_grid)


def test_covariate_outside_the_grid_is_refused(tmp_path: Path, conus_grid: Grid) -> None:
    path = _write(tmp_path / "far.tif", np.ones((10, 10), np.float32), Affine(0.1, 0, 10, 0, -0.1, 10), "EPSG:4326")
    with pytest.raises(CovariateError, match="does not overlap"):
        user_covariate("far", path, conus_grid)


def test_parse_covariate_option() -> None:
    assert parse_covariate_option("mag=/data/mag.tif") == ("mag", Path("/data/mag.tif"))
    with pytest.raises(CovariateError, match="NAME=PATH"):
        parse_covariate_option("/data/mag.tif")


def test_slope_and_roughness_of_a_plane() -> None:
    cell = 1000.0
    rise = np.tan(np.radians(10.0)) * cell
    elev = (np.arange(6)[None, :] * rise + np.zeros((5, 1))).astype(np.float32)
    elev[0, 0] = np.nan
    slope = slope_degrees(elev, cell)
    assert slope[2, 2] == pytest.approx(10.0, abs=1e-3)
    assert np.isnan(slope[0, 1]) and np.isnan(slope[1, 0])  # neighbours of the hole, and the border
    rough = roughness(elev)
    assert rough[2, 2] == pytest.approx(2 * rise, rel=1e-5)
    assert np.isnan(rough[1, 1]) and np.isnan(rough[0, 3])


def test_normalisation_uses_valid_cells_in_region() -> None:
    data = np.array([[1.0, 2.0, 3.0, np.nan], [100.0, 100.0, 100.0, 100.0]], dtype=np.float32)
    region = np.array([[1, 1, 1, 1], [0, 0, 0, 0]], dtype=np.uint8)
    stats = normalisation(data, region)
    assert stats.mean == pytest.approx(2.0)
    assert stats.std == pytest.approx(np.std([1.0, 2.0, 3.0]))
    assert stats.valid_cells == 3 and stats.valid_fraction_conus == pytest.approx(0.75)
    z = stats.apply(data)
    assert z[0, 1] == pytest.approx(0.0) and np.isnan(z[0, 3])
    with pytest.raises(CovariateError, match="no valid cell"):
        normalisation(data, np.zeros_like(region))
