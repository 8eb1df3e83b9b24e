"""The box tools of the map page on desktop (mouse, keyboard) and phone (touch) sizes, and the infill overlay."""

from __future__ import annotations

import pytest

from .conftest import PageWatch
from .tools import drawn_boxes, map_point, mouse_drag, open_phone, touch_drag, wait_for_tiles

MOTHER_LODE = "/#38.0000,-120.6000,9&species=copper&layer=prospectivity&sites=0&clusters=0"


def test_box_statistics_by_mouse_drag_then_two_clicks_leave_one_box(page_factory, screenshot):
    page, watch = page_factory(MOTHER_LODE)
    page.click("#box-stats")
    assert page.is_visible("#draw-hint")
    mouse_drag(page, map_point(page, 0.35, 0.35), map_point(page, 0.6, 0.65))
    page.wait_for_selector("#stats table", timeout=30_000)
    assert page.evaluate("getSelection().toString()") == ""  # the drag selected no page text
    first = page.get_attribute("#download-tif", "href")
    page.click("#box-stats")
    page.mouse.click(*map_point(page, 0.3, 0.3))  # click two corners
    page.mouse.move(*map_point(page, 0.5, 0.5))
    page.mouse.click(*map_point(page, 0.7, 0.6))
    for _ in range(120):  # the statistics of the second box replace the first's
        if page.locator("#download-tif").count() and page.get_attribute("#download-tif", "href") != first:
            break
        page.wait_for_timeout(250)
    assert page.get_attribute("#download-tif", "href") != first
    assert drawn_boxes(page) == 1, "the earlier box or a stray rectangle is still on the map"
    assert page.get_attribute("#box-stats", "aria-pressed") == "false"
    assert page.locator(".leaflet-popup").count() == 0  # the ending click identified nothing
    screenshot(page, "desktop-box-two-clicks")
    assert watch.errors == [] and watch.failed == []


def test_box_statistics_by_keyboard_and_escape_cancels(page_factory):
    page, watch = page_factory(MOTHER_LODE)
    page.focus("#box-stats")
    page.keyboard.press("Enter")  # arms the tool; the map takes the keys
    assert page.get_attribute("#box-stats", "aria-pressed") == "true"
    for _ in range(3):
        page.keyboard.press("Shift+ArrowLeft")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    assert drawn_boxes(page) == 0 and page.get_attribute("#box-stats", "aria-pressed") == "false"
    page.click("#box-stats")
    for key in ["Shift+ArrowLeft", "Shift+ArrowUp", "Enter", "Shift+ArrowRight", "Shift+ArrowRight",
                "Shift+ArrowRight", "Shift+ArrowDown", "Shift+ArrowDown", "Enter"]:
        page.keyboard.press(key)
    page.wait_for_selector("#stats table", timeout=30_000)
    assert drawn_boxes(page) == 1
    assert page.locator(".box-cursor").count() == 0  # the keyboard cross goes with the drawing
    assert watch.errors == []


@pytest.mark.parametrize("gesture", ["drag", "taps"])
def test_box_statistics_on_a_phone_by_touch(browser, live_server, screenshot, gesture):
    ctx, page, watch = open_phone(browser, live_server, MOTHER_LODE, PageWatch)
    try:
        page.tap("#panel-toggle")
        assert page.is_visible("#box-stats")
        page.tap("#box-stats")
        assert page.locator("#panel").is_hidden(), "the panel stays over the map with a tool armed"
        a, b = map_point(page, 0.25, 0.3), map_point(page, 0.75, 0.6)
        if gesture == "drag":
            touch_drag(page, a, b)
        else:
            page.touchscreen.tap(*a)
            page.wait_for_timeout(300)
            page.touchscreen.tap(*b)
        page.wait_for_selector("#stats table", state="attached", timeout=30_000)
        assert drawn_boxes(page) == 1
        assert page.evaluate("getSelection().toString()") == ""
        if gesture == "drag":
            screenshot(page, "phone-box-touch")
        assert watch.errors == [] and watch.failed == []
    finally:
        ctx.close()


@pytest.mark.parametrize("value", ["0", "17", "2.5", ""])
def test_infill_checks_the_ensemble_size_before_drawing(page_factory, value):
    page, watch = page_factory(MOTHER_LODE)
    page.fill("#ensemble", value)
    page.click("#infill")
    assert page.get_attribute("#infill", "aria-pressed") != "true", "the box tool was armed with a bad size"
    message = page.inner_text("#ensemble-error")
    assert "whole number from 1 to 16" in message
    assert page.get_attribute("#ensemble", "aria-invalid") == "true"
    assert not [u for _, u in watch.responses if "/api/infer" in u]


def _infill_requests(watch, start: int = 0) -> list[str]:
    return [u for _, u in watch.responses[start:] if "/tiles/infer-" in u and "/tiles/WebMercatorQuad/" in u]


