"""The current layers: ids, kinds, colormaps, TileJSON and tile URLs, statistics and version."""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Request

from backend.api.schemas import LayerPublic, LayersPublic, problems
from backend.api.serving import ServingDep
from backend.api.shared import render_query
from backend.layers.cog import LAYER_KINDS, LayerKind

router = APIRouter(prefix="/api", tags=["layers"], responses=problems(503))


@router.get("/layers", summary="The layers being served, with TileJSON URLs, colormaps and version",
            response_model=LayersPublic, response_model_exclude_unset=True)
def list_layers(request: Request, serving: ServingDep) -> LayersPublic:
    """Every layer of the current version (empty before the first re-inference)."""
    version = serving.catalog.current()
    if version is None:
        return LayersPublic(layer_version=None, layers=[], detail="no layers published yet; run `m3 infer`")
    base = str(request.base_url).rstrip("/")
    layers = []
    for info in sorted(version.layers.values(), key=lambda i: (i.species, i.kind)):
        query = render_query(info.kind)
        style = LAYER_KINDS[info.kind]
        layers.append(LayerPublic(
            id=info.id, species=info.species, kind=cast(LayerKind, info.kind), description=style.description,
            colormap=style.colormap, rescale=list(style.rescale),
            tilejson=f"{base}/tiles/{info.id}/WebMercatorQuad/tilejson.json?{query}",
            tiles=f"{base}/tiles/{info.id}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png?{query}",
            stats=info.stats,
        ))
    return LayersPublic(layer_version=version.id, published_at=version.published_at, model=version.model,
                        ensemble=version.ensemble, layers=layers)
