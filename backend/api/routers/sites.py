"""Known mineral sites: GeoJSON pages by box and species, CSV and GeoJSON exports, species and commodities."""

from __future__ import annotations

import csv
import io
import time
from typing import Annotated, Any, Literal

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Query, Request, Response

from backend.api.deps import ConnDep, SettingsDep
from backend.api.geojson import GeoJSONResponse
from backend.api.query import bbox_condition, decode_cursor, encode_cursor, parse_bbox, parse_limit, parse_species
from backend.api.schemas import CommodityList, SitesPage, SpeciesList, problems
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
#: Most rows of one export (a Link header points at the rest).
EXPORT_MAX_ROWS = 50_000
TOTALS_SQL = """
SELECT n, unrecognised, ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b)
FROM (SELECT count(*) AS n, count(*) FILTER (WHERE cardinality(species) = 0) AS unrecognised, ST_Extent(geom) AS b
      FROM sites) AS e
"""
SPECIES_HELP = "Comma-separated species (commodity) ids, as GET /api/commodities lists them; sites with any of them"


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
    species: Annotated[str | None, Query(description=SPECIES_HELP, examples=["gold"])] = None,
    limit: Annotated[int | None, Query(description="Page size (default 1000)")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Response:
    """Sites inside a box and of given species, ordered by id, paged with a keyset cursor."""
    n = parse_limit(limit, settings.sites_default_limit, settings.sites_max_limit)
    rows, next_cursor = _select_sites(conn, bbox, species, n, cursor)
    return GeoJSONResponse(orjson.dumps(_collection(request, rows, next_cursor)))


@router.get(
    "/sites/export",
    summary="Known sites of a box as a CSV or GeoJSON download",
    response_description=f"CSV (one row per site) or a GeoJSON FeatureCollection, at most limit rows "
                         f"(default and most {EXPORT_MAX_ROWS:,}); a Link header (rel=next) when more remain.",
    response_model=SitesPage,
    response_class=GeoJSONResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def export_sites(
    request: Request,
    conn: ConnDep,
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy in lon/lat (EPSG:4326)",
                                      examples=["-121,38.9,-120.8,39.1"])] = None,
    species: Annotated[str | None, Query(description=SPECIES_HELP, examples=["gold"])] = None,
    format: Annotated[Literal["csv", "geojson"], Query(description="csv or geojson")] = "csv",
    limit: Annotated[int | None, Query(description=f"Most rows (default and at most {EXPORT_MAX_ROWS:,})")] = None,
    cursor: Annotated[str | None, Query(description="The cursor of the Link header of a previous export")] = None,
) -> Response:
    """The sites of a box and species as a file (Content-Disposition: attachment), ordered by id.

    At most ``limit`` rows; when more remain, ``Link: <...>; rel="next"`` and ``X-Next-Cursor`` point at the rest.
    """
    n = parse_limit(limit, EXPORT_MAX_ROWS, EXPORT_MAX_ROWS)
    rows, next_cursor = _select_sites(conn, bbox, species, n, cursor)
    headers = {"Content-Disposition": f'attachment; filename="m3-sites.{format}"'}
    if next_cursor:
        headers["Link"] = f'<{request.url.include_query_params(cursor=next_cursor)}>; rel="next"'
        headers["X-Next-Cursor"] = next_cursor
    if format == "geojson":
        return GeoJSONResponse(orjson.dumps(_collection(request, rows, next_cursor)), headers=headers)
    return Response(_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)


def _select_sites(conn: Any, bbox: str | None, species: str | None, n: int, cursor: str | None
                  ) -> tuple[list[Any], str | None]:
    """Up to n rows of sites in the box and of the species after the cursor, and the next cursor (None: no more)."""
    box = parse_bbox(bbox)
    wanted = parse_species(species, vocabulary().species)
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
    return rows, encode_cursor(rows[-1][0]) if more else None


def _collection(request: Request, rows: list[Any], next_cursor: str | None) -> dict[str, Any]:
    """A FeatureCollection of rows with the next cursor and its link."""
    body: dict[str, Any] = {
        "type": "FeatureCollection",
        "features": [_feature(r) for r in rows],
        "number_returned": len(rows),
        "next_cursor": next_cursor,
        "links": [],
    }
    if next_cursor:
        body["links"].append({"rel": "next", "type": "application/geo+json",
                              "href": str(request.url.include_query_params(cursor=next_cursor))})
    return body


CSV_COLUMNS = ["id", "source", "record_id", "name", "state", "lon", "lat", "species", "commodities",
               "deposit_types", "rank"]


def _cell(value: Any) -> Any:
    """A CSV cell: lists joined with '; '; text a spreadsheet would take for a formula is prefixed with '."""
    if isinstance(value, list):
        value = "; ".join(value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv(rows: list[Any]) -> bytes:
    """The rows as CSV with a header line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([r[0], *(_cell(v) for v in r[1:5]), round(r[9], 6), round(r[10], 6),
                         *(_cell(v) for v in r[5:9])])
    return out.getvalue().encode()


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


@router.get("/commodities", summary="Every commodity of the known sites with counts", response_model=CommodityList)
def list_commodities(request: Request, conn: ConnDep) -> Response:
    """Every commodity id some site records, most sites first, with the store's totals and the sites' bounds."""
    cache = getattr(request.app.state, "commodities_cache", None)
    now = time.monotonic()
    if cache is None or now - cache[0] > SPECIES_CACHE_SECONDS:
        counts = {str(c): int(n) for c, n in conn.exec_driver_sql(
            "SELECT c, count(*) FROM sites, unnest(species) AS c GROUP BY c")}
        total, unrecognised, *box = conn.exec_driver_sql(TOTALS_SQL).one()
        labels = vocabulary().labels
        items = [{"id": c, "label": labels.get(c, c), "sites": n, "target": c in M3_SPECIES}
                 for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        bounds = [round(float(v), 6) for v in box] if box and box[0] is not None else None
        cache = (now, orjson.dumps({"sites": int(total), "unrecognised": int(unrecognised), "bounds": bounds,
                                    "commodities": items}))
        request.app.state.commodities_cache = cache
    return Response(cache[1], media_type="application/json")
