"""The layers of one commodity at a clicked cell, its survey coverage and the nearest known site of the commodity."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import rasterio
import sqlalchemy as sa
from fastapi import APIRouter, Query
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window

from backend.api.deps import ConnDep
from backend.api.errors import BadQuery
from backend.api.query import parse_species
from backend.api.schemas import IdentifyCell, IdentifyResult, NearestSite, problems
from backend.api.serving import ServingDep
from backend.cube.contract import COVERAGE_TIF
from backend.layers.catalog import LayerNotFound, LayerVersion

router = APIRouter(prefix="/api", tags=["identify"], responses=problems(404, 503))

#: The layer kinds read at the cell.
KINDS = ("prospectivity", "uncertainty", "evaluations", "discrepancy")
#: The distance in metres (EPSG:5070) of the site of the species nearest in degrees: a bound on the nearest in metres.
BOUND_SQL = sa.text("""
WITH p AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS g)
SELECT ST_Distance(ST_Transform(s.geom, 5070), ST_Transform(p.g, 5070))
FROM sites s, p
WHERE s.species @> ARRAY[CAST(:species AS text)]
ORDER BY s.geom <-> p.g
LIMIT 1
""")
#: Every site of the species in a lon/lat box around the point, nearest in metres (EPSG:5070) first.
BOX_SQL = sa.text("""
WITH p AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS g)
SELECT s.id, s.name, s.source, ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat,
       ST_Distance(ST_Transform(s.geom, 5070), ST_Transform(p.g, 5070)) AS distance_m
FROM sites s, p
WHERE s.species @> ARRAY[CAST(:species AS text)]
  AND s.geom && ST_MakeEnvelope(:lon - :dlon, :lat - :dlat, :lon + :dlon, :lat + :dlat, 4326)
ORDER BY distance_m, s.id
LIMIT 1
""")
#: Metres of a degree of latitude, at the least (at the equator), and the slack for EPSG:5070's scale error.
METRES_PER_DEGREE = 110_574.0
SCALE_SLACK = 1.05
NOTE = ("Prospectivity is the probability that a survey like those of the surveyed states would record the "
        "commodity in the cell (calibrated on cross-validated predictions when the model has a calibration), not "
        "the chance of an economic deposit; discrepancy marks where the model expects a record that the data lack "
        "(a lead, not a discovery); outside survey coverage an empty cell is unknown, not barren.")


def point_cell(src: rasterio.DatasetReader, lon: float, lat: float) -> tuple[int, int] | None:
    """The (row, col) of the cell of ``src`` holding a lon/lat point, or None outside the raster."""
    xs, ys = warp_transform("EPSG:4326", src.crs, [lon], [lat])
    if not (math.isfinite(xs[0]) and math.isfinite(ys[0])):
        return None
    row, col = src.index(xs[0], ys[0], op=math.floor)
    if not (0 <= row < src.height and 0 <= col < src.width):
        return None
    return int(row), int(col)


def read_cell(path: Path, lon: float, lat: float) -> tuple[float | None, tuple[int, int] | None]:
    """The value of a single-band raster at a lon/lat point (None where it has none) and its (row, col)."""
    with rasterio.open(path) as src:
        cell = point_cell(src, lon, lat)
        if cell is None:
            return None, None
        value = src.read(1, window=Window(cell[1], cell[0], 1, 1))[0, 0]
        nodata = src.nodata
    if not np.isfinite(value) or (nodata is not None and value == nodata):
        return None, cell
    return float(value), cell


def cell_centre(path: Path, row: int, col: int) -> tuple[str, list[float]]:
    """The CRS of a raster and the lon/lat of the centre of one of its cells."""
    with rasterio.open(path) as src:
        x, y = src.xy(row, col)
        lons, lats = warp_transform(src.crs, "EPSG:4326", [x], [y])
        return str(src.crs), [round(lons[0], 6), round(lats[0], 6)]


def read_layers(version: LayerVersion, species: str, lon: float, lat: float) -> tuple[dict[str, Any], dict]:
    """The value of each kind of ``species`` at the point, and the cell (BadQuery outside the grid)."""
    values: dict[str, Any] = {}
    cell: tuple[int, int] | None = None
    for kind in KINDS:
        layer_id = f"{species}.{kind}"
        if layer_id not in version.layers:
            values[kind] = None
            continue
        value, where = read_cell(version.path(layer_id, native=True), lon, lat)
        if where is None:
            raise BadQuery("lon", f"the point lon={lon:g}, lat={lat:g} lies outside the layers (the CONUS grid)")
        values[kind] = value
        cell = where
    if cell is None:
        raise LayerNotFound(f"layer version {version.id} has no layers of {species!r}")
    crs, centre = cell_centre(version.path(f"{species}.prospectivity", native=True), *cell)
    if values["evaluations"] is not None:
        values["evaluations"] = int(round(values["evaluations"]))
    return values, {"row": cell[0], "col": cell[1], "crs": crs, "center": centre}


def in_coverage(cube_dir: Path, lon: float, lat: float) -> bool | None:
    """Whether the point lies in a covered cell of the cube's coverage (None without a cube)."""
    path = cube_dir / COVERAGE_TIF
    if not path.exists():
        return None
    value, _ = read_cell(path, lon, lat)
    return bool(value) if value is not None else False


