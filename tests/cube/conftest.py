"""Fixtures of the cube tests: small grids and seeded synthetic site tables (no database)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.cube.grid import Grid
from backend.cube.sites import SiteTable

MRDS_CA = "https://doi.org/10.5066/P9HTERGK"
OREGON = "http://www.oregongeology.org"
NATIONAL = "https://mrdata.usgs.gov/porcu"

#: Named places (lon, lat) used across the tests.
DENVER = (-104.9903, 39.7392)
DEATH_VALLEY = (-116.8325, 36.2469)  # the valley floor near Badwater/Furnace Creek
SACRAMENTO = (-121.4944, 38.5816)
RENO = (-119.8138, 39.5296)
PORTLAND = (-122.6765, 45.5231)
HONOLULU = (-157.8583, 21.3069)


@pytest.fixture(scope="session")
def conus_grid() -> Grid:
    return Grid.conus()


@pytest.fixture(scope="session")
def west_grid() -> Grid:
    """A small grid (California, Nevada, Oregon) with the CONUS grid's CRS and cell, for fast builds."""
    conus = Grid.conus()
    lon = np.array([-125.0, -114.0])
    lat = np.array([32.0, 46.5])
    x, y = conus.lonlat_to_xy(np.array([lon[0], lon[1], lon[0], lon[1]]), np.array([lat[0], lat[0], lat[1], lat[1]]))
    return Grid.from_bounds((x.min(), y.min(), x.max(), y.max()), margin_cells=2)


@pytest.fixture()
def synthetic_sites() -> SiteTable:
    """A seeded table: gold clustered in California, copper in Oregon, a national record, one outside."""
    rng = np.random.default_rng(42)
    n_ca = 200
    lon = list(rng.uniform(-121.5, -120.0, n_ca)) + [PORTLAND[0], PORTLAND[0], RENO[0], HONOLULU[0]]
    lat = list(rng.uniform(37.5, 39.5, n_ca)) + [PORTLAND[1], PORTLAND[1], RENO[1], HONOLULU[1]]
    species = [("gold",) if i % 4 else ("gold", "silver", "gold") for i in range(n_ca)]
    species += [("copper",), ("copper", "sand_and_gravel"), ("copper",), ("gold",)]
    source = [MRDS_CA] * n_ca + [OREGON, OREGON, NATIONAL, NATIONAL]
    state = ["CA"] * n_ca + ["OR", "OR", "NV", "HI"]
    return SiteTable.from_records(lon, lat, species, source, state)
