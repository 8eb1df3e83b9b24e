"""Writing layer rasters: a web-optimised COG for tiles and a grid-native COG for statistics and downloads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import morecantile
import numpy as np
import rasterio
from affine import Affine
from rasterio.io import MemoryFile
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")


@dataclass(frozen=True)
class LayerStyle:
    """How a layer kind is drawn by default, and what it means."""

    colormap: str
    rescale: tuple[float, float]
    description: str


#: The kinds of layer a version publishes, one raster per species and kind.
LayerKind = Literal["prospectivity", "uncertainty", "discrepancy", "evaluations"]
#: The kinds whose values are scores of the species (what /api/prospectivity reads in a box).
ScoreKind = Literal["prospectivity", "uncertainty", "discrepancy"]

#: Layer kinds (the keys are LayerKind's values), each with the colormap and value range its tiles are drawn with
#: by default. Keyed by str: a layer id read from a request or the catalog indexes it.
LAYER_KINDS: dict[str, LayerStyle] = {
    "prospectivity": LayerStyle("viridis", (0.0, 1.0), "the mean over the evaluations that hid the cell of the "
                                                      "probability that a survey would record the commodity in "
                                                      "it (calibrated per commodity when the model has a "
                                                      "calibration; not the chance of an economic deposit)"),
    "uncertainty": LayerStyle("magma", (0.0, 0.25), "standard deviation over the same evaluations, across training "
                                                    "seeds and mask draws (empty where fewer than two hid the cell)"),
    "discrepancy": LayerStyle("inferno", (0.0, 1.0),
                              "prospectivity where no record of the species exists, inside coverage only"),
    "evaluations": LayerStyle("cividis", (0.0, 50.0), "how many evaluations hid the cell (every species with it)"),
}


def _profile(crs: str, transform: Affine, height: int, width: int) -> dict[str, object]:
    """The profile of an in-memory float32 source raster (NaN nodata)."""
    return {"driver": "GTiff", "height": height, "width": width, "count": 1, "dtype": "float32",
            "crs": crs, "transform": transform, "nodata": float("nan")}


def write_layer(
    array: np.ndarray, crs: str, transform: Affine, web_path: Path, native_path: Path | None = None,
    description: str = "",
) -> None:
    """Write a 2-D float32 array (NaN = no data) as a web-optimised COG, and as a grid-native COG if asked.

    Both are written under a temporary name and renamed, so a reader never sees a half-written file.
    """
    data = np.asarray(array, dtype=np.float32)
    profile = cog_profiles.get("deflate")
    profile.update(blockxsize=256, blockysize=256, predictor=3)
    with MemoryFile() as mem:
        with mem.open(**_profile(crs, transform, *data.shape)) as src:
            src.write(data, 1)
            if description:
                src.set_band_description(1, description)
        with mem.open() as src:
            targets = [(web_path, True)] + ([(native_path, False)] if native_path else [])
            for path, web in targets:
                tmp = path.with_name(f".{path.name}.part")
                cog_translate(src, tmp, dict(profile), tms=WEB_MERCATOR if web else None, nodata=float("nan"),
                              resampling="nearest", overview_resampling="nearest", in_memory=True, quiet=True,
                              config={"GDAL_NUM_THREADS": "ALL_CPUS"})
                tmp.replace(path)


def layer_stats(array: np.ndarray) -> dict[str, float | int | None]:
    """Summary statistics of a layer (NaN ignored) for the catalog."""
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return {"count": 0, "min": None, "max": None, "mean": None}
    return {"count": int(finite.size), "min": float(finite.min()), "max": float(finite.max()),
            "mean": float(finite.mean())}


def read_geographic_bounds(path: Path) -> tuple[float, float, float, float]:
    """Lon/lat bounds of a raster."""
    from rasterio.warp import transform_bounds

    with rasterio.open(path) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
    return (west, south, east, north)
