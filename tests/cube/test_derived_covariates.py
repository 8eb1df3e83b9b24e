"""Derived covariates: Bouguer maths, residuals, gradients and terrain scales on seeded grids; the build option."""

from __future__ import annotations

import io
import json
import lzma
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio

from backend.cube.build import build_cube_from_sites
from backend.cube.covariates import Normalisation, robust_normalisation, roughness
from backend.cube.derived import (
    DENSITY_CRUST,
    DENSITY_WATER,
    bouguer_anomaly,
    derived_names,
    gaussian_smooth,
    gradient_magnitude,
    highpass_residual,
    roughness_at_scale,
    slope_at_scale,
)
from backend.cube.grid import Grid
from backend.cube.shipped import SHIPPED_COVARIATES
from backend.cube.sites import SiteTable
from backend.cube.sources import CovariateError, read_icgem_netcdf4
from backend.settings import Settings

G = 6.6743e-11  # m3 kg-1 s-2 (CODATA 2018, as harmonica)
CELL = 1609.344


def _normal_gravity(lat: np.ndarray, height: float) -> np.ndarray:
    import boule

    return boule.WGS84.normal_gravity((None, lat, np.full(lat.shape, height)))


def test_flat_plate_gives_two_pi_g_rho_h() -> None:
    lat = np.linspace(30.0, 48.0, 7)[:, None] * np.ones((1, 5))
    gravity = _normal_gravity(lat, 10_000.0)  # no disturbance at all
    for h in (500.0, 1000.0, 2500.0):
        anomaly = bouguer_anomaly(gravity, lat, 10_000.0, np.full(lat.shape, h))
        expected = -2 * math.pi * G * DENSITY_CRUST * h * 1e5  # mGal
        assert np.allclose(anomaly, expected, rtol=1e-4)
    assert abs(expected / 2500.0 * 1000.0 + 111.96) < 0.05  # the textbook 0.1119 mGal per metre
    sea = bouguer_anomaly(gravity, lat, 10_000.0, np.full(lat.shape, -1000.0))
    assert np.allclose(sea, 2 * math.pi * G * (DENSITY_CRUST - DENSITY_WATER) * 1000.0 * 1e5, rtol=1e-4)


def test_residual_of_a_constant_is_zero_at_every_scale() -> None:
    rng = np.random.default_rng(3)
    data = np.full((180, 240), 42.5)
    data[rng.random(data.shape) < 0.05] = np.nan
    data[:30, :50] = np.nan  # a large hole (sea) at a corner
    for sigma in (2.0, 12.0, 31.0, 80.0):  # small kernels directly, wide ones on a decimated grid
        residual = highpass_residual(data, sigma)
        assert np.array_equal(np.isnan(residual), np.isnan(data))
        assert np.nanmax(np.abs(residual)) < 1e-9


def test_residual_removes_a_broad_field_and_keeps_a_narrow_one() -> None:
    rows, cols = np.mgrid[0:400, 0:400].astype(np.float64)
    broad = 100.0 * np.sin(2 * np.pi * cols / 2000.0)  # wavelength far above the kernel
    bump = 10.0 * np.exp(-((rows - 200) ** 2 + (cols - 200) ** 2) / (2 * 2.0**2))
    residual = highpass_residual(broad + bump, 20.0)
    assert abs(residual[200, 200] - bump[200, 200]) < 1.0
    assert np.abs(residual[180:220, 240:260]).max() < 0.5  # > 4 sigma from the edges, where a trend biases it


@pytest.mark.parametrize("sigma", [4.0, 16.0])
def test_slope_of_a_plane_is_its_gradient(sigma: float) -> None:
    rows, cols = np.mgrid[0:260, 0:300].astype(np.float64)
    a, b = 0.02, -0.035  # metres of rise per metre east and north
    elevation = a * cols * CELL - b * rows * CELL  # rows run south
    slope = slope_at_scale(elevation.astype(np.float32), CELL, sigma)
    inner = slope[80:-80, 80:-80]
    assert np.allclose(inner, math.degrees(math.atan(math.hypot(a, b))), atol=1e-3)


