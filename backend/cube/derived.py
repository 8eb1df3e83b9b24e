"""Derived covariates (``m3 cube build --derived-covariates``): Bouguer anomaly, its residuals and gradient, terrain.

Features meant to describe geology rather than position: a simple Bouguer anomaly from the 10 arc-minute
EIGEN-6C4 gravity and ETOPO1 topography (``boule`` normal gravity, ``harmonica`` Bouguer plate), its high-pass
residuals at several scales and its horizontal-gradient magnitude, and the slope and roughness of the cube's
elevation at several scales. Raster maths are plain numpy/scipy functions; reading files is left to
:mod:`backend.cube.sources`. Record density is not here: the network and the tabular baseline compute it
from the visible layers themselves (``model/networks.py``, ``model/tabular.py``), so no label leaks into
``covariates.tif``.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
from rasterio.enums import Resampling
from scipy import ndimage

from backend.cube.covariates import Covariate, resample, slope_degrees
from backend.cube.grid import Grid
from backend.cube.shipped import timed
from backend.cube.sources import (
    EIGEN_GRAVITY_10,
    ETOPO1_TOPOGRAPHY_10,
    PVLIB_ALTITUDE,
    CovariateError,
    read_icgem_netcdf4,
)

log = logging.getLogger(__name__)

#: Density of the Bouguer plate (kg/m3): the conventional crustal density (EIGEN-6C4's own ``crust_density``).
DENSITY_CRUST = 2670.0
#: Density of sea water (kg/m3) for the Bouguer correction of bathymetry.
DENSITY_WATER = 1040.0
#: Gaussian standard deviations (km) of the regional fields the Bouguer residuals subtract.
RESIDUAL_SCALES_KM: tuple[int, ...] = (50, 100, 200)
#: Gaussian standard deviation (km) of the smoothing before the horizontal gradient (the model resolves ~28 km).
GRADIENT_SIGMA_KM = 10.0
#: Scales (cells) of the multi-scale terrain channels; scale 1 is the shipped ``slope`` and ``roughness``.
TERRAIN_SCALES: tuple[int, ...] = (4, 16)
#: Coarsest decimation a smoothing keeps: sigma / factor stays at least this many coarse cells.
MIN_COARSE_SIGMA = 8.0

GRAVITY_SOURCE = (
    "EIGEN-6C4 gravity (GFZ Potsdam / ICGEM, doi:10.5880/icgem.2015.1) and ETOPO1 topography (NOAA, "
    "doi:10.7289/V5C8276M), 10 arc-minute grids of fatiando/data commit 72ec1878752bd2f33bbb3f515631d65c3c2f0c4a"
)
GRAVITY_LICENCE = "CC-BY-4.0 (EIGEN-6C4); public domain (ETOPO1)"
TERRAIN_SOURCE = "pvlib 0.16.1 Altitude.h5, 5 arc-minutes, from Mapzen terrain tiles (USGS 3DEP, SRTM, GMTED, ETOPO1)"
TERRAIN_LICENCE = "BSD-3-Clause"


def derived_inputs(data_dir: Path) -> dict[str, Path]:
    """The bundled input files the derived covariates are read from (the elevation is the shipped one)."""
    return {
        "derived:gravity_10arcmin": data_dir / EIGEN_GRAVITY_10,
        "derived:topography_10arcmin": data_dir / ETOPO1_TOPOGRAPHY_10,
    }


def derived_names() -> tuple[str, ...]:
    """Names of the derived covariates, in band order."""
    return (
        "bouguer_anomaly",
        *[f"bouguer_residual_{km}km" for km in RESIDUAL_SCALES_KM],
        "bouguer_gradient",
        *[f"slope_{n}cells" for n in TERRAIN_SCALES],
        *[f"roughness_{n}cells" for n in TERRAIN_SCALES],
    )


# ---------------------------------------------------------------------------------------------- maths


def bouguer_anomaly(gravity: np.ndarray, latitude: np.ndarray, height_m: float, topography: np.ndarray) -> np.ndarray:
    """Simple Bouguer anomaly (mGal): gravity minus WGS84 normal gravity minus the Bouguer plate of the topography.

    ``gravity`` (mGal, gravitational + centrifugal) is given at ``height_m`` above the ellipsoid, at the
    geodetic ``latitude`` (degrees, broadcastable to it); ``topography`` (m above sea level, negative at sea)
    is on the same nodes. Normal gravity is boule's ``WGS84``; the plate is harmonica's ``bouguer_correction``
    (2 pi G rho h, crust 2670 kg/m3, sea water 1040 kg/m3 for bathymetry).
    """
    import boule
    import harmonica

    lat = np.broadcast_to(latitude, gravity.shape)
    normal = boule.WGS84.normal_gravity((None, lat, np.full(gravity.shape, height_m)))
    plate = harmonica.bouguer_correction(
        np.asarray(topography, dtype=np.float64), density_crust=DENSITY_CRUST, density_water=DENSITY_WATER
    )
    return np.asarray(gravity - normal - plate, dtype=np.float64)


def _block_sum(a: np.ndarray, factor: int) -> np.ndarray:
    """Sums over whole ``factor`` x ``factor`` blocks (the array is padded with zeros)."""
    rows, cols = a.shape
    padded = np.pad(a, ((0, (-rows) % factor), (0, (-cols) % factor)))
    return padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor).sum(axis=(1, 3))


def gaussian_smooth(data: np.ndarray, sigma_cells: float) -> np.ndarray:
    """NaN-aware Gaussian smoothing (normalised convolution) with standard deviation ``sigma_cells``.

    Each output is the Gaussian-weighted mean of the finite cells around it (cells outside the array count as
    missing), so a constant stays exactly constant up to the edges. Wide kernels run on a grid decimated by
    whole blocks (``sigma / factor >= MIN_COARSE_SIGMA``) and are interpolated back with cubic splines.
    Returns float64; NaN only where no finite cell lies within reach of the kernel.
    """
    valid = np.isfinite(data)
    values = np.where(valid, data, 0.0).astype(np.float64)
    weight = valid.astype(np.float64)
    factor = max(1, int(sigma_cells // MIN_COARSE_SIGMA))
    if factor > 1:
        values, weight = _block_sum(values, factor), _block_sum(weight, factor)
    sigma = sigma_cells / factor
    num = ndimage.gaussian_filter(values, sigma, mode="constant", cval=0.0, truncate=4.0)
    den = ndimage.gaussian_filter(weight, sigma, mode="constant", cval=0.0, truncate=4.0)
    floor = 1e-9 * float(den.max()) if den.size else 0.0
    smooth = np.where(den > floor, num / np.where(den > floor, den, 1.0), np.nan)
    if factor == 1:
        return smooth
    reached = np.isfinite(smooth)
    rows, cols = data.shape
    r = (np.arange(rows) - (factor - 1) / 2) / factor
    c = (np.arange(cols) - (factor - 1) / 2) / factor
    rr, cc = np.meshgrid(r, c, indexing="ij")
    filled = np.where(reached, smooth, np.nanmean(smooth) if reached.any() else 0.0)
    out = ndimage.map_coordinates(filled, [rr, cc], order=3, mode="nearest")
    near = ndimage.map_coordinates(reached.astype(np.float64), [rr, cc], order=0, mode="nearest") > 0
    return np.where(near, out, np.nan)


def highpass_residual(data: np.ndarray, sigma_cells: float) -> np.ndarray:
    """``data`` minus its Gaussian-smoothed regional field (float32; NaN where ``data`` is NaN)."""
    return (data.astype(np.float64) - gaussian_smooth(data, sigma_cells)).astype(np.float32)


def gradient_magnitude(data: np.ndarray, cell: float, sigma_cells: float) -> np.ndarray:
    """Horizontal-gradient magnitude per km (float32) of ``data`` smoothed with ``sigma_cells``.

    Central differences on the grid (``cell`` in metres) of the NaN-aware smoothed field; NaN where ``data``
    is NaN or a neighbour of the smoothed field is missing.
    """
    smooth = gaussian_smooth(data, sigma_cells) if sigma_cells > 0 else data.astype(np.float64)
    padded = np.pad(smooth, 1, constant_values=np.nan)
    dzdx = (padded[1:-1, 2:] - padded[1:-1, :-2]) / (2 * cell)
    dzdy = (padded[:-2, 1:-1] - padded[2:, 1:-1]) / (2 * cell)
    out = np.hypot(dzdx, dzdy) * 1000.0
    out[~np.isfinite(data)] = np.nan
    return out.astype(np.float32)


def slope_at_scale(elevation: np.ndarray, cell: float, sigma_cells: float) -> np.ndarray:
    """Slope (degrees) of the elevation smoothed with a Gaussian of ``sigma_cells``; NaN where it is NaN."""
    out = slope_degrees(gaussian_smooth(elevation, sigma_cells), cell)
    out[~np.isfinite(elevation)] = np.nan
    return out


def roughness_at_scale(elevation: np.ndarray, radius: int) -> np.ndarray:
    """Roughness (m): max minus min of the finite elevations in the (2r+1)^2 window; NaN where the centre is NaN.

    Unlike the shipped 3 x 3 ``roughness`` a missing neighbour (sea, the grid's edge) does not blank the cell,
    so the coast keeps its values at wide windows.
    """
    valid = np.isfinite(elevation)
    size = 2 * radius + 1
    hi = ndimage.maximum_filter(np.where(valid, elevation, -np.inf), size=size, mode="constant", cval=-np.inf)
    lo = ndimage.minimum_filter(np.where(valid, elevation, np.inf), size=size, mode="constant", cval=np.inf)
    out = (hi - lo).astype(np.float32)
    out[~valid] = np.nan
    return out


# ---------------------------------------------------------------------------------------------- covariates


def bouguer_on_grid(data_dir: Path, grid: Grid) -> np.ndarray:
    """The Bouguer anomaly (mGal) computed on the 10 arc-minute nodes, then resampled onto the grid (cubic)."""
    files = derived_inputs(data_dir)
    gravity = read_icgem_netcdf4(files["derived:gravity_10arcmin"], "gravity")
    topography = read_icgem_netcdf4(files["derived:topography_10arcmin"], "topography")
    if gravity.values.shape != topography.values.shape or not np.allclose(gravity.lat, topography.lat):
        raise CovariateError("the 10 arc-minute gravity and topography grids do not share their nodes")
    if gravity.height_m is None:
        raise CovariateError(f"{files['derived:gravity_10arcmin'].name} gives no computation height")
    anomaly = bouguer_anomaly(gravity.values, gravity.lat[:, None], gravity.height_m, topography.values)
    return resample(gravity.to_raster(anomaly), grid, Resampling.cubic)


def _gravity_covariates(bouguer: np.ndarray, grid: Grid, inputs: tuple[str, ...],
                        timings: dict[str, float] | None) -> list[Covariate]:
    """The Bouguer anomaly, its high-pass residuals and its horizontal-gradient magnitude."""
    def make(name: str, data: np.ndarray, units: str, description: str) -> Covariate:
        return Covariate(name, data, units, description, "derived", inputs, robust=True,
                         source=GRAVITY_SOURCE, licence=GRAVITY_LICENCE)

    out = [make("bouguer_anomaly", bouguer, "mGal",
                "simple Bouguer anomaly: EIGEN-6C4 gravity at 10 km minus WGS84 normal gravity (boule) minus the "
                f"Bouguer plate of ETOPO1 (harmonica, {DENSITY_CRUST:.0f} kg/m3; sea {DENSITY_WATER:.0f} kg/m3), "
                "on the 10 arc-minute nodes, then cubic")]
    for km in RESIDUAL_SCALES_KM:
        sigma = km * 1000.0 / grid.cell
        data = timed(f"derive bouguer_residual_{km}km", timings, partial(highpass_residual, bouguer, sigma))
        out.append(make(f"bouguer_residual_{km}km", data, "mGal",
                        f"Bouguer anomaly minus its Gaussian-smoothed regional field (sigma {km} km, NaN-aware)"))
    sigma = GRADIENT_SIGMA_KM * 1000.0 / grid.cell
    grad = timed("derive bouguer_gradient", timings, lambda: gradient_magnitude(bouguer, grid.cell, sigma))
    out.append(make("bouguer_gradient", grad, "mGal/km",
                    f"horizontal-gradient magnitude of the Bouguer anomaly smoothed with sigma {GRADIENT_SIGMA_KM:g} "
                    "km (central differences on the grid)"))
    return out


def _terrain_covariates(elevation: np.ndarray, grid: Grid, inputs: tuple[str, ...],
                        timings: dict[str, float] | None) -> list[Covariate]:
    """Slope and roughness of the cube's elevation at the scales of ``TERRAIN_SCALES``."""
    slopes, roughs = [], []
    for n in TERRAIN_SCALES:
        km = n * grid.cell / 1000.0
        slope = timed(f"derive slope_{n}cells", timings, partial(slope_at_scale, elevation, grid.cell, n))
        slopes.append(Covariate(
            f"slope_{n}cells", slope, "degree",
            f"slope of the elevation smoothed with a Gaussian of sigma {n} cells ({km:.1f} km), central differences",
            "derived", inputs, robust=True, source=TERRAIN_SOURCE, licence=TERRAIN_LICENCE))
        rough = timed(f"derive roughness_{n}cells", timings, partial(roughness_at_scale, elevation, n))
        roughs.append(Covariate(
            f"roughness_{n}cells", rough, "m",
            f"max - min elevation in the {2 * n + 1}x{2 * n + 1} cell window (radius {km:.1f} km), missing "
            "neighbours skipped", "derived", inputs, robust=True, source=TERRAIN_SOURCE, licence=TERRAIN_LICENCE))
    return slopes + roughs


def derived_covariates(data_dir: Path, grid: Grid, elevation: np.ndarray,
                       timings: dict[str, float] | None = None) -> list[Covariate]:
    """Every derived covariate on the grid, in :func:`derived_names` order.

    ``elevation`` is the cube's resampled elevation (the shipped ``elevation`` band, metres).
    """
    files = derived_inputs(data_dir)
    bouguer = timed("derive bouguer_anomaly", timings, lambda: bouguer_on_grid(data_dir, grid))
    gravity_inputs = (str(files["derived:gravity_10arcmin"]), str(files["derived:topography_10arcmin"]))
    layers = _gravity_covariates(bouguer, grid, gravity_inputs, timings)
    layers += _terrain_covariates(elevation, grid, (str(data_dir / PVLIB_ALTITUDE),), timings)
    if tuple(c.name for c in layers) != derived_names():
        raise AssertionError("derived covariates out of order with derived_names()")
    return layers
