"""`build_cube`: sites and covariates in, a deterministic cube of GeoTIFFs plus cube.json out."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
from backend.cube.covariates import (
    Covariate,
    Normalisation,
    normalisation,
    parse_covariate_option,
    robust_normalisation,
    user_covariate,
)
from backend.cube.derived import derived_covariates, derived_inputs, derived_names
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
    """What to build: species, cross-reference commodities, user covariates (NAME -> path), derived covariates."""

    species: tuple[str, ...]
    crossref: tuple[str, ...]
    user_covariates: tuple[tuple[str, Path], ...]
    quicklooks: bool = True
    derived: bool = False  # the derived covariates of backend.cube.derived (off: the cube of the shipped model)


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
    derived: bool = False,
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
    taken = (*SHIPPED_COVARIATES, *(derived_names() if derived else ()))
    for item in covariates:
        name, path = parse_covariate_option(item) if isinstance(item, str) else (item[0], Path(item[1]))
        if name in taken or name in {n for n, _ in user}:
            raise CovariateError(
                f"covariate name {name!r} is already used; built-in covariates: {', '.join(taken)}"
            )
        read_user_geotiff(name, path).close()  # fail now, in words, not after minutes of work
        user.append((name, path))
    return CubeRequest(tuple(chosen), tuple([ALL_SITES, *xref]), tuple(user), quicklooks, derived)


def build_cube(
    settings: Settings,
    engine: Engine,
    out_dir: Path,
    species: Sequence[str] | None = None,
    covariates: Sequence[str | tuple[str, Path]] = (),
    crossref: Sequence[str] | None = None,
    progress: bool = True,
    quicklooks: bool = True,
    derived: bool | None = None,
) -> Path:
    """Read the sites from PostGIS and build the cube under ``out_dir``; returns the cube.json path.

    ``derived`` adds the derived covariates (None: ``settings.cube_derived_covariates``).
    """
    sites = read_sites(engine)
    log.info("read %d located sites from the store", len(sites))
    return build_cube_from_sites(settings, sites, out_dir, species, covariates, crossref, progress, quicklooks,
                                 derived=derived)


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
    derived: bool | None = None,
) -> Path:
    """Build the cube from an in-memory site table (see :func:`build_cube`); returns the cube.json path."""
    grid = grid or Grid.conus()
    with_derived = settings.cube_derived_covariates if derived is None else derived
    request = resolve_request(sites, species, covariates, crossref, quicklooks, with_derived)
    steps = BuildSteps(step_names(request), progress, timings if timings is not None else {})
    try:
        content = compute_layers(settings.data_dir, sites, grid, request, steps)
        with staged_output(out_dir) as staging:
            with steps.step("write"):
                manifest = write_rasters(staging, content, settings.data_dir)
            if request.quicklooks:
                with steps.step("quick-looks"):
                    render(staging / QUICKLOOK_DIR, grid, _quicklooks(content), progress=progress)
            write_json(staging / CUBE_JSON, manifest)
    finally:
        steps.close()
    log.info("cube written to %s (%d x %d cells)", out_dir, grid.height, grid.width)
    return out_dir / CUBE_JSON


def step_names(request: CubeRequest) -> list[str]:
    """The steps of a build, in order."""
    return [
        "labels",
        "coverage",
        "covariates",
        *(["derived covariates"] if request.derived else []),
        *[f"covariate {n}" for n, _ in request.user_covariates],
        "write",
        *(["quick-looks"] if request.quicklooks else []),
    ]


class BuildSteps:
    """The build's progress bar and the seconds each step took."""

    def __init__(self, names: Sequence[str], progress: bool, timings: dict[str, float]) -> None:
        self.bar = tqdm(total=len(names), desc="cube", unit="step", disable=not progress)
        self.timings = timings

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Run one step; a step that completes is timed, logged and counted on the bar."""
        self.bar.set_postfix_str(name)
        t0 = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - t0
        log.info("%s: %.2f s", name, self.timings[name])
        self.bar.update(1)

    def close(self) -> None:
        """Close the progress bar."""
        self.bar.close()


@dataclass(frozen=True)
class LabelCounts:
    """Sites per cell (S, H, W) uint32: every source, systematic sources, national sets; and cross-reference."""

    n_inside: int  # sites inside the grid
    counts: np.ndarray
    survey: np.ndarray
    national: np.ndarray
    crossref: np.ndarray  # (len(request.crossref), H, W)


@dataclass(frozen=True)
class CubeContent:
    """Everything a cube holds before it is written: what was asked, the grid, the sites and the layers."""

    request: CubeRequest
    grid: Grid
    sites: SiteTable
    labels: LabelCounts
    states: cov.StateLayers
    covariates: list[Covariate]


def count_labels(grid: Grid, sites: SiteTable, request: CubeRequest) -> LabelCounts:
    """Count the sites of each species per cell, split by source kind, and the cross-reference layers."""
    cells = locate_sites(grid, sites)
    systematic = from_sources(sites, cov.systematic_sources())
    return LabelCounts(
        n_inside=cells.n_inside,
        counts=count_layers(grid, sites, cells, request.species),
        survey=count_layers(grid, sites, select_cells(cells, systematic), request.species),
        national=count_layers(grid, sites, select_cells(cells, ~systematic), request.species),
        crossref=count_layers(grid, sites, cells, request.crossref),
    )


def compute_layers(data_dir: Path, sites: SiteTable, grid: Grid, request: CubeRequest,
                   steps: BuildSteps) -> CubeContent:
    """The label, coverage and covariate layers of the cube, one timed step each."""
    with steps.step("labels"):
        labels = count_labels(grid, sites, request)
    with steps.step("coverage"):
        states = cov.state_layers(grid, sites)
    with steps.step("covariates"):
        layers: list[Covariate] = shipped_covariates(data_dir, grid, steps.timings)
    if request.derived:
        with steps.step("derived covariates"):
            elevation = next(c.data for c in layers if c.name == "elevation")
            layers += derived_covariates(data_dir, grid, elevation, steps.timings)
    for name, path in request.user_covariates:
        with steps.step(f"covariate {name}"):
            layers.append(user_covariate(name, path, grid))
    return CubeContent(request, grid, sites, labels, states, layers)


def write_rasters(staging: Path, content: CubeContent, data_dir: Path) -> dict[str, Any]:
    """Write every raster into the staging folder and return cube.json's content (checked against CubeManifest)."""
    dtypes = _write_labels(staging, content)
    _write_masks(staging, content)
    stats = _write_covariates(staging, content)
    sites, n_inside = content.sites, content.labels.n_inside
    manifest = {
        "format": CUBE_FORMAT,
        "grid": content.grid.to_json(),
        "species": list(content.request.species),
        "states": list(content.states.codes),
        "sites": {"located": len(sites), "inside_grid": n_inside, "outside_grid": len(sites) - n_inside},
        "files": {**_label_files(content, dtypes), **_mask_files(content.states),
                  **_covariate_files(content.covariates, stats)},
        "checksums": {name: sha256_file(staging / name) for name in GEOTIFFS},
        "coverage_rule": cov.rule_to_json(cov.COVERAGE_RULE, cov.DEFAULT_MIN_SITES, content.states.covered),
        "inputs": _inputs(content, data_dir),
    }
    check_manifest(manifest)
    return manifest


