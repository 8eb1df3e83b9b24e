"""Writing sites to PostGIS: one transaction per input file, COPY into staging, idempotent upsert."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import sqlalchemy as sa

from backend.db.tables import ingest_runs
from backend.ingest.records import Reject, Site

log = logging.getLogger(__name__)

COLUMNS = ("source", "record_id", "name", "state", "geom", "species", "commodities", "deposit_types", "rank")

STAGING_DDL = """
CREATE TEMP TABLE sites_staging (
    ord bigserial, source text, record_id text, name text, state text, geom geometry(Point, 4326),
    species text[], commodities text[], deposit_types text[], rank text
) ON COMMIT DROP
"""

UPSERT_SQL = """
WITH latest AS (
    SELECT DISTINCT ON (source, record_id) *
    FROM sites_staging ORDER BY source, record_id, ord DESC
), written AS (
    INSERT INTO sites AS s (source, record_id, name, state, country, geom, species, commodities,
                            deposit_types, rank)
    SELECT source, record_id, name, state, 'US', geom, species, commodities, deposit_types, rank
    FROM latest
    ON CONFLICT (source, record_id) DO UPDATE SET
        name = EXCLUDED.name, state = EXCLUDED.state, geom = EXCLUDED.geom, species = EXCLUDED.species,
        commodities = EXCLUDED.commodities, deposit_types = EXCLUDED.deposit_types, rank = EXCLUDED.rank,
        ingested_at = now()
    WHERE (s.name, s.state, s.geom, s.species, s.commodities, s.deposit_types, s.rank)
          IS DISTINCT FROM
          (EXCLUDED.name, EXCLUDED.state, EXCLUDED.geom, EXCLUDED.species, EXCLUDED.commodities,
           EXCLUDED.deposit_types, EXCLUDED.rank)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written
"""


@dataclass
class FileReport:
    """What ingesting one file did."""

    name: str
    kind: str
    n_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    outside_us: int = 0
    rejects: list[Reject] = field(default_factory=list)
    status: str = "ok"
    error: str | None = None
    run_id: int | None = None


def _copy_sites(conn: sa.Connection, sites: list[Site]) -> None:
    """COPY the sites into the staging table (psycopg 3 COPY protocol)."""
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(f"COPY sites_staging ({', '.join(COLUMNS)}) FROM STDIN") as copy:
        for s in sites:
            copy.write_row((
                s.source, s.record_id, s.name, s.state, f"SRID=4326;POINT({s.lon!r} {s.lat!r})",
                s.species, s.commodities, s.deposit_types, s.rank,
            ))


def write_file(engine: sa.Engine, report: FileReport, sites: list[Site], started: datetime) -> FileReport:
    """Upsert one file's sites and record the run, all in one transaction.

    Any failure rolls the whole file back (the store is as it was before the file), and the
    failed run is then recorded on its own.
    """
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(STAGING_DDL)
            _copy_sites(conn, sites)
            inserted, updated = conn.exec_driver_sql(UPSERT_SQL).one()
            report.inserted, report.updated = int(inserted), int(updated)
            distinct = len({(s.source, s.record_id) for s in sites})
            report.unchanged = distinct - report.inserted - report.updated
            report.run_id = _record_run(conn, report, started)
    except Exception as exc:  # noqa: BLE001 - any failure is reported and recorded, then re-raised
        report.status = "failed"
        report.error = f"{type(exc).__name__}: {exc}"
        report.inserted = report.updated = report.unchanged = 0
        log.error("ingest of %s failed and was rolled back: %s", report.name, report.error)
        try:
            with engine.begin() as conn:
                report.run_id = _record_run(conn, report, started)
        except Exception:  # noqa: BLE001 - the database itself may be gone; the report still says why
            log.exception("could not record the failed run of %s", report.name)
        raise
    return report


def _record_run(conn: sa.Connection, report: FileReport, started: datetime) -> int:
    """Insert the ingest_runs row for a file."""
    row = conn.execute(
        ingest_runs.insert().returning(ingest_runs.c.id),
        {
            "kind": report.kind, "path": report.name, "status": report.status, "started_at": started,
            "finished_at": datetime.now(UTC), "n_read": report.n_read, "n_inserted": report.inserted,
            "n_updated": report.updated, "n_skipped": report.outside_us, "n_rejected": len(report.rejects),
            "rejects": orjson.loads(orjson.dumps([r.as_dict() for r in report.rejects])),
            "error": report.error,
        },
    ).one()
    return int(row[0])
