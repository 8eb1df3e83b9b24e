"""The coverage mask: where the records are systematic enough to train and score on.

The rule is data, not code paths: :data:`COVERAGE_RULE` maps each systematic source (a state
geological survey, or the USGS MRDS subset of one state) to the state it covers. A state is
covered when its source is present in the site store with at least ``min_sites`` records. The
sparse national thematic datasets (mrdata.usgs.gov thematic sets, Earth MRI) add sites to the
labels but make no region covered. The rule in force is copied into cube.json.
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


def state_mask(grid: Grid, geometries: Sequence[object]) -> np.ndarray:
    """uint8 mask of cells whose centre lies inside any of the lon/lat geometries."""
    if not geometries:
        return np.zeros(grid.shape, dtype=np.uint8)
    shapes = [(project_geometry(g, "EPSG:4326", grid.crs), 1) for g in geometries]
    return rasterize(shapes, out_shape=grid.shape, transform=grid.transform, fill=0, dtype="uint8")


def coverage_layers(
    grid: Grid,
    sites: SiteTable,
    rule: Sequence[CoverageSource] = COVERAGE_RULE,
    min_sites: int = DEFAULT_MIN_SITES,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The coverage mask, the CONUS mask (cells inside the 48 states + DC) and the covered states."""
    from backend.geo.boundaries import NOT_CONUS, load_states

    states = {s.code: s for s in load_states()}
    covered = covered_states(sites.source_counts(), rule, min_sites)
    unknown = [c for c in covered if c not in states]
    if unknown:
        raise ValueError(f"coverage rule names unknown states {unknown}; known: {', '.join(sorted(states))}")
    coverage = state_mask(grid, [states[c].geometry for c in covered])
    conus = state_mask(grid, [s.geometry for c, s in sorted(states.items()) if c not in NOT_CONUS])
    return coverage, conus, covered


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
