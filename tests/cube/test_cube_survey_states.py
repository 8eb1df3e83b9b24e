"""The evaluation layers of the cube: labels by kind of source, the state index, and how the model loader reads them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from backend.cube.build import build_cube_from_sites
from backend.cube.contract import CUBE_FORMAT, NATIONAL_TIF, STATES_TIF, SURVEY_TIF
from backend.cube.coverage import COVERAGE_RULE, state_layers, state_mask, systematic_sources
from backend.cube.grid import Grid
from backend.cube.labels import count_layers, from_sources, locate_sites, select_cells
from backend.cube.sites import SiteTable
from backend.geo.boundaries import NOT_CONUS, load_states
from backend.inference.cube_inputs import CubeSource
from backend.settings import Settings
from model.cube_data import load_cube

from .conftest import DEATH_VALLEY, MRDS_CA, NATIONAL, OREGON, PORTLAND, RENO, SACRAMENTO

#: A gold site of a national thematic set alone in its cell (no other site lies in Death Valley here).
NATIONAL_ONLY = DEATH_VALLEY
EARTH_MRI = "https://doi.org/10.5066/P9K1HBNT"


def _cell(grid: Grid, place: tuple[float, float]) -> tuple[int, int]:
    row, col = grid.lonlat_to_rowcol(np.array([place[0]]), np.array([place[1]]))
    return int(row[0]), int(col[0])


def _sites() -> SiteTable:
    """Gold and silver from the California survey subset and Oregon; national gold, copper and silver elsewhere."""
    rng = np.random.default_rng(3)
    n = 60
    lon = [*rng.uniform(-121.5, -120.0, n), PORTLAND[0], NATIONAL_ONLY[0], RENO[0], SACRAMENTO[0]]
    lat = [*rng.uniform(37.5, 39.5, n), PORTLAND[1], NATIONAL_ONLY[1], RENO[1], SACRAMENTO[1]]
    species = [("gold", "silver") if i % 2 else ("gold",) for i in range(n)]
    species += [("gold",), ("gold",), ("copper", "silver"), ("copper",)]
    source = [MRDS_CA] * n + [OREGON, NATIONAL, EARTH_MRI, NATIONAL]
    state = ["CA"] * n + ["OR", "CA", "NV", "CA"]
    return SiteTable.from_records(lon, lat, species, source, state)


@pytest.fixture(scope="module")
def cube(tmp_path_factory: pytest.TempPathFactory, west_grid: Grid) -> Path:
    out = tmp_path_factory.mktemp("survey") / "cube"
    build_cube_from_sites(
        Settings(),
        _sites(),
        out,
        species=["gold", "silver", "copper"],
        progress=False,
        quicklooks=False,
        grid=west_grid,
    )
    return out


def _read(path: Path) -> tuple[np.ndarray, list[str]]:
    with rasterio.open(path) as ds:
        return ds.read(), list(ds.descriptions)


def test_systematic_sources_are_the_coverage_rule() -> None:
    assert systematic_sources() == {r.source for r in COVERAGE_RULE}
    assert MRDS_CA in systematic_sources() and NATIONAL not in systematic_sources()
    sites = _sites()
    keep = from_sources(sites, systematic_sources())
    assert keep.tolist() == [True] * 61 + [False] * 3


def test_select_cells_counts_only_the_kept_sites(west_grid: Grid) -> None:
    sites = _sites()
    cells = locate_sites(west_grid, sites)
    keep = from_sources(sites, systematic_sources())
    every = count_layers(west_grid, sites, cells, ["gold", "copper"])
    survey = count_layers(west_grid, sites, select_cells(cells, keep), ["gold", "copper"])
    national = count_layers(west_grid, sites, select_cells(cells, ~keep), ["gold", "copper"])
    assert int(survey[0].sum()) == 61 and int(survey[1].sum()) == 0
    np.testing.assert_array_equal(every, survey + national)
    with pytest.raises(ValueError, match="keep has shape"):
        select_cells(cells, keep[:3])


def test_survey_labels_keep_systematic_sites_and_drop_national_ones(cube: Path, west_grid: Grid) -> None:
    survey, names = _read(cube / SURVEY_TIF)
    labels, label_names = _read(cube / "labels.tif")
    assert names == label_names == ["gold", "silver", "copper"]
    assert survey.dtype == np.uint8 and survey.shape == (3, *west_grid.shape)
    assert survey[(0, *_cell(west_grid, PORTLAND))] == 1  # Oregon survey
    assert labels[(0, *_cell(west_grid, NATIONAL_ONLY))] == 1
    assert survey[(0, *_cell(west_grid, NATIONAL_ONLY))] == 0  # national set only
    assert labels[2].sum() == 2 and survey[2].sum() == 0  # copper comes from national sets alone
    assert labels[(1, *_cell(west_grid, RENO))] == 1 and survey[(1, *_cell(west_grid, RENO))] == 0


def test_labels_are_survey_or_national_presence(cube: Path, west_grid: Grid) -> None:
    sites = _sites()
    cells = locate_sites(west_grid, sites)
    national = ~from_sources(sites, systematic_sources())
    national_counts = count_layers(west_grid, sites, select_cells(cells, national), ["gold", "silver", "copper"])
    survey, _ = _read(cube / SURVEY_TIF)
    stored, names = _read(cube / NATIONAL_TIF)
    labels, _ = _read(cube / "labels.tif")
    assert names == ["gold", "silver", "copper"] and stored.dtype == np.uint8
    np.testing.assert_array_equal(stored, (national_counts > 0).astype(np.uint8))
    np.testing.assert_array_equal(labels, (survey > 0) | (stored > 0))
    assert np.all(survey <= labels)
    assert stored[(0, *_cell(west_grid, NATIONAL_ONLY))] == 1 and stored[(0, *_cell(west_grid, PORTLAND))] == 0


def test_state_index_codes_cells_of_their_state(cube: Path, west_grid: Grid) -> None:
    manifest = json.loads((cube / "cube.json").read_text())
    codes = manifest["states"]
    expected = sorted(s.code for s in load_states() if s.code not in NOT_CONUS)
    assert codes == expected and len(codes) == 49 and "DC" in codes and "HI" not in codes
    index, names = _read(cube / STATES_TIF)
    assert names == ["state"] and index.dtype == np.uint8 and index.shape == (1, *west_grid.shape)
    index = index[0]
    assert codes[index[_cell(west_grid, SACRAMENTO)] - 1] == "CA"
    assert codes[index[_cell(west_grid, RENO)] - 1] == "NV"
    assert codes[index[_cell(west_grid, PORTLAND)] - 1] == "OR"
    assert index[_cell(west_grid, (-124.9, 40.0))] == 0  # Pacific
    present = {codes[v - 1] for v in np.unique(index) if v}
    assert {"CA", "NV", "OR", "AZ", "WA"} <= present and "NY" not in present
    coverage, _ = _read(cube / "coverage.tif")
    np.testing.assert_array_equal(index > 0, coverage[1] > 0)


def test_state_index_matches_the_conus_mask(west_grid: Grid) -> None:
    layers = state_layers(west_grid, _sites())
    states = {s.code: s for s in load_states()}
    conus = state_mask(west_grid, [states[c].geometry for c in layers.codes])
    np.testing.assert_array_equal(layers.conus, conus)
    np.testing.assert_array_equal(layers.index > 0, conus > 0)
    ca = state_mask(west_grid, [states["CA"].geometry]) > 0
    np.testing.assert_array_equal(layers.index == layers.codes.index("CA") + 1, ca)
    assert layers.covered == ["CA", "OR"]


def test_manifest_describes_and_checksums_the_new_files(cube: Path) -> None:
    manifest = json.loads((cube / "cube.json").read_text())
    assert manifest["format"] == CUBE_FORMAT == 2
    for name in (SURVEY_TIF, NATIONAL_TIF, STATES_TIF):
        assert manifest["checksums"][name]
        entry = manifest["files"][name]
        assert entry["dtype"] == "uint8"
        assert [b["name"] for b in entry["bands"]] == _read(cube / name)[1]
    gold = manifest["files"][SURVEY_TIF]["bands"][0]
    assert gold["name"] == "gold" and gold["sites"] == 61
    assert manifest["files"][NATIONAL_TIF]["bands"][0]["sites"] == 1
    assert manifest["files"]["labels.tif"]["bands"][0]["sites"] == 62
    assert manifest["files"][STATES_TIF]["bands"][0]["cells"] == manifest["files"]["coverage.tif"]["bands"][1]["cells"]


def test_backend_still_reads_the_cube(cube: Path) -> None:
    source = CubeSource.open(cube)
    assert source.species == ("gold", "silver", "copper")
    arrays = source.read()
    assert arrays.labels.shape[0] == 3 and arrays.conus.any()


def test_load_cube_reads_the_new_layers(cube: Path, west_grid: Grid) -> None:
    arrays = load_cube(cube, species=["copper", "gold"])
    survey, _ = _read(cube / SURVEY_TIF)
    assert arrays.survey_labels is not None and arrays.survey_labels.dtype == np.uint8
    np.testing.assert_array_equal(arrays.survey_labels, survey[[2, 0]])
    national, _ = _read(cube / NATIONAL_TIF)
    assert arrays.national_labels is not None
    np.testing.assert_array_equal(arrays.national_labels, national[[2, 0]])
    assert arrays.state_index is not None and arrays.state_index.shape == west_grid.shape
    assert arrays.state_codes == json.loads((cube / "cube.json").read_text())["states"]
    assert arrays.covered_states == ["CA", "OR"]
    assert arrays.conus is not None and arrays.conus.dtype == bool
    ca = arrays.state_mask("CA")
    assert ca.dtype == bool and ca[_cell(west_grid, SACRAMENTO)] and not ca[_cell(west_grid, RENO)]
    assert np.all(arrays.conus[ca]) and not np.any(ca & arrays.state_mask("NV"))
    with pytest.raises(ValueError, match="'XX' unknown.*known: AL, AR"):
        arrays.state_mask("XX")


def test_load_cube_reads_an_older_cube_without_the_new_files(cube: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(cube, old)
    (old / SURVEY_TIF).unlink()
    (old / NATIONAL_TIF).unlink()
    (old / STATES_TIF).unlink()
    manifest = json.loads((old / "cube.json").read_text())
    for key in ("states", "format"):
        manifest.pop(key)
    (old / "cube.json").write_text(json.dumps(manifest))
    arrays = load_cube(old)
    assert arrays.survey_labels is None and arrays.national_labels is None
    assert arrays.state_index is None and arrays.state_codes == []
    assert arrays.covered_states == ["CA", "OR"] and arrays.conus is not None
    assert arrays.labels.shape[0] == 3
    with pytest.raises(ValueError, match="rebuild the cube with `m3 cube build`"):
        arrays.state_mask("CA")
    assert CubeSource.open(old).species == ("gold", "silver", "copper")
