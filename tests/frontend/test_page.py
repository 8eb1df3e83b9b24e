"""Browser tests of the map page against a real uvicorn and PostGIS."""

from urllib.parse import parse_qs, urlparse


def _site_requests(watch):
    return [u for s, u in watch.responses if "/tiles/sites/tiles/" in u and s in (200, 204)]


def test_page_loads_without_errors_and_offline(page_factory, screenshot):
    page, watch = page_factory("/#38.5,-120.5,7")
    page.wait_for_selector(".leaflet-sites-pane canvas.leaflet-tile-loaded", timeout=20_000)
    assert watch.errors == []
    assert watch.external == []  # nothing outside 127.0.0.1 was even asked for
    assert _site_requests(watch)
    assert all(s < 400 for s, u in watch.responses), [r for r in watch.responses if r[0] >= 400]
    assert page.locator("path.leaflet-interactive, svg path").count() > 0 or page.locator("canvas").count() > 0
    screenshot(page, "desktop-sites")


def test_switching_species_changes_requests(page_factory):
    page, watch = page_factory("/#38.5,-120.5,7&species=gold")
    before = len(_site_requests(watch))
    page.select_option("#species", "copper")
    page.wait_for_function("location.hash.includes('species=copper')")
    page.wait_for_timeout(500)
    page.wait_for_load_state("networkidle")
    new = _site_requests(watch)[before:]
    assert new, "no site request after switching species"
    assert parse_qs(urlparse(new[-1]).query)["commodity"] == ["copper"]
    assert watch.errors == []


def test_reload_restores_view_from_url(page_factory):
    page, watch = page_factory("/#40.0000,-112.0000,8&species=zinc&layer=none&sites=1&clusters=0")
    assert page.input_value("#species") == "zinc"
    assert page.is_checked("input[name=layer][value=none]")
    assert not page.is_checked("#show-clusters")
    page.evaluate("window.__m3map = true")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.input_value("#species") == "zinc"
    assert "40.0000,-112.0000,8" in page.evaluate("location.hash")


def test_phone_size_is_usable(page_factory, screenshot):
    page, watch = page_factory("/#37,-119,6", width=390, height=844)
    assert page.locator("#panel").is_hidden()
    page.click("#panel-toggle")
    assert page.locator("#species").is_visible()
    screenshot(page, "phone-panel")
    assert watch.errors == []


def test_controls_are_labelled_and_keyboard_reachable(page_factory):
    page, _ = page_factory("/")
    for control in ("#species", "#opacity", "#show-sites", "#box-stats", "#infill", "#ensemble"):
        el = page.locator(control)
        label = el.evaluate("e => (e.labels && e.labels.length) ? e.labels[0].textContent : e.textContent")
        assert label.strip(), f"{control} has no label"
    page.focus("#species")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") in ("INPUT", "BUTTON", "SELECT")


def _tile_responses(watch):
    """Tiles of the model layers (not of the hillshade or a context layer)."""
    return [(s, u) for s, u in watch.responses
            if "/tiles/WebMercatorQuad/" in u and "tilejson" not in u and "/tiles/context/" not in u]


def test_tiles_load_and_follow_the_species(page_factory, screenshot):
    page, watch = page_factory("/#38.5,-120.5,7&species=gold&layer=prospectivity")
    page.wait_for_selector(".leaflet-tile-loaded", timeout=20_000)
    page.wait_for_load_state("networkidle")
    tiles = _tile_responses(watch)
    assert tiles and all(s == 200 for s, _ in tiles), [r for r in watch.responses if "/tiles/" in r[1]][:5]
    assert all("/tiles/gold.prospectivity/" in u for _, u in tiles)
    assert page.locator("#legend .bar").count() == 1
    screenshot(page, "desktop-prospectivity")
    n = len(tiles)
    with page.expect_response(lambda r: "/tiles/zinc.prospectivity/" in r.url and "tilejson" not in r.url,
                              timeout=20_000):
        page.select_option("#species", "zinc")
    page.wait_for_timeout(1500)
    new = _tile_responses(watch)[n:]
    assert new and all(s == 200 for s, _ in new)
    assert all("/tiles/zinc.prospectivity/" in u for _, u in new), "tiles of the old species after the switch"
    with page.expect_response(lambda r: "/tiles/zinc.discrepancy/" in r.url, timeout=20_000) as first:
        page.check("input[name=layer][value=discrepancy]")
    assert first.value.status == 200
    assert watch.errors == []


def test_cluster_popup_lists_overlapping_sites(page_factory, live_server, screenshot):
    import httpx

    body = httpx.get(f"{live_server}/api/clusters").json()
    assert body["features"], "the demo layers flagged no cluster"
    best = max(body["features"], key=lambda f: (f["properties"]["n_sites"], f["properties"]["mean_score"]))
    species = best["properties"]["species"]
    lon, lat = best["properties"]["label_point"]
    page, watch = page_factory(f"/#{lat:.5f},{lon:.5f},11&species={species}&layer=discrepancy&sites=0&clusters=1")
    page.wait_for_selector(".leaflet-clusters-pane path.leaflet-interactive", state="attached", timeout=20_000)
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # the cluster's label point
    popup = page.wait_for_selector(".leaflet-popup-content", timeout=10_000)
    text = popup.inner_text()
    assert f"Flagged {species} cluster" in text and "Known sites" in text
    page.wait_for_timeout(500)  # let the popup finish fading in
    screenshot(page, "desktop-cluster-popup")
    assert watch.errors == []


def _drag_box(page, x0=500, y0=250, x1=700, y1=420):
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2)
    page.mouse.move(x1, y1)
    page.mouse.up()


def test_box_tool_shows_statistics_and_download(page_factory, live_server):
    page, watch = page_factory("/#38.8,-120.8,8&species=gold&sites=0")
    page.click("#box-stats")
    _drag_box(page)
    page.wait_for_selector("#stats table", timeout=20_000)
    assert "gold" in page.inner_text("#stats")
    href = page.get_attribute("#download-tif", "href")
    assert "format=tif" in href
    r = page.request.get(live_server + href)
    assert r.status == 200 and r.body()[:4] in (b"II*\x00", b"MM\x00*")
    assert watch.errors == []


def test_mask_and_infill_draws_a_result(page_factory, screenshot):
    page, watch = page_factory("/#38.8,-120.8,8&species=gold&layer=none&sites=1")
    page.check("#hide-species input[value=gold]")
    page.fill("#ensemble", "1")
    page.click("#infill")
    _drag_box(page, 560, 300, 720, 430)
    page.wait_for_selector("#infill-result table", timeout=60_000)
    page.wait_for_selector(".leaflet-infill-pane img.leaflet-tile-loaded", timeout=20_000)
    assert "Infilled" in page.inner_text("#infill-result")
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(500)
    screenshot(page, "desktop-infill")
    assert watch.errors == []
