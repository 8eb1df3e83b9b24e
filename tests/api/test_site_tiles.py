"""Site vector tiles, their TileJSON, the commodity list and the CSV/GeoJSON export, on every bundled real record."""

import csv
import io
import math

import pytest

from backend.api.schemas import CommodityList, SitesPage, SiteTileJSON
from backend.geo.boundaries import load_states

MVT = "application/vnd.mapbox-vector-tile"
CA_GOLD = (5, 5, 12)  # the z5 tile over the Sierra Nevada foothills and western Nevada
PLACER = "-121,38.9,-120.8,39.1"


# -- a small Mapbox vector tile reader (protobuf wire format, spec 2.1) ------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, pos


def _fields(buf: bytes) -> list[tuple[int, int, object]]:
    """(field number, wire type, value) of a message: ints for varints, bytes for length-delimited fields."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        else:
            raise AssertionError(f"wire type {wire} is not protobuf")
        out.append((number, wire, value))
    return out


def _packed(buf: bytes) -> list[int]:
    values, pos = [], 0
    while pos < len(buf):
        v, pos = _varint(buf, pos)
        values.append(v)
    return values


def decode(tile: bytes) -> dict[str, dict]:
    """{layer: {"extent", "version", "features": [{"type", "points", "properties"}]}} of a tile."""
    layers = {}
    for number, _, raw in _fields(tile):
        assert number == 3, f"a tile holds layers only, found field {number}"
        layer: dict = {"keys": [], "values": [], "features": [], "extent": 4096, "version": 1}
        raw_features = []
        for n, _, v in _fields(raw):
            if n == 1:
                layer["name"] = v.decode()
            elif n == 2:
                raw_features.append(v)
            elif n == 3:
                layer["keys"].append(v.decode())
            elif n == 4:
                (kind, _, value), = _fields(v)
                layer["values"].append(value if kind in (4, 5) else (value >> 1) ^ -(value & 1) if kind == 6 else value)
            elif n == 5:
                layer["extent"] = v
            elif n == 15:
                layer["version"] = v
        for raw_feature in raw_features:
            f = {n: v for n, _, v in _fields(raw_feature)}
            tags, geometry = _packed(f.get(2, b"")), _packed(f[4])
            points, x, y, i = [], 0, 0, 0
            while i < len(geometry):
                command, count = geometry[i] & 7, geometry[i] >> 3
                i += 1
                assert command == 1, "points only"
                for _ in range(count):
                    x += (geometry[i] >> 1) ^ -(geometry[i] & 1)
                    y += (geometry[i + 1] >> 1) ^ -(geometry[i + 1] & 1)
                    points.append((x, y))
                    i += 2
            props = {layer["keys"][tags[k]]: layer["values"][tags[k + 1]] for k in range(0, len(tags), 2)}
            layer["features"].append({"type": f.get(3), "points": points, "properties": props})
        layers[layer.pop("name")] = layer
    return layers


def tile(client, z, x, y, **params):
    return client.get(f"/tiles/sites/tiles/{z}/{x}/{y}.pbf", params=params)


def counts(client, z, x, y, **params) -> list[int]:
    r = tile(client, z, x, y, **params)
    assert r.status_code in (200, 204), r.text[:200]
    return [] if r.status_code == 204 else [f["properties"]["count"] for f in decode(r.content)["sites"]["features"]]


def _in_tile(conn, z, x, y, species=None) -> int:
    """Sites of the species inside the tile, edges included (PostGIS alone, no code of the service)."""
    sql = ("SELECT count(*) FROM sites "
           "WHERE ST_Intersects(ST_Transform(geom, 3857), ST_TileEnvelope(%(z)s, %(x)s, %(y)s))"
           + (" AND %(sp)s = ANY(species)" if species else ""))
    return conn.exec_driver_sql(sql, {"z": z, "x": x, "y": y, "sp": species}).scalar_one()


# -- tiles -----------------------------------------------------------------------------------------------


def test_tile_is_a_vector_tile_of_aggregated_points(client):
    r = tile(client, *CA_GOLD, commodity="gold")
    assert r.status_code == 200
    assert r.headers["content-type"] == MVT
    assert "max-age" in r.headers["cache-control"] and r.headers["etag"]
    layers = decode(r.content)
    assert list(layers) == ["sites"]
    layer = layers["sites"]
    assert layer["extent"] == 4096 and layer["version"] == 2
    grid = client.get("/tiles/sites/tilejson.json").json()["grid"]
    cells = set()
    for f in layer["features"]:
        assert f["type"] == 1 and len(f["points"]) == 1
        (px, py), = f["points"]
        assert 0 <= px < 4096 and 0 <= py < 4096
        assert isinstance(f["properties"]["count"], int) and f["properties"]["count"] >= 1
        cells.add((px * grid // 4096, py * grid // 4096))
    assert len(cells) == len(layer["features"]), "two points in one grid cell"
    assert len(layer["features"]) > 500 and max(f["properties"]["count"] for f in layer["features"]) > 50


def test_counts_add_up_to_the_sites_in_the_tile(client, full_engine):
    with full_engine.connect() as conn:
        expected = _in_tile(conn, *CA_GOLD, species="gold")
        expected_all = _in_tile(conn, *CA_GOLD)
    assert sum(counts(client, *CA_GOLD, commodity="gold")) == expected > 10_000
    assert sum(counts(client, *CA_GOLD)) == expected_all > expected
    z, x, y = CA_GOLD
    children = [counts(client, z + 1, 2 * x + dx, 2 * y + dy, commodity="gold") for dx in (0, 1) for dy in (0, 1)]
    assert sum(sum(c) for c in children) == expected


def test_every_site_is_in_the_tiles_at_low_zoom(client, full_engine):
    """No cut-off: the world's z2 tiles hold every gold site (and every site) exactly once."""
    with full_engine.connect() as conn:
        gold = conn.exec_driver_sql("SELECT count(*) FROM sites WHERE 'gold' = ANY(species)").scalar_one()
        total = conn.exec_driver_sql("SELECT count(*) FROM sites").scalar_one()
    tiles = [(2, x, y) for x in range(4) for y in range(4)]
    assert sum(sum(counts(client, *t, commodity="gold")) for t in tiles) == gold
    assert sum(sum(counts(client, *t)) for t in tiles) == total
    assert sum(counts(client, 0, 0, 0)) == total


