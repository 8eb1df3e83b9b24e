"""API fuzzing: schemathesis with all its checks against a live server, until at least N requests are sent.

Usage: .venv/bin/python bench/fuzz.py [--requests 5000] [--url http://127.0.0.1:PORT --admin-token T] [--seed 0]

Without ``--url`` it starts uvicorn itself on a free 127.0.0.1 port with the environment's ``M3_`` settings (the
demo's database, cube, model and layers) and a generated admin token, so the admin operations are in the schema.

Schemathesis runs every phase (examples, coverage, fuzzing with positive and negative data, stateful sequences
following the links it infers) with every check on: no 5xx, documented status codes, content types and headers,
responses valid against their schemas, schema-valid requests accepted, schema-violating requests refused,
missing authentication refused, and the Allow header of a 405. The first round runs every phase; further
rounds, each with the next seed, repeat the fuzzing and stateful phases until the requests reach N.

The admin token is sent to ``GET /admin/jobs/{job_id}`` only: ``POST /admin/reinference`` with a valid token
would start a whole-map re-inference, so there schemathesis checks that a missing or wrong token is refused.

Some operations take parameters whose rules JSON Schema cannot state (SEMANTIC_RULES: a bbox's min below its
max, species ids from a vocabulary, an opaque cursor, band-math expressions, a tile index inside its zoom); for
those a schema-valid request may be refused with 422 (413 for a box over the cell limit; 400 where TiTiler cannot
parse an expression or algorithm parameters), and the check that schema-valid requests are accepted allows those
statuses. Every other operation gets the check unchanged.

Prints requests per operation, failures by check, engine errors and the wall time; writes the same as JSON
(``--out``). Exit status 1 when anything failed.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from machine import cpu_model  # noqa: E402

#: Rules beyond JSON Schema, per operation (the reason a schema-valid request may get 422 or 413 there).
SEMANTIC_RULES = {
    "GET /api/sites": "bbox min < max; species ids from the vocabulary; cursor from a previous page",
    "GET /api/clusters": "bbox min < max; species ids of the served layers",
    "GET /api/prospectivity": "bbox min < max, inside the grid, at most M3_PROSPECTIVITY_MAX_CELLS cells (413)",
    "GET /api/identify": "lon/lat inside the grid; one species id of the served layers",
    "POST /api/infer": "bbox inside the grid and under M3_INFER_MAX_CELLS (413); species ids of the model; hidden "
                       "regions inside the bbox; ensemble at most M3_INFER_MAX_ENSEMBLE",
    "GET /tiles/{layer_id}/info.geojson": "crs must be a CRS that PROJ knows",
    "GET /tiles/{layer_id}/tiles": "crs must be a CRS that PROJ knows",
    "GET /tiles/{layer_id}/tiles/{tileMatrixSetId}": "minzoom at most maxzoom",
    "GET /tiles/{layer_id}/statistics": "band-math expression, rescale and histogram grammars",
    "POST /tiles/{layer_id}/statistics": "band-math expression and histogram grammars; CRS names; a geometry "
                                         "with an area",
    "GET /tiles/{layer_id}/tiles/{tileMatrixSetId}/{z}/{x}/{y}": "x and y inside zoom z; expression and rescale "
                                                                 "grammars",
    "GET /tiles/{layer_id}/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}": "x and y inside zoom z; expression and "
                                                                          "rescale grammars",
    "GET /tiles/{layer_id}/{tileMatrixSetId}/tilejson.json": "minzoom at most maxzoom; expression and rescale "
                                                             "grammars",
    "GET /tiles/{layer_id}/point/{lon},{lat}": "CRS names; band-math expression grammar",
    "GET /tiles/context/{context_id}/tiles/{tileMatrixSetId}/{z}/{x}/{y}": "x and y inside zoom z; expression and "
                                                                           "rescale grammars; no other algorithm "
                                                                           "on the hillshade",
    "GET /tiles/context/{context_id}/tiles/{tileMatrixSetId}/{z}/{x}/{y}.{format}": "x and y inside zoom z; "
                                                                                    "expression and rescale grammars; "
                                                                                    "no other algorithm on the "
                                                                                    "hillshade",
    "GET /tiles/context/{context_id}/{tileMatrixSetId}/tilejson.json": "minzoom at most maxzoom; expression and "
                                                                       "rescale grammars; no other algorithm on "
                                                                       "the hillshade",
    "GET /tiles/sites/tiles/{z}/{x}/{y}.pbf": "x and y inside zoom z; commodity ids from the vocabulary",
    "GET /tiles/sites/tilejson.json": "commodity ids from the vocabulary",
    "GET /api/sites/export": "bbox min < max; species ids from the vocabulary; cursor from a previous export",
}
#: What positive_data_acceptance allows by default (schemathesis 4), plus the statuses of rules beyond JSON Schema:
#: 422 (a parameter breaks a rule), 413 (a box over the cell limit) and, for TiTiler's grammars, 400.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
ACCEPTED_WITH_RULES = [*ACCEPTED, "400", "413", "422"]
#: Examples per operation and phase in each round.
MAX_EXAMPLES = 25


def schemathesis_config(seed: int, max_examples: int, admin_token: str | None, first_round: bool) -> Any:
    """The schemathesis configuration of one round: every check on, every phase in the first round."""
    from schemathesis.config import SchemathesisConfig

    operations: list[dict[str, Any]] = [
        {"include-name": name, "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED_WITH_RULES}}}
        for name in SEMANTIC_RULES]
    if admin_token:
        operations.append({"include-name": "GET /admin/jobs/{job_id}",
                           "headers": {"Authorization": f"Bearer {admin_token}"}})
    return SchemathesisConfig.from_dict({
        "seed": seed,
        "workers": 1,
        "continue-on-failure": True,
        "request-timeout": 120,
        "cache": {"enabled": False},  # every run starts from its seed alone (and writes no .schemathesis/)
        "checks": {"enabled": True},
        "generation": {"mode": "all", "max-examples": max_examples, "no-shrink": True, "database": "none"},
        "phases": {"examples": {"enabled": first_round}, "coverage": {"enabled": first_round},
                   "fuzzing": {"enabled": True}, "stateful": {"enabled": True}},
        "operations": operations,
    })


def run_round(base: str, config: Any, summary: dict[str, Any]) -> None:
    """One schemathesis run; its requests, failures and errors are added to ``summary``."""
    import schemathesis
    from schemathesis.engine import Status, events, from_schema

    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", config=config)
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            for case_id in recorder.interactions:
                node = recorder.cases.get(case_id)
                label = node.value.operation.label if node is not None else event.label or "?"
                summary["requests"][label] += 1
            for checks in recorder.checks.values():
                for check in checks:
                    if check.status != Status.FAILURE or check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    summary["failures"][f"{check.name} ({failure.code} {failure.title})"] += 1
                    if len(summary["samples"]) < 30:
                        summary["samples"].append({"check": check.name, "operation": failure.operation,
                                                   "title": failure.title, "message": failure.message[:600],
                                                   "reproduce": check.failure_info.code_sample[:1500]})
        elif isinstance(event, events.NonFatalError):
            summary["errors"].append(f"{event.label}: {event.info.title}: {str(event.value)[:600]}")
        elif isinstance(event, events.FatalError):
            raise event.exception


def fuzz(base: str, requests: int, seed: int = 0, admin_token: str | None = None,
         max_examples: int = MAX_EXAMPLES, quiet: bool = False) -> dict[str, Any]:
    """Run rounds of schemathesis against ``base`` (127.0.0.1 only) until ``requests`` are sent; the summary."""
    if urlsplit(base).hostname != "127.0.0.1":
        raise SystemExit(f"the fuzzer only runs against 127.0.0.1, not {base}")
    summary: dict[str, Any] = {"requests": Counter(), "failures": Counter(), "samples": [], "errors": [],
                               "rounds": 0}
    started = time.perf_counter()
    while sum(summary["requests"].values()) < requests:
        first = summary["rounds"] == 0
        run_round(base, schemathesis_config(seed + summary["rounds"], max_examples, admin_token, first), summary)
        summary["rounds"] += 1
        if not quiet:
            print(f"  round {summary['rounds']}: {sum(summary['requests'].values())} requests, "
                  f"{sum(summary['failures'].values())} failures", flush=True)
    total = sum(summary["requests"].values())
    return {
        "requests": total, "operations": len(summary["requests"]), "rounds": summary["rounds"], "seed": seed,
        "max_examples": max_examples, "seconds": round(time.perf_counter() - started, 1),
        "requests_per_operation": dict(sorted(summary["requests"].items())),
        "failures_by_check": dict(summary["failures"]), "failures": sum(summary["failures"].values()),
        "errors": summary["errors"], "samples": summary["samples"],
        "passed": total >= requests and not summary["failures"] and not summary["errors"],
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(admin_token: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start uvicorn on a free 127.0.0.1 port with the environment's settings and this admin token."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = ROOT / ".m3" / "fuzz_server.log"
    log.parent.mkdir(exist_ok=True)
    env = {**os.environ, "M3_LOG_LEVEL": "WARNING", "M3_ADMIN_TOKEN": admin_token}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "backend.api.app:create_app", "--factory", "--host",
                             "127.0.0.1", "--port", str(port), "--no-access-log"],
                            cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"uvicorn exited: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit("uvicorn did not answer /healthz within 60 s")


def print_summary(summary: dict[str, Any]) -> None:
    """Requests per operation, failures by check, errors."""
    print(f"\n{'operation':<70} requests")
    for label, n in summary["requests_per_operation"].items():
        print(f"{label:<70} {n:>8}")
    print(f"{'all ' + str(summary['operations']) + ' operations':<70} {summary['requests']:>8}")
    print(f"\nfailures by check: {summary['failures_by_check'] or 'none'}")
    print(f"engine errors: {summary['errors'] or 'none'}")
    for sample in summary["samples"][:10]:
        print(f"\n- {sample['check']} on {sample['operation']}: {sample['title']}\n  {sample['message']}\n"
              f"  {sample['reproduce']}")
    print(f"\n{summary['requests']} requests in {summary['rounds']} round(s), {summary['seconds']} s; "
          f"{summary['failures']} failures, {len(summary['errors'])} errors: "
          f"{'passed' if summary['passed'] else 'FAILED'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="send at least this many requests")
    parser.add_argument("--max-examples", type=int, default=MAX_EXAMPLES,
                        help="examples per operation and phase in each round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--url", help="an already running server on 127.0.0.1")
    parser.add_argument("--admin-token", default=os.environ.get("M3_ADMIN_TOKEN"),
                        help="that server's admin token (default M3_ADMIN_TOKEN)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fuzz.json")
    args = parser.parse_args()
    proc = None
    if args.url:
        base, token = args.url.rstrip("/"), args.admin_token
    else:
        token = secrets.token_urlsafe(32)
        proc, base = _start_server(token)
    try:
        print(f"fuzz: schemathesis, all checks, at least {args.requests} requests against {base}", flush=True)
        summary = fuzz(base, args.requests, args.seed, token, args.max_examples)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(15)
    print_summary(summary)
    summary["machine"] = f"{cpu_model()}, {os.cpu_count()} cores"
    summary["load_average"] = [round(v, 2) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
