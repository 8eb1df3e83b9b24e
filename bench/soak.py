"""A bounded soak of the served API: N clients for a fixed time, RSS and errors checked at the end.

Usage: .venv/bin/python bench/soak.py [--minutes 10] [--clients 8] [--url http://127.0.0.1:PORT --pid PID]

Without ``--url`` it starts uvicorn itself on a free 127.0.0.1 port with the environment's ``M3_``
settings (the demo's database, cube, model and layers). Only 127.0.0.1 is ever contacted.

Each client loops, with 50 to 200 ms of think time, over a mix of the page's requests (health, sites,
species, layers, clusters, tiles at zoom 5 to 9, box statistics, bad inputs that must get a 4xx); one
client also runs a small /api/infer every 20 s. The mix keeps each pool within its bound (one
inference client, at most four statistics clients), so a 503 is a failure, not shed load.
Pass criteria (exit status 1 otherwise):

* no 5xx response and no connection error;
* RSS at the end within 300 MB of RSS after the first minute (the first tenth of a shorter run);
* /healthz p99 below 250 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent

#: California and Nevada, where the demo's layers and sites are dense.
WEST, SOUTH, EAST, NORTH = -124.0, 33.0, -114.5, 42.0
SPECIES = ("gold", "silver", "copper", "zinc", "lead")
#: Requests that must be answered with a 4xx (bad input), never a 5xx.
BAD = (
    "/api/sites?species=gold&species=zinc",
    "/api/sites?bbox=1,2,3",
    "/tiles/gold.prospectivity/tiles/WebMercatorQuad/-1/0/0.png",
    "/tiles/gold.prospectivity/statistics?width=6000&height=6000",
    "/tiles/gold.prospectivity/tiles/WebMercatorQuad/7/20/48.png?bidx=2",
    "/api/prospectivity?bbox=10,10,11,11",
)
MB = 2**20


def rss_bytes(pid: int) -> int:
    """Resident set size of a process and its children (uvicorn workers), from /proc."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def _box(rng: random.Random, size: float) -> str:
    x = rng.uniform(WEST, EAST - size)
    y = rng.uniform(SOUTH, NORTH - size)
    return f"{x:.4f},{y:.4f},{x + size:.4f},{y + size:.4f}"


def _tile(rng: random.Random) -> str:
    import morecantile

    z = rng.randint(5, 9)
    t = morecantile.tms.get("WebMercatorQuad").tile(rng.uniform(WEST, EAST), rng.uniform(SOUTH, NORTH), z)
    species = rng.choice(SPECIES)
    kind = rng.choice(("prospectivity", "discrepancy"))
    return f"/tiles/{species}.{kind}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png"


def next_request(client_id: int, rng: random.Random, last_infer: list[float]) -> tuple[str, str, dict | None]:
    """(method, path, json body) of the next request of a client."""
    if client_id == 0 and time.monotonic() - last_infer[0] > 20:
        last_infer[0] = time.monotonic()
        return "POST", "/api/infer", {"bbox": _box(rng, 0.3), "hide_species": [rng.choice(SPECIES)]}
    roll = rng.random()
    if roll < 0.15:
        return "GET", "/healthz", None
    if roll < 0.35:
        return "GET", f"/api/sites?bbox={_box(rng, 1.0)}&species={rng.choice(SPECIES)}&limit=500", None
    if roll < 0.40:
        return "GET", "/api/species", None
    if roll < 0.45:
        return "GET", "/api/layers", None
    if roll < 0.50:
        return "GET", f"/api/clusters?bbox={_box(rng, 2.0)}&species={rng.choice(SPECIES)}", None
    if roll < 0.55 and client_id < 4:
        return "GET", f"/api/prospectivity?bbox={_box(rng, 0.5)}&species={rng.choice(SPECIES)}", None
    if roll < 0.60:
        return "GET", rng.choice(BAD), None
    return "GET", _tile(rng), None