def _write_labels(staging: Path, content: CubeContent) -> tuple[str, str]:
    """Write the presence and count rasters; returns the dtypes of the species and cross-reference counts."""
    species, labels, grid = list(content.request.species), content.labels, content.grid
    write_geotiff(staging / LABELS_TIF, grid, presence(labels.counts), species)
    write_geotiff(staging / SURVEY_TIF, grid, presence(labels.survey), species)
    write_geotiff(staging / NATIONAL_TIF, grid, presence(labels.national), species)
    narrow, narrow_xref = narrow_counts(labels.counts), narrow_counts(labels.crossref)
    write_geotiff(staging / COUNTS_TIF, grid, narrow, species)
    write_geotiff(staging / CROSSREF_TIF, grid, narrow_xref, list(content.request.crossref))
    return str(narrow.dtype), str(narrow_xref.dtype)


def _write_masks(staging: Path, content: CubeContent) -> None:
    """Write the coverage and CONUS masks and the state index."""
    states, grid = content.states, content.grid
    write_geotiff(staging / COVERAGE_TIF, grid, np.stack([states.coverage, states.conus]), ["coverage", "conus"])
    write_geotiff(staging / STATES_TIF, grid, states.index[np.newaxis], ["state"])


def _write_covariates(staging: Path, content: CubeContent) -> list[Normalisation]:
    """Write the covariates, normalised over CONUS, and their validity; returns the normalisation of each."""
    layers, grid = content.covariates, content.grid
    conus = content.states.conus
    stats = [(robust_normalisation if c.robust else normalisation)(c.data, conus) for c in layers]
    names = [c.name for c in layers]
    normalised = np.stack([s.apply(c.data) for s, c in zip(stats, layers, strict=True)])
    write_geotiff(staging / COVARIATES_TIF, grid, normalised, names, nodata=float("nan"))
    write_geotiff(staging / VALID_TIF, grid, np.stack([c.valid for c in layers]), [f"{n}_valid" for n in names])
    return stats


