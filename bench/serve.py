"""Serving benchmarks: CONUS inference, the ensemble, tiles through uvicorn, on-request infill.

Usage: .venv/bin/python bench/serve.py [--model runs/demo] [--masks 8] [--full-ensemble] [--tiles-per-zoom 24]

Needs the cube (`m3 cube build --out cube`) and the local cluster (`m3 db start`). Uses (creating once) the
database ``m3_bench_real`` of bench/sites_query.py, so clusters meet the real sites. Steps:

1. one whole-map (CONUS) evaluation of the model, twice (the second is reported; the first warms up);
2. ``m3 infer``'s pipeline with E mask rounds (every cell hidden E times; the demo's 8, ``--full-ensemble``:
   the paper's 50), which also publishes the layers the tile benchmark reads; the ensemble time is reported
   per evaluation too;
3. tiles of ``zinc.prospectivity`` at zooms 4-9 over CONUS through uvicorn with 4 concurrent clients:
   first pass (uncached) and second pass (cached), and plain TiTiler (``?url=``) on the same COG;
4. ``POST /api/infer`` on a 200 x 200-cell box in the Sierra Nevada foothills, hiding zinc.

Prints a Markdown table. With ``--model tiny`` a seeded 1x1-convolution model stands in (labelled so).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from backend.db.engine import normalise_url  # noqa: E402
from backend.settings import Settings  # noqa: E402

log = logging.getLogger("bench.serve")
CONUS_LONLAT = (-124.8, 24.5, -66.9, 49.4)
QUERY = "colormap_name=viridis&rescale=0,1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def tile_urls(per_zoom: int, seed: int = 0) -> dict[int, list[str]]:
    """Seeded sample of WebMercator tiles over CONUS for zooms 4-9, as 'z/x/y' strings."""
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    rng = np.random.default_rng(seed)
    out = {}
    for z in range(4, 10):
        tiles = [f"{t.z}/{t.x}/{t.y}" for t in tms.tiles(*CONUS_LONLAT, zooms=[z])]
        pick = rng.choice(len(tiles), size=min(per_zoom, len(tiles)), replace=False)
        out[z] = [tiles[i] for i in sorted(pick)]
    return out


def run_pass(base: str, paths: list[str], clients: int = 4, hits: list[bool] | None = None) -> list[float]:
    """GET every path with ``clients`` concurrent keep-alive clients; latencies in ms of the 200s.

    ``hits`` collects, per 200, whether the tile came from the server's cache (``x-tile-cache: hit``).
    """
    chunks = [paths[i::clients] for i in range(clients)]

    def worker(chunk: list[str]) -> list[float]:
        out = []
        with httpx.Client(base_url=base, timeout=60) as client:
            for p in chunk:
                t0 = time.perf_counter()
                r = client.get(p)
                dt = (time.perf_counter() - t0) * 1000
                if r.status_code == 200:
                    out.append(dt)
                    if hits is not None:
                        hits.append(r.headers.get("x-tile-cache") == "hit")
                elif r.status_code >= 500:
                    raise RuntimeError(f"{p}: {r.status_code} {r.text[:200]}")
        return out

    with ThreadPoolExecutor(clients) as pool:
        return [x for part in pool.map(worker, chunks) for x in part]


def box_for_cells(grid, center: tuple[float, float], side: int) -> str:
    """The largest lon/lat box around ``center`` whose grid window is at most ``side`` x ``side`` cells."""
    lo, hi = 0.01, 5.0
    for _ in range(40):
        half = (lo + hi) / 2
        win = grid.window_for_bbox((center[0] - half * 1.3, center[1] - half, center[0] + half * 1.3, center[1] + half))
        if win.width <= side and win.height <= side:
            lo = half
        else:
            hi = half
    return f"{center[0] - lo * 1.3},{center[1] - lo},{center[0] + lo * 1.3},{center[1] + lo}"


def start(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    out = log_path.open("wb")
    return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "runs" / "demo"), help="model folder, or 'tiny'")
    parser.add_argument("--cube", default=str(ROOT / "cube"))
    parser.add_argument("--masks", type=int, default=8, help="E, mask rounds of the measured ensemble")
    parser.add_argument("--full-ensemble", action="store_true", help="E = 50, the paper's setting (use with a GPU)")
    parser.add_argument("--tiles-per-zoom", type=int, default=24)
    parser.add_argument("--infill-runs", type=int, default=10)
    parser.add_argument("--conus-runs", type=int, default=5, help="timed CONUS evaluations (after one warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all)")
    parser.add_argument("--workers", type=int, default=2,
                        help="uvicorn workers of both tile servers (2, as docker-compose.yml deploys the API)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    import sqlalchemy as sa
    from sites_query import prepare  # type: ignore[import-not-found]

    from backend.inference.contract import load_model_card
    from backend.inference.cube_inputs import CubeSource
    from backend.inference.engine import InferenceEngine
    from backend.inference.jobs import settings_environment
    from backend.inference.masks import draw_round, training_masking
    from backend.inference.reinference import run_reinference
    from backend.inference.runner import MapEvaluator
    from backend.layers.catalog import load_current

    work = Path(tempfile.mkdtemp(prefix="m3-bench-serve-"))
    cube_dir = Path(args.cube)
    model_dir = Path(args.model)
    label = model_dir.name
    if args.model == "tiny":
        from tests.serve.synthetic import write_tiny_model

        src = CubeSource.open(cube_dir)
        model_dir = write_tiny_model(work / "tiny", species=src.species, covariates=src.covariate_names)
        label = "tiny 1x1-conv stand-in (not the demo model)"
    server = make_url(normalise_url(Settings().resolved_database_url()))
    db_url = prepare(server, "m3_bench_real", jitter=False)
    masks = 50 if args.full_ensemble else args.masks
    settings = Settings(database_url=db_url, model_dir=model_dir, cube_dir=cube_dir, layers_dir=work / "layers",
                        state_dir=work / "state", ensemble_masks=masks,
                        ort_intra_threads=args.threads, admin_token="b" * 32, development=True,
                        log_level="WARNING")
    rows: list[tuple[str, str, str]] = []

    # 1. one CONUS evaluation
    engine = InferenceEngine(load_model_card(model_dir), settings.ort_providers, args.threads, 1)
    cube = CubeSource.open(cube_dir)
    arrays = cube.read()
    evaluate = MapEvaluator(engine, arrays, settings.window_size, settings.window_overlap, settings.window_batch,
                            needed=arrays.conus, band_rows=settings.window_band_rows, margin=settings.window_margin)
    region = draw_round((0,), arrays.shape, training_masking(engine.card)).region(0)
    mask = np.broadcast_to(region, (len(engine.card.species), *arrays.shape))
    times = []
    for _ in range(args.conus_runs + 1):
        t0 = time.perf_counter()
        evaluate(mask)
        times.append(time.perf_counter() - t0)
    runs = times[1:]
    rows.append((f"CONUS single evaluation ({arrays.shape[0]} x {arrays.shape[1]} cells, {engine.provider}), "
                 f"median of {len(runs)}",
                 f"{float(np.median(runs)):.2f} s (min {min(runs):.2f}, max {max(runs):.2f}; "
                 f"first, cold: {times[0]:.2f} s)",
                 "<= 10 s (CPU, demo model)"))

    # 2. ensemble through the m3 infer pipeline (publishes the layers)
    db = sa.create_engine(db_url)
    t0 = time.perf_counter()
    version = run_reinference(settings, db, model=engine)
    total = time.perf_counter() - t0
    current = load_current(db, settings.layers_dir)
    assert current is not None and current.id == version
    ens = current.ensemble
    per_eval = ens["seconds"] / ens["evaluations"]
    rows.append((f"ensemble of E = {masks} mask rounds ({ens['evaluations']} evaluations, {ens['provider']})",
                 f"{ens['seconds']:.1f} s ({per_eval:.2f} s/eval; the paper's 100 ~ {100 * per_eval:.0f} s)",
                 ""))
    rows.append(("whole m3 infer pipeline (ensemble + 40 COGs + clusters + publish)", f"{total:.1f} s", ""))
    with db.connect() as c:
        n_clusters = c.execute(sa.text("SELECT count(*) FROM clusters WHERE layer_version=:v"), {"v": version}
                               ).scalar_one()
    rows.append(("flagged clusters stored", str(n_clusters), ""))
    db.dispose()
    del arrays, evaluate

    # 3. tiles through uvicorn, ours and plain TiTiler
    ours_port, plain_port = free_port(), free_port()
    env = settings_environment(settings)
    env["M3_ORT_INTRA_THREADS"] = "1"
    ours = start([sys.executable, "-m", "uvicorn", "backend.api.app:create_app", "--factory", "--port",
                  str(ours_port), "--log-level", "warning", "--workers", str(args.workers)], env, work / "ours.log")
    plain = start([sys.executable, "-m", "uvicorn", "plain_titiler:app", "--app-dir", str(ROOT / "bench"),
                   "--port", str(plain_port), "--log-level", "warning", "--workers", str(args.workers)], {},
                  work / "plain.log")
    try:
        ours_base, plain_base = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{plain_port}"
        wait_up(ours_base + "/healthz")
        wait_up(plain_base + "/docs")
        cog = current.path("zinc.prospectivity")
        tiles = tile_urls(args.tiles_per_zoom)
        all_ours = [f"/tiles/zinc.prospectivity/tiles/WebMercatorQuad/{t}.png?{QUERY}" for z in tiles
                    for t in tiles[z]]
        all_plain = [f"/cog/tiles/WebMercatorQuad/{t}.png?url={cog}&{QUERY}" for z in tiles for t in tiles[z]]
        warm = tile_urls(args.tiles_per_zoom, seed=1)  # other tiles: warms GDAL and the OS cache in both
        warm = {z: [t for t in warm[z] if t not in tiles[z]] for z in warm}
        run_pass(plain_base, [f"/cog/tiles/WebMercatorQuad/{t}.png?url={cog}&{QUERY}" for z in warm for t in warm[z]])
        run_pass(ours_base, [f"/tiles/zinc.prospectivity/tiles/WebMercatorQuad/{t}.png?{QUERY}" for z in warm
                             for t in warm[z]])
        plain_lat = run_pass(plain_base, all_plain)
        ours_uncached = run_pass(ours_base, all_ours)
        # every worker process has its own cache: repeat until a whole pass is answered from the caches
        for _ in range(6):
            hits: list[bool] = []
            ours_cached = run_pass(ours_base, all_ours, hits=hits)
            if all(hits):
                break
        p50u, p50p = percentile(ours_uncached, 50), percentile(plain_lat, 50)
        rows.append((f"tiles z4-9 uncached, 4 clients, {args.workers} uvicorn workers "
                     f"({len(ours_uncached)} tiles with data)",
                     f"p50 {p50u:.1f} ms, p95 {percentile(ours_uncached, 95):.1f} ms", "p50 <= 15 ms"))
        rows.append((f"tiles z4-9 cached ({sum(hits)} of {len(hits)} answered from the cache)",
                     f"p50 {percentile(ours_cached, 50):.2f} ms, p95 {percentile(ours_cached, 95):.2f} ms",
                     "p50 <= 2 ms"))
        rows.append(("plain TiTiler (?url=) on the same COG, uncached",
                     f"p50 {p50p:.1f} ms, p95 {percentile(plain_lat, 95):.1f} ms", ""))
        rows.append(("overhead: ours / plain TiTiler, uncached p50", f"{p50u / p50p:.2f}x", "<= 1.1x"))

        # 4. on-request infill, 200 x 200 cells
        box = box_for_cells(cube.grid, (-120.9, 39.0), 200)
        lat_ms, cells = [], 0
        with httpx.Client(base_url=ours_base, timeout=120) as client:
            for i in range(args.infill_runs + 1):
                t0 = time.perf_counter()
                r = client.post("/api/infer", json={"bbox": box, "hide_species": ["zinc"], "ensemble": 1})
                dt = (time.perf_counter() - t0) * 1000
                r.raise_for_status()
                cells = r.json()["cells"]
                if i:
                    lat_ms.append(dt)
        rows.append((f"POST /api/infer, {cells} cells (~200 x 200), hide zinc, 1 evaluation",
                     f"p50 {percentile(lat_ms, 50):.0f} ms, p95 {percentile(lat_ms, 95):.0f} ms", "p50 <= 1 s (CPU)"))
    finally:
        for proc in (ours, plain):
            proc.terminate()
            proc.wait(timeout=20)
    cpu = platform.processor() or platform.machine()
    log.info("work folder %s", work)
    sys.stdout.write(f"\nModel: {label} ({engine.card.name}); machine: {cpu}, {os.cpu_count()} CPUs\n\n")
    sys.stdout.write("| measure | result | target |\n| --- | --- | --- |\n")
    for name, value, target in rows:
        sys.stdout.write(f"| {name} | {value} | {target} |\n")


if __name__ == "__main__":
    main()
