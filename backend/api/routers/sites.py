"""Known mineral sites: GeoJSON pages by box and species, and the species list with counts."""

from __future__ import annotations

import time
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Query, Request, Response

from backend.api.deps import ConnDep, SettingsDep
from backend.api.geojson import GeoJSONResponse
from backend.api.query import bbox_condition, decode_cursor, encode_cursor, parse_bbox, parse_limit, parse_species
from backend.api.schemas import SitesPage, SpeciesList, problems
from backend.ingest.vocabulary import vocabulary
from backend.settings import M3_SPECIES

router = APIRouter(prefix="/api", tags=["sites"], responses=problems(503))

SITES_SQL = """
SELECT id, source, record_id, name, state, species, commodities, deposit_types, rank,
       ST_X(geom) AS lon, ST_Y(geom) AS lat
FROM sites
WHERE id > %(after)s {where}
ORDER BY id
LIMIT %(n)s
"""

SPECIES_CACHE_SECONDS = 30.0


def _feature(row: Any) -> dict[str, Any]:
    """A GeoJSON Feature for one row."""
    return {
        "type": "Feature",
        "id": row[0],
        "geometry": {"type": "Point", "coordinates": [round(row[9], 6), round(row[10], 6)]},
        "properties": {
            "source": row[1], "record_id": row[2], "name": row[3], "state": row[4], "species": row[5],
            "commodities": row[6], "deposit_types": row[7], "rank": row[8],
        },
    }


@router.get(
    "/sites",
    summary="Known sites as GeoJSON",
    response_description="A GeoJSON FeatureCollection with next_cursor (null on the last page).",
    response_model=SitesPage,
    response_class=GeoJSONResponse,
)
def list_sites(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy in lon/lat (EPSG:4326)",
                                      examples=["-124.5,32.5,-114,42"])] = None,
    species: Annotated[str | None, Query(description="Comma-separated species ids; sites with any of them",
                                         examples=["gold"])] = None,
    limit: Annotated[int | None, Query(description="Page size (default 1000)")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Response:
    """Sites inside a box and of given species, ordered by id, paged with a keyset cursor."""
    box = parse_bbox(bbox)
    wanted = parse_species(species, vocabulary().species)
    n = parse_limit(limit, settings.sites_default_limit, settings.sites_max_limit)
    after = decode_cursor(cursor)
    where: list[str] = []
    params: dict[str, Any] = {"after": after, "n": n + 1}
    if box is not None:
        where.append(bbox_condition(box, params))
    if wanted:
        where.append("AND species && %(species)s::text[]")
        params["species"] = wanted
    rows = conn.exec_driver_sql(SITES_SQL.format(where=" ".join(where)), params).all()
    more = len(rows) > n
    rows = rows[:n]
    next_cursor = encode_cursor(rows[-1][0]) if more else None
    body: dict[str, Any] = {
        "type": "FeatureCollection",
        "features": [_feature(r) for r in rows],
        "numberReturned": len(rows),
        "next_cursor": next_cursor,
        "links": [],
    }
    if next_cursor:
        body["links"].append({"rel": "next", "type": "application/geo+json",
                              "href": str(request.url.include_query_params(cursor=next_cursor))})
    return GeoJSONResponse(orjson.dumps(body))


@router.get("/species", summary="Species with counts of known sites", response_model=SpeciesList)
def list_species(request: Request, conn: ConnDep) -> Response:
    """Every species with at least one known site (and the M3 targets), with site counts."""
    cache = getattr(request.app.state, "species_cache", None)
    now = time.monotonic()
    if cache is None or now - cache[0] > SPECIES_CACHE_SECONDS:
        result = conn.execute(sa.text("SELECT sp, count(*) FROM sites, unnest(species) AS sp GROUP BY sp"))
        counts: dict[str, int] = {str(sp): int(n) for sp, n in result}
        vocab = vocabulary()
        ids = sorted(set(counts) | set(M3_SPECIES), key=lambda s: (-counts.get(s, 0), s))
        items = [
            {"id": s, "label": vocab.labels.get(s, s), "sites": int(counts.get(s, 0)), "target": s in M3_SPECIES}
            for s in ids
        ]
        cache = (now, orjson.dumps({"species": items}))
        request.app.state.species_cache = cache
    return Response(cache[1], media_type="application/json")
