"""API fuzzing (bench/fuzz.py): schemathesis with every check on, against a live server with the admin routes on."""

import importlib.util
import secrets

import pytest

from backend.settings import PROJECT_ROOT

#: Requests of the run in `make test` (one round: examples, coverage, fuzzing and stateful phases).
REQUESTS = 3000
MAX_EXAMPLES = 10


def _fuzz_module():
    spec = importlib.util.spec_from_file_location("fuzz", PROJECT_ROOT / "bench" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_schemathesis_with_every_check_finds_nothing(live_env, make_live_server):
    fuzz = _fuzz_module()
    token = secrets.token_urlsafe(32)
    server = make_live_server({**live_env, "M3_ADMIN_TOKEN": token}, name="fuzz").start()
    try:
        summary = fuzz.fuzz(server.base, REQUESTS, seed=0, admin_token=token, max_examples=MAX_EXAMPLES, quiet=True)
    finally:
        server.stop()
    fuzz.print_summary(summary)
    assert summary["failures_by_check"] == {}, summary["samples"][:5]
    assert summary["errors"] == []
    assert summary["requests"] >= REQUESTS
    # every operation of the schema was reached, the admin ones included
    assert summary["operations"] == 32
    assert summary["requests_per_operation"]["GET /admin/jobs/{job_id}"] > 0
