"""The full CONUS build from the PostGIS site store (needs the `engine` fixture of the db tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from backend.cube.build import build_cube
from backend.cube.contract import sha256_file
from backend.cube.grid import Grid
from backend.cube.sites import read_sites
from backend.settings import Settings


def _engine(request: pytest.FixtureRequest):  # noqa: ANN202
    """The suite's `engine` fixture (migrated PostGIS with the bundled sites), or skip without one."""
    try:
        return request.getfixturevalue("engine")
    except pytest.FixtureLookupError:
        pytest.skip("no `engine` fixture (PostGIS with ingested sites) in this test run")


@pytest.mark.slow
def test_conus_build_from_the_store(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    engine = _engine(request)
    sites = read_sites(engine)
    assert len(sites) > 0
    manifest_path = build_cube(Settings(), engine, tmp_path / "a", progress=False)
    manifest = json.loads(manifest_path.read_text())
    grid = Grid.conus()
    rows, cols = grid.lonlat_to_rowcol(sites.lon, sites.lat)
    inside = grid.contains(rows, cols)
    assert manifest["sites"]["inside_grid"] == int(inside.sum())
    with rasterio.open(tmp_path / "a" / "crossref_counts.tif") as ds:
        all_sites = ds.read(list(ds.descriptions).index("all_sites") + 1)
    assert int(all_sites.sum()) == int(inside.sum())
    with rasterio.open(tmp_path / "a" / "label_counts.tif") as ds:
        for k, name in enumerate(ds.descriptions, start=1):
            expected = sum(1 for i, s in enumerate(sites.species) if name in s and inside[i])
            assert int(ds.read(k).sum()) == expected, name
    gold = json.loads(manifest_path.read_text())["files"]["labels.tif"]["bands"][0]
    assert gold["name"] == "gold" and gold["cells_covered"] > 1000  # California gold
    build_cube(Settings(), engine, tmp_path / "b", progress=False, quicklooks=False)
    for name in manifest["checksums"]:
        assert sha256_file(tmp_path / "a" / name) == sha256_file(tmp_path / "b" / name)
    assert np.isfinite(manifest["files"]["covariates.tif"]["bands"][0]["normalisation"]["mean"])
