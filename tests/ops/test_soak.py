"""A 60 s soak of a live server (bench/soak.py): 8 clients, no 5xx, bounded RSS growth, fast /healthz."""

import importlib.util

import pytest

from backend.settings import PROJECT_ROOT


def _soak_module():
    spec = importlib.util.spec_from_file_location("soak", PROJECT_ROOT / "bench" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_one_minute_soak(live_env, make_live_server):
    soak = _soak_module()
    server = make_live_server(live_env, name="soak").start()
    try:
        assert server.proc is not None
        summary = soak.soak(server.base, server.proc.pid, seconds=60, clients=8, quiet=True)
    finally:
        server.stop()
    print(summary)
    assert summary["server_errors"] == [] and summary["bad_input_not_4xx"] == []
    assert summary["rss_end_mb"] - summary["rss_warm_mb"] <= 300
    assert summary["healthz_p99_ms"] < 250
    assert summary["statuses"].get("200", 0) > 500
