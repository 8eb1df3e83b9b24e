"""Test fixtures: real PostGIS databases in the running cluster, migrated with Alembic."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from backend.db.engine import normalise_url
from backend.db.migrate import upgrade
from backend.settings import PROJECT_ROOT, Settings

BUNDLED = PROJECT_ROOT / "data" / "raw" / "minmod"
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