def test_gradient_magnitude_of_a_plane_is_constant_per_km() -> None:
    rows, cols = np.mgrid[0:120, 0:140].astype(np.float64)
    field = 0.003 * cols * CELL + 0.004 * rows * CELL  # 3 and 4 units per km
    grad = gradient_magnitude(field, CELL, 6.0)
    assert np.allclose(grad[30:-30, 30:-30], 5.0, atol=1e-6)
    field[50, 60] = np.nan
    assert np.isnan(gradient_magnitude(field, CELL, 6.0)[50, 60])


def test_wide_smoothing_matches_the_direct_gaussian_away_from_edges() -> None:
    from scipy import ndimage

    rng = np.random.default_rng(11)
    data = ndimage.gaussian_filter(rng.normal(size=(300, 320)), 6.0) * 100
    decimated = gaussian_smooth(data, 24.0)  # factor 3
    direct = ndimage.gaussian_filter(data, 24.0, mode="constant") / ndimage.gaussian_filter(
        np.ones_like(data), 24.0, mode="constant"
    )
    inner = (slice(100, -100), slice(100, -100))
    assert np.abs(decimated[inner] - direct[inner]).max() < 0.05 * np.abs(direct[inner]).max()


def test_roughness_at_radius_one_is_the_shipped_roughness_and_keeps_the_coast() -> None:
    rng = np.random.default_rng(5)
    elevation = rng.normal(500, 80, (60, 70)).astype(np.float32)
    elevation[:, :10] = np.nan  # sea to the west
    shipped = roughness(elevation)
    scaled = roughness_at_scale(elevation, 1)
    both = np.isfinite(shipped)
    assert np.allclose(scaled[both], shipped[both])
    assert np.isnan(scaled[:, :10]).all()
    assert np.isfinite(scaled[1:-1, 10]).all()  # the shipped roughness blanks the coast; this one does not
    wide = roughness_at_scale(elevation, 4)
    assert np.nanmin(wide[5:-5, 15:-5] - scaled[5:-5, 15:-5]) >= 0


def test_robust_normalisation_centres_scales_and_clips() -> None:
    rng = np.random.default_rng(9)
    data = rng.normal(10.0, 2.0, (200, 200))
    data[0, :5] = 1e6  # a few spikes
    data[1, 1] = np.nan
    region = np.ones(data.shape, dtype=np.uint8)
    stats = robust_normalisation(data, region)
    assert abs(stats.centre - 10.0) < 0.05 and abs(stats.scale - 2.0) < 0.05
    assert stats.clip_high < 20.0 and stats.max == 1e6
    z = stats.apply(data)
    assert np.isnan(z[1, 1]) and np.nanmax(z) < 6.0
    again = Normalisation.model_validate(stats.to_json())
    assert np.array_equal(again.apply(data), z, equal_nan=True)
    plain = Normalisation.model_validate({k: v for k, v in stats.to_json().items()
                                          if k not in ("centre", "scale", "clip_low", "clip_high")})
    assert "scale" not in plain.to_json()  # the statistics of a plain covariate keep their keys


def _icgem_file(path: Path, descending: bool) -> Path:
    lat = np.array([10.0, 0.0, -10.0]) if descending else np.array([-10.0, 0.0, 10.0])
    lon = np.array([-10.0, 0.0, 10.0, 20.0])
    raw = np.arange(12, dtype=np.uint16).reshape(3, 4)
    raw[1, 2] = 65000
    buf = io.BytesIO()
    with h5py.File(buf, "w") as nc:
        nc["latitude"], nc["longitude"] = lat, lon
        var = nc.create_dataset("gravity", data=raw)
        var.attrs["_FillValue"] = np.array([65000], dtype=np.uint16)
        var.attrs["scale_factor"], var.attrs["add_offset"] = np.array([0.1]), np.array([974748.6])
        nc["height"] = np.full((3, 4), 10_000.0, dtype=np.float32)
    path.write_bytes(lzma.compress(buf.getvalue()))
    return path


def test_netcdf4_reader_unpacks_flips_and_fills(tmp_path: Path) -> None:
    up = read_icgem_netcdf4(_icgem_file(tmp_path / "up.nc.xz", descending=False), "gravity")
    down = read_icgem_netcdf4(_icgem_file(tmp_path / "down.nc.xz", descending=True), "gravity")
    assert up.height_m == 10_000.0 and list(up.lat) == [-10.0, 0.0, 10.0] == list(down.lat)
    assert up.values[0, 0] == pytest.approx(974748.6) and up.values[2, 3] == pytest.approx(974749.7)
    assert np.isnan(up.values[1, 2]) and np.isnan(down.values[1, 2])
    assert down.values[2, 0] == pytest.approx(974748.6)  # the first stored row is the northern one
    raster = up.to_raster()
    assert raster.data[0, 0] == pytest.approx(up.values[2, 0])  # north-up
    with pytest.raises(CovariateError, match="has no variable 'geoid'"):
        read_icgem_netcdf4(tmp_path / "up.nc.xz", "geoid")


