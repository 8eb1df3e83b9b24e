"""Statistics of the layers inside a box, or the box as a GeoTIFF download."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
import orjson
import rasterio
from fastapi import APIRouter, Query, Response
from rasterio.io import MemoryFile
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from backend.api.errors import BadQuery
from backend.api.query import BBox, parse_bbox, parse_species
from backend.api.schemas import ProspectivityStats, problems
from backend.api.serve_errors import BoxTooLarge
from backend.api.serving import ServingDep
from backend.api.shared import array_stats
from backend.layers.catalog import LayerNotFound, LayerVersion
from backend.layers.cog import LAYER_KINDS, ScoreKind

router = APIRouter(prefix="/api", tags=["prospectivity"], responses=problems(404, 413, 429, 503))

#: The media type of the GeoTIFF download.
GEOTIFF = "image/tiff; application=geotiff"


def box_window(src: rasterio.DatasetReader, box: BBox) -> Window:
    """The window of whole cells of ``src`` covering a lon/lat box (rounded outward), clipped to the raster.

    The same cells as /api/infer's window of the box (every cell the box touches, at least one).
    """
    minx, miny, maxx, maxy = transform_bounds("EPSG:4326", src.crs, box.minx, box.miny, box.maxx, box.maxy,
                                              densify_pts=21)
    t = src.transform
    cols = sorted(((minx - t.c) / t.a, (maxx - t.c) / t.a))
    rows = sorted(((maxy - t.f) / t.e, (miny - t.f) / t.e))
    c0, c1 = max(0, math.floor(cols[0])), min(src.width, math.ceil(cols[1]))
    r0, r1 = max(0, math.floor(rows[0])), min(src.height, math.ceil(rows[1]))
    if c1 <= c0 or r1 <= r0:
        return Window(0, 0, 0, 0)
    return Window(c0, r0, c1 - c0, r1 - r0)


def read_box(version: LayerVersion, layer_ids: list[str], box: BBox, max_cells: int
             ) -> tuple[np.ndarray, Window, Any, Any]:
    """The native grid values [n, h, w] of layers inside a box, with the window, transform and CRS."""
    bands = []
    window = Window(0, 0, 0, 0)
    for layer_id in layer_ids:
        with rasterio.open(version.path(layer_id, native=True)) as src:
            window = box_window(src, box)
            cells = int(window.width * window.height)
            if cells > max_cells:
                raise BoxTooLarge("bbox", f"the box covers {cells} cells; at most {max_cells} are allowed "
                                          "(M3_PROSPECTIVITY_MAX_CELLS); choose a smaller box")
            if cells == 0:
                raise BadQuery("bbox", "the box lies outside the layers (the CONUS grid)")
            bands.append(src.read(1, window=window))
            transform, crs = src.window_transform(window), src.crs
    return np.stack(bands), window, transform, crs


@router.get("/prospectivity", summary="Statistics of a layer inside a box; format=tif downloads a GeoTIFF",
            response_model=ProspectivityStats,
            responses={200: {"content": {GEOTIFF: {"schema": {"type": "string", "format": "binary"}}},
                             "description": "JSON statistics, or with format=tif a float32 GeoTIFF of the box"}})
def read_prospectivity(
    serving: ServingDep,
    bbox: Annotated[str, Query(description="minx,miny,maxx,maxy in lon/lat", examples=["-121.5,38.5,-120.5,39.5"])],
    species: Annotated[str | None, Query(description="Comma-separated species ids (default: all)")] = None,
    kind: Annotated[ScoreKind, Query(description="Which layer: prospectivity, uncertainty or discrepancy")]
    = "prospectivity",
    format: Annotated[Literal["json", "tif"], Query(description="json statistics or a tif download")] = "json",
) -> Response:
    """Per species statistics of the current layers in the box (cells on the equal-area grid)."""
    box = parse_bbox(bbox)
    if box is None:
        raise BadQuery("bbox", "bbox is required: minx,miny,maxx,maxy in lon/lat")
    version = serving.catalog.current()
    if version is None:
        raise LayerNotFound("no layers are published yet; run `m3 infer` or POST /admin/reinference")
    known = sorted({i.species for i in version.layers.values()})
    wanted = parse_species(species, known) or known
    ids = [f"{s}.{kind}" for s in wanted]
    values, window, transform, crs = read_box(version, ids, box, serving.settings.prospectivity_max_cells)
    if format == "tif":
        profile = {"driver": "GTiff", "height": values.shape[1], "width": values.shape[2], "count": len(ids),
                   "dtype": "float32", "crs": crs, "transform": transform, "nodata": float("nan"),
                   "compress": "deflate", "tiled": False}
        with MemoryFile() as mem:
            with mem.open(**profile) as dst:
                dst.write(values.astype(np.float32))
                for i, layer_id in enumerate(ids, start=1):
                    dst.set_band_description(i, layer_id)
                dst.update_tags(layer_version=str(version.id), kind=kind)
            content = mem.read()
        name = f"m3-v{version.id}-{kind}-{'-'.join(wanted) if len(wanted) <= 3 else 'all'}.tif"
        return Response(content, media_type=GEOTIFF,
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    cell_km2 = abs(transform.a * transform.e) / 1e6
    body = {
        "layer_version": version.id, "kind": kind, "description": LAYER_KINDS[kind].description,
        "bbox": [box.minx, box.miny, box.maxx, box.maxy], "crs": str(crs), "cell_km2": cell_km2,
        "window": {"col": int(window.col_off), "row": int(window.row_off), "width": int(window.width),
                   "height": int(window.height)},
        "species": {s: array_stats(values[i], cell_km2) for i, s in enumerate(wanted)},
    }
    return Response(orjson.dumps(body), media_type="application/json")
