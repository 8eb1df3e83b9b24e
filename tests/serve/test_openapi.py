"""The OpenAPI document describes what is returned; inputs that once got a 500 get a 4xx in words.

The document: response models, problem bodies, tile parameter limits. The inputs: those schemathesis found.
"""

import json

import pytest

from backend.api.routers.tiles import SIZE_LIMITS
from backend.api.schemas import (
    ClustersCollection,
    HealthPublic,
    InferResult,
    LayersPublic,
    Problem,
    ProspectivityStats,
    SitesPage,
    SpeciesList,
)

from .synthetic import FOOTHILLS

BOX = f"{FOOTHILLS[0] - 0.2},{FOOTHILLS[1] - 0.2},{FOOTHILLS[0] + 0.2},{FOOTHILLS[1] + 0.2}"
TILES = "/tiles/gold.prospectivity"


@pytest.fixture(scope="module")
def document(serve_client):
    return serve_client.get("/openapi.json").json()


def _operations(document):
    return [(f"{method.upper()} {path}", op) for path, item in document["paths"].items()
            for method, op in item.items()]


def test_every_error_response_is_a_documented_problem(document):
    assert set(document["components"]["schemas"]["Problem"]["properties"]) == set(Problem.model_fields)
    for name, op in _operations(document):
        assert {"400", "413", "422"} <= set(op["responses"]), name
        for status, response in op["responses"].items():
            if status[0] in "45" and not (name == "GET /healthz" and status == "503"):
                assert response["content"] == {"application/json": {"schema": {
                    "$ref": "#/components/schemas/Problem"}}}, (name, status)


def test_json_endpoints_declare_their_response_models(document):
    refs = {}
    for name, op in _operations(document):
        for media, content in op["responses"].get("200", op["responses"].get("202", {})).get("content", {}).items():
            if "json" in media:
                assert content["schema"] != {"type": "string"}, name
                refs[name] = content["schema"].get("$ref", "").rsplit("/", 1)[-1]
    assert refs["GET /api/sites"] == "SitesPage" and refs["GET /api/clusters"] == "ClustersCollection"
    assert refs["GET /healthz"] == "HealthPublic" and refs["POST /api/infer"] == "InferResult"
    assert refs["GET /admin/jobs/{job_id}"] == "JobPublic" and refs["POST /admin/reinference"] == "JobCreated"
    sites = document["paths"]["/api/sites"]["get"]["responses"]["200"]["content"]
    assert list(sites) == ["application/geo+json"]
    assert "image/tiff; application=geotiff" in document["paths"]["/api/prospectivity"]["get"]["responses"][
        "200"]["content"]


def test_every_200_response_has_a_schema(document):
    for name, op in _operations(document):
        if "200" not in op["responses"]:
            continue
        content = op["responses"]["200"].get("content", {})
        assert content, name
        for media, body in content.items():
            assert body.get("schema"), (name, media)
    tile = document["paths"]["/tiles/{layer_id}/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}"]["get"]
    assert tile["responses"]["200"]["content"]["image/png"]["schema"] == {"type": "string", "format": "binary"}


def test_tile_parameters_document_the_service_limits(document):
    params = {p["name"]: p for p in document["paths"]["/tiles/{layer_id}/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}"]
              ["get"]["parameters"]}
    tilesize = [b for b in params["tilesize"]["schema"]["anyOf"] if b.get("type") == "integer"][0]
    assert (tilesize["minimum"], tilesize["maximum"]) == SIZE_LIMITS["tilesize"]
    bidx = [b for b in params["bidx"]["schema"]["anyOf"] if b.get("type") == "array"][0]
    assert bidx["items"]["enum"] == [1]
    assert params["z"]["schema"]["maximum"] == 30 and params["x"]["schema"]["minimum"] == 0
    assert all(e["value"] == [1] for e in params["bidx"]["examples"].values())
    assert "prefixItems" not in json.dumps(document)


def test_bodies_match_their_response_models(serve_client):
    checks = [("/healthz", HealthPublic), (f"/api/sites?bbox={BOX}&limit=3", SitesPage), ("/api/species", SpeciesList),
              ("/api/layers", LayersPublic), ("/api/clusters", ClustersCollection),
              (f"/api/prospectivity?bbox={BOX}", ProspectivityStats)]
    for url, model in checks:
        r = serve_client.get(url)
        assert r.status_code == 200, (url, r.text[:200])
        model.model_validate(r.json())
    r = serve_client.post("/api/infer", json={"bbox": BOX, "hide_species": ["zinc"]})
    InferResult.model_validate(r.json())
    assert serve_client.get(f"/api/sites?bbox={BOX}&limit=1").headers["content-type"] == "application/geo+json"


def test_health_keeps_its_keys(serve_client):
    body = serve_client.get("/healthz").json()
    assert list(body)[:6] == ["status", "version", "database", "model", "provider", "layer_version"]
    assert "sites" in body and "tile_cache" in body and "model_error" not in body


def test_405_lists_every_method_of_the_path(serve_client):
    r = serve_client.request("OPTIONS", f"{TILES}/statistics")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST" and r.json() == {"detail": "Method Not Allowed"}
    assert serve_client.delete("/api/sites").headers["allow"] == "GET"


@pytest.mark.parametrize(("body", "word"), [
    ({"type": "Feature", "properties": None, "geometry": None}, "no geometry"),
    ({"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [-121, 39]}}, "Point"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {
        "type": "Polygon", "coordinates": [[[-121, 39], [-121, 39], [-121, 39], [-121, 39]]]}}]}, "no area"),
])
def test_statistics_under_a_feature_without_area_is_422(serve_client, body, word):
    r = serve_client.post(f"{TILES}/statistics", json=body)
    assert r.status_code == 422 and word in r.json()["detail"], r.text[:300]


@pytest.mark.parametrize(("url", "parameter"), [
    (f"{TILES}/statistics?algorithm=hillshade&width=1&height=1", "algorithm"),
    (f"{TILES}/statistics?algorithm=normalizedIndex", "algorithm"),
    (f"{TILES}/WebMercatorQuad/tilejson.json?algorithm=max&algorithm_params=null", "algorithm_params"),
    (f"{TILES}/tiles/WebMercatorQuad/7/20/48.png?buffer=0.3", "buffer"),
    (f"{TILES}/tiles/CDB1GlobalGrid?minzoom=0&maxzoom=23", "maxzoom"),
    (f"{TILES}/tiles/UTM31WGS84Quad/0/0/0.png", "z"),
    (f"{TILES}/tiles/GNOSISGlobalGrid/29/0/0.png", "z"),
])
def test_tile_inputs_that_gave_500_are_422(serve_client, url, parameter):
    r = serve_client.get(url)
    assert r.status_code == 422, (url, r.status_code, r.text[:300])
    assert r.json()["parameter"] == parameter


def test_infer_numbers_are_strict(serve_client):
    for body in ({"bbox": BOX, "seed": False}, {"bbox": BOX, "ensemble": "2"}, {"bbox": BOX, "ensemble": 0}):
        assert serve_client.post("/api/infer", json=body).status_code == 422, body
