"""Fault tests: the database stops mid-traffic (503 in words, no 500 storm, recovery when it returns)."""

import socket
import time

import httpx
import pytest
import sqlalchemy as sa

from backend.db.cluster import LocalCluster
from backend.db.migrate import upgrade
from backend.ingest.service import ingest_mrds
from backend.settings import PROJECT_ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_database_stops_mid_traffic_then_recovers(tmp_path, make_live_server):
    cluster = LocalCluster(root=tmp_path / "pg", preferred_port=_free_port())
    cluster.start()
    server = None
    try:
        url = cluster.url()
        upgrade(url)
        engine = sa.create_engine(url)
        ingest_mrds(engine, PROJECT_ROOT / "tests" / "fixtures" / "mrds_sample.csv")
        engine.dispose()
        server = make_live_server({
            "M3_DATABASE_URL": url, "M3_LOG_LEVEL": "WARNING", "M3_MODEL_DIR": str(tmp_path / "no-model"),
            "M3_CUBE_DIR": str(tmp_path / "no-cube"), "M3_LAYERS_DIR": str(tmp_path / "layers"),
        }, name="faults").start()
        with httpx.Client(base_url=server.base, timeout=15) as client:
            assert client.get("/api/sites", params={"limit": 5}).status_code == 200

            cluster.stop()
            statuses = []
            for _ in range(20):
                statuses.append(client.get("/api/sites", params={"limit": 5}).status_code)
                statuses.append(client.get("/api/species").status_code)
            health = client.get("/healthz")
            assert set(statuses) == {503}, statuses
            assert health.status_code == 503 and health.json()["database"].startswith("unavailable")
            body = client.get("/api/sites").json()
            assert "unavailable" in body["detail"]

            cluster.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if client.get("/api/sites", params={"limit": 5}).status_code == 200:
                    break
                time.sleep(0.3)
            assert client.get("/api/sites", params={"limit": 5}).status_code == 200
            assert client.get("/healthz").status_code == 200
    finally:
        if server is not None:
            server.stop()
        cluster.stop()