@pytest.fixture(scope="module")
def two_cubes(tmp_path_factory: pytest.TempPathFactory, west_grid: Grid) -> tuple[Path, Path, Path]:
    """The same small cube built with the setting off, with the option explicitly off, and with it on."""
    rng = np.random.default_rng(7)
    n = 120
    sites = SiteTable.from_records(
        lon=list(rng.uniform(-122.5, -119.0, n)), lat=list(rng.uniform(36.0, 40.0, n)),
        species=[("gold",)] * n, source=["https://doi.org/10.5066/P9HTERGK"] * n, state=["CA"] * n,
    )
    base = tmp_path_factory.mktemp("derived")
    outs = []
    for name, settings, derived in (("default", Settings(cube_derived_covariates=False), None),
                                    ("off", Settings(), False), ("on", Settings(), None)):
        build_cube_from_sites(settings, sites, base / name, species=["gold"], progress=False, quicklooks=False,
                              grid=west_grid, derived=derived)
        outs.append(base / name)
    return outs[0], outs[1], outs[2]


def test_option_off_leaves_the_cube_unchanged(two_cubes: tuple[Path, Path, Path]) -> None:
    default, off, on = two_cubes
    assert (default / "cube.json").read_bytes() == (off / "cube.json").read_bytes()
    manifest = json.loads((default / "cube.json").read_text())
    bands = manifest["files"]["covariates.tif"]["bands"]
    assert [b["name"] for b in bands] == list(SHIPPED_COVARIATES)
    assert all(set(b["normalisation"]) == {"mean", "std", "min", "max", "valid_cells", "valid_fraction_conus"}
               and "source" not in b and "licence" not in b for b in bands)
    assert manifest["files"]["covariates.tif"]["meaning"].startswith("(value - mean) / std; NaN")
    assert not any(k.startswith("derived:") for k in manifest["inputs"])
    with_derived = json.loads((on / "cube.json").read_text())
    for name in ("labels.tif", "coverage.tif", "states.tif"):  # what the option does not touch
        assert with_derived["checksums"][name] == manifest["checksums"][name]


def test_option_on_adds_the_derived_bands_with_provenance(two_cubes: tuple[Path, Path, Path], west_grid: Grid) -> None:
    _, off, on = two_cubes
    manifest = json.loads((on / "cube.json").read_text())
    bands = manifest["files"]["covariates.tif"]["bands"]
    assert [b["name"] for b in bands] == [*SHIPPED_COVARIATES, *derived_names()]
    shipped_off = json.loads((off / "cube.json").read_text())["files"]["covariates.tif"]["bands"]
    assert bands[: len(SHIPPED_COVARIATES)] == shipped_off
    for band in bands[len(SHIPPED_COVARIATES):]:
        assert band["source"] and band["licence"] and band["inputs"] and band["normalisation"]["scale"] > 0
    assert {"derived:gravity_10arcmin", "derived:topography_10arcmin"} <= set(manifest["inputs"])
    with rasterio.open(on / "covariates.tif") as ds:
        assert ds.count == len(bands)
        z = ds.read(len(SHIPPED_COVARIATES) + 1)  # bouguer_anomaly, robustly normalised
    with rasterio.open(on / "covariates_valid.tif") as ds:
        assert list(ds.descriptions) == [f"{b['name']}_valid" for b in bands]
    stats = bands[len(SHIPPED_COVARIATES)]["normalisation"]
    rows, cols = west_grid.lonlat_to_rowcol(np.array([-119.81, -121.49]), np.array([39.53, 38.58]))
    mgal = z[rows, cols] * stats["scale"] + stats["centre"]
    assert -260 < mgal[0] < -130  # Reno, Basin and Range: deep Bouguer low
    assert mgal[0] < mgal[1] - 60  # Sacramento, Central Valley: far higher
