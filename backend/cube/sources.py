"""Readers of the covariate inputs: the bundled global grids and user GeoTIFFs (I/O edge)."""

from __future__ import annotations

import io
import lzma
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine

#: Bundled covariate files, relative to ``Settings.data_dir``.
PVLIB_ALTITUDE = "covariates/pvlib_altitude_5arcmin.h5"
EIGEN_GRAVITY = "covariates/gravity-earth-0.5deg.nc.xz"
EIGEN_GEOID = "covariates/geoid-earth-0.5deg.nc.xz"
#: The 10 arc-minute grids of the derived covariates (netCDF4, ``m3 cube build --derived-covariates``).
EIGEN_GRAVITY_10 = "covariates/earth-gravity-10arcmin.nc.xz"
ETOPO1_TOPOGRAPHY_10 = "covariates/earth-topography-10arcmin.nc.xz"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class CovariateError(ValueError):
    """A covariate input is missing, unreadable or not georeferenced."""


@dataclass(frozen=True)
class SourceRaster:
    """A georeferenced float32 array (NaN = no data) in its own CRS, before resampling."""

    data: np.ndarray
    transform: Affine
    crs: str

    @property
    def resolution(self) -> float:
        """Cell width in CRS units."""
        return abs(self.transform.a)


def _require(path: Path, what: str) -> Path:
    """Fail in words when an input file is missing."""
    if not path.is_file():
        raise CovariateError(f"{what} input {path} does not exist; the bundled covariates live in data/covariates/")
    return path


def read_pvlib_altitude(path: Path) -> SourceRaster:
    """Surface elevation (m) from pvlib's Altitude.h5: uint8 v, metres = 28 v - 450, 255 = nodata.

    Row 0 is at 90 N, column 0 at 180 W, cells of 1/12 degree (area-registered).
    """
    import h5py

    with h5py.File(_require(path, "elevation"), "r") as fh:
        raw = fh["Altitude"][()]
    data = raw.astype(np.float32) * np.float32(28.0) - np.float32(450.0)
    data[raw == 255] = np.nan
    step = 1.0 / 12.0
    return SourceRaster(data=data, transform=Affine(step, 0.0, -180.0, 0.0, -step, 90.0), crs="EPSG:4326")


def _netcdf_xz(path: Path):  # noqa: ANN202 (scipy has no public type for it)
    """Open an xz-compressed classic netCDF file in memory (scipy reads netCDF-3)."""
    from scipy.io import netcdf_file

    with lzma.open(_require(path, "netCDF"), "rb") as fh:
        payload = fh.read()
    return netcdf_file(io.BytesIO(payload), mode="r", mmap=False)


def _eigen_grid(path: Path, variable: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, str]]:
    """Longitudes, latitudes (ascending), values (gaps as NaN) and global attributes of an ICGEM grid."""
    nc = _netcdf_xz(path)
    try:
        if variable not in nc.variables:
            raise CovariateError(f"{path.name} has no variable {variable!r}; it has {sorted(nc.variables)}")
        lon = np.array(nc.variables["longitude"][:], dtype=np.float64)
        lat = np.array(nc.variables["latitude"][:], dtype=np.float64)
        values = np.array(nc.variables[variable][:], dtype=np.float64)
        attrs = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in nc._attributes.items()}
    finally:
        nc.close()
    gap = attrs.get("gapvalue")
    if gap is not None:
        values[values == float(gap)] = np.nan
    return lon, lat, values, attrs


def _point_grid(lon: np.ndarray, lat: np.ndarray, values: np.ndarray) -> SourceRaster:
    """A grid-registered (node) lon/lat grid as a north-up raster whose cells centre on the nodes."""
    dx = float(lon[1] - lon[0])
    dy = float(lat[1] - lat[0])
    if dy > 0:
        values, lat = values[::-1], lat[::-1]
    transform = Affine(dx, 0.0, float(lon[0]) - dx / 2, 0.0, -abs(dy), float(lat[0]) + abs(dy) / 2)
    return SourceRaster(data=values.astype(np.float32), transform=transform, crs="EPSG:4326")


def read_geoid(path: Path) -> SourceRaster:
    """EIGEN-6C4 geoid height (m) on its 0.5 degree node grid."""
    lon, lat, values, _ = _eigen_grid(path, "geoid")
    return _point_grid(lon, lat, values)


