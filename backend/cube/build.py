"""`build_cube`: sites and covariates in, a deterministic cube of GeoTIFFs plus cube.json out."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from backend.cube import coverage as cov
from backend.cube.contract import (
    COUNTS_TIF,
    COVARIATES_TIF,
    COVERAGE_TIF,
    CROSSREF_TIF,
    CUBE_FORMAT,
    CUBE_JSON,
    GEOTIFFS,
    LABELS_TIF,
    NATIONAL_TIF,
    QUICKLOOK_DIR,
    STATES_TIF,
    SURVEY_TIF,
    VALID_TIF,
    check_manifest,
    sha256_file,
)
from backend.cube.covariates import Covariate, normalisation, parse_covariate_option, user_covariate
from backend.cube.grid import Grid
from backend.cube.labels import (
    ALL_SITES,
    DEFAULT_CROSSREF,
    count_layers,
    from_sources,
    label_statistics,
    locate_sites,
    narrow_counts,
    presence,
    select_cells,
    validate_species,
)
from backend.cube.quicklook import QuickLook, render
from backend.cube.shipped import SHIPPED_COVARIATES, shipped_covariates, shipped_inputs
from backend.cube.sites import SiteTable, read_sites
from backend.cube.sources import CovariateError, read_user_geotiff
from backend.cube.store import staged_output, write_geotiff, write_json

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from backend.settings import Settings

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class CubeRequest:
    """What to build: target species, cross-reference commodities and user covariates (NAME -> path)."""

    species: tuple[str, ...]
    crossref: tuple[str, ...]
    user_covariates: tuple[tuple[str, Path], ...]
    quicklooks: bool = True


def _display_path(path: Path) -> str:
    """A path relative to the project root when inside it (so cube.json does not depend on checkouts)."""
    from backend.settings import PROJECT_ROOT

    resolved = path.resolve()
    try:
        return str(resolved.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(resolved)


def resolve_request(
    sites: SiteTable,
    species: Sequence[str] | None,
    covariates: Sequence[str | tuple[str, Path]] = (),
    crossref: Sequence[str] | None = None,
    quicklooks: bool = True,
) -> CubeRequest:
    """Validate the species, cross-reference and covariate options before any heavy work."""
    from backend.settings import M3_SPECIES

    available = sites.species_counts()
    chosen = validate_species(list(species) if species else list(M3_SPECIES), available)
    if crossref is None:
        xref = [c for c in DEFAULT_CROSSREF if c in available and c not in chosen]
    else:
        xref = [c for c in validate_species(crossref, available, "cross-reference commodity") if c not in chosen]
    user: list[tuple[str, Path]] = []
    for item in covariates:
        name, path = parse_covariate_option(item) if isinstance(item, str) else (item[0], Path(item[1]))
        if name in SHIPPED_COVARIATES or name in {n for n, _ in user}:
            raise CovariateError(
                f"covariate name {name!r} is already used; shipped covariates: {', '.join(SHIPPED_COVARIATES)}"
            )
        read_user_geotiff(name, path).close()  # fail now, in words, not after minutes of work
        user.append((name, path))
    return CubeRequest(tuple(chosen), tuple([ALL_SITES, *xref]), tuple(user), quicklooks)


def build_cube(
    settings: Settings,
    engine: Engine,
    out_dir: Path,
    species: Sequence[str] | None = None,
    covariates: Sequence[str | tuple[str, Path]] = (),
    crossref: Sequence[str] | None = None,
    progress: bool = True,
    quicklooks: bool = True,
) -> Path:
    """Read the sites from PostGIS and build the cube under ``out_dir``; returns the cube.json path."""
    sites = read_sites(engine)
    log.info("read %d located sites from the store", len(sites))
    return build_cube_from_sites(settings, sites, out_dir, species, covariates, crossref, progress, quicklooks)


def build_cube_from_sites(
    settings: Settings,
    sites: SiteTable,
    out_dir: Path,
    species: Sequence[str] | None = None,
    covariates: Sequence[str | tuple[str, Path]] = (),
    crossref: Sequence[str] | None = None,
    progress: bool = True,
    quicklooks: bool = True,
    grid: Grid | None = None,
    timings: dict[str, float] | None = None,
) -> Path:
    """Build the cube from an in-memory site table (see :func:`build_cube`); returns the cube.json path."""
    grid = grid or Grid.conus()
    request = resolve_request(sites, species, covariates, crossref, quicklooks)
    timings = timings if timings is not None else {}
    steps = [
        "labels",
        "coverage",
        "covariates",
        *[f"covariate {n}" for n, _ in request.user_covariates],
        "write",
        *(["quick-looks"] if quicklooks else []),
    ]
    bar = tqdm(total=len(steps), desc="cube", unit="step", disable=not progress)

    def step(name: str) -> float:
        bar.set_postfix_str(name)
        return time.perf_counter()

    def done(name: str, t0: float) -> None:
        timings[name] = time.perf_counter() - t0
        log.info("%s: %.2f s", name, timings[name])
        bar.update(1)

    try:
        t0 = step("labels")
        cells = locate_sites(grid, sites)
        counts = count_layers(grid, sites, cells, request.species)
        systematic = from_sources(sites, cov.systematic_sources())
        survey_counts = count_layers(grid, sites, select_cells(cells, systematic), request.species)
        national_counts = count_layers(grid, sites, select_cells(cells, ~systematic), request.species)
        xref_counts = count_layers(grid, sites, cells, request.crossref)
        done("labels", t0)

        t0 = step("coverage")
        states = cov.state_layers(grid, sites)
        done("coverage", t0)

        t0 = step("covariates")
        layers: list[Covariate] = shipped_covariates(settings.data_dir, grid, timings)
        done("covariates", t0)
        for name, path in request.user_covariates:
            t0 = step(f"covariate {name}")
            layers.append(user_covariate(name, path, grid))
            done(f"covariate {name}", t0)

        t0 = step("write")
        with staged_output(out_dir) as staging:
            manifest = _write(
                staging,
                grid,
                sites,
                request,
                cells.n_inside,
                counts,
                survey_counts,
                national_counts,
                xref_counts,
                states,
                layers,
                settings,
            )
            done("write", t0)
            if quicklooks:
                t0 = step("quick-looks")
                looks = _quicklooks(request, counts, survey_counts, national_counts, xref_counts, states, layers)
                render(staging / QUICKLOOK_DIR, grid, looks, progress=progress)
                done("quick-looks", t0)
            write_json(staging / CUBE_JSON, manifest)
    finally:
        bar.close()
    log.info("cube written to %s (%d x %d cells)", out_dir, grid.height, grid.width)
    return out_dir / CUBE_JSON


def _write(
    staging: Path,
    grid: Grid,
    sites: SiteTable,
    request: CubeRequest,
    n_inside: int,
    counts: np.ndarray,
    survey_counts: np.ndarray,
    national_counts: np.ndarray,
    xref_counts: np.ndarray,
    states: cov.StateLayers,
    layers: list[Covariate],
    settings: Settings,
) -> dict[str, Any]:
    """Write every raster into the staging folder and return the cube.json manifest."""
    species = list(request.species)
    xref = list(request.crossref)
    coverage, conus = states.coverage, states.conus
    write_geotiff(staging / LABELS_TIF, grid, presence(counts), species)
    write_geotiff(staging / SURVEY_TIF, grid, presence(survey_counts), species)
    write_geotiff(staging / NATIONAL_TIF, grid, presence(national_counts), species)
    narrow, narrow_xref = narrow_counts(counts), narrow_counts(xref_counts)
    count_dtype, xref_dtype = str(narrow.dtype), str(narrow_xref.dtype)
    write_geotiff(staging / COUNTS_TIF, grid, narrow, species)
    write_geotiff(staging / CROSSREF_TIF, grid, narrow_xref, xref)
    del narrow, narrow_xref
    write_geotiff(staging / COVERAGE_TIF, grid, np.stack([coverage, conus]), ["coverage", "conus"])
    write_geotiff(staging / STATES_TIF, grid, states.index[np.newaxis], ["state"])

    stats = [normalisation(c.data, conus) for c in layers]
    names = [c.name for c in layers]
    normalised = np.stack([s.apply(c.data) for s, c in zip(stats, layers, strict=True)])
    write_geotiff(staging / COVARIATES_TIF, grid, normalised, names, nodata=float("nan"))
    write_geotiff(staging / VALID_TIF, grid, np.stack([c.valid for c in layers]), [f"{n}_valid" for n in names])

    inputs: dict[str, Any] = {
        "sites": {"rows": len(sites), "sha256": sites.checksum(), "sources": sites.source_counts()},
    }
    from backend.geo.boundaries import BOUNDARIES_DIR

    files = {"boundaries": BOUNDARIES_DIR / "states-10m.json", **shipped_inputs(settings.data_dir)}
    files.update({f"covariate:{n}": p for n, p in request.user_covariates})
    for key, path in sorted(files.items()):
        inputs[key] = {"path": _display_path(path), "sha256": sha256_file(path)}

    species_stats = label_statistics(species, counts, coverage)
    survey_stats = label_statistics(species, survey_counts, coverage)
    national_stats = label_statistics(species, national_counts, coverage)
    xref_stats = label_statistics(xref, xref_counts, coverage)
    manifest = {
        "format": CUBE_FORMAT,
        "grid": grid.to_json(),
        "species": species,
        "states": list(states.codes),
        "sites": {"located": len(sites), "inside_grid": n_inside, "outside_grid": len(sites) - n_inside},
        "files": {
            LABELS_TIF: {
                "dtype": "uint8",
                "kind": "presence",
                "bands": species_stats,
                "meaning": "1 where at least one known site of the species lies in the cell",
            },
            SURVEY_TIF: {
                "dtype": "uint8",
                "kind": "presence",
                "bands": survey_stats,
                "meaning": "1 where at least one site of the species from a systematic source (coverage_rule "
                "sources) lies in the cell; labels.tif is this or labels_national.tif",
            },
            NATIONAL_TIF: {
                "dtype": "uint8",
                "kind": "presence",
                "bands": national_stats,
                "meaning": "1 where at least one site of the species from a national thematic set (any source "
                "not in coverage_rule sources) lies in the cell",
            },
            COUNTS_TIF: {
                "dtype": count_dtype,
                "kind": "counts",
                "bands": species_stats,
                "meaning": "number of known sites of the species in the cell",
            },
            CROSSREF_TIF: {
                "dtype": xref_dtype,
                "kind": "counts",
                "bands": xref_stats,
                "meaning": "sites of non-target commodities (all_sites: every site) for cross-reference",
            },
            COVERAGE_TIF: {
                "dtype": "uint8",
                "kind": "mask",
                "bands": [
                    {
                        "name": "coverage",
                        "cells": int(coverage.sum(dtype=np.int64)),
                        "meaning": "1 where records are systematic (see coverage_rule); "
                        "elsewhere an empty cell is unlabelled",
                    },
                    {
                        "name": "conus",
                        "cells": int(conus.sum(dtype=np.int64)),
                        "meaning": "1 inside the 48 conterminous states and DC",
                    },
                ],
            },
            STATES_TIF: {
                "dtype": "uint8",
                "kind": "index",
                "bands": [
                    {
                        "name": "state",
                        "cells": int(np.count_nonzero(states.index)),
                        "meaning": "0 where the cell centre is in no state; else 1 + the position of the "
                        "state's postal code in cube.json states",
                    },
                ],
            },
            COVARIATES_TIF: {
                "dtype": "float32",
                "kind": "covariates",
                "nodata": "nan",
                "meaning": "(value - mean) / std; NaN where invalid (fill with 0 for the model)",
                "bands": [
                    {
                        "name": c.name,
                        "units": c.units,
                        "description": c.description,
                        "resampling": c.resampling,
                        "normalisation": s.to_json(),
                        "inputs": [_display_path(Path(p)) for p in c.inputs],
                    }
                    for c, s in zip(layers, stats, strict=True)
                ],
            },
            VALID_TIF: {
                "dtype": "uint8",
                "kind": "mask",
                "bands": [{"name": f"{c.name}_valid", "cells": int(c.valid.sum(dtype=np.int64))} for c in layers],
            },
        },
        "checksums": {name: sha256_file(staging / name) for name in GEOTIFFS},
        "coverage_rule": cov.rule_to_json(cov.COVERAGE_RULE, cov.DEFAULT_MIN_SITES, states.covered),
        "inputs": inputs,
    }
    check_manifest(manifest)
    return manifest


def _quicklooks(
    request: CubeRequest,
    counts: np.ndarray,
    survey_counts: np.ndarray,
    national_counts: np.ndarray,
    xref_counts: np.ndarray,
    states: cov.StateLayers,
    layers: list[Covariate],
) -> list[QuickLook]:
    """One quick-look per band of every raster in the cube."""
    looks = []
    for k, name in enumerate(request.species):
        n = int(counts[k].sum())
        looks.append(QuickLook(f"presence_{name}", counts[k], "presence", f"{name}: presence ({n:,} sites)"))
        n = int(survey_counts[k].sum())
        title = f"{name}: presence, systematic sources ({n:,} sites)"
        looks.append(QuickLook(f"survey_{name}", survey_counts[k], "presence", title))
        n = int(national_counts[k].sum())
        title = f"{name}: presence, national thematic sets ({n:,} sites)"
        looks.append(QuickLook(f"national_{name}", national_counts[k], "presence", title))
        looks.append(QuickLook(f"counts_{name}", counts[k], "counts", f"{name}: sites per cell", "sites"))
    for k, name in enumerate(request.crossref):
        looks.append(QuickLook(f"crossref_{name}", xref_counts[k], "counts", f"{name}: sites per cell", "sites"))
    looks.append(QuickLook("coverage", states.coverage, "mask", "coverage mask (systematic records)"))
    looks.append(QuickLook("conus", states.conus, "mask", "CONUS mask"))
    looks.append(QuickLook("states", states.index, "continuous", "state index (1 + position in cube.json states)"))
    for c in layers:
        looks.append(QuickLook(c.name, c.data, "continuous", f"{c.name} ({c.units})", c.units))
        looks.append(QuickLook(f"{c.name}_valid", c.valid, "mask", f"{c.name}: validity"))
    return looks
