"""Flagged clusters of the current layer version as GeoJSON, with the nearest site of their species and sites inside."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query

from backend.api.deps import ConnDep
from backend.api.geojson import GeoJSONResponse
from backend.api.query import bbox_condition, parse_bbox, parse_species
from backend.api.schemas import ClustersCollection, problems
from backend.api.serving import ServingDep

router = APIRouter(prefix="/api", tags=["clusters"], responses=problems(503))

CLUSTERS_SQL = """
SELECT id, species, rank, score, mean_score, max_score, n_cells, area_km2, n_sites, sites, nearest_site,
       nearest_distance_m,
       ST_AsGeoJSON(geom, 5)::json AS geometry,
       ST_X(ST_PointOnSurface(geom)) AS lon, ST_Y(ST_PointOnSurface(geom)) AS lat
FROM clusters
WHERE layer_version = %(version)s {where}
ORDER BY score DESC, id
LIMIT %(n)s
"""
MAX_LIMIT = 2000


@router.get("/clusters", summary="Flagged clusters as GeoJSON with the nearest site of the species and sites inside",
            response_model=ClustersCollection, response_class=GeoJSONResponse)
def list_clusters(
    conn: ConnDep,
    serving: ServingDep,
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy in lon/lat", examples=["-124.5,32.5,-114,42"])]
    = None,
    species: Annotated[str | None, Query(description="Comma-separated species ids", examples=["zinc"])] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT,
                                description=f"At most this many, highest score first (1..{MAX_LIMIT})")] = 500,
) -> GeoJSONResponse:
    """Clusters of the version being served that intersect the box, highest score first.

    score = mean probability x ln(1 + cells) x ln(1 + km to the nearest known site of the species, capped at 50).
    """
    box = parse_bbox(bbox)
    version = serving.catalog.current()
    known = sorted({i.species for i in version.layers.values()}) if version else []
    wanted = parse_species(species, known) if version else []
    body: dict[str, Any] = {"type": "FeatureCollection", "layer_version": version.id if version else None,
                            "features": []}
    if version is None:
        return GeoJSONResponse(orjson.dumps(body))
    where = []
    params: dict[str, Any] = {"version": version.id, "n": limit}
    if box is not None:
        where.append(bbox_condition(box, params))
    if wanted:
        where.append("AND species = ANY(%(species)s)")
        params["species"] = wanted
    for row in conn.exec_driver_sql(CLUSTERS_SQL.format(where=" ".join(where)), params).mappings():
        body["features"].append({
            "type": "Feature", "id": row["id"], "geometry": row["geometry"],
            "properties": {
                "species": row["species"], "rank": row["rank"], "score": round(row["score"], 4),
                "mean_score": round(row["mean_score"], 4),
                "max_score": round(row["max_score"], 4), "n_cells": row["n_cells"],
                "area_km2": round(row["area_km2"], 2), "n_sites": row["n_sites"], "sites": row["sites"],
                "nearest_site": row["nearest_site"], "nearest_distance_m": row["nearest_distance_m"],
                "label_point": [round(row["lon"], 5), round(row["lat"], 5)], "layer_version": version.id,
            },
        })
    body["number_returned"] = len(body["features"])
    return GeoJSONResponse(orjson.dumps(body))