def _lonlat(z, x, y, px, py, extent=4096) -> tuple[float, float]:
    n = 2**z
    lon = (x + px / extent) / n * 360 - 180
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (y + py / extent) / n))))
    return lon, lat


def test_nevada_shows_its_gold_sites_at_z5(client, full_engine):
    """All of Nevada's gold sites show at z5 (an id-ordered cut-off at 20,000 sites had left it empty)."""
    import shapely

    nevada = {s.code: s.geometry for s in load_states()}["NV"]
    with full_engine.connect() as conn:
        n = conn.exec_driver_sql("SELECT count(*) FROM sites WHERE state = 'NV' AND 'gold' = ANY(species)").scalar_one()
    shown = 0
    for x, y in ((5, 11), (5, 12)):  # the z5 tiles over Nevada
        for f in decode(tile(client, 5, x, y, commodity="gold").content)["sites"]["features"]:
            if nevada.contains(shapely.Point(_lonlat(5, x, y, *f["points"][0]))):
                shown += f["properties"]["count"]
    assert n > 100 and shown >= 0.9 * n


def test_commodity_filter_covers_every_commodity(client):
    assert sum(counts(client, *CA_GOLD, commodity="sand_and_gravel")) > 100
    both = sum(counts(client, *CA_GOLD, commodity="gold,sand_and_gravel"))
    assert both >= sum(counts(client, *CA_GOLD, commodity="gold"))


def test_empty_tile_is_204(client):
    r = tile(client, 5, 16, 3)  # Scandinavia: no site of the store
    assert r.status_code == 204 and r.content == b""
    assert r.headers["etag"]


