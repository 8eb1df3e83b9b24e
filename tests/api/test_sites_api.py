import pytest

from backend.geo.boundaries import load_states

CA_BOX = "-124.5,32.5,-114,42"


def test_gold_in_california_first_page_and_cursor(client):
    r = client.get("/api/sites", params={"bbox": CA_BOX, "species": "gold", "limit": 5})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/geo+json")
    body = r.json()
    assert body["type"] == "FeatureCollection" and len(body["features"]) == 5
    assert body["next_cursor"]
    for f in body["features"]:
        assert "gold" in f["properties"]["species"]
        assert f["properties"]["state"] == "CA"
        x, y = f["geometry"]["coordinates"]
        assert -124.5 <= x <= -114 and 32.5 <= y <= 42
    assert body["links"][0]["rel"] == "next"


def test_pages_do_not_overlap_and_end(client):
    box = "-121,38.9,-120.8,39.1"  # Placer County gold belt: several hundred sites
    seen, cursor, pages = [], None, 0
    while True:
        params = {"bbox": box, "limit": 97}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/api/sites", params=params).json()
        seen += [f["id"] for f in body["features"]]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert pages > 1 and len(seen) == len(set(seen)) and seen == sorted(seen)
    everything = client.get("/api/sites", params={"bbox": box, "limit": 5000}).json()
    assert [f["id"] for f in everything["features"]] == seen


def test_species_filter_any_of(client):
    body = client.get("/api/sites", params={"bbox": CA_BOX, "species": "zinc,tungsten", "limit": 200}).json()
    assert body["features"]
    assert all({"zinc", "tungsten"} & set(f["properties"]["species"]) for f in body["features"])


def test_sand_and_gravel_is_a_species(client):
    body = client.get("/api/sites", params={"species": "sand_and_gravel", "limit": 3}).json()
    assert len(body["features"]) == 3


@pytest.mark.parametrize(
    ("params", "parameter", "words"),
    [
        ({"bbox": "-114,32.5,-124.5,42"}, "bbox", ["inverted", "minx,miny,maxx,maxy"]),
        ({"bbox": "-200,32.5,-114,42"}, "bbox", ["minx -200 is outside -180..180"]),
        ({"bbox": "-124,32.5,-114,95"}, "bbox", ["maxy 95 is outside -90..90"]),
        ({"bbox": "1,2,3"}, "bbox", ["expected 4"]),
        ({"bbox": "a,b,c,d"}, "bbox", ["not four numbers"]),
        ({"species": "gld"}, "species", ["'gld' unknown", "known:", "gold", "silver"]),
        ({"limit": 5001}, "limit", ["5001", "1..5000"]),
        ({"limit": 0}, "limit", ["1..5000"]),
        ({"cursor": "garbage!"}, "cursor", ["not valid"]),
    ],
)
def test_bad_queries_get_422_in_words(client, params, parameter, words):
    r = client.get("/api/sites", params=params)
    assert r.status_code == 422
    body = r.json()
    assert body["parameter"] == parameter
    for w in words:
        assert w in body["detail"]


def test_non_integer_limit_is_422(client):
    r = client.get("/api/sites", params={"limit": "many"})
    assert r.status_code == 422


def test_species_counts(client):
    items = client.get("/api/species").json()["species"]
    by_id = {s["id"]: s for s in items}
    assert by_id["gold"]["sites"] > 30_000 and by_id["gold"]["target"] is True
    assert by_id["sand_and_gravel"]["sites"] > 1_000 and by_id["sand_and_gravel"]["target"] is False
    for sp in ("gold", "silver", "zinc", "lead", "copper", "nickel", "iron", "uranium", "tungsten", "manganese"):
        assert sp in by_id


def test_species_counts_match_sites(client, full_engine):
    with full_engine.connect() as c:
        n = c.exec_driver_sql("SELECT count(*) FROM sites WHERE 'zinc' = ANY(species)").scalar_one()
    items = {s["id"]: s for s in client.get("/api/species").json()["species"]}
    assert items["zinc"]["sites"] == n


def test_healthz_and_docs(client):
    h = client.get("/healthz")
    assert h.status_code == 200 and h.json()["database"] == "ok" and h.json()["sites"] > 100_000
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/api/sites" in spec["paths"] and "/api/species" in spec["paths"]


def test_state_code_matches_outline(client):
    states = {s.code: s.geometry for s in load_states()}
    import shapely

    body = client.get("/api/sites", params={"bbox": "-112.5,39,-111.5,40", "limit": 300}).json()
    for f in body["features"]:
        pt = shapely.Point(f["geometry"]["coordinates"])
        assert shapely.distance(states[f["properties"]["state"]], pt) < 0.05
