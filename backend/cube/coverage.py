"""The coverage mask: where the records are systematic enough to train and score on.

The rule is data, not code paths: :data:`COVERAGE_RULE` maps each systematic source (a state
geological survey, or the USGS MRDS subset of one state) to the state it covers. A state is
covered when its source is present in the site store with at least ``min_sites`` records. The
sparse national thematic datasets (mrdata.usgs.gov thematic sets, Earth MRI) add sites to the
labels but make no region covered. The rule in force is copied into cube.json.

The same state outlines give the state index layer: which conterminous state (or DC) each cell's
centre lies in, for evaluations that hold out or score one state at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from rasterio.features import rasterize

from backend.cube.grid import Grid, project_geometry
from backend.cube.sites import SiteTable


@dataclass(frozen=True)
class CoverageSource:
    """A systematic source and the state whose records it holds completely enough."""

    source: str
    state: str
    name: str


#: Systematic sources and the state each covers (MinMod source_id URIs).
COVERAGE_RULE: tuple[CoverageSource, ...] = (
    CoverageSource("https://doi.org/10.5066/P9HTERGK", "CA", "USGS MRDS, California subset"),
    CoverageSource("http://www.oregongeology.org", "OR", "Oregon DOGAMI"),
    CoverageSource("https://doi.org/10.34191/OFR-757", "UT", "Utah Mineral Occurrence System (UMOS)"),
    CoverageSource(
        "https://www.energy.virginia.gov/geology/geologymineralresources.shtml",
        "VA",
        "Virginia Energy, Geology and Mineral Resources",
    ),
    CoverageSource(
        "https://www.deq.nc.gov/about/divisions/energy-mineral-and-land-resources/nc-geological-survey",
        "NC",
        "North Carolina Geological Survey",
    ),
    CoverageSource(
        "https://www.gsa.state.al.us/gsa/geologic/nonfuelminerals/nfcritresource",
        "AL",
        "Geological Survey of Alabama",
    ),
    CoverageSource("https://www.idahogeology.org", "ID", "Idaho Geological Survey"),
)
#: Fewest records of a systematic source for its state to count as covered.
DEFAULT_MIN_SITES = 1


def covered_states(
    source_counts: Mapping[str, int],
    rule: Sequence[CoverageSource] = COVERAGE_RULE,
    min_sites: int = DEFAULT_MIN_SITES,
) -> list[str]:
    """States (sorted postal codes) whose systematic source has at least ``min_sites`` records."""
    return sorted({r.state for r in rule if source_counts.get(r.source, 0) >= min_sites})


def systematic_sources(rule: Sequence[CoverageSource] = COVERAGE_RULE) -> frozenset[str]:
    """The source URIs of the rule: records that are systematic for their state (every other is national)."""
    return frozenset(r.source for r in rule)


def state_mask(grid: Grid, geometries: Sequence[object]) -> np.ndarray:
    """uint8 mask of cells whose centre lies inside any of the lon/lat geometries."""
    if not geometries:
        return np.zeros(grid.shape, dtype=np.uint8)
    shapes = [(project_geometry(g, "EPSG:4326", grid.crs), 1) for g in geometries]
    return rasterize(shapes, out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8")


def state_index(grid: Grid, geometries: Sequence[object]) -> np.ndarray:
    """uint8 raster: 1 + the position of the geometry that holds the cell centre, 0 in none of them.

    The cells are those :func:`state_mask` marks for all the geometries together, so
    ``state_index(grid, g) > 0`` equals ``state_mask(grid, g)``.
    """
    if len(geometries) > np.iinfo(np.uint8).max:
        raise ValueError(f"{len(geometries)} geometries do not fit a uint8 index (at most 255)")
    if not geometries:
        return np.zeros(grid.shape, dtype=np.uint8)
    shapes = [(project_geometry(g, "EPSG:4326", grid.crs), k + 1) for k, g in enumerate(geometries)]
    return rasterize(shapes, out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8")


@dataclass(frozen=True)
class StateLayers:
    """The coverage mask, the CONUS mask, the state index and the state lists they refer to."""

    coverage: np.ndarray  # uint8 (H, W): 1 in covered states
    conus: np.ndarray  # uint8 (H, W): 1 inside the 48 conterminous states and DC
    index: np.ndarray  # uint8 (H, W): 0 in no state, else 1 + position in ``codes``
    codes: list[str]  # sorted postal codes of the conterminous states and DC
    covered: list[str]  # sorted postal codes of the covered states


def state_layers(
    grid: Grid,
    sites: SiteTable,
    rule: Sequence[CoverageSource] = COVERAGE_RULE,
    min_sites: int = DEFAULT_MIN_SITES,
) -> StateLayers:
    """Every layer drawn from the state outlines: coverage, CONUS and the per-state index."""
    from backend.geo.boundaries import NOT_CONUS, load_states

    states = {s.code: s for s in load_states()}
    covered = covered_states(sites.source_counts(), rule, min_sites)
    unknown = [c for c in covered if c not in states]
    if unknown:
        raise ValueError(f"coverage rule names unknown states {unknown}; known: {', '.join(sorted(states))}")
    coverage = state_mask(grid, [states[c].geometry for c in covered])
    codes = sorted(c for c in states if c not in NOT_CONUS)
    index = state_index(grid, [states[c].geometry for c in codes])
    conus = (index > 0).astype(np.uint8)
    return StateLayers(coverage=coverage, conus=conus, index=index, codes=codes, covered=covered)


def coverage_layers(
    grid: Grid,
    sites: SiteTable,
    rule: Sequence[CoverageSource] = COVERAGE_RULE,
    min_sites: int = DEFAULT_MIN_SITES,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The coverage mask, the CONUS mask (cells inside the 48 states + DC) and the covered states."""
    layers = state_layers(grid, sites, rule, min_sites)
    return layers.coverage, layers.conus, layers.covered


def rule_to_json(rule: Sequence[CoverageSource], min_sites: int, covered: Sequence[str]) -> dict:
    """The coverage rule in force, for cube.json."""
    return {
        "description": (
            "A cell is covered when its centre lies in a state whose systematic source (state survey, "
            "or the USGS MRDS subset of that state) is in the site store with at least min_sites records. "
            "Sparse national thematic datasets add labels but cover no region. Outside coverage an empty "
            "cell is unlabelled, not a confirmed negative."
        ),
        "min_sites": min_sites,
        "sources": [{"source": r.source, "state": r.state, "name": r.name} for r in rule],
        "covered_states": list(covered),
    }
