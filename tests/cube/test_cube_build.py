"""The whole build on a small grid from a synthetic site table: outputs, cube.json, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from backend.cube.build import build_cube_from_sites
from backend.cube.contract import CUBE_FORMAT, CUBE_JSON, GEOTIFFS, check_manifest, read_manifest, sha256_file
from backend.cube.grid import Grid
from backend.cube.labels import UnknownSpeciesError
from backend.cube.sites import SiteTable
from backend.cube.sources import CovariateError
from backend.settings import Settings

from .conftest import SACRAMENTO

TIFS = [
    "labels.tif",
    "label_counts.tif",
    "crossref_counts.tif",
    "coverage.tif",
    "covariates.tif",
    "covariates_valid.tif",
]


def _user_tif(path: Path) -> Path:
    data = np.arange(200 * 300, dtype=np.float32).reshape(200, 300)
    profile = {
        "driver": "GTiff",
        "width": 300,
        "height": 200,
        "count": 1,
        "dtype": "float32",
        "crs": "EPSG:4326",
        "transform": Affine(0.02, 0, -123.0, 0, -0.02, 40.0),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, west_grid: Grid) -> tuple[Path, Path, SiteTable]:
    rng = np.random.default_rng(7)
    n = 300
    sites = SiteTable.from_records(
        lon=list(rng.uniform(-122.5, -119.0, n)) + [-157.8],
        lat=list(rng.uniform(36.0, 40.0, n)) + [21.3],
        species=[
            ("gold", "silver") if i % 3 == 0 else ("gold",) if i % 3 == 1 else ("sand_and_gravel",) for i in range(n)
        ]
        + [("gold",)],
        source=["https://doi.org/10.5066/P9HTERGK"] * n + ["https://mrdata.usgs.gov/porcu"],
        state=["CA"] * n + ["HI"],
    )
    base = tmp_path_factory.mktemp("cubes")
    user = _user_tif(base / "ramp.tif")
    outs = []
    for name, looks in (("a", True), ("b", False)):
        build_cube_from_sites(
            Settings(),
            sites,
            base / name,
            species=["gold", "silver"],
            covariates=[f"ramp={user}"],
            progress=False,
            quicklooks=looks,
            grid=west_grid,
        )
        outs.append(base / name)
    return outs[0], outs[1], sites


def test_every_file_and_band_is_written(built: tuple[Path, Path, SiteTable], west_grid: Grid) -> None:
    out, _, _ = built
    manifest = json.loads((out / "cube.json").read_text())
    assert Grid.from_json(manifest["grid"]) == west_grid
    for name in TIFS:
        with rasterio.open(out / name) as ds:
            assert ds.shape == west_grid.shape and ds.crs.to_epsg() == 5070
            assert list(ds.descriptions) == [b["name"] for b in manifest["files"][name]["bands"]]
    assert manifest["species"] == ["gold", "silver"]
    covariates = [b["name"] for b in manifest["files"]["covariates.tif"]["bands"]]
    derived = ["bouguer_anomaly", "bouguer_residual_50km", "bouguer_residual_100km", "bouguer_residual_200km",
               "bouguer_gradient", "slope_4cells", "slope_16cells", "roughness_4cells", "roughness_16cells"]
    assert covariates == ["elevation", "slope", "roughness", "gravity_disturbance", "geoid", *derived, "ramp"]
    assert manifest["inputs"]["covariate:ramp"]["sha256"]
    assert manifest["inputs"]["sites"]["rows"] == 301
    assert manifest["coverage_rule"]["covered_states"] == ["CA"]
    assert not list(out.glob(".staging-*"))


def test_manifest_is_what_the_contract_describes(built: tuple[Path, Path, SiteTable]) -> None:
    out, _, _ = built
    content = json.loads((out / CUBE_JSON).read_text())
    manifest = check_manifest(content)
    assert manifest == read_manifest(out) and manifest.format == CUBE_FORMAT
    assert set(manifest.checksums) == set(GEOTIFFS)
    for name in GEOTIFFS:
        assert manifest.checksums[name] == sha256_file(out / name)
        with rasterio.open(out / name) as ds:
            assert list(manifest.band_names(name)) == list(ds.descriptions)
    assert manifest.sites is not None and manifest.coverage_rule is not None and manifest.grid is not None
    assert {k for k, v in manifest.files.items() if v.kind is None or v.dtype is None} == set()


def test_label_counts_sum_to_sites_inside(built: tuple[Path, Path, SiteTable]) -> None:
    out, _, sites = built
    manifest = json.loads((out / "cube.json").read_text())
    assert manifest["sites"] == {"located": 301, "inside_grid": 300, "outside_grid": 1}
    with rasterio.open(out / "label_counts.tif") as ds:
        counts = ds.read()
    assert int(counts[0].sum()) == 200  # gold, inside the grid (Honolulu dropped)
    assert int(counts[1].sum()) == 100  # silver
    with rasterio.open(out / "crossref_counts.tif") as ds:
        names = list(ds.descriptions)
        xref = ds.read()
    assert int(xref[names.index("all_sites")].sum()) == 300
    assert int(xref[names.index("sand_and_gravel")].sum()) == 100
    with rasterio.open(out / "labels.tif") as ds:
        assert set(np.unique(ds.read())) <= {0, 1}


def test_covariates_are_normalised_with_stored_statistics(built: tuple[Path, Path, SiteTable], west_grid: Grid) -> None:
    out, _, _ = built
    manifest = json.loads((out / "cube.json").read_text())
    band = manifest["files"]["covariates.tif"]["bands"][0]
    stats = band["normalisation"]
    with rasterio.open(out / "covariates.tif") as ds:
        z = ds.read(1)
    with rasterio.open(out / "coverage.tif") as ds:
        conus = ds.read(2).astype(bool)
    row, col = west_grid.lonlat_to_rowcol(np.array([SACRAMENTO[0]]), np.array([SACRAMENTO[1]]))
    elevation = z[row[0], col[0]] * stats["std"] + stats["mean"]
    assert -50 < elevation < 200  # Sacramento lies in the Central Valley
    inside = z[conus & np.isfinite(z)]
    assert abs(float(inside.mean())) < 1e-3 and abs(float(inside.std()) - 1) < 1e-3


def test_building_twice_gives_identical_bytes(built: tuple[Path, Path, SiteTable]) -> None:
    a, b, _ = built
    ma = json.loads((a / "cube.json").read_text())
    mb = json.loads((b / "cube.json").read_text())
    assert ma["checksums"] == mb["checksums"]
    assert (a / "cube.json").read_bytes() == (b / "cube.json").read_bytes()


def test_quicklooks_exist_for_every_band(built: tuple[Path, Path, SiteTable]) -> None:
    out, without, _ = built
    pngs = {p.stem for p in (out / "quicklook").glob("*.png")}
    assert {
        "presence_gold",
        "counts_silver",
        "coverage",
        "conus",
        "elevation",
        "gravity_disturbance_valid",
        "ramp",
        "crossref_all_sites",
        "crossref_sand_and_gravel",
    } <= pngs
    assert not (without / "quicklook").exists()


def test_unknown_species_and_bad_covariates_fail_before_work(tmp_path: Path, west_grid: Grid) -> None:
    sites = SiteTable.from_records([-121.0], [38.0], [("gold",)])
    with pytest.raises(UnknownSpeciesError, match="'gld' is unknown.*known.*gold"):
        build_cube_from_sites(Settings(), sites, tmp_path / "x", species=["gld"], progress=False, grid=west_grid)
    with pytest.raises(CovariateError, match="already used"):
        build_cube_from_sites(
            Settings(),
            sites,
            tmp_path / "x",
            species=["gold"],
            progress=False,
            covariates=[f"elevation={tmp_path / 'a.tif'}"],
            grid=west_grid,
        )
    with pytest.raises(CovariateError, match="does not exist"):
        build_cube_from_sites(
            Settings(),
            sites,
            tmp_path / "x",
            species=["gold"],
            progress=False,
            covariates=[f"mag={tmp_path / 'missing.tif'}"],
            grid=west_grid,
        )
    assert not (tmp_path / "x").exists()