def read_gravity_disturbance(path: Path) -> SourceRaster:
    """EIGEN-6C4 gravity disturbance (mGal): gravity at the grid's height minus WGS84 normal gravity there.

    The file holds the gravity magnitude at 10 km above the ellipsoid (centrifugal term included);
    boule's ``WGS84.normal_gravity`` at the same latitude and height is subtracted on the source nodes.
    """
    import boule

    lon, lat, values, attrs = _eigen_grid(path, "gravity")
    height = float(attrs.get("height_over_ell", "10000 m").split()[0])
    lat2d = np.broadcast_to(lat[:, None], values.shape)
    # boule >= 0.6: one (longitude, latitude, height) tuple; longitude is unused by normal gravity
    normal = boule.WGS84.normal_gravity((None, lat2d, np.full(values.shape, height)))
    return _point_grid(lon, lat, values - normal)


@dataclass(frozen=True)
class NodeGrid:
    """A global grid-registered (node) lon/lat grid in physical units, latitudes ascending, gaps as NaN."""

    lon: np.ndarray  # (W,) degrees east
    lat: np.ndarray  # (H,) degrees north, ascending
    values: np.ndarray  # (H, W) float64
    height_m: float | None = None  # computation height above the ellipsoid, where the grid has one

    def to_raster(self, values: np.ndarray | None = None) -> SourceRaster:
        """The grid (or other values on its nodes) as a north-up raster whose cells centre on the nodes."""
        return _point_grid(self.lon, self.lat, self.values if values is None else values)


def read_icgem_netcdf4(path: Path, variable: str) -> NodeGrid:
    """One variable of an xz-compressed netCDF4 ICGEM grid (the 10 arc-minute files of ``fatiando/data``).

    Packed integers are unpacked with the variable's ``scale_factor`` and ``add_offset``; its ``_FillValue``
    becomes NaN. The ``height`` variable, where present, gives the computation height (one value).
    """
    import h5py

    with lzma.open(_require(path, "netCDF4"), "rb") as fh:
        payload = fh.read()
    with h5py.File(io.BytesIO(payload), "r") as nc:
        if variable not in nc:
            raise CovariateError(f"{path.name} has no variable {variable!r}; it has {sorted(nc)}")
        var = nc[variable]
        raw = var[()]
        fill = var.attrs.get("_FillValue")
        scale = float(np.ravel(var.attrs.get("scale_factor", [1.0]))[0])
        offset = float(np.ravel(var.attrs.get("add_offset", [0.0]))[0])
        lon = np.asarray(nc["longitude"][()], dtype=np.float64)
        lat = np.asarray(nc["latitude"][()], dtype=np.float64)
        height = np.asarray(nc["height"][()], dtype=np.float64) if "height" in nc else None
    values = raw.astype(np.float64) * scale + offset
    if fill is not None:
        values[raw == np.ravel(fill)[0]] = np.nan
    if lat[0] > lat[-1]:
        lat, values = lat[::-1], values[::-1]
    h = None
    if height is not None:
        if np.nanmax(height) - np.nanmin(height) > 1e-6:
            raise CovariateError(f"{path.name}: gravity is not given at one height; a constant height is expected")
        h = float(np.nanmean(height))
    return NodeGrid(lon=lon, lat=lat, values=values, height_m=h)


def read_user_geotiff(name: str, path: Path):  # noqa: ANN201 (returns an open rasterio dataset)
    """Open a user covariate GeoTIFF, failing in words if it is missing, unreadable or has no CRS."""
    import rasterio
    from rasterio.errors import RasterioIOError

    if not _NAME.match(name):
        raise CovariateError(f"covariate name {name!r} is not valid: use lower-case letters, digits and '_'")
    if not path.is_file():
        raise CovariateError(f"covariate {name!r}: file {path} does not exist")
    try:
        ds = rasterio.open(path)
    except RasterioIOError as exc:
        raise CovariateError(f"covariate {name!r}: cannot read {path} as a raster ({exc})") from exc
    if ds.crs is None:
        ds.close()
        raise CovariateError(
            f"covariate {name!r}: {path} has no CRS; assign one first (e.g. gdal_edit.py -a_srs EPSG:4326)"
        )
    if ds.transform == Affine.identity() and not ds.gcps[0]:
        ds.close()
        raise CovariateError(f"covariate {name!r}: {path} has no geotransform")
    return ds
