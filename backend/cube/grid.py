"""The CONUS grid: the one source of truth for cell geometry, windows and raster writing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

#: CONUS Albers equal-area (NAD83): the CRS of every cube raster.
GRID_CRS = "EPSG:5070"
#: One statute mile in metres: the cell size of the M3 grid.
CELL_SIZE = 1609.344
#: Cells added around the projected CONUS outline on each side.
DEFAULT_MARGIN_CELLS = 20


@lru_cache(maxsize=8)
def _transformer(src: str, dst: str) -> Transformer:
    """A cached, always-xy pyproj transformer between two CRSs."""
    return Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)


def project_geometry(geom: BaseGeometry, src_crs: str = "EPSG:4326", dst_crs: str = GRID_CRS) -> BaseGeometry:
    """Reproject a shapely geometry vertex by vertex (no densification)."""
    tr = _transformer(src_crs, dst_crs)

    def _xy(coords: np.ndarray) -> np.ndarray:
        x, y = tr.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, _xy)


def offset_transform(transform: Affine, col_off: float, row_off: float) -> Affine:
    """The transform of a raster whose (0, 0) cell is cell (row_off, col_off) of ``transform``.

    Written out instead of composing with ``*`` or ``@``, whose meaning differs across affine releases.
    """
    t = transform
    return Affine(t.a, t.b, t.c + t.a * col_off + t.b * row_off, t.d, t.e, t.f + t.d * col_off + t.e * row_off)


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: CRS, top-left corner, square cell size and shape (rows, cols)."""

    crs: str
    x0: float
    y0: float
    cell: float
    height: int
    width: int

    @classmethod
    def from_bounds(
        cls,
        bounds: Sequence[float],
        crs: str = GRID_CRS,
        cell: float = CELL_SIZE,
        margin_cells: int = DEFAULT_MARGIN_CELLS,
    ) -> Grid:
        """The grid covering ``bounds`` (minx, miny, maxx, maxy in ``crs``) plus a margin, origin snapped."""
        minx, miny, maxx, maxy = (float(b) for b in bounds)
        if not (maxx > minx and maxy > miny):
            raise ValueError(f"empty bounds {tuple(bounds)}: need minx < maxx and miny < maxy")
        margin = margin_cells * cell
        x0 = math.floor((minx - margin) / cell) * cell
        y0 = math.ceil((maxy + margin) / cell) * cell
        width = math.ceil((maxx + margin - x0) / cell)
        height = math.ceil((y0 - (miny - margin)) / cell)
        return cls(crs=crs, x0=x0, y0=y0, cell=cell, height=height, width=width)

    @classmethod
    def conus(cls, margin_cells: int = DEFAULT_MARGIN_CELLS) -> Grid:
        """The M3 grid: EPSG:5070, 1-mile cells, the projected CONUS outline plus a margin."""
        return _conus_grid(margin_cells)

    # --- geometry -------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return (self.height, self.width)

    @property
    def transform(self) -> Affine:
        """The affine transform from (col, row) to grid CRS coordinates of cell corners."""
        return Affine(self.cell, 0.0, self.x0, 0.0, -self.cell, self.y0)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(minx, miny, maxx, maxy) in the grid CRS."""
        return (self.x0, self.y0 - self.height * self.cell, self.x0 + self.width * self.cell, self.y0)

    def xy_to_rowcol(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column (int64) of the cells holding grid-CRS points; may lie outside the grid."""
        col = np.floor((np.asarray(x, dtype=float) - self.x0) / self.cell)
        row = np.floor((self.y0 - np.asarray(y, dtype=float)) / self.cell)
        bad = ~(np.isfinite(col) & np.isfinite(row))
        col[bad] = -1
        row[bad] = -1
        return row.astype(np.int64), col.astype(np.int64)

    def lonlat_to_xy(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project WGS84 longitude/latitude to the grid CRS with pyproj."""
        x, y = _transformer("EPSG:4326", self.crs).transform(np.asarray(lon, float), np.asarray(lat, float))
        return np.asarray(x, dtype=float), np.asarray(y, dtype=float)

    def lonlat_to_rowcol(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of the cells holding lon/lat points (pyproj); may lie outside the grid."""
        return self.xy_to_rowcol(*self.lonlat_to_xy(lon, lat))

    def contains(self, row: np.ndarray, col: np.ndarray) -> np.ndarray:
        """Boolean mask of (row, col) pairs that lie inside the grid."""
        row, col = np.asarray(row), np.asarray(col)
        return (row >= 0) & (row < self.height) & (col >= 0) & (col < self.width)

    def cell_centers(self) -> tuple[np.ndarray, np.ndarray]:
        """Grid-CRS x of every column centre and y of every row centre (1-D arrays)."""
        xs = self.x0 + (np.arange(self.width) + 0.5) * self.cell
        ys = self.y0 - (np.arange(self.height) + 0.5) * self.cell
        return xs, ys

    def cell_lonlat(self, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """WGS84 lon/lat of the centres of the given cells."""
        x = self.x0 + (np.asarray(col, float) + 0.5) * self.cell
        y = self.y0 - (np.asarray(row, float) + 0.5) * self.cell
        lon, lat = _transformer(self.crs, "EPSG:4326").transform(x, y)
        return np.asarray(lon), np.asarray(lat)

    def window_for_bounds(self, bounds: Sequence[float]) -> Window:
        """The window of whole cells covering grid-CRS ``bounds``, clipped to the grid (may be empty)."""
        minx, miny, maxx, maxy = (float(b) for b in bounds)
        c0 = max(0, math.floor((minx - self.x0) / self.cell))
        c1 = min(self.width, math.ceil((maxx - self.x0) / self.cell))
        r0 = max(0, math.floor((self.y0 - maxy) / self.cell))
        r1 = min(self.height, math.ceil((self.y0 - miny) / self.cell))
        return Window(c0, r0, max(0, c1 - c0), max(0, r1 - r0))

    def window_for_bbox(self, bbox: Sequence[float], crs: str = "EPSG:4326") -> Window:
        """The window of whole cells covering a bbox (minx, miny, maxx, maxy; default lon/lat)."""
        from rasterio.warp import transform_bounds

        projected = transform_bounds(crs, self.crs, *bbox, densify_pts=21)
        return self.window_for_bounds(projected)

    def window_transform(self, window: Window) -> Affine:
        """The affine transform of a window of this grid."""
        return offset_transform(self.transform, window.col_off, window.row_off)

    # --- description ----------------------------------------------------------------------------
    def profile(self, count: int, dtype: str, nodata: float | None = None) -> dict[str, Any]:
        """A rasterio GeoTIFF profile on this grid with the cube's fixed, deterministic options."""
        profile: dict[str, Any] = {
            "driver": "GTiff",
            "width": self.width,
            "height": self.height,
            "count": count,
            "dtype": dtype,
            "crs": self.crs,
            "transform": self.transform,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "zstd",
            "zstd_level": 3,
            "interleave": "band",
            "bigtiff": "no",
        }
        if np.dtype(dtype).kind == "f":
            profile["predictor"] = 3
        elif np.dtype(dtype).itemsize > 1:
            profile["predictor"] = 2
        if nodata is not None:
            profile["nodata"] = nodata
        return profile

    def to_json(self) -> dict[str, Any]:
        """The grid as plain JSON (for cube.json)."""
        return {
            "crs": self.crs,
            "cell_size_m": self.cell,
            "height": self.height,
            "width": self.width,
            "transform": list(self.transform)[:6],
            "bounds": list(self.bounds),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Grid:
        """The grid described by :meth:`to_json` output."""
        t = data["transform"]
        return cls(crs=data["crs"], x0=t[2], y0=t[5], cell=t[0], height=data["height"], width=data["width"])


@lru_cache(maxsize=4)
def _conus_grid(margin_cells: int) -> Grid:
    """Build (once) the CONUS grid from the bundled us-atlas outline."""
    from backend.geo.boundaries import conus_outline

    projected = project_geometry(shapely.segmentize(conus_outline(), 0.05))
    return Grid.from_bounds(projected.bounds, margin_cells=margin_cells)
