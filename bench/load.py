"""Load test: locust against uvicorn with 2 workers, a mix of tiles, sites, clusters and prospectivity.

Usage: .venv/bin/python bench/load.py [--seconds 60] [--users 8]

Serves the app (the environment's settings: database, model, layers) with `m3 serve --workers 2`
on a free port, runs locust headless from this machine for the given time, and prints requests/s
and p50/p95/p99 per endpoint and in total, plus the count of 5xx answers (target: zero).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = ap.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "M3_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--port", str(port), "--workers", "2"],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            print("error: the server did not come up", file=sys.stderr)
            return 1
        with tempfile.TemporaryDirectory() as tmp:
            prefix = Path(tmp) / "load"
            subprocess.run(
                [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
                 "-u", str(args.users), "-r", str(args.users), "-t", f"{args.seconds}s", "--host", base,
                 "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING"],
                check=False, cwd=ROOT,
            )
            rows = list(csv.DictReader((Path(f"{prefix}_stats.csv")).open()))
            failures = list(csv.DictReader((Path(f"{prefix}_failures.csv")).open()))
    finally:
        server.terminate()
        server.wait(20)
    server_errors = sum(int(f["Occurrences"]) for f in failures if f["Error"].strip().startswith(("HTTPError('5",
                                                                                                    "5")))
    table = []
    for r in rows:
        table.append({"name": r["Name"], "requests": int(r["Request Count"]), "failures": int(r["Failure Count"]),
                      "rps": round(float(r["Requests/s"]), 1), "p50_ms": r["50%"], "p95_ms": r["95%"],
                      "p99_ms": r["99%"]})
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "seconds": args.seconds, "users": args.users,
            "workers": 2, "server_errors_5xx": server_errors, "failures": failures}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": table}, indent=2) + "\n")
    print(f"\n{args.users} users, {args.seconds} s, uvicorn 2 workers; 5xx answers: {server_errors}\n")
    print("| endpoint | requests | failures | req/s | p50 (ms) | p95 (ms) | p99 (ms) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in table:
        print(f"| {r['name']} | {r['requests']} | {r['failures']} | {r['rps']} | {r['p50_ms']} | {r['p95_ms']} | "
              f"{r['p99_ms']} |")
    return 0 if server_errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
