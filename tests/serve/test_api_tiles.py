import io

import morecantile
import numpy as np
from PIL import Image

from .synthetic import FOOTHILLS

TMS = morecantile.tms.get("WebMercatorQuad")


def _tile_url(layer_id, z, lon=FOOTHILLS[0], lat=FOOTHILLS[1], suffix=".png"):
    t = TMS.tile(lon, lat, z)
    return f"/tiles/{layer_id}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}{suffix}"


def test_png_tile_of_a_real_layer_decodes_and_is_not_empty(serve_client):
    r = serve_client.get(_tile_url("zinc.prospectivity", 7))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    assert img.size == (256, 256)
    rgba = np.asarray(img.convert("RGBA"))
    assert (rgba[..., 3] > 0).sum() > 1000
    assert len(np.unique(rgba[..., :3].reshape(-1, 3), axis=0)) > 10


def test_unknown_layer_is_404(serve_client):
    for layer_id in ("cobalt.prospectivity", "zinc.bogus", "..%2F..%2Fetc%2Fpasswd", "infer-0123456789abcdef.zinc"):
        r = serve_client.get(_tile_url(layer_id, 7))
        assert r.status_code == 404, (layer_id, r.status_code)
        assert "detail" in r.json()


def test_url_parameter_is_refused(serve_client):
    r = serve_client.get(_tile_url("zinc.prospectivity", 7) + "?url=/etc/passwd")
    assert r.status_code == 422 and "layer ids only" in r.json()["detail"]
    r = serve_client.get("/tiles/zinc.prospectivity/info?url=https://example.com/x.tif")
    assert r.status_code == 422


def test_tile_outside_the_data_is_404_or_transparent_never_500(serve_client):
    for lon, lat, z in ((-75.0, 40.0, 7), (-100.0, 39.0, 14), (150.0, -30.0, 4)):
        r = serve_client.get(_tile_url("zinc.prospectivity", z, lon, lat))
        assert r.status_code in (200, 204, 404), r.status_code
        if r.status_code == 200:
            assert (np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))[..., 3] == 0).all()
    assert serve_client.get("/tiles/zinc.prospectivity/tiles/WebMercatorQuad/7/99999/99999.png").status_code in (
        400, 404, 422)


def test_tilejson_and_layers_listing(serve_client, published):
    body = serve_client.get("/api/layers").json()
    assert body["layer_version"] == published
    ids = {layer["id"] for layer in body["layers"]}
    assert "zinc.discrepancy" in ids and "gold.uncertainty" in ids
    layer = next(layer for layer in body["layers"] if layer["id"] == "zinc.prospectivity")
    tj = serve_client.get(layer["tilejson"].replace("http://testserver", ""))
    assert tj.status_code == 200
    tj = tj.json()
    west, south, east, north = tj["bounds"]
    assert west < FOOTHILLS[0] < east and south < FOOTHILLS[1] < north
    assert "zinc.prospectivity" in tj["tiles"][0] and "colormap_name=viridis" in tj["tiles"][0]


def test_tiles_are_cached_by_version(serve_client):
    url = _tile_url("gold.prospectivity", 8) + "?colormap_name=magma"
    first = serve_client.get(url)
    second = serve_client.get(url)
    assert first.status_code == second.status_code == 200
    assert "x-tile-cache" not in first.headers and second.headers["x-tile-cache"] == "hit"
    assert first.content == second.content


def test_healthz_shows_model_provider_and_version(serve_client, published):
    h = serve_client.get("/healthz").json()
    assert h["provider"] == "CPUExecutionProvider" and h["model"].startswith("model@")
    assert h["layer_version"] == published
