import base64
import io

import pytest
import rasterio
from PIL import Image
from pydantic import SecretStr

from .synthetic import FOOTHILLS

BOX = f"{FOOTHILLS[0] - 0.6},{FOOTHILLS[1] - 0.4},{FOOTHILLS[0] + 0.4},{FOOTHILLS[1] + 0.4}"


def test_clusters_geojson_with_nearest_and_inside_sites(serve_client, published):
    r = serve_client.get("/api/clusters", params={"species": "zinc"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    body = r.json()
    assert body["layer_version"] == published and body["features"]
    f = body["features"][0]
    assert f["geometry"]["type"] == "MultiPolygon"
    props = f["properties"]
    assert props["species"] == "zinc" and 0 < props["mean_score"] <= props["max_score"] <= 1
    assert props["nearest_site"] is None and props["nearest_distance_m"] is None  # no zinc site in the database
    names = {s["name"] for feat in body["features"] for s in feat["properties"]["sites"]}
    assert "Blob Sand and Gravel Pit" in names
    scores = [feat["properties"]["score"] for feat in body["features"]]
    assert scores == sorted(scores, reverse=True)
    assert [feat["properties"]["rank"] for feat in body["features"]] == list(range(1, len(scores) + 1))
    gold = serve_client.get("/api/clusters", params={"species": "gold"}).json()["features"]
    assert gold and all(g["properties"]["nearest_site"]["name"] == "Far Away Mine" for g in gold)
    assert all(g["properties"]["nearest_distance_m"] > 500_000 for g in gold)


def test_clusters_bbox_and_bad_species(serve_client):
    far = serve_client.get("/api/clusters", params={"bbox": "-80,30,-79,31"}).json()
    assert far["features"] == []
    r = serve_client.get("/api/clusters", params={"species": "znc"})
    assert r.status_code == 422 and "'znc' unknown" in r.json()["detail"] and "zinc" in r.json()["detail"]


def test_prospectivity_statistics_and_geotiff(serve_client, published):
    r = serve_client.get("/api/prospectivity", params={"bbox": BOX, "species": "zinc,gold"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["layer_version"] == published and body["crs"] == "EPSG:5070"
    zinc = body["species"]["zinc"]
    assert zinc["cells"] > 1000 and 0 <= zinc["min"] <= zinc["mean"] <= zinc["max"] <= 1
    r = serve_client.get("/api/prospectivity", params={"bbox": BOX, "species": "zinc", "format": "tif",
                                                       "kind": "discrepancy"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/tiff")
    with rasterio.MemoryFile(r.content) as mem, mem.open() as src:
        assert src.count == 1 and src.crs.to_epsg() == 5070 and src.descriptions[0] == "zinc.discrepancy"
        assert src.width * src.height == body["window"]["width"] * body["window"]["height"]


def test_prospectivity_bad_input(serve_client):
    assert serve_client.get("/api/prospectivity").status_code == 422
    r = serve_client.get("/api/prospectivity", params={"bbox": "10,10,11,11"})
    assert r.status_code == 422 and "outside" in r.json()["detail"]


def test_infer_hiding_zinc_changes_zinc_there_only(serve_client):
    region = [FOOTHILLS[0] - 0.3, FOOTHILLS[1] - 0.2, FOOTHILLS[0], FOOTHILLS[1] + 0.1]
    base = serve_client.post("/api/infer", json={"bbox": BOX, "ensemble": 2})
    assert base.status_code == 200, base.text
    hid = serve_client.post("/api/infer", json={"bbox": BOX, "ensemble": 2, "hide_species": ["zinc"],
                                                "hide_regions": [region]})
    assert hid.status_code == 200, hid.text
    b, h = base.json(), hid.json()
    assert b["species"]["gold"] == h["species"]["gold"]
    assert h["species"]["zinc"]["hidden_cells"] > 0 and b["species"]["zinc"]["hidden_cells"] == 0
    assert h["species"]["zinc"]["mean"] != b["species"]["zinc"]["mean"]
    png = Image.open(io.BytesIO(base64.b64decode(h["image"]["data"])))
    assert png.size == (h["window"]["width"], h["window"]["height"])
    tile = serve_client.get(h["layer"]["tilejson"].replace("http://testserver", ""))
    assert tile.status_code == 200 and h["layer"]["id"] in tile.json()["tiles"][0]


def test_infer_limits_in_words(serve_client, serve_settings):
    from fastapi.testclient import TestClient

    from backend.api.app import create_app

    with TestClient(create_app(serve_settings.model_copy(update={"infer_max_cells": 1000}))) as small:
        big = small.post("/api/infer", json={"bbox": BOX})
    assert big.status_code == 413
    assert "at most 1000 cells" in big.json()["detail"]
    r = serve_client.post("/api/infer", json={"bbox": BOX, "ensemble": 10_000})
    assert r.status_code == 422 and "1.." in r.json()["detail"]
    r = serve_client.post("/api/infer", json={"bbox": BOX, "hide_species": ["cobalt"]})
    assert r.status_code == 422 and "cobalt" in r.json()["detail"]


def test_short_admin_token_is_refused_at_start_up(serve_settings):
    from backend.api.app import create_app

    for short in ("change-me", "x" * 31):
        with pytest.raises(ValueError, match="M3_ADMIN_TOKEN .* at least 32"):
            create_app(serve_settings.model_copy(update={"admin_token": SecretStr(short), "development": True}))
    assert create_app(serve_settings.model_copy(update={"admin_token": SecretStr("x" * 32)}))


def test_schema_behind_is_503_in_words(serve_dirs, make_database):
    from fastapi.testclient import TestClient

    from backend.api.app import create_app

    from .conftest import make_settings

    url = make_database(migrate=False)
    from backend.db.migrate import upgrade

    upgrade(url, "0001")
    with TestClient(create_app(make_settings(serve_dirs, url))) as client:
        r = client.get("/api/layers")
        assert r.status_code == 503 and "m3 db upgrade" in r.json()["detail"]
