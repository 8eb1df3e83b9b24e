"""Table definitions (the schema itself is owned by the Alembic migrations)."""

from __future__ import annotations

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData()

sites = sa.Table(
    "sites",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
    sa.Column("source", sa.Text, nullable=False, comment="Source id (MinMod source_id URI, or mrds/geojson)"),
    sa.Column("record_id", sa.Text, nullable=False, comment="The record's id within its source"),
    sa.Column("name", sa.Text),
    sa.Column("state", sa.String(2), comment="US postal code of the state the point lies in"),
    sa.Column("country", sa.String(2), nullable=False, server_default="US"),
    sa.Column(
        "geom",
        Geometry("POINT", srid=4326, spatial_index=False),
        nullable=False,
    ),
    sa.Column(
        "species",
        pg.ARRAY(sa.Text),
        nullable=False,
        server_default="{}",
        comment="Canonical commodity ids (gold, sand_and_gravel, ...)",
    ),
    sa.Column("commodities", pg.ARRAY(sa.Text), nullable=False, server_default="{}",
              comment="Commodity names as the source spelled them"),
    sa.Column("deposit_types", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("rank", sa.Text, comment="Site rank or development status as the source gave it"),
    sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.UniqueConstraint("source", "record_id", name="uq_sites_source_record"),
    sa.Index("ix_sites_geom", "geom", postgresql_using="gist"),
    sa.Index("ix_sites_species", "species", postgresql_using="gin"),
)

ingest_runs = sa.Table(
    "ingest_runs",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(always=False), primary_key=True),
    sa.Column("kind", sa.Text, nullable=False, comment="minmod, mrds or geojson"),
    sa.Column("path", sa.Text, nullable=False, comment="File name (not a path a client chose)"),
    sa.Column("status", sa.Text, nullable=False, comment="ok or failed"),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("n_read", sa.Integer, nullable=False, server_default="0"),
    sa.Column("n_inserted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("n_updated", sa.Integer, nullable=False, server_default="0"),
    sa.Column("n_skipped", sa.Integer, nullable=False, server_default="0",
              comment="Good records outside the US"),
    sa.Column("n_rejected", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rejects", pg.JSONB, nullable=False, server_default="[]",
              comment="[{record, reason}] for every rejected record"),
    sa.Column("error", sa.Text),
)

layer_versions = sa.Table(
    "layer_versions",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(always=False), primary_key=True, comment="N of layers/v<N>/"),
    sa.Column("status", sa.Text, nullable=False, server_default="building",
              comment="building, ready (files in place), failed or removed"),
    sa.Column("is_current", sa.Boolean, nullable=False, server_default=sa.false(),
              comment="The version being served (at most one row)"),
    sa.Column("job_id", sa.Integer, comment="The job that built it"),
    sa.Column("model", pg.JSONB, nullable=False, server_default="{}", comment="Model card summary (sha256, species)"),
    sa.Column("cube_sha256", sa.Text),
    sa.Column("ensemble", pg.JSONB, nullable=False, server_default="{}", comment="masks, seeds, evaluations"),
    sa.Column("layers", pg.JSONB, nullable=False, server_default="[]",
              comment="[{id, species, kind, file, stats}] of the COGs in the folder"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("published_at", sa.DateTime(timezone=True)),
    sa.Index("uq_layer_versions_current", "is_current", unique=True, postgresql_where=sa.text("is_current")),
)

clusters = sa.Table(
    "clusters",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
    sa.Column("layer_version", sa.Integer, sa.ForeignKey("layer_versions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("species", sa.Text, nullable=False),
    sa.Column("rank", sa.Integer, nullable=False, comment="1 = highest score of its species in its version"),
    sa.Column("mean_score", sa.Float, nullable=False),
    sa.Column("max_score", sa.Float, nullable=False),
    sa.Column("n_cells", sa.Integer, nullable=False),
    sa.Column("area_km2", sa.Float, nullable=False),
    sa.Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False),
    sa.Column("n_sites", sa.Integer, nullable=False, server_default="0"),
    sa.Column("sites", pg.JSONB, nullable=False, server_default="[]",
              comment="Known sites of any commodity inside: [{id, name, species, commodities}]"),
    sa.Column("score", sa.Float, nullable=False, server_default="0",
              comment="mean_score x ln(1 + n_cells) x ln(1 + km to nearest_site, capped at 50)"),
    sa.Column("nearest_site", pg.JSONB, comment="Nearest known site of the species: {id, name, source, lon, lat}"),
    sa.Column("nearest_distance_m", sa.Float,
              comment="Distance from the cluster to nearest_site, in metres (EPSG:5070)"),
    sa.Index("ix_clusters_geom", "geom", postgresql_using="gist"),
    sa.Index("ix_clusters_version_species", "layer_version", "species"),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(always=False), primary_key=True),
    sa.Column("kind", sa.Text, nullable=False, comment="reinference"),
    sa.Column("status", sa.Text, nullable=False, comment="running, succeeded or failed"),
    sa.Column("progress", sa.Float, nullable=False, server_default="0"),
    sa.Column("message", sa.Text),
    sa.Column("params", pg.JSONB, nullable=False, server_default="{}"),
    sa.Column("pid", sa.Integer, comment="Worker process id"),
    sa.Column("host", sa.Text, comment="Worker host name"),
    sa.Column("layer_version", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Index("uq_jobs_one_running", "kind", unique=True, postgresql_where=sa.text("status = 'running'")),
)
