"""Context layers: their list from cube.json with provenance, their TiTiler tiles, the model card, infill layers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from backend.api.context_layers import HILLSHADE, context_layers, provenance_rows
from backend.cube.contract import CUBE_JSON, CubeManifest


def test_the_list_follows_cube_json_with_provenance_and_coverage(live_server, demo_layers):
    body = httpx.get(f"{live_server}/api/context").json()
    manifest = json.loads((Path(demo_layers["M3_CUBE_DIR"]) / CUBE_JSON).read_text())
    bands = [b["name"] for b in manifest["files"]["covariates.tif"]["bands"]]
    assert [layer["id"] for layer in body["layers"]] == [HILLSHADE, *bands]
    by_id = {layer["id"]: layer for layer in body["layers"]}
    assert by_id["elevation"]["units"] == "m" and by_id["gravity_disturbance"]["units"] == "mGal"
    assert "BSD-3-Clause" in by_id["elevation"]["inputs"][0]["source"]
    assert "EIGEN-6C4" in by_id["gravity_disturbance"]["inputs"][0]["source"]
    assert by_id[HILLSHADE]["inputs"] == by_id["elevation"]["inputs"]
    lo, hi = by_id["elevation"]["rescale"]
    assert lo < 500 < hi  # metres, not normalised values
    assert body["coverage"]["covered_states"] == ["AL", "CA", "ID", "NC", "OR", "UT", "VA"]


def test_a_covariate_added_to_the_cube_appears_by_itself():
    band = {"name": "bouguer_anomaly", "units": "mGal", "description": "Bouguer anomaly",
            "inputs": ["data/covariates/gravity-earth-0.5deg.nc.xz"],
            "normalisation": {"mean": -20.0, "std": 30.0, "min": -200.0, "max": 90.0, "valid_cells": 10,
                              "valid_fraction_conus": 1.0}}
    manifest = CubeManifest.model_validate({"species": ["gold"], "files": {"covariates.tif": {
        "bands": [{**band, "name": "elevation", "units": "m"}, band]}}})
    layers = {layer.id: layer for layer in context_layers(manifest)}
    assert list(layers) == [HILLSHADE, "elevation", "bouguer_anomaly"]
    bouguer = layers["bouguer_anomaly"]
    assert bouguer.band == 2 and bouguer.colormap == "rdbu_r" and bouguer.rescale == (-80.0, 40.0)
    assert "EIGEN-6C4" in (bouguer.inputs[0].source or "")


def test_provenance_rows_read_the_source_and_licence_column(tmp_path):
    (tmp_path / "PROVENANCE.md").write_text(
        "| file | sha256 | what | source, licence | used as |\n| --- | --- | --- | --- | --- |\n"
        "| `a.tif` | `00` | relief | [USGS](https://usgs.gov), public domain | `x` |\n\nafter the table\n")
    assert provenance_rows(tmp_path / "PROVENANCE.md") == {"a.tif": "USGS (https://usgs.gov), public domain"}
    assert provenance_rows(tmp_path / "missing.md") == {}


def _png(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


@pytest.mark.parametrize("layer_id", [HILLSHADE, "elevation", "gravity_disturbance"])
def test_tiles_are_pngs_of_the_layer(live_server, layer_id):
    image = _png(httpx.get(f"{live_server}/tiles/context/{layer_id}/tiles/WebMercatorQuad/6/10/24.png", timeout=60))
    assert image.size == (256, 256)
    tj = httpx.get(f"{live_server}/tiles/context/{layer_id}/WebMercatorQuad/tilejson.json").json()
    west, south, east, north = tj["bounds"]
    assert west < -120 and east > -70 and south < 26 and north > 48


def test_the_hillshade_shades_relief_in_grey(live_server):
    image = _png(httpx.get(f"{live_server}/tiles/context/hillshade/tiles/WebMercatorQuad/7/21/49.png", timeout=60))
    rgba = image.convert("RGBA")
    values = {rgba.getpixel((x, y))[:3] for x in range(0, 256, 16) for y in range(0, 256, 16)}
    assert all(r == g == b for r, g, b in values) and len(values) > 5  # grey levels, not one flat grey


@pytest.mark.parametrize(("path", "status", "words"), [
    ("/tiles/context/bogus/tiles/WebMercatorQuad/6/10/24.png", 404, "known: hillshade, elevation"),
    ("/tiles/context/elevation/tiles/WebMercatorQuad/6/10/24.png?url=file:///etc/passwd", 422, "never for a"),
    ("/tiles/context/hillshade/tiles/WebMercatorQuad/6/10/24.png?algorithm=slope", 422, "its own algorithm"),
    ("/tiles/context/elevation/tiles/WebMercatorQuad/6/99/24.png", 422, "does not exist"),
    ("/tiles/context/elevation/tiles/WebMercatorQuad/6/10/24.png?colormap_name=nope", 422, "colormap"),
])
def test_bad_tile_requests_are_refused_clearly(live_server, path, status, words):
    r = httpx.get(f"{live_server}{path}")
    assert r.status_code == status and words in r.json()["detail"]


def test_the_model_card_is_served_as_text(live_server):
    r = httpx.get(f"{live_server}/api/model-card")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.text.startswith("# Model card")


def test_infill_returns_a_layer_for_each_hidden_species(live_server):
    request = {"bbox": "-120.8,37.8,-120.4,38.2", "hide_species": ["gold", "zinc"], "ensemble": 1}
    r = httpx.post(f"{live_server}/api/infer", json=request, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [layer["species"] for layer in body["layers"]] == ["gold", "zinc"]
    assert body["layer"] == body["layers"][0]
    for layer in body["layers"]:
        tile = httpx.get(layer["tiles"].format(z=9, x=84, y=197), timeout=60)
        assert tile.status_code in (200, 404)
