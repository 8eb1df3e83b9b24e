"""Site vector tiles against the GeoJSON sites endpoint, per request and per map view, through a real uvicorn.

Usage: .venv/bin/python bench/site_tiles.py [--runs 5] [--out results.json]

Serves the app (one worker) on the configured database (M3_DATABASE_URL or the local cluster's ``m3``, only
read) and, for each view of a 1280 x 800 map, requests what the page asks for, sequentially on one keep-alive
connection, without caches (no If-None-Match; the server keeps no site tiles):

- vector tiles: every tile of the view (``/tiles/sites/tiles/{z}/{x}/{y}.pbf?commodity=gold``);
- GeoJSON, as the page loaded sites before the tiles: ``/api/sites?bbox=<view>&species=gold&limit=5000``
  pages until 20,000 features (its cut-off) or the last page.

Reports per view the median over runs of the p50 request time, the whole view's time and its bytes, and for
a pan of 150 pixels south at z7 the bytes of the new tiles against a new GeoJSON load of the moved view.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sites_query import serve  # noqa: E402

WIDTH, HEIGHT = 1280, 800
VIEWS = {
    "z5 CONUS, gold": (39.5, -98.5, 5),
    "z7 Sierra foothills, gold": (39.0, -120.8, 7),
}
PAN = ("z7 pan 150 px south along the gold belt, gold", (39.0, -120.8, 7), 150)
GEOJSON_CUTOFF = 20_000


def _pixel(lat: float, lon: float, z: int) -> tuple[float, float]:
    n = 256 * 2**z
    return (lon + 180) / 360 * n, (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n


def _lonlat(px: float, py: float, z: int) -> tuple[float, float]:
    n = 256 * 2**z
    return px / n * 360 - 180, math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * py / n))))


def view_tiles(lat: float, lon: float, z: int, dy: float = 0) -> set[tuple[int, int, int]]:
    """The tiles of a WIDTH x HEIGHT view centred at (lat, lon), moved dy pixels south."""
    cx, cy = _pixel(lat, lon, z)
    cy += dy
    x0, x1 = int((cx - WIDTH / 2) // 256), int((cx + WIDTH / 2) // 256)
    y0, y1 = int((cy - HEIGHT / 2) // 256), int((cy + HEIGHT / 2) // 256)
    return {(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)}


def view_bbox(lat: float, lon: float, z: int, dy: float = 0) -> str:
    cx, cy = _pixel(lat, lon, z)
    cy += dy
    w, s = _lonlat(cx - WIDTH / 2, cy + HEIGHT / 2, z)
    e, n = _lonlat(cx + WIDTH / 2, cy - HEIGHT / 2, z)
    return f"{w:.4f},{s:.4f},{e:.4f},{n:.4f}"


def _get(client: httpx.Client, url: str, params: dict | None = None) -> tuple[float, int, httpx.Response]:
    t0 = time.perf_counter()
    r = client.get(url, params=params)
    ms = (time.perf_counter() - t0) * 1000
    if r.status_code not in (200, 204):
        raise RuntimeError(f"{url}: HTTP {r.status_code} {r.text[:200]}")
    return ms, len(r.content), r


def tiles_view(client: httpx.Client, tiles: set[tuple[int, int, int]]) -> dict[str, float]:
    """Request every tile: p50 per tile, whole view time and bytes."""
    times, size = [], 0
    t0 = time.perf_counter()
    for z, x, y in sorted(tiles):
        ms, n, _ = _get(client, f"/tiles/sites/tiles/{z}/{x}/{y}.pbf", {"commodity": "gold"})
        times.append(ms)
        size += n
    return {"p50_ms": statistics.median(times), "view_ms": (time.perf_counter() - t0) * 1000, "bytes": size,
            "requests": len(times)}


def geojson_view(client: httpx.Client, bbox: str) -> dict[str, float]:
    """Page through /api/sites as the page did: p50 per page, whole view time, bytes and features."""
    times, size, features, cursor = [], 0, 0, None
    t0 = time.perf_counter()
    while True:
        params = {"bbox": bbox, "species": "gold", "limit": 5000, **({"cursor": cursor} if cursor else {})}
        ms, n, r = _get(client, "/api/sites", params)
        times.append(ms)
        size += n
        body = r.json()
        features += body["number_returned"]
        cursor = body["next_cursor"]
        if not cursor or features >= GEOJSON_CUTOFF:
            break
    return {"p50_ms": statistics.median(times), "view_ms": (time.perf_counter() - t0) * 1000, "bytes": size,
            "requests": len(times), "features": features}


def _cpu() -> str:
    """The CPU model (Linux), else the machine type."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args()
    url = os.environ.get("M3_DATABASE_URL")
    if not url:
        from backend.settings import Settings

        url = Settings().resolved_database_url()
    proc, base = serve(url)
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            for label, (lat, lon, z) in VIEWS.items():
                tiles, bbox = view_tiles(lat, lon, z), view_bbox(lat, lon, z)
                tiles_view(client, tiles)  # warm the database buffers
                geojson_view(client, bbox)
                results[label] = {
                    "vector tiles": _median([tiles_view(client, tiles) for _ in range(args.runs)]),
                    "GeoJSON /api/sites": _median([geojson_view(client, bbox) for _ in range(args.runs)]),
                }
            label, (lat, lon, z), dy = PAN
            new = view_tiles(lat, lon, z, dy) - view_tiles(lat, lon, z)
            results[label] = {
                "vector tiles": _median([tiles_view(client, new) for _ in range(args.runs)]),
                "GeoJSON /api/sites": _median([geojson_view(client, view_bbox(lat, lon, z, dy))
                                               for _ in range(args.runs)]),
            }
    finally:
        proc.terminate()
        proc.wait()
    meta = {"machine": f"{_cpu()}, {os.cpu_count()} cores", "load_average": os.getloadavg(),
            "runs": args.runs, "python": platform.python_version(), "view": f"{WIDTH} x {HEIGHT}"}
    print(f"\n{meta}\n")
    print("| view | source | requests | p50 per request (ms) | whole view (ms) | bytes |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for label, by_source in results.items():
        for source, v in by_source.items():
            extra = f" ({int(v['features']):,} features)" if "features" in v else ""
            print(f"| {label} | {source} | {int(v['requests'])} | {v['p50_ms']} | {v['view_ms']} | "
                  f"{int(v['bytes']):,}{extra} |")
    if args.out:
        args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
