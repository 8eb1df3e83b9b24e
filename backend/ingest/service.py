"""Ingestion runs: read a source file, place its sites, write it in one transaction, report."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from backend.ingest.geojson import read_geojson
from backend.ingest.minmod import SourceFile, expand_paths, read_path
from backend.ingest.mrds import read_mrds
from backend.ingest.placement import place
from backend.ingest.store import FileReport, write_file

log = logging.getLogger(__name__)


def ingest_parsed(engine: sa.Engine, parsed: SourceFile, kind: str, started: datetime) -> FileReport:
    """Place and write one parsed file."""
    placement = place(parsed.sites)
    report = FileReport(
        name=parsed.name, kind=kind, n_read=parsed.n_read, outside_us=placement.outside_us,
        rejects=parsed.rejects + placement.rejects,
    )
    write_file(engine, report, placement.sites, started)
    log.info(
        "%s: %d read, %d inserted, %d updated, %d unchanged, %d outside the US, %d rejected",
        report.name, report.n_read, report.inserted, report.updated, report.unchanged, report.outside_us,
        len(report.rejects),
    )
    return report


def ingest_minmod(engine: sa.Engine, paths: Iterable[Path]) -> Iterator[FileReport]:
    """Ingest MinMod JSON archives, batches or folders; one report per file."""
    for path in expand_paths(paths):
        started = datetime.now(UTC)
        for parsed in read_path(path):
            yield ingest_parsed(engine, parsed, "minmod", started)
            started = datetime.now(UTC)


def ingest_mrds(engine: sa.Engine, path: Path) -> FileReport:
    """Ingest a USGS mrds.csv file."""
    started = datetime.now(UTC)
    return ingest_parsed(engine, read_mrds(path), "mrds", started)


def ingest_geojson(engine: sa.Engine, path: Path) -> FileReport:
    """Ingest a GeoJSON FeatureCollection of point sites."""
    started = datetime.now(UTC)
    return ingest_parsed(engine, read_geojson(path), "geojson", started)
