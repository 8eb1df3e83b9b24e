"""Test fixtures: real PostGIS databases in the running cluster, migrated with Alembic."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from backend.db.engine import normalise_url
from backend.db.migrate import upgrade
from backend.settings import PROJECT_ROOT, Settings

BUNDLED = PROJECT_ROOT / "data" / "raw" / "minmod"
DEMO_MODEL = PROJECT_ROOT / "runs" / "demo"
FIXTURES = Path(__file__).parent / "fixtures"


def _server_url() -> sa.URL:
    """URL of the server the tests use (M3_DATABASE_URL's, else the local cluster's)."""
    return make_url(normalise_url(Settings().resolved_database_url()))


def _admin_dsn(url: sa.URL) -> str:
    """Libpq DSN for the maintenance database of that server."""
    parts = [f"host={url.host or '127.0.0.1'}", f"port={url.port or 5432}", "dbname=postgres"]
    if url.username:
        parts.append(f"user={url.username}")
    if url.password:
        parts.append(f"password={url.password}")
    return " ".join(parts)


@pytest.fixture(scope="session")
def make_database() -> Iterator:
    """Factory: a fresh, empty database with PostGIS (dropped at the end of the session)."""
    server = _server_url()
    created: list[str] = []

    def make(migrate: bool = True) -> str:
        name = f"m3_test_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(_admin_dsn(server), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        url = server.set(database=name).render_as_string(hide_password=False)
        with psycopg.connect(_admin_dsn(server).replace("dbname=postgres", f"dbname={name}"), autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        if migrate:
            upgrade(url)
        return url

    yield make
    with psycopg.connect(_admin_dsn(server), autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def full_db_url(make_database) -> str:
    """A database holding every bundled real record (treat as read-only)."""
    from backend.ingest.service import ingest_minmod

    url = make_database()
    engine = sa.create_engine(url)
    try:
        reports = list(ingest_minmod(engine, [BUNDLED / "usgs_mrds_california.tar.xz", BUNDLED]))
        assert all(r.status == "ok" for r in reports)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def full_engine(full_db_url) -> Iterator[sa.Engine]:
    """Engine on the full database."""
    engine = sa.create_engine(full_db_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def engine(full_engine) -> sa.Engine:
    """The full database's engine under the name the cube tests ask for."""
    return full_engine


@pytest.fixture(scope="session")
def scratch_db_url(make_database) -> str:
    """A migrated database for tests that write (emptied before each use)."""
    return make_database()


@pytest.fixture
def scratch_engine(scratch_db_url) -> Iterator[sa.Engine]:
    """Engine on the scratch database, with empty tables."""
    engine = sa.create_engine(scratch_db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE sites, ingest_runs RESTART IDENTITY")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def client(full_db_url) -> Iterator[TestClient]:
    """The app on the full database, lifespan running."""
    from backend.api.app import create_app

    settings = Settings(database_url=full_db_url, sites_max_limit=5000)
    with TestClient(create_app(settings)) as c:
        yield c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A uvicorn process serving the app; ``base`` is its URL."""

    def __init__(self, env: dict[str, str], workers: int = 1, name: str = "live") -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.workers = workers
        self.log = PROJECT_ROOT / ".m3" / f"{name}_server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, wait_healthy: bool = True) -> LiveServer:
        """Start uvicorn and wait until it answers /healthz."""
        self.log.parent.mkdir(exist_ok=True)
        fh = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "backend.api.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(self.workers), "--no-access-log"],
            env=self.env, cwd=PROJECT_ROOT, stdout=fh, stderr=subprocess.STDOUT,
        )
        for _ in range(300):
            try:
                r = httpx.get(f"{self.base}/healthz", timeout=1)
                if r.status_code == 200 or (not wait_healthy and r.status_code == 503):
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited: {self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"uvicorn did not come up: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Terminate the server."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="session")
def demo_layers(full_db_url, full_engine, tmp_path_factory) -> dict[str, str]:
    """Layers and clusters of the committed demo model over a cube of the real sites (one mask round)."""
    from backend.cube.build import build_cube
    from backend.inference.reinference import run_reinference
    from backend.settings import Settings

    if not (DEMO_MODEL / "model.json").exists():
        pytest.fail(f"the demo model is missing from {DEMO_MODEL}")
    root = tmp_path_factory.mktemp("page")
    settings = Settings(database_url=full_db_url, cube_dir=root / "cube", layers_dir=root / "layers",
                        model_dir=DEMO_MODEL, ensemble_masks=1)
    build_cube(settings, full_engine, settings.cube_dir, progress=False, quicklooks=False)
    run_reinference(settings, full_engine)
    return {"M3_CUBE_DIR": str(settings.cube_dir), "M3_LAYERS_DIR": str(settings.layers_dir),
            "M3_MODEL_DIR": str(DEMO_MODEL)}


@pytest.fixture(scope="session")
def live_env(full_db_url, demo_layers) -> dict[str, str]:
    """The served app: the full database with the demo layers."""
    return {"M3_DATABASE_URL": full_db_url, "M3_LOG_LEVEL": "WARNING", **demo_layers}
ARTEFACTS = PROJECT_ROOT / "artifacts" / "screenshots"




@pytest.fixture(scope="session")
def live_server(live_env) -> Iterator[str]:
    """Uvicorn on a free port serving the full database; yields its base URL."""
    server = LiveServer(live_env).start()
    yield server.base
    server.stop()


@pytest.fixture(scope="session")
def make_live_server():
    """Factory for extra uvicorn servers with their own environment (stopped by the caller)."""
    return LiveServer
