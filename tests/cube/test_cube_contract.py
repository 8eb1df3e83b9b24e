"""The cube contract: cube.json as a model, reading arrays over windows, stacking model inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

from backend.cube.contract import (
    COVARIATES_TIF,
    COVERAGE_TIF,
    CUBE_JSON,
    LABELS_TIF,
    NATIONAL_TIF,
    STATES_TIF,
    SURVEY_TIF,
    VALID_TIF,
    CubeArrays,
    CubeManifest,
    CubeMissingError,
    InputChannel,
    InputLayout,
    assemble_inputs,
    channel_names,
    check_manifest,
    load_cube,
    read_manifest,
    sha256_file,
)
from backend.cube.grid import CELL_SIZE, Grid
from backend.cube.store import write_geotiff

SPECIES = ["gold", "zinc", "copper"]
COVARIATES = ["elevation", "slope"]


def _arrays(seed: int = 0, shape: tuple[int, int] = (20, 30)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random((len(SPECIES), *shape)) < 0.2).astype(np.uint8)
    survey = labels & (rng.random(labels.shape) < 0.7)
    cov = rng.standard_normal((len(COVARIATES), *shape)).astype(np.float32)
    cov[0, :3, :4] = np.nan
    coverage = np.ones((2, *shape), dtype=np.uint8)
    coverage[0, :, -5:] = 0
    states = np.zeros(shape, dtype=np.uint8)
    states[:, : shape[1] // 2], states[:, shape[1] // 2:] = 1, 2
    return {"labels": labels, "survey": survey.astype(np.uint8), "national": (labels & ~survey).astype(np.uint8),
            "cov": cov, "valid": np.isfinite(cov).astype(np.uint8), "coverage": coverage, "states": states}


@pytest.fixture
def cube_dir(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    a = _arrays()
    grid = Grid("EPSG:5070", -2_000_000.0, 3_000_000.0, CELL_SIZE, 20, 30)
    folder = tmp_path / "cube"
    folder.mkdir()
    write_geotiff(folder / LABELS_TIF, grid, a["labels"], SPECIES)
    write_geotiff(folder / SURVEY_TIF, grid, a["survey"], SPECIES)
    write_geotiff(folder / NATIONAL_TIF, grid, a["national"], SPECIES)
    write_geotiff(folder / COVERAGE_TIF, grid, a["coverage"], ["coverage", "conus"])
    write_geotiff(folder / STATES_TIF, grid, a["states"][np.newaxis], ["state"])
    write_geotiff(folder / COVARIATES_TIF, grid, a["cov"], COVARIATES, nodata=float("nan"))
    write_geotiff(folder / VALID_TIF, grid, a["valid"], [f"{c}_valid" for c in COVARIATES])
    manifest = {"format": 2, "grid": grid.to_json(), "species": SPECIES, "states": ["AA", "BB"],
                "files": {LABELS_TIF: {"bands": [{"name": s} for s in SPECIES]}},
                "coverage_rule": {"description": "test", "min_sites": 1, "sources": [], "covered_states": ["AA"]}}
    (folder / CUBE_JSON).write_text(json.dumps(manifest), encoding="utf-8")
    return folder, a


def test_load_cube_reads_every_layer(cube_dir: tuple[Path, dict[str, np.ndarray]]) -> None:
    folder, a = cube_dir
    cube = load_cube(folder)
    assert cube.species == SPECIES and cube.covariates == COVARIATES and cube.shape == (20, 30)
    np.testing.assert_array_equal(cube.labels, a["labels"])
    np.testing.assert_array_equal(cube.survey_labels, a["survey"])
    np.testing.assert_array_equal(cube.national_labels, a["national"])
    np.testing.assert_array_equal(cube.coverage, a["coverage"][0] > 0)
    np.testing.assert_array_equal(cube.cov, a["cov"])
    assert cube.cov.dtype == np.float32 and cube.valid.dtype == np.uint8 and cube.labels.dtype == np.uint8
    assert cube.state_codes == ["AA", "BB"] and cube.covered_states == ["AA"]
    assert cube.state_mask("BB")[:, -1].all() and cube.conus is not None and cube.conus.all()
    assert cube.cube_sha256 == sha256_file(folder / CUBE_JSON)


def test_load_cube_picks_species_and_covariates(cube_dir: tuple[Path, dict[str, np.ndarray]]) -> None:
    folder, a = cube_dir
    cube = load_cube(folder, species=["copper", "gold"], covariates=["slope"])
    np.testing.assert_array_equal(cube.labels, a["labels"][[2, 0]])
    np.testing.assert_array_equal(cube.national_labels, a["national"][[2, 0]])
    np.testing.assert_array_equal(cube.valid, a["valid"][[1]])
    with pytest.raises(ValueError, match=r"species \['lead'\] unknown in the cube; known: gold, zinc, copper"):
        load_cube(folder, species=["lead"])


def test_a_window_reads_empty_cells_outside_the_grid(cube_dir: tuple[Path, dict[str, np.ndarray]]) -> None:
    folder, a = cube_dir
    whole = load_cube(folder)
    part = load_cube(folder, window=Window(-2, 15, 10, 8), inputs_only=True)  # cols -2..7, rows 15..22
    assert part.shape == (8, 10) and part.state_index is None and part.survey_labels is None
    inside = whole.crop(slice(15, 20), slice(0, 8))
    np.testing.assert_array_equal(part.labels[:, :5, 2:], inside.labels)
    np.testing.assert_array_equal(part.cov[:, :5, 2:], inside.cov)
    assert not part.labels[:, 5:].any() and not part.coverage[:, :2].any() and not part.conus_cells[5:].any()
    assert np.isnan(part.cov[:, :, :2]).all() and not part.valid[:, 5:].any()


def test_a_missing_cube_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(CubeMissingError, match="m3 cube build"):
        load_cube(tmp_path)
    (tmp_path / CUBE_JSON).write_text(json.dumps({"species": ["gold"]}), encoding="utf-8")
    with pytest.raises(CubeMissingError, match=f"{LABELS_TIF} does not exist"):
        load_cube(tmp_path)


def test_manifest_defaults_and_checks() -> None:
    minimal = CubeManifest.model_validate({"species": ["gold"], "other": 1})
    assert minimal.format == 1 and minimal.states == [] and minimal.covered_states == [] and minimal.grid is None
    with pytest.raises(KeyError, match="does not describe labels.tif"):
        minimal.band_names(LABELS_TIF)
    content = {"format": 2, "species": ["gold"], "checksums": {LABELS_TIF: "0" * 64},
               "inputs": {"sites": {"rows": 1, "sha256": "1", "sources": {"a": 1}},
                          "boundaries": {"path": "b.json", "sha256": "2"}}}
    manifest = check_manifest(content)
    assert manifest.inputs["boundaries"].sha256 == "2"
    with pytest.raises(ValueError, match="keys that CubeManifest does not describe"):
        check_manifest({**content, "extra": True})
    with pytest.raises(ValueError, match="keys that CubeManifest does not describe"):
        check_manifest({**content, "files": {LABELS_TIF: {"bands": [{"name": "gold", "colour": "red"}]}}})


def test_read_manifest_reads_the_grid(cube_dir: tuple[Path, dict[str, np.ndarray]]) -> None:
    folder, _ = cube_dir
    manifest = read_manifest(folder)
    assert manifest.grid is not None and (manifest.grid.height, manifest.grid.width) == (20, 30)
    assert manifest.band_names(LABELS_TIF) == tuple(SPECIES)


def test_assemble_inputs_in_the_standard_order() -> None:
    a = _arrays(1)
    cube = CubeArrays(SPECIES, COVARIATES, a["labels"], a["coverage"][0] > 0, a["cov"], a["valid"])
    hidden = np.random.default_rng(2).random(a["labels"].shape) < 0.5
    layout = InputLayout.of(SPECIES, COVARIATES)
    assert [f"{c.kind}:{c.name}" for c in layout.channels] == channel_names(SPECIES, COVARIATES)
    x = assemble_inputs(layout, cube, hidden)
    expected = np.concatenate([np.where(hidden, 0, a["labels"]), hidden, a["cov"], a["valid"]]).astype(np.float32)
    np.testing.assert_array_equal(x, expected)
    assert x.dtype == np.float32
    out = np.full((2, *x.shape), 7.0, dtype=np.float32)
    assemble_inputs(layout, cube, hidden, out=out[1])
    np.testing.assert_array_equal(out[1], expected)
    with pytest.raises(ValueError, match="input buffer has shape"):
        assemble_inputs(layout, cube, hidden, out=out[:, 0])


def test_assemble_inputs_for_a_model_that_masks_some_species() -> None:
    a = _arrays(3)
    cube = CubeArrays(SPECIES, COVARIATES, a["labels"], a["coverage"][0] > 0, a["cov"], a["valid"])
    channels = (InputChannel("visible", "copper"), InputChannel("visible", "gold"), InputChannel("hidden", "gold"),
                InputChannel("hidden", "copper"), InputChannel("valid", "slope_valid"), InputChannel("cov", "slope"))
    spec = InputLayout(channels, ("gold",))
    hidden = np.zeros((1, 20, 30), dtype=bool)
    hidden[0, 5:10] = True
    x = assemble_inputs(spec, cube, hidden)
    np.testing.assert_array_equal(x[0], a["labels"][2])  # not masked: visible everywhere
    np.testing.assert_array_equal(x[1], np.where(hidden[0], 0, a["labels"][0]))
    np.testing.assert_array_equal(x[2], hidden[0])
    assert not x[3].any()
    np.testing.assert_array_equal(x[4], a["valid"][1])
    np.testing.assert_array_equal(x[5], a["cov"][1])


def test_crop_is_a_view_of_every_layer() -> None:
    a = _arrays(4)
    cube = CubeArrays(SPECIES, COVARIATES, a["labels"], a["coverage"][0] > 0, a["cov"], a["valid"],
                      state_index=a["states"], state_codes=["AA", "BB"], conus=a["coverage"][1] > 0)
    part = cube.crop(slice(2, 6), slice(10, 20))
    assert part.shape == (4, 10) and part.labels.shape == (3, 4, 10) and part.survey_labels is None
    assert part.state_index is not None and np.shares_memory(part.state_index, a["states"])
    assert np.shares_memory(part.cov, cube.cov) and part.state_mask("AA")[:, :5].all()
