"""Seeded generators of small synthetic cubes and tiny ONNX models that satisfy the m3-model/1 contract."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from backend.cube.grid import CELL_SIZE, Grid
from backend.cube.store import write_geotiff

SPECIES = ("gold", "zinc")
COVARIATES = ("elevation", "gravity_disturbance")
#: Sierra Nevada foothills (lon, lat): covered by the MRDS California subset, many sites of many commodities.
FOOTHILLS = (-120.9, 39.0)


def small_grid(center: tuple[float, float] = FOOTHILLS, rows: int = 96, cols: int = 128) -> Grid:
    """A grid aligned with the CONUS grid cells, of ``rows`` x ``cols`` cells centred on a lon/lat."""
    conus = Grid.from_json({"crs": "EPSG:5070", "height": 1846, "width": 2907,
                            "transform": [CELL_SIZE, 0, -2389875.84, 0, -CELL_SIZE, 3205813.248]})
    row, col = conus.lonlat_to_rowcol(np.array([center[0]]), np.array([center[1]]))
    r0, c0 = int(row[0]) - rows // 2, int(col[0]) - cols // 2
    return Grid(conus.crs, conus.x0 + c0 * conus.cell, conus.y0 - r0 * conus.cell, conus.cell, rows, cols)


def write_synthetic_cube(folder: Path, grid: Grid, seed: int = 0) -> dict:
    """A cube folder (labels, coverage, covariates, validity, cube.json) with a high-elevation blob.

    Coverage is everything except the 16 easternmost columns; covariates have a NaN corner.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    h, w = grid.shape
    yy, xx = np.mgrid[0:h, 0:w]
    blob = np.exp(-(((yy - h * 0.5) / (h * 0.15)) ** 2 + ((xx - w * 0.4) / (w * 0.12)) ** 2))
    labels = (rng.random((len(SPECIES), h, w)) < 0.03).astype(np.uint8)
    coverage = np.ones((2, h, w), dtype=np.uint8)
    coverage[0, :, w - 16:] = 0
    cov = np.stack([3 * blob - 1 + 0.1 * rng.standard_normal((h, w)), rng.standard_normal((h, w)) * 0.1])
    cov = cov.astype(np.float32)
    cov[:, :4, :4] = np.nan
    valid = np.isfinite(cov).astype(np.uint8)
    write_geotiff(folder / "labels.tif", grid, labels, list(SPECIES))
    write_geotiff(folder / "coverage.tif", grid, coverage, ["coverage", "conus"])
    write_geotiff(folder / "covariates.tif", grid, cov, list(COVARIATES), nodata=float("nan"))
    write_geotiff(folder / "covariates_valid.tif", grid, valid, [f"{c}_valid" for c in COVARIATES])
    manifest = {"format": 1, "grid": grid.to_json(), "species": list(SPECIES), "files": {
        "labels.tif": {"bands": [{"name": s} for s in SPECIES]},
        "coverage.tif": {"bands": [{"name": "coverage"}, {"name": "conus"}]},
        "covariates.tif": {"bands": [{"name": c} for c in COVARIATES]},
        "covariates_valid.tif": {"bands": [{"name": f"{c}_valid"} for c in COVARIATES]},
    }}
    (folder / "cube.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def tiny_channels(species=SPECIES, covariates=COVARIATES) -> list[str]:
    """The channel order of the tiny model: visible, hidden, covariates, validity."""
    return ([f"visible:{s}" for s in species] + [f"hidden:{s}" for s in species]
            + [f"cov:{c}" for c in covariates] + [f"valid:{c}" for c in covariates])


def write_tiny_model(folder: Path, species=SPECIES, covariates=COVARIATES, seed: int = 0, multiple: int = 8,
                     cube_sha256: str | None = None, unsurveyed: str = "absent") -> Path:
    """A 1x1-convolution + sigmoid ONNX model (NaN -> 0 inside the graph) and its model.json.

    Species k's output depends on its own visible channel (+4), the first covariate (+2..3) and a bias,
    never on other species, so hiding one species changes only that species' output, cell by cell. With
    ``unsurveyed="unknown"`` the model also has the surveyed channel (+0.5) and its own hidden channel (+1).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    channels = tiny_channels(species, covariates) + (["surveyed:coverage"] if unsurveyed == "unknown" else [])
    n_in, n_out = len(channels), len(species)
    weight = np.zeros((n_out, n_in, 1, 1), dtype=np.float32)
    for k in range(n_out):
        weight[k, k] = 4.0
        weight[k, 2 * n_out] = 2.0 + rng.random()
        if unsurveyed == "unknown":
            weight[k, n_out + k] = 1.0
            weight[k, n_in - 1] = 0.5
    bias = (-2.0 + 0.2 * rng.standard_normal(n_out)).astype(np.float32)
    nodes = [
        helper.make_node("IsNaN", ["x"], ["isnan"]),
        helper.make_node("Where", ["isnan", "zero", "x"], ["clean"]),
        helper.make_node("Conv", ["clean", "W", "B"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["prob"]),
    ]
    graph = helper.make_graph(
        nodes, "m3_tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in, "H", "W"])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", n_out, "H", "W"])],
        initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B"),
                     numpy_helper.from_array(np.zeros((), dtype=np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="m3-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / "model.onnx"
    onnx.save(model, onnx_path)
    card = {
        "format": "m3-model/1", "onnx": "model.onnx", "input": "x", "output": "prob", "channels": channels,
        "species": list(species), "covariates": list(covariates), "multiple": multiple,
        "cell_size_m": CELL_SIZE, "crs": "EPSG:5070", "normalisation": {}, "opset": 17,
        "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(), "config": {"name": "tiny"},
        "metrics": {}, "cube": cube_sha256, "unsurveyed": unsurveyed,
    }
    (folder / "model.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    return folder
