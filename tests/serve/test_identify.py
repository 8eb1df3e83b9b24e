"""GET /api/identify: one commodity's layers at a point's cell, its coverage and the nearest known site."""

from __future__ import annotations

import math

from pyproj import Transformer

from .conftest import SYNTHETIC_SITES
from .synthetic import FOOTHILLS


def test_identify_reads_the_cell_and_the_nearest_site(serve_client, published):
    lon, lat = FOOTHILLS
    r = serve_client.get("/api/identify", params={"lon": lon, "lat": lat, "species": "Gold"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["layer_version"] == published and body["species"] == "gold"
    assert 0 <= body["prospectivity"] <= 1
    assert body["evaluations"] is None or body["evaluations"] >= 0
    assert body["uncertainty"] is None or body["uncertainty"] >= 0
    assert body["discrepancy"] is None or body["discrepancy"] == body["prospectivity"]
    assert body["in_coverage"] in (True, False, None)
    assert body["cell"]["crs"] == "EPSG:5070"
    centre = body["cell"]["center"]
    assert abs(centre[0] - lon) < 0.03 and abs(centre[1] - lat) < 0.03  # a 1-mile cell
    gold = next(s for s in SYNTHETIC_SITES if s[1] == ["gold"])
    assert body["nearest_site"]["name"] == gold[0]
    assert [body["nearest_site"]["lon"], body["nearest_site"]["lat"]] == [gold[2], gold[3]]
    to_5070 = Transformer.from_crs("EPSG:4326", "EPSG:5070", always_xy=True)
    expected = math.dist(to_5070.transform(lon, lat), to_5070.transform(gold[2], gold[3]))
    assert abs(body["nearest_distance_m"] - expected) <= 1
    assert "not the chance of an economic deposit" in body["note"]
    # the same cell through the prospectivity box statistics
    box = f"{lon},{lat},{lon + 1e-5},{lat + 1e-5}"
    stats = serve_client.get("/api/prospectivity", params={"bbox": box, "species": "gold"}).json()
    assert stats["window"]["width"] == stats["window"]["height"] == 1
    assert abs(stats["species"]["gold"]["mean"] - body["prospectivity"]) < 1e-6


def test_identify_without_a_known_site(serve_client):
    body = serve_client.get("/api/identify", params={"lon": FOOTHILLS[0], "lat": FOOTHILLS[1],
                                                     "species": "zinc"}).json()
    assert body["nearest_site"] is None and body["nearest_distance_m"] is None


def test_identify_bad_input(serve_client):
    r = serve_client.get("/api/identify", params={"lon": 10, "lat": 10, "species": "zinc"})
    assert r.status_code == 422 and r.json()["parameter"] == "lon" and "outside" in r.json()["detail"]
    r = serve_client.get("/api/identify", params={"lon": FOOTHILLS[0], "lat": FOOTHILLS[1], "species": "znc"})
    assert r.status_code == 422 and "'znc' unknown" in r.json()["detail"] and "zinc" in r.json()["detail"]
    r = serve_client.get("/api/identify", params={"lon": FOOTHILLS[0], "lat": FOOTHILLS[1], "species": "zinc,gold"})
    assert r.status_code == 422 and "exactly one" in r.json()["detail"]
    assert serve_client.get("/api/identify", params={"lon": 200, "lat": 10, "species": "zinc"}).status_code == 422
    assert serve_client.get("/api/identify", params={"lat": 10, "species": "zinc"}).status_code == 422


def test_identify_outside_coverage_has_no_discrepancy(serve_client):
    # the synthetic cube's coverage leaves out its 16 easternmost columns
    body = serve_client.get("/api/identify", params={"lon": -120.0, "lat": 39.3, "species": "gold"}).json()
    assert body["cell"]["col"] >= 112 and body["in_coverage"] is False
    assert body["discrepancy"] is None and body["prospectivity"] is not None
    inside = serve_client.get("/api/identify", params={"lon": -121.6, "lat": 38.6, "species": "gold"}).json()
    assert inside["in_coverage"] is True and inside["discrepancy"] == inside["prospectivity"]
