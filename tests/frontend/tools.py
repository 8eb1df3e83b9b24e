"""Driving the map page: touch gestures through the DevTools protocol, waiting for tiles, phone contexts."""

from __future__ import annotations

import time

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def map_point(page, fx: float, fy: float) -> tuple[float, float]:
    """The page coordinates of a point of the map at fractions (fx, fy) of its width and height."""
    box = page.locator("#map").bounding_box()
    return box["x"] + box["width"] * fx, box["y"] + box["height"] * fy


def touch_drag(page, start: tuple[float, float], end: tuple[float, float], steps: int = 6) -> None:
    """A one-finger drag (real touch events, so the page sees touch pointer events)."""
    cdp = page.context.new_cdp_session(page)
    (x0, y0), (x1, y1) = start, end
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y0}]})
    for i in range(1, steps + 1):
        point = {"x": x0 + (x1 - x0) * i / steps, "y": y0 + (y1 - y0) * i / steps}
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def mouse_drag(page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A mouse drag with the left button."""
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    page.mouse.move(*end)
    page.mouse.up()


def wait_for_tiles(page, timeout_s: float = 40.0) -> None:
    """Wait until every map tile (images and site canvases) has loaded, then a moment for the fade-in."""
    deadline = time.monotonic() + timeout_s
    page.wait_for_timeout(400)
    while page.locator(".leaflet-tile:not(.leaflet-tile-loaded)").count() and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    page.wait_for_timeout(400)


def open_phone(browser, live_server: str, path: str, watch_factory):
    """A phone-sized touch page (390 x 844) at ``path``, ready, with its watcher."""
    ctx = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    page = ctx.new_page()
    watch = watch_factory(page, live_server)
    page.goto(f"{live_server}{path}")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    return ctx, page, watch


def drawn_boxes(page) -> int:
    """Rectangles drawn by the box tool on the map (dashed, in the overlay pane)."""
    return page.locator(".leaflet-overlay-pane path[stroke-dasharray='6 4']").count()
