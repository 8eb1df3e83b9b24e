"""The known-sites layer in the browser: vector tiles, what they cost, popups near the edge, the permalink."""

import math
import re

SITE_TILES = "/tiles/sites/tiles/"
CONUS_Z5 = "/#39.5000,-98.5000,5&species=gold&layer=none&sites=1&clusters=0"

#: Transferred bytes (headers and body) of the site tiles, from the page's resource timing.
TRANSFERRED = """() => performance.getEntriesByType("resource").filter((e) => e.name.includes("/tiles/sites/tiles/"))
  .reduce((n, e) => n + e.transferSize, 0)"""

#: Drawn (non-transparent) pixels of the site canvases inside a screen box.
DRAWN = """([x0, y0, x1, y1]) => {
  let n = 0;
  for (const c of document.querySelectorAll(".leaflet-sites-pane canvas")) {
    const r = c.getBoundingClientRect();
    const s = c.width / r.width;
    const ix0 = Math.max(x0, r.left), ix1 = Math.min(x1, r.right);
    const iy0 = Math.max(y0, r.top), iy1 = Math.min(y1, r.bottom);
    if (ix1 - ix0 < 1 || iy1 - iy0 < 1) continue;
    const d = c.getContext("2d")
      .getImageData((ix0 - r.left) * s, (iy0 - r.top) * s, (ix1 - ix0) * s, (iy1 - iy0) * s).data;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n += 1;
  }
  return n;
}"""

#: The first opaque site pixel (a dot) in a screen box, scanning rows from the top.
FIRST_DOT = """([x0, x1, y0, y1]) => {
  let best = null;
  for (const c of document.querySelectorAll(".leaflet-sites-pane canvas")) {
    const r = c.getBoundingClientRect();
    const s = c.width / r.width;
    const ix0 = Math.ceil(Math.max(x0, r.left)), ix1 = Math.floor(Math.min(x1, r.right));
    const iy0 = Math.ceil(Math.max(y0, r.top)), iy1 = Math.floor(Math.min(y1, r.bottom));
    if (ix1 - ix0 < 1 || iy1 - iy0 < 1) continue;
    const w = Math.round((ix1 - ix0) * s), h = Math.round((iy1 - iy0) * s);
    const d = c.getContext("2d").getImageData(Math.round((ix0 - r.left) * s), Math.round((iy0 - r.top) * s), w, h).data;
    for (let j = 0; j < h && !(best && iy0 + j / s >= best[1]); j += 1) {
      for (let i = 0; i < w; i += 1) {
        if (d[(j * w + i) * 4 + 3] > 200) { best = [ix0 + i / s, iy0 + j / s]; break; }
      }
    }
  }
  return best;
}"""


def _screen(page, lat_lon_zoom, lon, lat):
    """Screen x, y of a lon/lat on a map centred at (lat, lon, zoom) (Web Mercator, 256-pixel tiles)."""
    clat, clon, z = lat_lon_zoom
    box = page.locator("#map").bounding_box()

    def px(lo, la):
        n = 256 * 2**z
        return (lo + 180) / 360 * n, (1 - math.asinh(math.tan(math.radians(la))) / math.pi) / 2 * n

    cx, cy = px(clon, clat)
    x, y = px(lon, lat)
    return box["x"] + box["width"] / 2 + x - cx, box["y"] + box["height"] / 2 + y - cy


def _ok(watch):
    assert watch.errors == []
    assert watch.failed == []
    assert all(s < 400 for s, _ in watch.responses), [r for r in watch.responses if r[0] >= 400]


def test_conus_at_z5_with_every_gold_site_costs_little_and_shows_nevada(page_factory, screenshot):
    page, watch = page_factory(CONUS_Z5)
    page.wait_for_selector(".leaflet-sites-pane canvas.leaflet-tile-loaded", timeout=20_000)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(500)
    tiles = [u for s, u in watch.responses if SITE_TILES in u]
    assert tiles and all("commodity=gold" in u for u in tiles)
    sent = page.evaluate(TRANSFERRED)
    assert 0 < sent <= 2_000_000, f"{sent:,} bytes of site tiles"
    x0, y0 = _screen(page, (39.5, -98.5, 5), -117.5, 41.8)  # central and northern Nevada
    x1, y1 = _screen(page, (39.5, -98.5, 5), -114.2, 38.0)
    assert page.evaluate(DRAWN, [x0, y0, x1, y1]) > 50, "no gold site drawn in Nevada"
    assert re.search(r"^[1-9][\d,]{4,} known sites of Gold", page.inner_text("#sites-summary"))
    screenshot(page, "desktop-sites-conus-z5")
    _ok(watch)