def test_unchanged_tile_is_304(client):
    r = tile(client, *CA_GOLD, commodity="gold")
    again = client.get(f"/tiles/sites/tiles/{'/'.join(map(str, CA_GOLD))}.pbf", params={"commodity": "gold"},
                       headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    other = tile(client, *CA_GOLD, commodity="silver")
    assert other.headers["etag"] != r.headers["etag"]


@pytest.mark.parametrize(
    ("path", "params", "parameter", "words"),
    [
        ("5/32/12", {}, "x", ["5/32/12 does not exist", "0 <= x, y < 32"]),
        ("5/5/40", {}, "y", ["does not exist"]),
        ("0/1/0", {}, "x", ["does not exist"]),
        ("5/5/12", {"commodity": "unobtainium"}, "commodity", ["'unobtainium' unknown", "gold"]),
        ("5/5/12", {"commodity": "gold,kryptonite"}, "commodity", ["'kryptonite' unknown"]),
    ],
)
def test_bad_tiles_and_commodities_are_422_in_words(client, path, params, parameter, words):
    r = client.get(f"/tiles/sites/tiles/{path}.pbf", params=params)
    assert r.status_code == 422
    body = r.json()
    assert body["parameter"] == parameter
    for w in words:
        assert w in body["detail"]


@pytest.mark.parametrize("path", ["31/0/0", "-1/0/0", "5/-1/3", "5/a/3", "5/1/2.5"])
def test_malformed_tile_indexes_are_422(client, path):
    r = client.get(f"/tiles/sites/tiles/{path}.pbf")
    assert r.status_code == 422
    assert r.json()["detail"]


def test_transfer_of_a_conus_view_and_a_pan(client):
    """Every z5 tile over the lower 48 with all gold sites: at most 2 MB; a z7 column of tiles: at most 300 KB."""
    def xy(lon, lat, z):
        n = 2**z
        y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
        return int((lon + 180) / 360 * n), int(y)

    x0, y0 = xy(-130, 52, 5)
    x1, y1 = xy(-62, 22, 5)
    total = sum(len(tile(client, 5, x, y, commodity="gold").content) for x in range(x0, x1 + 1)
                for y in range(y0, y1 + 1))
    assert total <= 2_000_000
    # a pan at z7 over the Sierra foothills brings in one column of four tiles
    x, y = xy(-120.8, 40.5, 7)
    column = sum(len(tile(client, 7, x, y + dy, commodity="gold").content) for dy in range(4))
    assert column <= 300_000


# -- TileJSON and the commodity list -----------------------------------------------------------------------


def test_tilejson_gives_bounds_and_the_tile_url(client):
    r = client.get("/tiles/sites/tilejson.json", params={"commodity": "gold"})
    assert r.status_code == 200
    body = SiteTileJSON.model_validate(r.json())
    assert body.tiles[0].endswith("/tiles/sites/tiles/{z}/{x}/{y}.pbf?commodity=gold")
    minx, miny, maxx, maxy = body.bounds
    assert -180 <= minx < -124 and maxx > -80 and 18 < miny < 33 and maxy > 48
    species = {s["id"]: s["sites"] for s in client.get("/api/species").json()["species"]}
    assert body.sites == species["gold"]
    assert body.vector_layers[0].id == "sites" and "count" in body.vector_layers[0].fields
    assert client.get("/tiles/sites/tilejson.json", params={"commodity": "nope"}).status_code == 422


def test_commodities_list_every_commodity_with_counts(client, full_engine):
    r = client.get("/api/commodities")
    assert r.status_code == 200
    body = CommodityList.model_validate(r.json())
    with full_engine.connect() as conn:
        n = conn.exec_driver_sql("SELECT count(DISTINCT c) FROM sites, unnest(species) AS c").scalar_one()
        total = conn.exec_driver_sql("SELECT count(*) FROM sites").scalar_one()
    assert len(body.commodities) == n > 100
    assert body.sites == total
    assert 0 < body.unrecognised < total
    by_id = {c.id: c for c in body.commodities}
    assert by_id["gold"].target and not by_id["sand_and_gravel"].target and by_id["stone"].sites > 1000
    assert [c.sites for c in body.commodities] == sorted((c.sites for c in body.commodities), reverse=True)
    assert by_id["sand_and_gravel"].label == "Sand and Gravel"


# -- export ---------------------------------------------------------------------------------------------


def test_csv_export_of_a_box(client):
    r = client.get("/api/sites/export", params={"bbox": PLACER, "species": "gold", "format": "csv"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == 'attachment; filename="m3-sites.csv"'
    assert "link" not in r.headers
    rows = list(csv.DictReader(io.StringIO(r.text)))
    page = client.get("/api/sites", params={"bbox": PLACER, "species": "gold", "limit": 5000}).json()
    assert [int(row["id"]) for row in rows] == [f["id"] for f in page["features"]]
    first = rows[0]
    assert list(first) == ["id", "source", "record_id", "name", "state", "lon", "lat", "species", "commodities",
                           "deposit_types", "rank"]
    assert -121 <= float(first["lon"]) <= -120.8 and first["state"] == "CA" and "gold" in first["species"]


def test_export_row_limit_points_at_the_rest(client):
    r = client.get("/api/sites/export", params={"bbox": PLACER, "format": "csv", "limit": 5})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 5
    assert r.headers["x-next-cursor"] and 'rel="next"' in r.headers["link"]
    rest = client.get("/api/sites/export", params={"bbox": PLACER, "format": "csv", "limit": 5,
                                                   "cursor": r.headers["x-next-cursor"]})
    more = list(csv.DictReader(io.StringIO(rest.text)))
    assert int(more[0]["id"]) > int(rows[-1]["id"])


def test_geojson_export(client):
    r = client.get("/api/sites/export", params={"bbox": PLACER, "species": "gold", "format": "geojson"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/geo+json"
    assert r.headers["content-disposition"] == 'attachment; filename="m3-sites.geojson"'
    body = SitesPage.model_validate(r.json())
    assert body.features and body.next_cursor is None
    assert all("gold" in f.properties.species for f in body.features)


@pytest.mark.parametrize(
    ("params", "parameter"),
    [({"format": "xml"}, "format"), ({"limit": 0}, "limit"), ({"limit": 50_001}, "limit"),
     ({"bbox": "1,2,3"}, "bbox"), ({"species": "gld"}, "species")],
)
def test_bad_exports_are_422(client, params, parameter):
    r = client.get("/api/sites/export", params=params)
    assert r.status_code == 422
    assert parameter in r.text
