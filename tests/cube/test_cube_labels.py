"""Label layers from small synthetic site tables: counts, presence, validation."""

from __future__ import annotations

import numpy as np
import pytest

from backend.cube.grid import Grid
from backend.cube.labels import (
    ALL_SITES,
    UnknownSpeciesError,
    count_layers,
    label_statistics,
    locate_sites,
    narrow_counts,
    presence,
    validate_species,
)
from backend.cube.sites import SiteTable

from .conftest import DENVER, HONOLULU, PORTLAND


def test_counts_sum_to_sites_inside_the_grid(conus_grid: Grid, synthetic_sites: SiteTable) -> None:
    cells = locate_sites(conus_grid, synthetic_sites)
    assert cells.n_inside == len(synthetic_sites) - 1  # Honolulu is outside
    names = ["gold", "silver", "copper", ALL_SITES]
    counts = count_layers(conus_grid, synthetic_sites, cells, names)
    assert counts.shape == (4, *conus_grid.shape)
    inside = cells.inside
    for k, name in enumerate(names[:3]):
        expected = sum(1 for i, s in enumerate(synthetic_sites.species) if name in s and inside[i])
        assert int(counts[k].sum()) == expected
    assert int(counts[3].sum()) == cells.n_inside
    # a site naming gold twice counts once
    assert int(counts[0].sum()) == 200


def test_site_is_counted_in_its_pyproj_cell(conus_grid: Grid) -> None:
    sites = SiteTable.from_records(
        [DENVER[0], DENVER[0], PORTLAND[0]],
        [DENVER[1], DENVER[1], PORTLAND[1]],
        [("gold",), ("gold", "copper"), ("copper",)],
    )
    counts = count_layers(conus_grid, sites, locate_sites(conus_grid, sites), ["gold", "copper"])
    row, col = conus_grid.lonlat_to_rowcol(np.array([DENVER[0], PORTLAND[0]]), np.array([DENVER[1], PORTLAND[1]]))
    assert counts[0, row[0], col[0]] == 2
    assert counts[1, row[0], col[0]] == 1
    assert counts[1, row[1], col[1]] == 1
    assert int(counts.sum()) == 4
    p = presence(counts)
    assert p.dtype == np.uint8 and int(p.sum()) == 3


def test_sites_outside_the_grid_are_dropped(conus_grid: Grid) -> None:
    sites = SiteTable.from_records([HONOLULU[0], -150.0, np.nan], [HONOLULU[1], 61.0, np.nan], [("gold",)] * 3)
    cells = locate_sites(conus_grid, sites)
    assert cells.n_inside == 0
    assert int(count_layers(conus_grid, sites, cells, ["gold"]).sum()) == 0


def test_narrow_counts_keeps_uint16_when_it_fits() -> None:
    assert narrow_counts(np.array([[[3]]], dtype=np.uint32)).dtype == np.uint16
    assert narrow_counts(np.array([[[70000]]], dtype=np.uint32)).dtype == np.uint32


def test_validate_species_errors_in_words() -> None:
    available = {"gold": 10, "silver": 3, "sand_and_gravel": 5}
    assert validate_species(["silver", "gold", "silver"], available) == ["silver", "gold"]
    with pytest.raises(UnknownSpeciesError, match=r"'gld' is unknown.*gold, sand_and_gravel, silver"):
        validate_species(["gld"], available)
    with pytest.raises(UnknownSpeciesError, match="not a valid id"):
        validate_species(["Gold"], available)
    with pytest.raises(UnknownSpeciesError, match="no species requested"):
        validate_species([], available)


def test_label_statistics_split_by_coverage(conus_grid: Grid, synthetic_sites: SiteTable) -> None:
    cells = locate_sites(conus_grid, synthetic_sites)
    counts = count_layers(conus_grid, synthetic_sites, cells, ["copper"])
    coverage = np.zeros(conus_grid.shape, np.uint8)
    row, col = conus_grid.lonlat_to_rowcol(np.array([PORTLAND[0]]), np.array([PORTLAND[1]]))
    coverage[row[0], col[0]] = 1
    (stats,) = label_statistics(["copper"], counts, coverage)
    assert stats == {
        "name": "copper",
        "sites": 3,
        "cells": 2,
        "max_per_cell": 2,
        "sites_covered": 2,
        "cells_covered": 1,
    }
