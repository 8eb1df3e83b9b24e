"""A scripted tour of the map page at desktop and phone sizes, and the context layers with their provenance.

The tour (z4 CONUS, the West at z5, Nevada at z8, the Mother Lode at z10, an infill) must meet no console error
and no failed request, and saves a screenshot of each state.
"""

from __future__ import annotations

import httpx
import pytest

from .conftest import PageWatch
from .tools import DESKTOP, map_point, mouse_drag, open_phone, touch_drag, wait_for_tiles

STOPS = [
    ("z4-conus", "39.5000,-98.5000,4"),
    ("z5-west", "39.0000,-116.0000,5"),
    ("z8-nevada", "39.3000,-116.8000,8"),
    ("z10-mother-lode", "38.0000,-120.6000,10"),
]
OPTIONS = "&species=gold&layer=prospectivity&sites=1&clusters=1"


def _tour(page, watch, screenshot, size: str, touch: bool) -> None:
    """Visit every stop through the URL hash (as a pasted permalink), then infill at the last one."""
    for name, view in STOPS:
        page.evaluate("h => { location.hash = h; }", f"#{view}{OPTIONS}")
        page.wait_for_selector(f"#coords:has-text('lat {view.split(',')[0][:5]}')", timeout=20_000)
        wait_for_tiles(page)
        screenshot(page, f"tour-{size}-{name}")
    if touch:
        page.tap("#panel-toggle")
    page.check("#hide-species input[value=gold]")
    page.fill("#ensemble", "1")
    (page.tap if touch else page.click)("#infill")
    a, b = map_point(page, 0.3, 0.35), map_point(page, 0.7, 0.6)
    (touch_drag if touch else mouse_drag)(page, a, b)
    page.wait_for_selector("#infill-result table", state="attached", timeout=120_000)
    page.wait_for_selector(".leaflet-infill-pane img.leaflet-tile-loaded", timeout=30_000)
    wait_for_tiles(page)
    page.wait_for_timeout(800)
    screenshot(page, f"tour-{size}-infill")


def _assert_clean(watch) -> None:
    assert watch.errors == [], watch.errors[:5]
    assert watch.failed == [], watch.failed[:5]
    assert watch.external == []
    assert all(s < 400 for s, _ in watch.responses), [r for r in watch.responses if r[0] >= 400][:5]


def test_tour_on_desktop_without_errors(page_factory, screenshot):
    page, watch = page_factory(f"/#{STOPS[0][1]}{OPTIONS}", **DESKTOP)
    _tour(page, watch, screenshot, "desktop", touch=False)
    hillshade = [u for s, u in watch.responses if "/tiles/context/hillshade/tiles/" in u]
    assert hillshade, "the hillshade base layer is on by default"
    assert page.locator(".leaflet-hatch-pane path.hatch").count() > 0, "no hatching outside survey coverage"
    _assert_clean(watch)


def test_tour_on_a_phone_by_touch_without_errors(browser, live_server, screenshot):
    ctx, page, watch = open_phone(browser, live_server, f"/#{STOPS[0][1]}{OPTIONS}", PageWatch)
    try:
        _tour(page, watch, screenshot, "phone", touch=True)
        _assert_clean(watch)
    finally:
        ctx.close()


def test_legend_hatching_layer_metadata_and_context_provenance(page_factory, live_server, screenshot):
    context = httpx.get(f"{live_server}/api/context").json()
    covariates = [layer for layer in context["layers"] if layer["kind"] == "covariate"]
    page, watch = page_factory("/#39.0000,-117.0000,6&species=gold&layer=none&context=gravity_disturbance")
    legend = page.inner_text("#hatch-legend")
    assert "Hatched" in legend and "7 states (AL, CA, ID, NC, OR, UT, VA)" in legend
    assert "prediction from national records only" in legend
    assert page.is_checked("#show-hatch") and page.is_checked("#show-hillshade")
    options = page.eval_on_selector_all("#context-layer option", "os => os.map(o => o.value)")
    assert options == ["", *[c["id"] for c in covariates]], "the context layers are not those of cube.json"
    page.wait_for_selector("#context-legend .provenance")
    text = page.inner_text("#context-legend")
    assert "Gravity disturbance" in text and "mGal" in text and "BSD-3-Clause" in text
    assert "EIGEN-6C4" in text
    meta = page.inner_text("#layer-meta")
    layers = httpx.get(f"{live_server}/api/layers").json()
    assert layers["model"]["name"] in meta and f"{layers['ensemble']['evaluations']} evaluations" in meta
    href = page.get_attribute("#model-card", "href")
    card = httpx.get(f"{live_server}{href}")
    assert card.status_code == 200 and "Model card" in card.text
    wait_for_tiles(page)
    screenshot(page, "desktop-context-gravity")
    assert [u for s, u in watch.responses if "/tiles/context/gravity_disturbance/tiles/" in u and s == 200]
    page.uncheck("#show-hatch")
    assert page.locator(".leaflet-hatch-pane path").count() == 0
    assert "hatch=0" in page.evaluate("location.hash")
    assert watch.errors == []


@pytest.mark.parametrize("bad", ["context=../../etc/passwd", "context=bogus",
                                 "hillshade=2&hatch=yes&context=HILLSHADE"])
def test_permalink_with_bad_context_values_falls_back(page_factory, bad):
    page, watch = page_factory(f"/#39.0000,-117.0000,6&species=gold&{bad}")
    state = page.evaluate("location.hash")
    assert "context=" not in state and page.input_value("#context-layer") == ""
    assert "hillshade=1" in state and "hatch=1" in state
    assert not [u for _, u in watch.responses if "passwd" in u or "bogus" in u]
    assert watch.errors == []
