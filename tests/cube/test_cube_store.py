"""Writing: deterministic GeoTIFF bytes and atomic placement of outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from backend.cube.contract import sha256_file
from backend.cube.grid import Grid
from backend.cube.store import staged_output, write_geotiff


@pytest.fixture()
def small_grid() -> Grid:
    return Grid(crs="EPSG:5070", x0=-1609.344 * 10, y0=1609.344 * 2000, cell=1609.344, height=300, width=500)


def test_same_arrays_give_the_same_bytes(tmp_path: Path, small_grid: Grid) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2, *small_grid.shape)).astype(np.float32)
    data[0, :10] = np.nan
    write_geotiff(tmp_path / "a.tif", small_grid, data, ["one", "two"], nodata=float("nan"))
    write_geotiff(tmp_path / "b.tif", small_grid, data, ["one", "two"], nodata=float("nan"))
    assert sha256_file(tmp_path / "a.tif") == sha256_file(tmp_path / "b.tif")
    with rasterio.open(tmp_path / "a.tif") as ds:
        assert ds.crs.to_epsg() == 5070
        assert ds.transform == small_grid.transform
        assert ds.descriptions == ("one", "two")
        assert ds.profile["compress"].lower() == "zstd" and ds.profile["tiled"]
        np.testing.assert_array_equal(ds.read(2), data[1])
        assert "TIFFTAG_DATETIME" not in ds.tags()


def test_shape_and_name_mismatch_is_refused(tmp_path: Path, small_grid: Grid) -> None:
    with pytest.raises(ValueError, match="expected"):
        write_geotiff(tmp_path / "x.tif", small_grid, np.zeros((1, 3, 3), np.uint8), ["x"])
    with pytest.raises(ValueError, match="band names"):
        write_geotiff(tmp_path / "x.tif", small_grid, np.zeros((2, *small_grid.shape), np.uint8), ["x"])


def test_staged_output_replaces_files_only_on_success(tmp_path: Path) -> None:
    out = tmp_path / "cube"
    out.mkdir()
    (out / "cube.json").write_text("old")
    with pytest.raises(RuntimeError), staged_output(out) as staging:
        (staging / "cube.json").write_text("half")
        raise RuntimeError("interrupted")
    assert (out / "cube.json").read_text() == "old"
    assert [p.name for p in out.iterdir()] == ["cube.json"]
    with staged_output(out) as staging:
        (staging / "quicklook").mkdir()
        (staging / "quicklook" / "a.png").write_bytes(b"png")
        (staging / "cube.json").write_text("new")
    assert (out / "cube.json").read_text() == "new"
    assert (out / "quicklook" / "a.png").read_bytes() == b"png"
    assert sorted(p.name for p in out.iterdir()) == ["cube.json", "quicklook"]
