"""Tiles of published layers through TiTiler: a layer id maps to a file; no client path or URL reaches GDAL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import attr
from fastapi import APIRouter, Depends, Path, Query, Request
from morecantile import TileMatrixSet
from morecantile import tms as morecantile_tms
from morecantile.defaults import TileMatrixSets
from rio_tiler.colormap import cmap
from rio_tiler.types import ColorMapType
from titiler.core.dependencies import ImageRenderingParams
from titiler.core.factory import TilerFactory

from backend.api.errors import BadQuery
from backend.api.serving import get_serving
from backend.layers.cog import LAYER_KINDS
from backend.layers.reader import LayerReader
from backend.layers.render import render_layer_image

LAYER_ID_HELP = "A layer id from GET /api/layers, e.g. gold.prospectivity (or a temporary infer-... id)"
COLORMAPS = sorted(cmap.list())


def refuse_url(request: Request) -> None:
    """Refuse ``url=`` (and ``path=``): the tiles of this service are named by layer id only."""
    for name in ("url", "path"):
        if name in request.query_params:
            raise BadQuery(name, f"{name}= is not accepted: tiles are served for layer ids only "
                                 "(GET /api/layers lists them), never for a client-supplied path or URL")


def layer_path(request: Request, layer_id: Annotated[str, Path(description=LAYER_ID_HELP)]) -> str:
    """The file of a layer id under the current version (404 for an unknown id)."""
    path, _ = get_serving(request).catalog.resolve(layer_id)
    return str(path)


def layer_colormap(
    layer_id: Annotated[str, Path(description=LAYER_ID_HELP)],
    colormap_name: Annotated[str | None, Query(description=f"One of: {', '.join(COLORMAPS)}")] = None,
) -> ColorMapType:
    """The named colormap, else the default of the layer's kind."""
    if colormap_name is not None and colormap_name not in COLORMAPS:
        raise BadQuery("colormap_name", f"colormap {colormap_name!r} unknown; known: {', '.join(COLORMAPS)}")
    kind = layer_id.rsplit(".", 1)[-1]
    default = LAYER_KINDS.get(kind, LAYER_KINDS["prospectivity"]).colormap
    return cmap.get(colormap_name or default)


@attr.s(frozen=True)
class SharedTileMatrixSets(TileMatrixSets):
    """morecantile's registry of tile matrix sets without a deep copy on every ``get``.

    TiTiler looks the tile matrix set up on every tile request, and morecantile returns a deep copy of
    the pydantic model each time: profiled, that copy was the largest single cost of an uncached tile.
    The sets are only read, so one shared instance per identifier serves every request.
    """

    _shared: dict[str, TileMatrixSet] = attr.ib(factory=dict)

    def get(self, identifier: str) -> TileMatrixSet:
        """The tile matrix set ``identifier`` (InvalidIdentifier if unknown), loaded once."""
        found = self._shared.get(identifier)
        if found is None:
            found = self._shared[identifier] = super().get(identifier)
        return found


#: The tile matrix sets every tile endpoint uses.
TILE_MATRIX_SETS = SharedTileMatrixSets(morecantile_tms.tilematrixsets)


@dataclass
class LayerRenderingParams(ImageRenderingParams):
    """TiTiler rendering options with ``rescale=0,1`` by default (layers are probabilities)."""

    def __post_init__(self) -> None:
        """Default the rescale range, then let TiTiler parse it."""
        if not self.rescale:
            self.rescale = ["0,1"]
        super().__post_init__()


def build_tiles_router() -> APIRouter:
    """The TiTiler endpoints under ``/tiles/{layer_id}`` (tiles, TileJSON, info, statistics, point)."""
    factory = TilerFactory(
        reader=LayerReader,
        router=APIRouter(dependencies=[Depends(refuse_url)]),
        router_prefix="/tiles/{layer_id}",
        path_dependency=layer_path,
        colormap_dependency=layer_colormap,
        render_dependency=LayerRenderingParams,
        render_func=render_layer_image,
        supported_tms=TILE_MATRIX_SETS,
        add_viewer=False,
        add_part=False,
        add_preview=False,
    )
    router = APIRouter()
    router.include_router(factory.router, prefix="/tiles/{layer_id}", tags=["tiles"])
    return router
