"""Browser tests of the identify popup, the coordinate readout and copy link, the legend's stretch and reading aid."""

import re

import httpx
import pytest

VIEW = "/#38.8000,-120.8000,8&species=gold&layer=prospectivity&sites=0&clusters=0"


def _numbers(text):
    return [float(v) for v in re.findall(r"-?\d+\.\d+", text)]


def test_click_on_a_cell_identifies_it_and_the_readout_follows(page_factory, live_server, screenshot):
    page, watch = page_factory(VIEW)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    box = page.locator("#map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.wait_for_selector("#coords[data-source=pointer]")
    lon, lat = _numbers(page.inner_text("#coords"))
    assert abs(lon + 120.8) < 0.02 and abs(lat - 38.8) < 0.02
    with page.expect_response(lambda r: "/api/identify?" in r.url) as answer:
        page.mouse.click(cx, cy)
    assert answer.value.status == 200
    body = answer.value.json()
    popup = page.wait_for_selector(".identify-popup table", timeout=10_000)
    text = popup.inner_text()
    for words in ("Prospectivity", "Uncertainty", "Evaluations", "Discrepancy", "Survey coverage",
                  "Nearest known Gold site"):
        assert words in text, words
    assert f"{body['prospectivity']:.3f}" in text and "inside" in text  # California is surveyed
    # the served model carries a calibration: the popup and "How to read this map" say the values are probabilities
    assert "calibrated probability" in page.inner_text(".identify-popup")
    assert "not calibrated" not in page.inner_text(".identify-popup")
    assert "are calibrated probabilities (per species, a beta calibration" in page.text_content("#calibration-note")
    if body["nearest_site"]:
        assert "km away" in text
    page.wait_for_timeout(500)  # let the popup finish fading in
    screenshot(page, "desktop-identify-popup")
    page.click("#copy-link")
    page.wait_for_selector("#copy-link:has-text('Copied')")  # a polled predicate would need eval, which the CSP forbids
    link = page.evaluate("navigator.clipboard.readText()")
    assert link == page.evaluate("location.href") and "species=gold" in link
    assert watch.errors == []


def test_touch_devices_read_out_the_map_centre(browser, live_server):
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    try:
        page = ctx.new_page()
        page.goto(f"{live_server}{VIEW}")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        assert page.get_attribute("#coords", "data-source") == "centre"
        lon, lat = _numbers(page.inner_text("#coords"))
        assert abs(lon + 120.8) < 1e-3 and abs(lat - 38.8) < 1e-3
        assert page.locator("#copy-link").is_visible()
    finally:
        ctx.close()


def test_legend_states_the_percentile_stretch_and_the_reading_aid_opens(page_factory, live_server, screenshot):
    stats = httpx.get(f"{live_server}/tiles/gold.prospectivity/statistics", params=[("p", 2), ("p", 98)]).json()
    p2, p98 = stats["b1"]["percentile_2"], stats["b1"]["percentile_98"]
    page, watch = page_factory(VIEW)
    page.wait_for_selector("#legend .stretch")
    legend = page.inner_text("#legend")
    assert "2nd to the 98th percentile" in legend
    lo, hi = (float(v) for v in page.inner_text("#legend .stretch").split(".."))
    assert lo == pytest.approx(p2, rel=0.01) and hi == pytest.approx(p98, rel=0.01)  # three significant digits
    page.wait_for_selector(".leaflet-model-pane img.leaflet-tile-loaded", timeout=20_000)
    tiles = [u for s, u in watch.responses if "/tiles/gold.prospectivity/tiles/" in u]
    assert tiles and all("rescale=" in u and "rescale=0%2C1" not in u and "rescale=0,1" not in u for u in tiles)
    assert page.inner_text("label[for=species]").strip() == "Commodity"
    symbols = page.inner_text("#symbols")
    assert "Known sites" in symbols and "Flagged cluster" in symbols and "Survey coverage" in symbols
    assert page.locator("#how-to-read p").first.is_hidden()
    page.click("#how-to-read summary")
    assert page.get_attribute("#how-to-read", "open") is not None
    aid = page.inner_text("#how-to-read")
    for words in ("not the chance of an economic deposit", "a lead to check, not a discovery", "unknown, not barren",
                  "Alabama, California, Idaho, North Carolina, Oregon, Utah and Virginia", "1-mile cells"):
        assert words in aid, words
    page.locator("#how-to-read").scroll_into_view_if_needed()
    screenshot(page, "desktop-legend-how-to-read")
    assert watch.errors == []
