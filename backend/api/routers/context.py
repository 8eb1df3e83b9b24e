"""Context layers: the cube's covariates and a hillshade of its elevation, listed with provenance and tiled by TiTiler.

``GET /api/context`` lists them (from cube.json, so a covariate added to the cube appears by itself) with the
survey coverage the map hatches outside. ``/tiles/context/{context_id}/...`` serves their tiles through TiTiler;
the id maps to a file the service writes itself (backend.api.context_layers), never to a client path or URL.
The hillshade is TiTiler's ``hillshade`` algorithm over the elevation in metres, its vertical scale set from the
tile's ground resolution so that relief reads alike at every zoom.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Path, Query, Request
from rio_tiler.colormap import cmap
from rio_tiler.models import ImageData
from rio_tiler.types import ColorMapType
from titiler.core.algorithm import BaseAlgorithm
from titiler.core.algorithm.dem import HillShade
from titiler.core.dependencies import DatasetParams, ImageRenderingParams, TileParams
from titiler.core.factory import TilerFactory

from backend.api.context_layers import HILLSHADE, ContextLayer
from backend.api.errors import BadQuery
from backend.api.routers.tiles import COLORMAPS, TILE_MATRIX_SETS, check_tile_query, checked_algorithm
from backend.api.schemas import (
    ContextInput,
    ContextLayerPublic,
    ContextLayersPublic,
    CoverageSourcePublic,
    SurveyCoverage,
    problems,
)
from backend.api.serving import ServingDep, get_serving
from backend.api.shared import MAX_ZOOM
from backend.cube.contract import read_manifest
from backend.layers.reader import LayerReader
from backend.layers.render import render_layer_image

router = APIRouter(prefix="/api", tags=["context"], responses=problems(503))

CONTEXT_ID_HELP = "A context layer id from GET /api/context: hillshade, or a covariate of the cube (elevation, ...)"
#: Vertical exaggeration of the hillshade (the cube's elevation is smooth: about 9 km cells at the source).
HILLSHADE_EXAGGERATION = 10.0
#: Pixels read around a hillshade tile, so the gradient at its edges matches the neighbour's.
HILLSHADE_BUFFER = 2
#: Where the light comes from: azimuth (degrees clockwise from north) and altitude above the horizon.
HILLSHADE_AZIMUTH = 315
HILLSHADE_ALTITUDE = 45.0
EARTH_RADIUS_M = 6378137.0
TILE_PIXELS = 256


def _public(layer: ContextLayer, base: str) -> ContextLayerPublic:
    """A context layer with its tile URLs."""
    query = "" if layer.rescale is None else f"?rescale={layer.rescale[0]:.6g},{layer.rescale[1]:.6g}"
    tiles = f"{base}/tiles/context/{layer.id}"
    return ContextLayerPublic(
        id=layer.id, title=layer.title, kind=layer.kind, units=layer.units, description=layer.description,
        colormap=layer.colormap, rescale=list(layer.rescale) if layer.rescale else None,
        tilejson=f"{tiles}/WebMercatorQuad/tilejson.json{query}",
        tiles=f"{tiles}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png{query}",
        inputs=[ContextInput(file=i.file, sha256=i.sha256, source=i.source) for i in layer.inputs])


@router.get("/context", summary="Context layers (hillshade, covariates) with provenance, and the survey coverage",
            response_model=ContextLayersPublic, response_model_exclude_unset=True)
def list_context(request: Request, serving: ServingDep) -> ContextLayersPublic:
    """The cube's covariates and hillshade as tile layers, and the states with systematic survey records."""
    catalog = serving.context
    try:
        manifest = read_manifest(catalog.cube_dir)
    except FileNotFoundError:
        return ContextLayersPublic(layers=[], coverage=None, detail="no cube yet: build it with `m3 cube build`")
    base = str(request.base_url).rstrip("/")
    rule = manifest.coverage_rule
    coverage = None if rule is None else SurveyCoverage(
        covered_states=list(rule.covered_states), description=rule.description,
        sources=[CoverageSourcePublic(name=s.name, state=s.state, source=s.source) for s in rule.sources])
    return ContextLayersPublic(layers=[_public(layer, base) for layer in catalog.layers()], coverage=coverage)


# -- tiles ---------------------------------------------------------------------------------------------


def context_layer(request: Request,
                  context_id: Annotated[str, Path(description=CONTEXT_ID_HELP, max_length=64)]) -> ContextLayer:
    """The context layer of the path (404 naming the known ids)."""
    return get_serving(request).context.get(context_id)


def context_path(request: Request, layer: Annotated[ContextLayer, Depends(context_layer)]) -> str:
    """The tile file of the layer (written on first use)."""
    return str(get_serving(request).context.path(layer))


