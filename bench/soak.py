"""A bounded soak of the served API: N clients for a fixed time, RSS and errors checked at the end.

Usage: .venv/bin/python bench/soak.py [--minutes 10] [--clients 8] [--url http://127.0.0.1:PORT --pid PID]

Without ``--url`` it starts uvicorn itself on a free 127.0.0.1 port with the environment's ``M3_``
settings (the demo's database, cube, model and layers). Only 127.0.0.1 is ever contacted.

Each client loops, with 50 to 200 ms of think time, over a mix of the page's requests (health, sites,
species, layers, clusters, tiles at zoom 5 to 9, box statistics, bad inputs that must get a 4xx); one
client also runs a small /api/infer every 20 s. Beside the clients, a worst-case round runs two seconds in
and then every minute: eight 1024-pixel .npy tiles that differ only in an ignored parameter (the tile
cache must key on normalised parameters and bound its bytes), a 2048 x 2048 statistics request, four large
/api/infer boxes at once with the largest ensemble (the inference pool runs one and sheds the rest with 429),
an 8.7 MB body of bad hidden regions (413), and requests over each size limit (422).
Pass criteria (exit status 1 otherwise):

* no 5xx response and no connection error;
* RSS at the end within 300 MB of RSS after the first minute (the first tenth of a shorter run) and after
  the first worst-case round;
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
from collections.abc import Callable
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
#: The worst requests of a round (rows 2 to 4 and 6 of the hardening review).
WORST_TILES = [f"/tiles/gold.prospectivity/tiles/WebMercatorQuad/7/20/48.npy?tilesize=1024&n={i}" for i in range(8)]
WORST_INFER = {"bbox": "-119,36,-111.5,42", "ensemble": 16}
WORST_BODY = {"bbox": "-121,39,-120.8,39.2", "hide_regions": ["1,2,3,4"] * 30000}
OVER_LIMITS = (
    "/tiles/gold.prospectivity/tiles/WebMercatorQuad/7/20/48.npy?tilesize=2048",
    "/tiles/gold.prospectivity/statistics?histogram_bins=1000000",
    "/tiles/gold.prospectivity/statistics?max_size=100000",
)


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


def worst_round(http: httpx.Client, record: Recorder) -> None:
    """One round of the worst requests (rows 2 to 4 and 6 of the hardening review) through ``record``."""
    for path in WORST_TILES:
        _timed(http, "GET", path, None, record, expect_4xx=False)
    _timed(http, "GET", "/tiles/gold.prospectivity/statistics?width=2048&height=2048", None, record, False)
    for path in OVER_LIMITS:
        _timed(http, "GET", path, None, record, expect_4xx=True)
    burst = [threading.Thread(target=_timed, args=(http, "POST", "/api/infer", WORST_INFER, record, False))
             for _ in range(4)]
    for t in burst:
        t.start()
    _timed(http, "POST", "/api/infer", WORST_BODY, record, expect_4xx=True)
    for t in burst:
        t.join()


Recorder = Callable[[str, str, "httpx.Response | None", float, bool, str], None]


def _timed(http: httpx.Client, method: str, path: str, body: dict | None, record: Recorder, expect_4xx: bool,
           name: str | None = None) -> None:
    """Send one request and pass its answer (None for a connection error) and latency to ``record``."""
    t0 = time.perf_counter()
    try:
        r: httpx.Response | None = http.request(method, path, json=body)
    except httpx.HTTPError:
        r = None
    record(method, path, r, time.perf_counter() - t0, expect_4xx, name or "worst " + path.split("?")[0])


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

    worst_rounds = [0]

    def record(method: str, path: str, r: httpx.Response | None, dt: float, expect_4xx: bool, name: str) -> None:
        code = str(r.status_code) if r is not None else "error"
        with lock:
            statuses[code] += 1
            latencies[name].append(dt)
            if r is None or r.status_code >= 500:
                server_errors.append(f"{method} {path[:120]} -> {code} {r.text[:200] if r is not None else ''}")
            elif expect_4xx and r.status_code < 400:
                bad_ok.append(f"{method} {path[:120]} -> {code}")

    def worst() -> None:
        next_at = time.monotonic() + min(2.0, seconds / 10)
        with httpx.Client(base_url=base, timeout=300) as http:
            while time.monotonic() < stop:
                if time.monotonic() >= next_at:
                    worst_round(http, record)
                    worst_rounds[0] += 1
                    next_at += 60.0
                time.sleep(0.5)

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        last_infer = [time.monotonic() - 15]
        with httpx.Client(base_url=base, timeout=120) as http:
            while time.monotonic() < stop:
                method, path, body = next_request(i, rng, last_infer)
                name = path.split("?")[0] if not path.startswith("/tiles/") else "/tiles/..."
                _timed(http, method, path, body, record, path in BAD, name)
                time.sleep(rng.uniform(0.05, 0.2))  # a user's think time between requests

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    threads.append(threading.Thread(target=worst, daemon=True))
    for t in threads:
        t.start()
    start = time.monotonic()
    while any(t.is_alive() for t in threads):
        now = time.monotonic()
        rss.append((now - start, rss_bytes(pid)))
        if not rss_warm and now >= warm_at and worst_rounds[0] >= 1:  # after the first worst round too
            rss_warm.append(rss[-1][1])
            if not quiet:
                print(f"  RSS after warm-up: {rss_warm[0] / MB:.0f} MB", flush=True)
        time.sleep(1.0)
    end_rss = rss_bytes(pid)
    warm = rss_warm[0] if rss_warm else rss[0][1]
    health = sorted(latencies.get("/healthz", [0.0]))
    p99 = health[min(len(health) - 1, int(0.99 * len(health)))]
    summary = {
        "seconds": seconds, "clients": clients, "worst_rounds": worst_rounds[0],
        "requests": sum(statuses.values()), "statuses": dict(statuses),
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
