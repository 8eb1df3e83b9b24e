"""Alembic environment: runs migrations against the configured PostGIS database."""

from logging.config import fileConfig

import sqlalchemy as sa
from geoalchemy2 import alembic_helpers

from alembic import context
from backend.db.engine import normalise_url
from backend.db.tables import metadata
from backend.settings import Settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

OUR_TABLES = set(metadata.tables)


def include_name(name, type_, parent_names):
    """Compare only the project's own tables (not PostGIS's spatial_ref_sys and friends)."""
    if type_ == "table":
        return name in OUR_TABLES or name == "alembic_version"
    return True


def database_url() -> str:
    """URL from the caller (tests) or from the settings."""
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    return normalise_url(url or Settings().resolved_database_url())


def run_migrations_offline() -> None:
    """Emit SQL without a connection."""
    context.configure(
        url=database_url(),
        target_metadata=metadata,
        literal_binds=True,
        include_name=include_name,
        include_object=alembic_helpers.include_object,
        render_item=alembic_helpers.render_item,
        process_revision_directives=alembic_helpers.writer,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run migrations on a live connection."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = sa.create_engine(database_url(), poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        _run(conn)


def _run(connection) -> None:
    """Configure the context on a connection and migrate."""
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_name=include_name,
        include_object=alembic_helpers.include_object,
        render_item=alembic_helpers.render_item,
        process_revision_directives=alembic_helpers.writer,
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
