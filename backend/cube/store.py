"""Writing the cube: deterministic GeoTIFFs, checksums and atomic placement (the file I/O edge)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from backend.cube.contract import CUBE_JSON
from backend.cube.grid import Grid

#: GDAL options that keep the bytes of a GeoTIFF a function of its pixels and tags only.
_GDAL_ENV = {"GDAL_NUM_THREADS": "1"}


def write_geotiff(
    path: Path,
    grid: Grid,
    bands: np.ndarray,
    names: Sequence[str],
    nodata: float | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    """Write a (bands, rows, cols) array on the grid as one tiled, ZSTD-compressed GeoTIFF.

    Band descriptions carry the names; no timestamps or other run-dependent tags are written, so
    the same arrays always give the same bytes.
    """
    if bands.ndim != 3 or bands.shape[1:] != grid.shape:
        raise ValueError(f"bands have shape {bands.shape}; expected (n, {grid.height}, {grid.width})")
    if len(names) != bands.shape[0]:
        raise ValueError(f"{len(names)} band names for {bands.shape[0]} bands")
    profile = grid.profile(count=bands.shape[0], dtype=str(bands.dtype), nodata=nodata)
    with rasterio.Env(**_GDAL_ENV), rasterio.open(path, "w", **profile) as dst:
        for i, name in enumerate(names, start=1):
            dst.set_band_description(i, name)
            dst.write(bands[i - 1], i)
        if tags:
            dst.update_tags(**{k: str(v) for k, v in sorted(tags.items())})


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON with sorted keys and a trailing newline (stable bytes)."""
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")


@contextmanager
def staged_output(out_dir: Path) -> Iterator[Path]:
    """A staging folder inside ``out_dir``; on success its files replace those in ``out_dir``.

    Files are moved one by one with ``os.replace`` (atomic per file), with ``cube.json`` last, so
    readers never see a half-written file and a cube.json always describes complete rasters. On
    error or interrupt the staging folder is removed and ``out_dir`` is left as it was.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".staging-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        yield staging
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == CUBE_JSON)
        for src in files:
            dst = out_dir / src.relative_to(staging)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
