"""Schema migrations through Alembic, called from the CLI and the tests."""

from __future__ import annotations

from alembic.config import Config

from alembic import command
from backend.settings import PROJECT_ROOT

ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"


def alembic_config(database_url: str) -> Config:
    """An Alembic config bound to a database URL (logging left to the caller)."""
    cfg = Config(str(ALEMBIC_INI))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["configure_logging"] = False
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database up to a revision."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Migrate the database down to a revision ("base" empties it)."""
    command.downgrade(alembic_config(database_url), revision)
