"""Known sites as Mapbox vector tiles from PostGIS, aggregated on a grid over each tile, and their TileJSON.

Every site shows at every zoom: a tile (Web Mercator XYZ) holds one point per occupied cell of a GRID x GRID
grid over it, with the number of sites in the cell (``count``). The point is the mean position of those sites,
kept inside its cell, so a client finds the cell of a point from its tile coordinates and can list the cell's
sites with ``GET /api/sites?bbox=...``. Tiles partition the sites: a site on a shared tile or cell edge belongs
to the tile or cell east and south of it (west and north edges are inside).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, FastAPI, Header, HTTPException, Path, Query, Request, Response
from fastapi.staticfiles import StaticFiles

from backend.api.deps import ConnDep
from backend.api.errors import BadQuery
from backend.api.frontend import NODE_MODULES
from backend.api.schemas import SiteTileJSON, problems
from backend.api.shared import MAX_ZOOM
from backend.ingest.vocabulary import vocabulary

router = APIRouter(tags=["sites"], responses=problems(503))

MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
LAYER = "sites"
#: Cells per tile side (a cell is 4 pixels of a 256-pixel tile); MVT coordinates run 0..EXTENT.
GRID = 64
EXTENT = 4096
#: How long a client may keep a tile or the TileJSON, and how long the data version is trusted in-process.
MAX_AGE_S = 300
VERSION_TTL_S = 30.0
COMMODITY_HELP = ("Comma-separated commodity ids (GET /api/commodities lists them); sites recording any of them. "
                  "Absent: every site")

TILE_SQL = """
WITH box AS (
  SELECT e, ST_XMin(e) AS x0, ST_YMax(e) AS y0, (ST_XMax(e) - ST_XMin(e)) / %(grid)s AS cell,
         ST_Expand(ST_Transform(e, 4326), 1e-9) AS ll
  FROM ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS e
), pts AS (
  SELECT 6378137 * radians(ST_X(s.geom)) AS mx, 6378137 * ln(tan(pi() / 4 + radians(ST_Y(s.geom)) / 2)) AS my
  FROM box, sites s
  WHERE s.geom && box.ll {where}
), cells AS (
  SELECT floor((mx - x0) / cell)::int AS cx, floor((y0 - my) / cell)::int AS cy, count(*)::int AS n,
         avg(mx) AS ax, avg(my) AS ay
  FROM pts, box
  GROUP BY 1, 2
)
SELECT ST_AsMVT(t, %(layer)s, %(extent)s, 'geom')
FROM (
  SELECT ST_AsMVTGeom(ST_Point(
           least(greatest(ax, x0 + cx * cell + u), x0 + (cx + 1) * cell - u),
           least(greatest(ay, y0 - (cy + 1) * cell + u), y0 - cy * cell - u), 3857),
         e, %(extent)s, 0, false) AS geom,
         n AS count
  FROM cells, box, LATERAL (SELECT cell * %(grid)s / %(extent)s AS u) AS unit
  WHERE cx BETWEEN 0 AND %(grid)s - 1 AND cy BETWEEN 0 AND %(grid)s - 1
) AS t
"""

EXTENT_SQL = """
SELECT n, ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b)
FROM (SELECT count(*) AS n, ST_Extent(s.geom) AS b FROM sites s WHERE true {where}) AS e
"""


class VectorTileResponse(Response):
    """A Mapbox vector tile (protobuf)."""

    media_type = MEDIA_TYPE


def parse_commodities(text: str | None) -> list[str]:
    """Commodity ids from a comma-separated list (BadQuery naming unknown ones); [] for every site."""
    known = vocabulary().species
    wanted = [c.strip().lower() for c in (text or "").split(",") if c.strip()]
    unknown = [c for c in wanted if c not in known]
    if unknown:
        names = ", ".join(repr(c[:40]) for c in unknown[:5])
        raise BadQuery("commodity", f"commodity {names} unknown (GET /api/commodities lists those with sites); "
                                    f"known: {', '.join(known)}")
    return wanted


def commodity_condition(wanted: list[str], params: dict[str, Any]) -> str:
    """SQL condition for sites recording any of the wanted commodities ('' for every site)."""
    if not wanted:
        return ""
    params["commodities"] = wanted
    return "AND s.species && %(commodities)s::text[]"


def check_tile(z: int, x: int, y: int) -> None:
    """BadQuery for a tile index outside zoom z."""
    size = 2**z
    for name, value in (("x", x), ("y", y)):
        if value >= size:
            raise BadQuery(name, f"tile {z}/{x}/{y} does not exist: at zoom {z}, 0 <= x, y < {size}")


def data_version(request: Request, conn: ConnDep) -> str:
    """A token that changes when the sites change (count, last id, last ingest), trusted for VERSION_TTL_S."""
    cached = getattr(request.app.state, "site_tiles_version", None)
    now = time.monotonic()
    if cached is None or now - cached[0] > VERSION_TTL_S:
        row = conn.exec_driver_sql(
            "SELECT count(*), coalesce(max(id), 0), coalesce(extract(epoch FROM max(ingested_at)), 0) FROM sites").one()
        token = hashlib.sha1(f"{row[0]}:{row[1]}:{row[2]}:{GRID}:{EXTENT}".encode()).hexdigest()[:16]
        cached = (now, token)
        request.app.state.site_tiles_version = cached
    return cached[1]


def _etag(version: str, commodities: list[str]) -> str:
    """The entity tag of a tile or TileJSON of this data version and filter (the URL names the tile)."""
    return f'W/"{version}-{hashlib.sha1(",".join(sorted(commodities)).encode()).hexdigest()[:8]}"'


def _cache_headers(etag: str) -> dict[str, str]:
    return {"Cache-Control": f"public, max-age={MAX_AGE_S}", "ETag": etag}


def _not_modified(if_none_match: str | None, etag: str) -> bool:
    return if_none_match is not None and etag in [t.strip() for t in if_none_match.split(",")]


@router.get(
    "/tiles/sites/tiles/{z}/{x}/{y}.pbf",
    summary="Known sites as a Mapbox vector tile, one point per occupied grid cell with its count of sites",
    response_class=VectorTileResponse,
    response_description=f"A Mapbox vector tile with one layer, {LAYER!r}: points with an integer count",
    responses={200: {"content": {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
               204: {"description": "No site of the filter lies in the tile (empty body)"},
               304: {"description": "The tile has not changed (If-None-Match)"}},
)
def get_site_tile(
    request: Request,
    conn: ConnDep,
    z: Annotated[int, Path(ge=0, le=MAX_ZOOM, description=f"Zoom, 0..{MAX_ZOOM}")],
    x: Annotated[int, Path(ge=0, description="Column, 0 <= x < 2^z")],
    y: Annotated[int, Path(ge=0, description="Row from the north, 0 <= y < 2^z")],
    commodity: Annotated[str | None, Query(max_length=2000, description=COMMODITY_HELP, examples=["gold"])] = None,
    if_none_match: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """Sites of the tile on a GRID x GRID grid: one point per occupied cell, with the number of sites in it.

    The counts of a tile add up to the sites of the filter inside it, at every zoom. An empty tile is 204.
    """
    check_tile(z, x, y)
    wanted = parse_commodities(commodity)
    etag = _etag(data_version(request, conn), wanted)
    headers = _cache_headers(etag)
    if _not_modified(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    params: dict[str, Any] = {"z": z, "x": x, "y": y, "grid": GRID, "extent": EXTENT, "layer": LAYER}
    sql = TILE_SQL.format(where=commodity_condition(wanted, params))
    tile = bytes(conn.exec_driver_sql(sql, params).scalar_one() or b"")
    if not tile:
        return Response(status_code=204, headers=headers)
    return VectorTileResponse(tile, headers=headers)


@router.get("/tiles/sites/tilejson.json", summary="TileJSON of the site vector tiles for a commodity filter",
            response_model=SiteTileJSON)
def get_site_tilejson(
    request: Request,
    conn: ConnDep,
    commodity: Annotated[str | None, Query(max_length=2000, description=COMMODITY_HELP, examples=["gold"])] = None,
) -> Response:
    """The tile URL, the bounds of the matching sites (no tile outside them holds a site) and the grid."""
    wanted = parse_commodities(commodity)
    params: dict[str, Any] = {}
    row = conn.exec_driver_sql(EXTENT_SQL.format(where=commodity_condition(wanted, params)),
                               params).first()
    n = int(row[0]) if row else 0
    bounds = [round(float(v), 6) for v in row[1:]] if row and row[1] is not None else None
    query = f"?commodity={','.join(wanted)}" if wanted else ""
    base = str(request.base_url).rstrip("/")
    body = {
        "tilejson": "3.0.0", "name": "Known sites",
        "description": f"Known sites{' of ' + ', '.join(wanted) if wanted else ''}: one point per occupied cell "
                       f"of a {GRID} x {GRID} grid over each tile, with its count of sites",
        "tiles": [f"{base}/tiles/sites/tiles/{{z}}/{{x}}/{{y}}.pbf{query}"],
        "minzoom": 0, "maxzoom": MAX_ZOOM, "bounds": bounds,
        "vector_layers": [{"id": LAYER, "description": "Sites per grid cell", "minzoom": 0, "maxzoom": MAX_ZOOM,
                           "fields": {"count": "Number of sites in the cell"}}],
        "grid": GRID, "sites": n,
    }
    etag = _etag(data_version(request, conn), wanted)
    return Response(orjson.dumps(body), media_type="application/json", headers=_cache_headers(etag))


#: ES modules of npm packages the page imports directly (no build step): URL prefix -> folder in node_modules.
ESM_PACKAGES = {"pbf": "pbf"}


def mount_tile_decoder(app: FastAPI) -> None:
    """Serve the protobuf reader the page decodes the site tiles with (a 503 naming `npm ci` when missing)."""
    for name, folder in ESM_PACKAGES.items():
        path = NODE_MODULES / folder
        if path.is_dir():
            app.mount(f"/vendor/{name}", StaticFiles(directory=path), name=f"vendor-{name}")
            continue

        app.add_api_route(f"/vendor/{name}/{{rest:path}}", _missing(name), include_in_schema=False)


def _missing(name: str) -> Callable[[str], None]:
    """A route that answers 503 for a package that was not installed."""

    def missing(rest: str) -> None:
        """Explain how to install the package."""
        raise HTTPException(503, f"frontend package {name} is not installed; run `npm ci` in frontend/")

    return missing