def _file(dtype: str, kind: str, bands: list[dict[str, Any]], meaning: str) -> dict[str, Any]:
    """One ``files`` entry of cube.json."""
    return {"dtype": dtype, "kind": kind, "bands": bands, "meaning": meaning}


def _label_files(content: CubeContent, dtypes: tuple[str, str]) -> dict[str, Any]:
    """The ``files`` entries of the presence and count rasters, with per-band site statistics."""
    species, xref = list(content.request.species), list(content.request.crossref)
    labels, coverage = content.labels, content.states.coverage
    species_stats = label_statistics(species, labels.counts, coverage)
    return {
        LABELS_TIF: _file("uint8", "presence", species_stats,
                          "1 where at least one known site of the species lies in the cell"),
        SURVEY_TIF: _file("uint8", "presence", label_statistics(species, labels.survey, coverage),
                          "1 where at least one site of the species from a systematic source (coverage_rule "
                          "sources) lies in the cell; labels.tif is this or labels_national.tif"),
        NATIONAL_TIF: _file("uint8", "presence", label_statistics(species, labels.national, coverage),
                            "1 where at least one site of the species from a national thematic set (any source "
                            "not in coverage_rule sources) lies in the cell"),
        COUNTS_TIF: _file(dtypes[0], "counts", species_stats, "number of known sites of the species in the cell"),
        CROSSREF_TIF: _file(dtypes[1], "counts", label_statistics(xref, labels.crossref, coverage),
                            "sites of non-target commodities (all_sites: every site) for cross-reference"),
    }


def _mask_files(states: cov.StateLayers) -> dict[str, Any]:
    """The ``files`` entries of the coverage masks and the state index."""
    coverage_bands = [
        {"name": "coverage", "cells": int(states.coverage.sum(dtype=np.int64)),
         "meaning": "1 where records are systematic (see coverage_rule); elsewhere an empty cell is unlabelled"},
        {"name": "conus", "cells": int(states.conus.sum(dtype=np.int64)),
         "meaning": "1 inside the 48 conterminous states and DC"},
    ]
    state_band = {"name": "state", "cells": int(np.count_nonzero(states.index)),
                  "meaning": "0 where the cell centre is in no state; else 1 + the position of the "
                  "state's postal code in cube.json states"}
    return {
        COVERAGE_TIF: {"dtype": "uint8", "kind": "mask", "bands": coverage_bands},
        STATES_TIF: {"dtype": "uint8", "kind": "index", "bands": [state_band]},
    }


