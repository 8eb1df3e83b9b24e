"""The CONUS data cube: one grid, label layers, coverage mask and covariates (DESIGN.md section 2)."""

from backend.cube.build import build_cube, build_cube_from_sites
from backend.cube.grid import CELL_SIZE, GRID_CRS, Grid
from backend.cube.sites import SiteTable, read_sites

__all__ = ["CELL_SIZE", "GRID_CRS", "Grid", "SiteTable", "build_cube", "build_cube_from_sites", "read_sites"]
