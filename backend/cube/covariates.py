"""Covariates on the grid: resampling, terrain derivatives, normalisation and validity.

Pure numpy plus rasterio's warper; reading files is left to :mod:`backend.cube.sources`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, transform_bounds
from rasterio.windows import from_bounds

from backend.cube.contract import NormalisationSpec
from backend.cube.grid import Grid, offset_transform
from backend.cube.sources import CovariateError, SourceRaster, read_user_geotiff

log = logging.getLogger(__name__)

#: Threads GDAL's warper may use (the output does not depend on it).
WARP_THREADS = 2
#: Largest error (in source pixels) GDAL's approximate transformer may make while warping.
WARP_TOLERANCE = 0.01


@dataclass(frozen=True)
class Covariate:
    """One covariate on the grid in physical units (float32, NaN where invalid) and its description."""

    name: str
    data: np.ndarray
    units: str
    description: str
    resampling: str
    inputs: tuple[str, ...] = field(default_factory=tuple)
    robust: bool = False  # normalise with median/IQR and quantile clipping (see robust_normalisation)
    source: str = ""  # where the inputs come from, when cube.json should say it (derived covariates)
    licence: str = ""  # the inputs' licence, likewise

    @property
    def valid(self) -> np.ndarray:
        """uint8 validity mask: 1 where the covariate has a value."""
        return np.isfinite(self.data).astype(np.uint8)


class Normalisation(NormalisationSpec):
    """Statistics of a covariate over the valid cells inside CONUS (cube.json's schema).

    z = (value - mean) / std; with a robust ``scale``: z = (clip(value, clip_low, clip_high) - centre) / scale.
    """

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Normalise physical values (NaN stays NaN) to float32."""
        values = data.astype(np.float64)
        if self.scale is None:
            out = (values - self.mean) / self.std
        else:
            lo = -np.inf if self.clip_low is None else self.clip_low
            hi = np.inf if self.clip_high is None else self.clip_high
            out = (np.clip(values, lo, hi) - (self.centre or 0.0)) / self.scale
        return out.astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        """The statistics as plain JSON numbers (the robust fields only where they are set)."""
        return self.model_dump(exclude_none=True)


def normalisation(data: np.ndarray, region: np.ndarray) -> Normalisation:
    """Mean, std (population), min and max of ``data`` over finite cells where ``region`` is set."""
    inside = region.astype(bool)
    values = data[inside & np.isfinite(data)].astype(np.float64)
    n_region = int(inside.sum())
    if values.size == 0:
        raise CovariateError("covariate has no valid cell inside CONUS: does it overlap the grid?")
    std = float(values.std())
    return Normalisation(
        mean=round(float(values.mean()), 9),
        std=round(std if std > 0 else 1.0, 9),
        min=float(values.min()),
        max=float(values.max()),
        valid_cells=int(values.size),
        valid_fraction_conus=round(values.size / n_region, 9) if n_region else 0.0,
    )


#: Quantiles a robust normalisation clips to, and the IQR of a standard normal (IQR / 1.349 ~ std).
ROBUST_CLIP = (0.005, 0.995)
NORMAL_IQR = 1.3489795


def robust_normalisation(data: np.ndarray, region: np.ndarray, clip: tuple[float, float] = ROBUST_CLIP
                         ) -> Normalisation:
    """:func:`normalisation` plus a robust transform: centre the median, scale IQR / 1.349, clip to quantiles.

    The clip bounds are the ``clip`` quantiles of the valid cells inside CONUS, so a few extreme cells (a
    gradient spike, a sea-floor cliff) do not set the scale of every other cell.
    """
    stats = normalisation(data, region)
    inside = region.astype(bool)
    values = data[inside & np.isfinite(data)].astype(np.float64)
    lo, q25, median, q75, hi = np.quantile(values, [clip[0], 0.25, 0.5, 0.75, clip[1]])
    scale = (q75 - q25) / NORMAL_IQR
    if not scale > 0:
        scale = stats.std
    return stats.model_copy(update={
        "centre": round(float(median), 9), "scale": round(float(scale), 9),
        "clip_low": round(float(lo), 9), "clip_high": round(float(hi), 9),
    })


def crop_to_grid(src: SourceRaster, grid: Grid, pad_cells: int = 4) -> SourceRaster:
    """The part of a source raster that covers the grid (plus a pad), so the warper reads less."""
    left, bottom, right, top = transform_bounds(grid.crs, src.crs, *grid.bounds, densify_pts=51)
    win = from_bounds(left, bottom, right, top, src.transform)
    rows, cols = src.data.shape
    r0 = max(0, math.floor(win.row_off) - pad_cells)
    c0 = max(0, math.floor(win.col_off) - pad_cells)
    r1 = min(rows, math.ceil(win.row_off + win.height) + pad_cells)
    c1 = min(cols, math.ceil(win.col_off + win.width) + pad_cells)
    if r1 <= r0 or c1 <= c0:
        raise CovariateError("source raster does not overlap the grid")
    data = np.ascontiguousarray(src.data[r0:r1, c0:c1])
    return SourceRaster(data=data, transform=offset_transform(src.transform, c0, r0), crs=src.crs)


def warp_band(ds: Any, grid: Grid, resampling: Resampling, src_nodata: float | None = None) -> np.ndarray:
    """Warp band 1 of an open rasterio dataset onto the grid (float32, NaN where there is no value).

    A WarpedVRT is used (not ``reproject``) because it honours the error tolerance of GDAL's
    approximate transformer: the default of 1/8 source pixel shifts a 0.5-degree input by kilometres.
    """
    from rasterio.vrt import WarpedVRT

    options: dict[str, Any] = {
        "crs": grid.crs,
        "transform": grid.transform,
        "width": grid.width,
        "height": grid.height,
        "resampling": resampling,
        "tolerance": WARP_TOLERANCE,
        "nodata": np.nan,
        "dtype": "float32",
        "num_threads": WARP_THREADS,
    }
    if src_nodata is not None:
        options["src_nodata"] = src_nodata
    with WarpedVRT(ds, **options) as vrt:
        return vrt.read(1)


def resample(src: SourceRaster, grid: Grid, resampling: Resampling) -> np.ndarray:
    """Warp an in-memory source raster onto the grid (float32, NaN where the source has no value)."""
    from rasterio.io import MemoryFile

    cropped = crop_to_grid(src, grid)
    rows, cols = cropped.data.shape
    with MemoryFile() as mem:
        with mem.open(
            driver="GTiff",
            width=cols,
            height=rows,
            count=1,
            dtype="float32",
            crs=cropped.crs,
            transform=cropped.transform,
            nodata=np.nan,
        ) as tmp:
            tmp.write(cropped.data.astype(np.float32), 1)
        with mem.open() as ds:
            return warp_band(ds, grid, resampling)


def _shift(a: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """``a`` shifted by (dr, dc) cells, NaN where the shift leaves the array."""
    out = np.full_like(a, np.nan)
    rows, cols = a.shape
    out[max(0, -dr) : rows - max(0, dr), max(0, -dc) : cols - max(0, dc)] = a[
        max(0, dr) : rows - max(0, -dr), max(0, dc) : cols - max(0, -dc)
    ]
    return out


def slope_degrees(elevation: np.ndarray, cell: float) -> np.ndarray:
    """Slope (degrees) by central differences on the grid; NaN where a neighbour is missing."""
    e = elevation.astype(np.float64)
    dzdx = (_shift(e, 0, 1) - _shift(e, 0, -1)) / (2 * cell)
    dzdy = (_shift(e, -1, 0) - _shift(e, 1, 0)) / (2 * cell)
    return np.degrees(np.arctan(np.hypot(dzdx, dzdy))).astype(np.float32)


def roughness(elevation: np.ndarray) -> np.ndarray:
    """Roughness (m): max minus min elevation in the 3x3 neighbourhood (GDAL's definition)."""
    shifts = [_shift(elevation, dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
    hi = reduce(np.maximum, shifts)
    lo = reduce(np.minimum, shifts)
    return (hi - lo).astype(np.float32)


def _source_resolution_on_grid(ds: Any, grid: Grid) -> float:
    """Approximate cell size of an open dataset once projected to the grid CRS (grid units)."""
    transform, _, _ = calculate_default_transform(ds.crs, grid.crs, ds.width, ds.height, *ds.bounds)
    return abs(transform.a)


def user_covariate(name: str, path: Path, grid: Grid) -> Covariate:
    """Resample band 1 of a user GeoTIFF (any CRS) onto the grid.

    Sources finer than the grid are averaged (no aliasing); coarser ones are interpolated
    bilinearly. The source's nodata (and NaN) become invalid cells.
    """
    with read_user_geotiff(name, path) as ds:
        if ds.count > 1:
            log.warning("covariate %r: %s has %d bands; using band 1", name, path, ds.count)
        finer = _source_resolution_on_grid(ds, grid) < grid.cell
        method = Resampling.average if finer else Resampling.bilinear
        nodata = ds.nodata
        if nodata is None and np.dtype(ds.dtypes[0]).kind == "f":
            nodata = np.nan
        out = warp_band(ds, grid, method, src_nodata=nodata)
        units = ds.units[0] if ds.units and ds.units[0] else ""
        description = ds.descriptions[0] or f"user covariate from {path.name}"
    if not np.isfinite(out).any():
        raise CovariateError(f"covariate {name!r}: {path} does not overlap the CONUS grid")
    return Covariate(
        name=name, data=out, units=units, description=description, resampling=method.name, inputs=(str(path),)
    )


def parse_covariate_option(option: str) -> tuple[str, Path]:
    """Split a ``NAME=PATH`` command-line option, failing in words."""
    name, sep, path = option.partition("=")
    if not sep or not name or not path:
        raise CovariateError(f"covariate option {option!r} is not NAME=PATH (e.g. magnetics=/data/mag.tif)")
    return name.strip(), Path(path.strip()).expanduser()
