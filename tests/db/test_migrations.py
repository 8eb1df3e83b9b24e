import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from geoalchemy2 import alembic_helpers

from backend.db.migrate import downgrade, upgrade
from backend.db.tables import metadata


def _tables(url):
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(make_database):
    url = make_database(migrate=False)
    upgrade(url)
    assert {"sites", "ingest_runs"} <= _tables(url)
    downgrade(url, "base")
    assert not {"sites", "ingest_runs"} & _tables(url)
    upgrade(url)
    assert {"sites", "ingest_runs"} <= _tables(url)


def test_autogenerate_finds_no_difference(make_database):
    url = make_database()
    engine = sa.create_engine(url)
    own = set(metadata.tables)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={
                "include_name": lambda name, type_, parents: type_ != "table" or name in own,
                "include_object": alembic_helpers.include_object,
                "compare_type": True,
                "compare_server_default": True,
            })
            diff = compare_metadata(ctx, metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_indexes_exist(full_engine):
    with full_engine.connect() as c:
        idx = dict(c.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes WHERE tablename='sites'").all())
    assert "USING gist (geom)" in idx["ix_sites_geom"]
    assert "USING gin (species)" in idx["ix_sites_species"]
    assert "uq_sites_source_record" in idx
