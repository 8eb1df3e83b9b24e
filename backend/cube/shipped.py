"""The covariates that ship with the project: elevation, terrain derivatives, gravity, geoid."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rasterio.enums import Resampling

from backend.cube.covariates import Covariate, resample, roughness, slope_degrees
from backend.cube.grid import Grid
from backend.cube.sources import (
    EIGEN_GEOID,
    EIGEN_GRAVITY,
    PVLIB_ALTITUDE,
    read_geoid,
    read_gravity_disturbance,
    read_pvlib_altitude,
)

log = logging.getLogger(__name__)

#: Names of the shipped covariates, in band order.
SHIPPED_COVARIATES: tuple[str, ...] = ("elevation", "slope", "roughness", "gravity_disturbance", "geoid")


def shipped_inputs(data_dir: Path) -> dict[str, Path]:
    """The bundled input files the shipped covariates are read from."""
    return {
        "elevation": data_dir / PVLIB_ALTITUDE,
        "gravity_disturbance": data_dir / EIGEN_GRAVITY,
        "geoid": data_dir / EIGEN_GEOID,
    }


def timed(label: str, timings: dict[str, float] | None, fn: Callable[[], np.ndarray]) -> np.ndarray:
    """Run ``fn`` and log (and record) how long it took."""
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    log.info("%s: %.2f s", label, seconds)
    if timings is not None:
        timings[label] = seconds
    return result


def shipped_covariates(data_dir: Path, grid: Grid, timings: dict[str, float] | None = None) -> list[Covariate]:
    """Resample the bundled rasters onto the grid and derive slope and roughness.

    Elevation comes from the 5-arcminute pvlib grid (finer than the 0.5 degree ETOPO1 file) with
    cubic interpolation, so its derivatives are continuous; slope and roughness are computed on the
    grid itself. Gravity disturbance and geoid come from the 0.5 degree EIGEN-6C4 grids (bilinear).
    """
    files = shipped_inputs(data_dir)
    elev = timed(
        "resample elevation",
        timings,
        lambda: resample(read_pvlib_altitude(files["elevation"]), grid, Resampling.cubic),
    )
    slope = timed("derive slope", timings, lambda: slope_degrees(elev, grid.cell))
    rough = timed("derive roughness", timings, lambda: roughness(elev))
    grav = timed(
        "resample gravity_disturbance",
        timings,
        lambda: resample(read_gravity_disturbance(files["gravity_disturbance"]), grid, Resampling.bilinear),
    )
    geoid = timed("resample geoid", timings, lambda: resample(read_geoid(files["geoid"]), grid, Resampling.bilinear))
    elev_in = (str(files["elevation"]),)
    return [
        Covariate("elevation", elev, "m", "surface elevation (pvlib Altitude.h5, 5 arcmin)", "cubic", elev_in),
        Covariate(
            "slope",
            slope,
            "degree",
            "slope of the elevation on the grid (central differences)",
            "derived",
            elev_in,
        ),
        Covariate("roughness", rough, "m", "max - min elevation in the 3x3 cell neighbourhood", "derived", elev_in),
        Covariate(
            "gravity_disturbance",
            grav,
            "mGal",
            "EIGEN-6C4 gravity at 10 km ellipsoidal height minus WGS84 normal gravity (boule)",
            "bilinear",
            (str(files["gravity_disturbance"]),),
        ),
        Covariate(
            "geoid",
            geoid,
            "m",
            "EIGEN-6C4 geoid height above the WGS84 ellipsoid",
            "bilinear",
            (str(files["geoid"]),),
        ),
    ]