def _site_commodities(watch, start: int = 0) -> set[str]:
    from urllib.parse import parse_qs, urlparse

    return {parse_qs(urlparse(u).query).get("commodity", [""])[0] for _, u in watch.responses[start:]
            if "/tiles/sites/tiles/" in u}


def test_infill_shows_the_hidden_sites_clips_follows_opacity_and_switches(page_factory, screenshot):
    page, watch = page_factory(MOTHER_LODE)
    page.check("#hide-species input[value=gold]")
    page.check("#hide-species input[value=silver]")
    page.fill("#ensemble", "1")
    page.click("#infill")
    mouse_drag(page, map_point(page, 0.4, 0.35), map_point(page, 0.62, 0.65))
    page.wait_for_selector("#infill-result table", timeout=120_000)
    page.wait_for_selector(".leaflet-infill-pane img.leaflet-tile-loaded", timeout=30_000)
    page.wait_for_selector(".leaflet-infill-sites-pane canvas.leaflet-tile-loaded", timeout=30_000)
    assert "gold" in _site_commodities(watch) and "copper" not in _site_commodities(watch)  # hidden, not selected
    clip = page.eval_on_selector(".leaflet-infill-pane", "e => e.style.clipPath")
    assert clip.startswith("polygon("), "the infill overlay is not clipped to the box"
    assert page.eval_on_selector(".leaflet-infill-sites-pane", "e => e.style.clipPath") == clip
    page.fill("#opacity", "30")
    page.dispatch_event("#opacity", "input")
    opacity = page.eval_on_selector(".leaflet-infill-pane .leaflet-layer", "e => e.style.opacity")
    assert float(opacity) == pytest.approx(0.3)
    wait_for_tiles(page)
    screenshot(page, "desktop-infill-gold")
    before = len(watch.responses)
    page.check("input[name=infill-species][value='1']")
    page.wait_for_selector("#infill-species:text-is('silver')")
    page.wait_for_selector(".leaflet-infill-pane img.leaflet-tile-loaded", timeout=30_000)
    wait_for_tiles(page)
    switched = _infill_requests(watch, before)
    assert switched and all(".silver/tiles/" in u for u in switched)
    assert "silver" in _site_commodities(watch, before)
    screenshot(page, "desktop-infill-silver")
    page.click("#clear-infill")
    assert page.locator(".leaflet-infill-pane img").count() == 0 and drawn_boxes(page) == 0
    assert watch.errors == [] and watch.failed == []
    assert all(s < 400 for s, _ in watch.responses), [r for r in watch.responses if r[0] >= 400][:5]


def test_infill_on_a_phone_by_touch(browser, live_server, screenshot):
    ctx, page, watch = open_phone(browser, live_server, MOTHER_LODE, PageWatch)
    try:
        page.tap("#panel-toggle")
        page.check("#hide-species input[value=gold]")
        page.fill("#ensemble", "1")
        page.tap("#infill")
        assert page.locator("#panel").is_hidden()
        touch_drag(page, map_point(page, 0.3, 0.35), map_point(page, 0.7, 0.55))
        page.wait_for_selector("#infill-result table", state="attached", timeout=120_000)
        page.wait_for_selector(".leaflet-infill-pane img.leaflet-tile-loaded", timeout=30_000)
        page.wait_for_selector(".leaflet-infill-sites-pane canvas.leaflet-tile-loaded", timeout=30_000)
        assert "gold" in _site_commodities(watch)
        wait_for_tiles(page)
        screenshot(page, "phone-infill-touch")
        assert watch.errors == [] and watch.failed == []
    finally:
        ctx.close()


def test_box_statistics_by_touch_at_desktop_size(browser, live_server):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, has_touch=True)
    try:
        page = ctx.new_page()
        watch = PageWatch(page, live_server)
        page.goto(f"{live_server}{MOTHER_LODE}")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        page.tap("#box-stats")
        assert page.locator("#panel").is_visible()  # a wide screen keeps the panel open
        touch_drag(page, map_point(page, 0.4, 0.4), map_point(page, 0.6, 0.6))
        page.wait_for_selector("#stats table", timeout=30_000)
        assert drawn_boxes(page) == 1 and watch.errors == []
    finally:
        ctx.close()


def test_identify_by_tap_on_a_phone(browser, live_server, screenshot):
    ctx, page, watch = open_phone(browser, live_server, MOTHER_LODE, PageWatch)
    try:
        with page.expect_response(lambda r: "/api/identify?" in r.url) as answer:
            page.touchscreen.tap(*map_point(page, 0.5, 0.5))
        assert answer.value.status == 200
        popup = page.wait_for_selector(".identify-popup table", timeout=10_000)
        assert "Prospectivity" in popup.inner_text() and "Survey coverage" in popup.inner_text()
        page.wait_for_timeout(500)
        screenshot(page, "phone-identify-tap")
        assert watch.errors == [] and watch.failed == []
    finally:
        ctx.close()