def _covariate_files(layers: list[Covariate], stats: list[Normalisation]) -> dict[str, Any]:
    """The ``files`` entries of the covariates (with their sources and normalisation) and their validity."""
    bands = [
        {"name": c.name, "units": c.units, "description": c.description, "resampling": c.resampling,
         "normalisation": s.to_json(), "inputs": [_display_path(Path(p)) for p in c.inputs],
         **({"source": c.source} if c.source else {}), **({"licence": c.licence} if c.licence else {})}
        for c, s in zip(layers, stats, strict=True)
    ]
    meaning = "(value - mean) / std; NaN where invalid (fill with 0 for the model)"
    if any(s.scale is not None for s in stats):
        meaning = ("(value - mean) / std, or where the normalisation has a scale (robust): (clip(value, clip_low, "
                   "clip_high) - centre) / scale; NaN where invalid (fill with 0 for the model)")
    return {
        COVARIATES_TIF: {"dtype": "float32", "kind": "covariates", "nodata": "nan", "bands": bands,
                         "meaning": meaning},
        VALID_TIF: {"dtype": "uint8", "kind": "mask",
                    "bands": [{"name": f"{c.name}_valid", "cells": int(c.valid.sum(dtype=np.int64))} for c in layers]},
    }


def _inputs(content: CubeContent, data_dir: Path) -> dict[str, Any]:
    """cube.json ``inputs``: the site table's checksum and every input file with its sha256."""
    from backend.geo.boundaries import BOUNDARIES_DIR

    sites = content.sites
    inputs: dict[str, Any] = {
        "sites": {"rows": len(sites), "sha256": sites.checksum(), "sources": sites.source_counts()},
    }
    files = {"boundaries": BOUNDARIES_DIR / "states-10m.json", **shipped_inputs(data_dir)}
    if content.request.derived:
        files.update(derived_inputs(data_dir))
    files.update({f"covariate:{n}": p for n, p in content.request.user_covariates})
    for key, path in sorted(files.items()):
        inputs[key] = {"path": _display_path(path), "sha256": sha256_file(path)}
    return inputs


def _quicklooks(content: CubeContent) -> list[QuickLook]:
    """One quick-look per band of every raster in the cube."""
    labels, states = content.labels, content.states
    looks = []
    for k, name in enumerate(content.request.species):
        n = int(labels.counts[k].sum())
        looks.append(QuickLook(f"presence_{name}", labels.counts[k], "presence", f"{name}: presence ({n:,} sites)"))
        n = int(labels.survey[k].sum())
        title = f"{name}: presence, systematic sources ({n:,} sites)"
        looks.append(QuickLook(f"survey_{name}", labels.survey[k], "presence", title))
        n = int(labels.national[k].sum())
        title = f"{name}: presence, national thematic sets ({n:,} sites)"
        looks.append(QuickLook(f"national_{name}", labels.national[k], "presence", title))
        looks.append(QuickLook(f"counts_{name}", labels.counts[k], "counts", f"{name}: sites per cell", "sites"))
    for k, name in enumerate(content.request.crossref):
        title = f"{name}: sites per cell"
        looks.append(QuickLook(f"crossref_{name}", labels.crossref[k], "counts", title, "sites"))
    looks.append(QuickLook("coverage", states.coverage, "mask", "coverage mask (systematic records)"))
    looks.append(QuickLook("conus", states.conus, "mask", "CONUS mask"))
    looks.append(QuickLook("states", states.index, "continuous", "state index (1 + position in cube.json states)"))
    for c in content.covariates:
        looks.append(QuickLook(c.name, c.data, "continuous", f"{c.name} ({c.units})", c.units))
        looks.append(QuickLook(f"{c.name}_valid", c.valid, "mask", f"{c.name}: validity"))
    return looks
