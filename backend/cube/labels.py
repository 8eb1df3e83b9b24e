"""Label layers: per-species presence and counts of known sites on the grid (pure numpy)."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from backend.cube.grid import Grid
from backend.cube.sites import SiteTable

#: Non-target commodities kept as cross-reference layers (the poster found flagged zinc and iron
#: over sand, gravel, clay and silica mines). Configuration: `build_cube(crossref=...)`.
DEFAULT_CROSSREF: tuple[str, ...] = (
    "sand_and_gravel",
    "sand",
    "clay",
    "stone",
    "limestone",
    "silica",
    "gypsum_anhydrite",
    "pumice",
    "diatomite",
    "feldspar",
    "perlite",
)
#: Name of the cross-reference band that counts every site, whatever its commodities.
ALL_SITES = "all_sites"

_SPECIES_ID = re.compile(r"^[a-z][a-z0-9_]*$")


class UnknownSpeciesError(ValueError):
    """A requested species id is not in the site store."""


@dataclass(frozen=True)
class SiteCells:
    """The grid cell of every site: flat cell index (-1 outside the grid) and the inside mask."""

    index: np.ndarray
    inside: np.ndarray

    @property
    def n_inside(self) -> int:
        """Number of sites that lie inside the grid."""
        return int(self.inside.sum())


def locate_sites(grid: Grid, sites: SiteTable) -> SiteCells:
    """Find the cell of every site with pyproj (the same arithmetic as :meth:`Grid.lonlat_to_rowcol`)."""
    if len(sites) == 0:
        return SiteCells(index=np.zeros(0, np.int64), inside=np.zeros(0, bool))
    row, col = grid.lonlat_to_rowcol(sites.lon, sites.lat)
    inside = grid.contains(row, col)
    index = np.where(inside, row * grid.width + col, -1)
    return SiteCells(index=index, inside=inside)


def from_sources(sites: SiteTable, sources: Collection[str]) -> np.ndarray:
    """Per site, True where the site's source is one of ``sources``."""
    wanted = frozenset(sources)
    return np.fromiter((src in wanted for src in sites.source), dtype=bool, count=len(sites))


def select_cells(cells: SiteCells, keep: np.ndarray) -> SiteCells:
    """The cells of the sites where ``keep`` is True; the others count as outside the grid.

    :func:`count_layers` with the result counts only the kept sites (a subset of the table
    without locating the sites again).
    """
    if keep.shape != cells.inside.shape:
        raise ValueError(f"keep has shape {keep.shape}; the table has {cells.inside.shape[0]} sites")
    inside = cells.inside & keep
    return SiteCells(index=np.where(inside, cells.index, -1), inside=inside)


def validate_species(requested: Sequence[str], available: dict[str, int], what: str = "species") -> list[str]:
    """Check requested species ids against those present in the store; keep order, drop repeats."""
    out: list[str] = []
    for name in requested:
        if not _SPECIES_ID.match(name):
            raise UnknownSpeciesError(
                f"{what} {name!r} is not a valid id: use lower-case canonical ids such as 'gold' or 'sand_and_gravel'"
            )
        if name not in available:
            known = ", ".join(sorted(available, key=lambda k: (-available[k], k))[:40])
            raise UnknownSpeciesError(
                f"{what} {name!r} is unknown: no site in the store names it; known (most sites first): "
                f"{known or '(the store holds no sites)'}"
            )
        if name not in out:
            out.append(name)
    if not out:
        raise UnknownSpeciesError(f"no {what} requested: name at least one")
    return out


def count_layers(grid: Grid, sites: SiteTable, cells: SiteCells, names: Sequence[str]) -> np.ndarray:
    """Per-name site counts on the grid, shape (len(names), rows, cols), uint32.

    A site counts once in each layer it names (repeats of a name in one site count once). The
    special name ``all_sites`` counts every site inside the grid.
    """
    n_cells = grid.height * grid.width
    members: dict[str, list[int]] = {name: [] for name in names}
    for i, site_species in enumerate(sites.species):
        if cells.index[i] < 0:
            continue
        for name in set(site_species):
            bucket = members.get(name)
            if bucket is not None:
                bucket.append(i)
    out = np.zeros((len(names), grid.height, grid.width), dtype=np.uint32)
    for k, name in enumerate(names):
        if name == ALL_SITES:
            idx = cells.index[cells.inside]
        else:
            idx = cells.index[np.asarray(members[name], dtype=np.int64)]
        if idx.size:
            out[k] = np.bincount(idx, minlength=n_cells).reshape(grid.shape).astype(np.uint32)
    return out


def presence(counts: np.ndarray) -> np.ndarray:
    """Presence layers (uint8 1 where at least one site) from counts."""
    return (counts > 0).astype(np.uint8)


def narrow_counts(counts: np.ndarray) -> np.ndarray:
    """Counts as uint16 when they fit (they do for any real store), else uint32."""
    if counts.size == 0 or int(counts.max()) <= np.iinfo(np.uint16).max:
        return counts.astype(np.uint16)
    return counts.astype(np.uint32)


def label_statistics(names: Sequence[str], counts: np.ndarray, coverage: np.ndarray | None) -> list[dict]:
    """Per-layer statistics for cube.json: sites, occupied cells, and the same inside the coverage."""
    stats = []
    for k, name in enumerate(names):
        layer = counts[k]
        entry = {
            "name": name,
            "sites": int(layer.sum(dtype=np.int64)),
            "cells": int(np.count_nonzero(layer)),
            "max_per_cell": int(layer.max()) if layer.size else 0,
        }
        if coverage is not None:
            covered = coverage.astype(bool)
            entry["sites_covered"] = int(layer[covered].sum(dtype=np.int64))
            entry["cells_covered"] = int(np.count_nonzero(layer[covered]))
        stats.append(entry)
    return stats