def nearest_site(conn: sa.Connection, species: str, lon: float, lat: float) -> tuple[dict | None, float | None]:
    """The known site of ``species`` nearest to the point and its distance in metres (EPSG:5070)."""
    bound = conn.execute(BOUND_SQL, {"lon": lon, "lat": lat, "species": species}).scalar()
    if bound is None:
        return None, None
    # any site nearer in metres than the nearest in degrees lies in this box around the point
    reach = float(bound) * SCALE_SLACK / METRES_PER_DEGREE
    dlon = min(180.0, reach / max(math.cos(math.radians(min(89.0, abs(lat) + reach))), 1e-6))
    row = conn.execute(BOX_SQL, {"lon": lon, "lat": lat, "species": species, "dlat": reach, "dlon": dlon}).one()
    site = {"id": row.id, "name": row.name, "source": row.source, "lon": round(row.lon, 5), "lat": round(row.lat, 5)}
    return site, round(float(row.distance_m))


@router.get("/identify", summary="One commodity's layers at a point's cell, its coverage and the nearest known site",
            response_model=IdentifyResult,
            responses={200: {"description": "The cell's values (null where a layer has none). Prospectivity is the "
                                            "served probability (calibrated when the model has a calibration), "
                                            "not the chance of an economic deposit."}})
def identify(
    conn: ConnDep,
    serving: ServingDep,
    lon: Annotated[float, Query(ge=-180, le=180, description="Longitude in degrees (EPSG:4326)",
                                examples=[-120.9])],
    lat: Annotated[float, Query(ge=-90, le=90, description="Latitude in degrees (EPSG:4326)", examples=[39.1])],
    species: Annotated[str, Query(description="One species (commodity) id of the served layers",
                                  examples=["gold"])],
) -> IdentifyResult:
    """Prospectivity, uncertainty, evaluations and discrepancy of a species at the cell holding the point.

    Also whether the cell lies inside survey coverage and the nearest known site of the species (distance in metres
    on EPSG:5070, the true nearest in metres).
    """
    version = serving.catalog.current()
    if version is None:
        raise LayerNotFound("no layers are published yet; run `m3 infer` or POST /admin/reinference")
    known = sorted({i.species for i in version.layers.values()})
    wanted = parse_species(species, known)
    if len(wanted) != 1:
        raise BadQuery("species", f"species takes exactly one id; known: {', '.join(known)}")
    values, cell = read_layers(version, wanted[0], lon, lat)
    site, distance = nearest_site(conn, wanted[0], lon, lat)
    return IdentifyResult(layer_version=version.id, species=wanted[0], lon=lon, lat=lat, cell=IdentifyCell(**cell),
                          **values, in_coverage=in_coverage(serving.settings.cube_dir, lon, lat),
                          nearest_site=NearestSite(**site) if site else None,
                          nearest_distance_m=distance, note=NOTE)