def test_a_pan_at_z7_fetches_only_the_new_tiles(page_factory):
    page, watch = page_factory("/#39.0000,-120.8000,7&species=gold&layer=none&sites=1&clusters=0")
    page.wait_for_selector(".leaflet-sites-pane canvas.leaflet-tile-loaded", timeout=20_000)
    page.wait_for_load_state("networkidle")
    before = page.evaluate(TRANSFERRED)
    box = page.locator("#map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx - 150, cy, steps=5)
    page.mouse.up()
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(500)
    pan = page.evaluate(TRANSFERRED) - before
    assert pan <= 300_000, f"{pan:,} bytes for one pan"
    _ok(watch)


def test_site_popup_near_the_edge_stays_open(page_factory, screenshot):
    page, watch = page_factory("/#39.0000,-120.9000,9&species=gold&layer=none&sites=1&clusters=0")
    page.wait_for_selector(".leaflet-sites-pane canvas.leaflet-tile-loaded", timeout=20_000)
    page.wait_for_load_state("networkidle")
    box = page.locator("#map").bounding_box()
    top = int(box["y"])
    dot = page.evaluate(FIRST_DOT, [int(box["x"] + 60), int(box["x"] + box["width"] - 60), top + 12, top + 40])
    assert dot, "no site near the top edge of the map"
    hash_before = page.evaluate("location.hash")
    page.mouse.click(*dot)
    page.wait_for_selector(".leaflet-popup-content .site", timeout=10_000)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(1500)  # the popup pans the map into view; new tiles load
    assert page.evaluate("location.hash") != hash_before, "the popup did not pan the map"
    assert page.locator(".leaflet-popup").count() == 1, "the popup closed itself"
    text = page.inner_text(".leaflet-popup-content")
    for word in ("Commodities:", "Deposit types:", "State:", "Location:", "Rank / status:", "Source:"):
        assert word in text
    links = page.locator(".leaflet-popup-content a[href^='https://']")
    assert links.count() >= 1 and links.first.get_attribute("rel") == "noopener noreferrer"
    screenshot(page, "desktop-site-popup")
    _ok(watch)


def test_commodity_selector_lists_every_commodity(page_factory, live_server):
    import httpx

    listed = httpx.get(f"{live_server}/api/commodities").json()["commodities"]
    page, watch = page_factory("/#38.5000,-120.5000,7&species=gold&layer=none&clusters=0")
    options = page.locator("#sites-commodity option")
    assert options.count() == len(listed) + 2 > 100
    with page.expect_response(lambda r: SITE_TILES in r.url and "commodity=sand_and_gravel" in r.url,
                              timeout=20_000) as first:
        page.select_option("#sites-commodity", "sand_and_gravel")
    assert first.value.status in (200, 204)
    page.wait_for_function("location.hash.includes('commodity=sand_and_gravel')")
    with page.expect_response(lambda r: SITE_TILES in r.url and "commodity" not in r.url, timeout=20_000):
        page.select_option("#sites-commodity", "all")
    page.wait_for_load_state("networkidle")
    href = page.get_attribute("#export-csv", "href")
    assert href.startswith("/api/sites/export?") and "format=csv" in href and "bbox=" in href
    r = page.request.get(live_server + href)
    assert r.status == 200 and r.headers["content-type"].startswith("text/csv")
    _ok(watch)


def _tile_bounds(url):
    z, x, y = (int(v) for v in url.split(SITE_TILES)[1].split(".pbf")[0].split("/"))
    n = 2**z
    north = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / n))))
    south = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (y + 1) / n))))
    return x / n * 360 - 180, south, (x + 1) / n * 360 - 180, north


def test_site_tiles_stay_inside_the_data_bounds(page_factory, live_server):
    import httpx

    minx, miny, maxx, maxy = httpx.get(f"{live_server}/tiles/sites/tilejson.json",
                                       params={"commodity": "gold"}).json()["bounds"]
    page, watch = page_factory("/#10.0000,-20.0000,5&species=gold&layer=none&clusters=0")  # the Atlantic
    page.wait_for_load_state("networkidle")
    assert not [u for _, u in watch.responses if SITE_TILES in u]
    page, watch = page_factory("/#28.0000,-100.0000,5&species=gold&layer=none&clusters=0")  # Texas and Mexico
    page.wait_for_selector(".leaflet-sites-pane canvas.leaflet-tile-loaded", timeout=20_000)
    page.wait_for_load_state("networkidle")
    tiles = [u for _, u in watch.responses if SITE_TILES in u]
    assert tiles
    for url in tiles:
        west, south, east, north = _tile_bounds(url)
        assert east >= minx and west <= maxx and north >= miny and south <= maxy, url
    _ok(watch)


def test_permalink_with_bad_values_falls_back(page_factory):
    page, watch = page_factory("/#39.0000,-120.0000,7&species=unobtainium&layer=bogus&opacity=500"
                               "&commodity=kryptonite&sites=1&clusters=maybe&coverage=0")
    assert page.input_value("#species") == "gold"
    assert page.is_checked("input[name=layer][value=prospectivity]")
    assert page.input_value("#opacity") == "100"
    assert page.inner_text("#opacity-value") == "100%"
    assert page.input_value("#sites-commodity") == ""
    assert page.is_checked("#show-clusters")
    state = page.evaluate("location.hash")
    assert "layer=prospectivity" in state and "opacity=100" in state and "species=gold" in state
    assert "bogus" not in state and "kryptonite" not in state and "unobtainium" not in state
    page.goto(page.url.split("#")[0] + "#abc,,9&opacity=-20&species=%E0%A4%A&layer=%3Cscript%3E")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.input_value("#opacity") == "0"
    assert page.input_value("#species") == "gold"
    assert page.is_checked("input[name=layer][value=prospectivity]")
    assert page.evaluate("location.hash").startswith("#39.5000,-98.5000,4&")
    _ok(watch)
