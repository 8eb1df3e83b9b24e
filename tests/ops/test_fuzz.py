"""API fuzzing with schemathesis against the served OpenAPI schema: no input may produce a 5xx."""

from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

#: Examples per operation (fewer where a valid input runs the model).
EXAMPLES = 80
EXPENSIVE = ("/api/infer", "/admin/reinference")


@pytest.mark.slow
def test_fuzzed_requests_get_no_server_error(live_server):
    spec = httpx.get(f"{live_server}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    counts: Counter = Counter()
    server_errors = []
    def fuzz(op) -> None:
        examples = 20 if op.path in EXPENSIVE else EXAMPLES

        @given(case=op.as_strategy())
        @settings(max_examples=examples, deadline=None, derandomize=True, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def call(case):
            response = case.call(base_url=live_server, timeout=120)
            counts[f"{op.method.upper()} {op.path}"] += 1
            if response.status_code >= 500:
                server_errors.append((op.method, case.formatted_path, case.query, response.status_code,
                                      response.text[:300]))

        call()

    for result in schema.get_all_operations():
        fuzz(result.ok())
    total = sum(counts.values())
    print(f"schemathesis: {total} requests over {len(counts)} operations, {len(server_errors)} 5xx")
    assert total >= 1000
    assert server_errors == []
