"""SQLAlchemy engines for the configured PostGIS database."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from backend.settings import Settings


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def get_engine(settings: Settings, **kwargs: object) -> sa.Engine:
    """An engine for the configured database (a pool with pre-ping, so restarts are survived)."""
    options: dict[str, object] = {
        "pool_pre_ping": True,
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_pool_size,
        "connect_args": {"connect_timeout": 5},
    }
    options.update(kwargs)
    return sa.create_engine(normalise_url(settings.resolved_database_url()), **options)