def soak(base: str, pid: int, seconds: float, clients: int, seed: int = 0, quiet: bool = False) -> dict:
    """Run the soak against ``base`` (127.0.0.1 only) and return the summary with ``passed``."""
    if urlsplit(base).hostname != "127.0.0.1":
        raise SystemExit(f"the soak only runs against 127.0.0.1, not {base}")
    stop = time.monotonic() + seconds
    warm_at = time.monotonic() + min(60.0, seconds / 10)
    statuses: Counter[str] = Counter()
    server_errors: list[str] = []
    bad_ok: list[str] = []
    latencies: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    rss: list[tuple[float, int]] = []
    rss_warm: list[int] = []

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        last_infer = [time.monotonic() - 15]
        with httpx.Client(base_url=base, timeout=120) as http:
            while time.monotonic() < stop:
                method, path, body = next_request(i, rng, last_infer)
                t0 = time.perf_counter()
                try:
                    r = http.request(method, path, json=body)
                    code = str(r.status_code)
                except httpx.HTTPError as exc:
                    code, r = f"error {exc.__class__.__name__}", None
                dt = time.perf_counter() - t0
                time.sleep(rng.uniform(0.05, 0.2))  # a user's think time between requests
                name = path.split("?")[0] if not path.startswith("/tiles/") else "/tiles/..."
                with lock:
                    statuses[code] += 1
                    latencies[name].append(dt)
                    if r is None or r.status_code >= 500:
                        server_errors.append(f"{method} {path} -> {code} {r.text[:200] if r is not None else ''}")
                    elif path in BAD and r.status_code < 400:
                        bad_ok.append(f"{method} {path} -> {code}")

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start = time.monotonic()
    while any(t.is_alive() for t in threads):
        now = time.monotonic()
        rss.append((now - start, rss_bytes(pid)))
        if not rss_warm and now >= warm_at:
            rss_warm.append(rss[-1][1])
            if not quiet:
                print(f"  RSS after warm-up: {rss_warm[0] / MB:.0f} MB", flush=True)
        time.sleep(1.0)
    end_rss = rss_bytes(pid)
    warm = rss_warm[0] if rss_warm else rss[0][1]
    health = sorted(latencies.get("/healthz", [0.0]))
    p99 = health[min(len(health) - 1, int(0.99 * len(health)))]
    summary = {
        "seconds": seconds, "clients": clients, "requests": sum(statuses.values()), "statuses": dict(statuses),
        "server_errors": server_errors[:20], "bad_input_not_4xx": bad_ok[:20],
        "rss_start_mb": round(rss[0][1] / MB), "rss_warm_mb": round(warm / MB), "rss_end_mb": round(end_rss / MB),
        "rss_max_mb": round(max(r for _, r in rss) / MB), "healthz_p99_ms": round(p99 * 1000, 1),
        "p50_ms": {k: round(sorted(v)[len(v) // 2] * 1000, 1) for k, v in sorted(latencies.items())},
    }
    summary["passed"] = (not server_errors and not bad_ok and end_rss - warm <= 300 * MB and p99 < 0.25)
    return summary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--url", help="an already running server on 127.0.0.1 (needs --pid)")
    parser.add_argument("--pid", type=int, help="its process id, for RSS")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    proc = None
    if args.url:
        if args.pid is None:
            parser.error("--url needs --pid")
        base, pid = args.url.rstrip("/"), args.pid
    else:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        log = (ROOT / ".m3" / "soak_server.log")
        log.parent.mkdir(exist_ok=True)
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "backend.api.app:create_app", "--factory",
                                 "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
                                cwd=ROOT, env={**os.environ, "M3_LOG_LEVEL": "WARNING"},
                                stdout=log.open("w"), stderr=subprocess.STDOUT)
        pid = proc.pid
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise SystemExit(f"uvicorn exited: {log.read_text()[-2000:]}")
            time.sleep(0.2)
    try:
        print(f"soak: {args.clients} clients for {args.minutes:g} min against {base} (pid {pid})", flush=True)
        summary = soak(base, pid, args.minutes * 60, args.clients, args.seed)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(15)
    print(json.dumps(summary, indent=2))
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
