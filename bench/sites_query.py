"""Latency of GET /api/sites through a real uvicorn: real data and ~1M jittered sites.

Usage: .venv/bin/python bench/sites_query.py [--runs 5] [--requests 100]

Creates two databases in the configured server (M3_DATABASE_URL or the local cluster):
``m3_bench_real`` (the bundled records, ingested) and ``m3_bench_1m`` (the real sites plus eight
jittered copies, about 987k rows). For each, serves the app with uvicorn (one worker) and times
sequential keep-alive requests of 1000 features for a state-size box (California's) and a CONUS
box, with and without a species filter. Reports the median over runs of each run's p50 and p95.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.db.engine import normalise_url  # noqa: E402
from backend.db.migrate import upgrade  # noqa: E402
from backend.settings import Settings  # noqa: E402

SCENARIOS = {
    "state box (CA), 1000 features": {"bbox": "-124.5,32.5,-114,42", "limit": 1000},
    "state box (CA), gold, 1000 features": {"bbox": "-124.5,32.5,-114,42", "species": "gold", "limit": 1000},
    "CONUS box, 1000 features": {"bbox": "-125,24,-66,50", "limit": 1000},
    "CONUS box, zinc, 1000 features": {"bbox": "-125,24,-66,50", "species": "zinc", "limit": 1000},
}
JITTER_COPIES = 8
JITTER_DEG = 0.1


def _dsn(url, db: str) -> str:
    parts = [f"host={url.host}", f"port={url.port or 5432}", f"dbname={db}"]
    if url.username:
        parts.append(f"user={url.username}")
    if url.password:
        parts.append(f"password={url.password}")
    return " ".join(parts)


def prepare(server, name: str, jitter: bool) -> str:
    """Create (once) and return the URL of a bench database."""
    url = server.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(_dsn(server, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(_dsn(server, name), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    upgrade(url)
    with psycopg.connect(_dsn(server, name), autocommit=True) as conn:
        n = conn.execute("SELECT count(*) FROM sites").fetchone()[0]
        if n == 0:
            import sqlalchemy as sa

            from backend.ingest.service import ingest_minmod

            engine = sa.create_engine(url)
            bundled = ROOT / "data" / "raw" / "minmod"
            list(ingest_minmod(engine, [bundled / "usgs_mrds_california.tar.xz", bundled]))
            engine.dispose()
            if jitter:
                conn.execute("SELECT setseed(0.42)")
                conn.execute(f"""
                    INSERT INTO sites (source, record_id, name, state, country, geom, species, commodities,
                                       deposit_types, rank)
                    SELECT source || '#jitter' || k, record_id, name, state, country,
                           ST_SetSRID(ST_MakePoint(ST_X(geom) + (random() - 0.5) * {2 * JITTER_DEG},
                                                   ST_Y(geom) + (random() - 0.5) * {2 * JITTER_DEG}), 4326),
                           species, commodities, deposit_types, rank
                    FROM sites, generate_series(1, {JITTER_COPIES}) AS k
                    WHERE source NOT LIKE '%#jitter%'
                """)
            conn.execute("VACUUM ANALYZE sites")
        n = conn.execute("SELECT count(*) FROM sites").fetchone()[0]
    print(f"{name}: {n} sites", flush=True)
    return url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(url: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "M3_DATABASE_URL": url, "M3_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "backend.api.app:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        env=env, cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("uvicorn did not come up")


def measure(base: str, params: dict, requests: int) -> tuple[float, float, int]:
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(5):
            client.get("/api/sites", params=params)
        times = []
        n = 0
        for _ in range(requests):
            t0 = time.perf_counter()
            r = client.get("/api/sites", params=params)
            times.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
            n = r.json()["number_returned"]
    q = statistics.quantiles(times, n=100)
    return statistics.median(times), q[94], n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sites_query.json")
    args = ap.parse_args()
    server = make_url(normalise_url(Settings().resolved_database_url()))
    results = {}
    for label, name, jitter in (("real", "m3_bench_real", False), ("1M jittered", "m3_bench_1m", True)):
        url = prepare(server, name, jitter)
        proc, base = serve(url)
        try:
            for scenario, params in SCENARIOS.items():
                runs = [measure(base, params, args.requests) for _ in range(args.runs)]
                p50 = statistics.median(r[0] for r in runs)
                p95 = statistics.median(r[1] for r in runs)
                results[f"{label} | {scenario}"] = {"p50_ms": round(p50, 2), "p95_ms": round(p95, 2),
                                                    "features": runs[0][2]}
                print(f"{label:12s} {scenario:40s} p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  ({runs[0][2]} features)",
                      flush=True)
        finally:
            proc.terminate()
            proc.wait()
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "runs": args.runs,
            "requests_per_run": args.requests, "python": platform.python_version()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print("\n| data | query | p50 (ms) | p95 (ms) |\n| --- | --- | --- | --- |")
    for key, v in results.items():
        data, query = key.split(" | ")
        print(f"| {data} | {query} | {v['p50_ms']} | {v['p95_ms']} |")


if __name__ == "__main__":
    main()