def context_colormap(
    layer: Annotated[ContextLayer, Depends(context_layer)],
    colormap_name: Annotated[str | None, Query(description=f"One of: {', '.join(COLORMAPS)}")] = None,
) -> ColorMapType | None:
    """The named colormap, else the layer's own."""
    if colormap_name is not None and colormap_name not in COLORMAPS:
        raise BadQuery("colormap_name", f"colormap {colormap_name!r} unknown; known: {', '.join(COLORMAPS)}")
    name = colormap_name or layer.colormap
    return cmap.get(name) if name else None


def context_rendering(layer: Annotated[ContextLayer, Depends(context_layer)],
                      params: Annotated[ImageRenderingParams, Depends()]) -> ImageRenderingParams:
    """TiTiler's rendering options, the layer's default range when none is given."""
    if not params.rescale and layer.rescale is not None:
        params.rescale = [layer.rescale]  # type: ignore[list-item]  # what TiTiler's __post_init__ makes of it
    return params


def context_dataset(layer: Annotated[ContextLayer, Depends(context_layer)],
                    params: Annotated[DatasetParams, Depends()]) -> DatasetParams:
    """TiTiler's dataset options: by default bilinear for a covariate, cubic for the hillshade.

    Cubic keeps the gradient continuous: from bilinear values every grid cell would shade as a flat facet.
    """
    method = "cubic" if layer.id == HILLSHADE else "bilinear"
    params.resampling_method = params.resampling_method or method  # type: ignore[assignment]
    params.reproject_method = params.reproject_method or method  # type: ignore[assignment]
    return params


def context_tile_params(layer: Annotated[ContextLayer, Depends(context_layer)],
                        params: Annotated[TileParams, Depends()]) -> TileParams:
    """TiTiler's tile options; a hillshade tile is always read with the pixels its gradient needs around it."""
    if layer.id == HILLSHADE:
        params.buffer = HILLSHADE_BUFFER
    return params


class ShadedRelief(HillShade):
    """TiTiler's hillshade; cells without elevation (the sea) stay transparent and warn nothing."""

    def __call__(self, img: ImageData) -> ImageData:
        """Shade the image's first band."""
        with np.errstate(invalid="ignore"):
            return super().__call__(img)


def hillshade_scale(z: int, y: int) -> float:
    """``z_exaggeration`` that turns metres of elevation per pixel of tile (z, y) into a slope, exaggerated."""
    n = 2**z
    lat = math.atan(math.sinh(math.pi * (1 - 2 * (y + 0.5) / n)))
    pixel_m = 2 * math.pi * EARTH_RADIUS_M * math.cos(lat) / (TILE_PIXELS * n)
    return HILLSHADE_EXAGGERATION / max(pixel_m, 1e-3)


def context_algorithm(request: Request, layer: Annotated[ContextLayer, Depends(context_layer)],
                      algorithm: Annotated[BaseAlgorithm | None, Depends(checked_algorithm)]) -> BaseAlgorithm | None:
    """The hillshade's own algorithm (no other on it); on a covariate, TiTiler's algorithm if one is asked for."""
    if layer.id != HILLSHADE:
        return algorithm
    if algorithm is not None:
        raise BadQuery("algorithm", "the hillshade applies its own algorithm; ask a covariate for another one")
    z, y = (int(request.path_params.get(k, 0)) for k in ("z", "y"))
    return ShadedRelief(azimuth=HILLSHADE_AZIMUTH, angle_altitude=HILLSHADE_ALTITUDE, buffer=HILLSHADE_BUFFER,
                        z_exaggeration=hillshade_scale(min(max(z, 0), MAX_ZOOM), max(y, 0)))


class ContextTilerFactory(TilerFactory):
    """TiTiler's factory with only the tile and TileJSON endpoints (the context layers need no more)."""

    def register_routes(self) -> None:
        """Register the tile and TileJSON routes."""
        self.tile()
        self.tilejson()


def build_context_tiles_router() -> APIRouter:
    """The TiTiler endpoints under ``/tiles/context/{context_id}`` (tiles and TileJSON)."""
    options: dict[str, Any] = {
        "path_dependency": context_path, "colormap_dependency": context_colormap,
        "render_dependency": context_rendering, "dataset_dependency": context_dataset,
        "tile_dependency": context_tile_params, "process_dependency": context_algorithm,
    }
    factory = ContextTilerFactory(
        reader=LayerReader,
        router=APIRouter(dependencies=[Depends(check_tile_query)], responses=problems(404, 429, 503)),
        router_prefix="/tiles/context/{context_id}",
        render_func=render_layer_image,
        supported_tms=TILE_MATRIX_SETS,
        add_viewer=False,
        add_part=False,
        add_preview=False,
        **options,
    )
    tiles = APIRouter()
    tiles.include_router(factory.router, prefix="/tiles/context/{context_id}", tags=["context"])
    return tiles
