"""Hardening: admin off without a token, 4xx in words for bad input, bounded sizes, bodies, hosts and headers."""

import json

import pytest
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.settings import Settings

from .synthetic import FOOTHILLS

BOX = f"{FOOTHILLS[0] - 0.2},{FOOTHILLS[1] - 0.2},{FOOTHILLS[0] + 0.2},{FOOTHILLS[1] + 0.2}"
TILE = "/tiles/gold.prospectivity/tiles/WebMercatorQuad/7/20/48"


@pytest.fixture(scope="module")
def no_admin_client(serve_settings, published):
    """The app with no admin token set."""
    with TestClient(create_app(serve_settings.model_copy(update={"admin_token": None}))) as client:
        yield client


def _problem(r, status=422):
    assert r.status_code == status, (r.status_code, r.text[:300])
    return json.dumps(r.json())


# -- row 1: admin is off unless a token is set ----------------------------------------------------------
def test_admin_is_off_without_a_token(no_admin_client):
    assert Settings.model_fields["admin_token"].default is None
    for token in ("change-me", ""):
        r = no_admin_client.get("/admin/jobs/1", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 404
    assert no_admin_client.post("/admin/reinference", headers={"Authorization": "Bearer change-me"}
                                ).status_code == 404
    assert not any(p.startswith("/admin") for p in no_admin_client.get("/openapi.json").json()["paths"])


# -- row 5: 4xx, never 500, for bad input ------------------------------------------------------------------
def test_bad_infer_input_is_422_before_the_model_runs(serve_client):
    r = serve_client.post("/api/infer", json={"bbox": BOX, "render": "GOLD"})
    assert r.status_code == 200 and r.json()["layer"]["species"] == "gold"
    assert "render" in _problem(serve_client.post("/api/infer", json={"bbox": BOX, "render": "cobalt"}))
    assert "render" in _problem(serve_client.post("/api/infer", json={"bbox": BOX, "render": "gold,zinc"}))
    assert "seed" in _problem(serve_client.post("/api/infer", json={"bbox": BOX, "ensemble": 2, "seed": -1}))
    assert "seed" in _problem(serve_client.post("/api/infer", json={"bbox": BOX, "seed": 2**70}))
    assert serve_client.post("/api/infer", json={"bbox": BOX, "species": [""]}).status_code == 200


def test_bad_tile_parameters_are_4xx(serve_client):
    cases = {
        "/tiles/gold.prospectivity/tiles/WebMercatorQuad/-1/0/0.png": "z",
        "/tiles/gold.prospectivity/tiles/WebMercatorQuad/31/0/0.png": "z",
        f"{TILE}.png?bidx=2": "bidx",
        f"{TILE}.png?expression=b9": "",
        "/tiles/gold.prospectivity/point/inf,0": "finite",
        "/tiles/gold.prospectivity/point/200,0": "lon",
        "/tiles/gold.prospectivity/statistics?p=200": "p",
        "/tiles/gold.prospectivity/statistics?histogram_range=1,0": "histogram_range",
        "/tiles/gold.prospectivity/statistics?histogram_range=a,b": "histogram_range",
    }
    for url, word in cases.items():
        r = serve_client.get(url)
        assert 400 <= r.status_code < 500, (url, r.status_code, r.text[:200])
        assert word in r.text, (url, r.text[:200])


def test_ids_and_cursors_out_of_range_are_422(serve_client):
    from .conftest import ADMIN_TOKEN

    r = serve_client.get("/admin/jobs/1208925819614629174706176", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 422
    from backend.api.query import encode_cursor

    assert "cursor" in _problem(serve_client.get("/api/sites", params={"cursor": encode_cursor(2**70)}))


# -- row 6: body limit, short validation errors, unknown fields ------------------------------------------
def test_large_body_is_413_and_errors_do_not_echo_the_input(serve_client):
    huge = json.dumps({"bbox": BOX, "hide_regions": ["1,2,3,4"] * 30000})
    r = serve_client.post("/api/infer", content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "M3_MAX_BODY_BYTES" in r.text
    bad = json.dumps({"bbox": BOX, "hide_regions": ["x" * 5000] * 10})
    r = serve_client.post("/api/infer", content=bad, headers={"content-type": "application/json"})
    assert r.status_code == 422 and len(r.content) < 5000, len(r.content)
    r = serve_client.post("/api/infer", json={"bbox": BOX, "unknown": "y" * 1000})
    assert r.status_code == 422 and "unknown" in r.text and len(r.content) < 2000


# -- row 12: a repeated parameter is a 422 -------------------------------------------------------------------
def test_repeated_parameter_is_422(serve_client):
    r = serve_client.get("/api/sites?species=gold&species=zinc")
    assert "species" in _problem(r) and "more than once" in r.text
    assert serve_client.get(f"{TILE}.png?rescale=0,1&rescale=0,1").status_code == 200  # list parameter


# -- row 3: size parameters are bounded --------------------------------------------------------------------
def test_size_parameters_above_their_maximum_are_422(serve_client):
    for query, name in (("width=6000&height=6000", "width"), ("max_size=100000", "max_size"),
                        ("histogram_bins=1000000", "histogram_bins")):
        r = serve_client.get(f"/tiles/gold.prospectivity/statistics?{query}")
        assert name in _problem(r) and "outside" in r.text
    for query, name in (("tilesize=2048", "tilesize"), ("buffer=1000", "buffer"), ("padding=500", "padding")):
        assert name in _problem(serve_client.get(f"{TILE}.png?{query}"))
    assert serve_client.get("/tiles/gold.prospectivity/statistics?width=256&height=256").status_code == 200


# -- row 2: the tile cache is bounded in bytes and keyed on the normalised parameters --------------------------
def test_tile_cache_bytes_and_normalised_key(serve_client):
    cache = serve_client.app.state.serving.tile_cache
    first = serve_client.get(f"{TILE}.npy?tilesize=512&rescale=0,1")
    assert first.status_code == 200
    again = serve_client.get(f"{TILE}.npy?rescale=0%2C1&tilesize=512")
    assert again.headers.get("x-tile-cache") == "hit"
    stored = len(cache._data)
    for i in range(4):  # an unknown parameter neither hits nor fills the cache
        assert "x-tile-cache" not in serve_client.get(f"{TILE}.npy?tilesize=512&n={i}").headers
    assert len(cache._data) == stored and cache.bytes <= cache.max_bytes

    from backend.layers.tile_cache import TileCache

    small = TileCache(entries=100, max_bytes=10_000)
    for i in range(20):
        small.put(("v", str(i), b""), (200, [], b"x" * 1000))
    assert small.bytes <= 10_000 and len(small._data) < 20
    small.put(("v", "big", b""), (200, [], b"x" * 5000))  # over an eighth of the bound: not kept
    assert small.get(("v", "big", b"")) is None


# -- row 7: trusted hosts ----------------------------------------------------------------------------------------
def test_untrusted_host_is_400_and_links_use_the_trusted_one(serve_client):
    r = serve_client.get("/api/sites?limit=1", headers={"Host": "evil.example"})
    assert r.status_code == 400 and "evil.example" not in json.dumps(r.json().get("links", []))
    for host in ("127.0.0.1:8000", "localhost", "[::1]:8000"):
        assert serve_client.get("/healthz", headers={"Host": host}).status_code == 200, host
    from backend.api.guards import host_allowed

    assert host_allowed("a.example.org:80", ["*.example.org"]) and not host_allowed("example.org.evil", ["*.org"])


# -- row 11: security headers, offline API docs --------------------------------------------------------------
def test_security_headers_and_offline_docs(serve_client):
    page = serve_client.get("/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    assert serve_client.get("/healthz").headers["x-content-type-options"] == "nosniff"
    for path, asset in (("/docs", "/vendor/swagger-ui-dist/swagger-ui-bundle.js"),
                        ("/redoc", "/vendor/redoc/redoc.standalone.js")):
        html = serve_client.get(path)
        assert html.status_code == 200 and asset in html.text and "cdn" not in html.text.lower()
        assert "content-security-policy" in html.headers
        assert serve_client.get(asset).status_code == 200


# -- row 10: a hidden region outside the box ------------------------------------------------------------------
def test_hidden_region_outside_the_box_is_422(serve_client):
    far = [FOOTHILLS[0] + 1, FOOTHILLS[1] + 1, FOOTHILLS[0] + 1.2, FOOTHILLS[1] + 1.2]
    r = serve_client.post("/api/infer", json={"bbox": BOX, "hide_species": ["zinc"], "hide_regions": [far]})
    assert "hide_regions" in _problem(r) and "outside the bbox" in r.text


# -- row 8: boxes are rounded outward to whole cells, like /api/infer ------------------------------------------
def test_prospectivity_box_covers_the_same_cells_as_infer(serve_client):
    tiny = f"{FOOTHILLS[0]},{FOOTHILLS[1]},{FOOTHILLS[0] + 0.0001},{FOOTHILLS[1] + 0.0001}"
    r = serve_client.get("/api/prospectivity", params={"bbox": tiny, "species": "zinc"})
    assert r.status_code == 200, r.text
    assert r.json()["window"]["width"] >= 1 and r.json()["species"]["zinc"]["cells"] >= 1
    stats = serve_client.get("/api/prospectivity", params={"bbox": BOX, "species": "zinc"}).json()
    infer = serve_client.post("/api/infer", json={"bbox": BOX}).json()
    assert stats["window"] == infer["window"]


# -- row 4: heavy routes run through a bounded pool ------------------------------------------------------------
def test_full_pool_answers_429_with_retry_after():
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from backend.api.guards import LoadLimiter, Pool

    async def slow(scope, receive, send):
        await asyncio.sleep(0.3)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def run() -> list[httpx.Response]:
        pool = Pool("inference", concurrency=1, queue=1, wait_s=5, retry_after_s=10)
        app = LoadLimiter(slow, [(pool, lambda method, path: path == "/api/infer")])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
            return list(await asyncio.gather(*(c.post("/api/infer") for _ in range(3)), c.get("/healthz")))

    # A thread of its own: an earlier test of the run may leave an event loop running in this one.
    with ThreadPoolExecutor(1) as executor:
        responses = executor.submit(asyncio.run, run()).result()
    codes = sorted(r.status_code for r in responses[:3])
    assert codes == [200, 200, 429] and responses[3].status_code == 200
    busy = next(r for r in responses if r.status_code == 429)
    assert busy.headers["retry-after"] == "10" and "busy" in busy.json()["detail"]


def test_pools_cover_the_heavy_routes(serve_settings):
    from backend.api.app import _pools

    pools = _pools(serve_settings)

    def pool_of(method, path):
        return next((p.name for p, matches in pools if matches(method, path)), None)

    assert pool_of("POST", "/api/infer") == "inference"
    assert pool_of("GET", "/api/prospectivity") == "statistics"
    assert pool_of("GET", "/tiles/gold.prospectivity/statistics") == "statistics"
    assert pool_of("GET", f"{TILE}.png") == "tile"
    assert pool_of("GET", "/api/sites") is None and pool_of("GET", "/healthz") is None
