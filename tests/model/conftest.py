"""Tiny seeded fixtures for the model tests: an in-memory cube, a cube folder on disk, a tiny config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.config import config_from_dict
from model.cube_data import CubeArrays

try:  # the model tests need the `train` extra (torch); without it they are skipped, not failed
    import torch  # noqa: F401
except ImportError:
    collect_ignore_glob = ["test_*.py"]

SPECIES = ["gold", "silver", "copper"]
COVARIATES = ["elevation", "slope"]
TINY = {
    "name": "tiny",
    "data": {"cube": "cube", "block_cells": 16, "buffer_cells": 1, "split_fractions": [0.6, 0.2, 0.2],
             "split_seed": 0, "min_block_coverage": 0.05, "patch_cells": 32},
    "masking": {"region_min_cells": 4, "region_max_cells": 16},
    "loss": {"bce": 1.0, "dice": 0.1, "recall": 0.1, "pos_weight": 4.0},
    "models": {
        "unet": {"arch": "unet", "params": {"width": 4, "depth": 2}, "steps": 4, "batch_size": 2, "warmup_steps": 1,
                 "prior_skip": True},
        "vit": {"arch": "vit", "params": {"patch": 4, "embed_dim": 16, "layers": 1, "heads": 2, "pos_grid": 4},
                "steps": 3, "batch_size": 2, "warmup_steps": 1},
    },
    "train": {"seeds": [0], "threads": 1, "blur_radius": 2, "context_radius": 6, "log_every": 1, "checkpoint_every": 2},
    "eval": {"margin_cells": 8, "max_windows": 3, "min_window_cells": 20, "kriging_points": 30,
             "kriging_models": ["spherical"], "kriging_tune_windows": 1, "neighbourhood_radii": [1, 2],
             "neighbourhood_weights": [0.0, 1.0], "batch_size": 4},
}


def synthetic_arrays(seed: int = 0, size: int = 96) -> CubeArrays:
    """A seeded cube: presence correlated with a smooth covariate; silver follows gold; right quarter uncovered."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    elevation = np.sin(6 * xx) + np.cos(5 * yy) + 0.1 * rng.standard_normal((size, size))
    slope = np.abs(np.gradient(elevation)[0]) * 10
    gold = rng.random((size, size)) < 0.08 * (elevation > 0.5)
    silver = gold & (rng.random((size, size)) < 0.6) | (rng.random((size, size)) < 0.01)
    copper = rng.random((size, size)) < 0.03 * (elevation < 0)
    cov = np.stack([elevation, slope]).astype(np.float32)
    cov[0, :3, :3] = np.nan
    valid = np.isfinite(cov).astype(np.uint8)
    coverage = np.ones((size, size), dtype=bool)
    coverage[:, int(0.75 * size):] = False
    return CubeArrays(SPECIES, COVARIATES, np.stack([gold, silver, copper]).astype(np.uint8), coverage, cov, valid,
                      cube_sha256="0" * 64)


def write_cube(cube: CubeArrays, out: Path) -> Path:
    """Write the arrays as a cube folder (GeoTIFFs with band descriptions, and a cube.json)."""
    import rasterio
    from rasterio.transform import from_origin

    out.mkdir(parents=True, exist_ok=True)
    h, w = cube.shape
    transform = from_origin(-2_000_000, 3_000_000, 1609.344, 1609.344)

    def tif(name: str, data: np.ndarray, names: list[str]) -> None:
        profile = {"driver": "GTiff", "height": h, "width": w, "count": len(data), "dtype": str(data.dtype),
                   "crs": "EPSG:5070", "transform": transform}
        with rasterio.open(out / name, "w", **profile) as dst:
            for i, n in enumerate(names, start=1):
                dst.set_band_description(i, n)
                dst.write(data[i - 1], i)

    tif("labels.tif", cube.labels, cube.species)
    tif("covariates.tif", cube.cov, cube.covariates)
    tif("covariates_valid.tif", cube.valid, [f"{c}_valid" for c in cube.covariates])
    tif("coverage.tif", np.stack([cube.coverage, np.ones_like(cube.coverage)]).astype(np.uint8), ["coverage", "conus"])
    (out / "cube.json").write_text(json.dumps({"species": cube.species, "format": 1}), encoding="utf-8")
    return out


@pytest.fixture
def tiny_arrays() -> CubeArrays:
    """The in-memory synthetic cube."""
    return synthetic_arrays()


@pytest.fixture
def tiny_raw() -> dict:
    """The tiny configuration as a plain dict (what a YAML file holds)."""
    return json.loads(json.dumps(TINY))


@pytest.fixture
def tiny_config():  # noqa: ANN201
    """The tiny experiment configuration."""
    return config_from_dict(json.loads(json.dumps(TINY)))


@pytest.fixture
def tiny_cube_dir(tmp_path: Path) -> Path:
    """A synthetic cube folder on disk."""
    return write_cube(synthetic_arrays(), tmp_path / "cube")
