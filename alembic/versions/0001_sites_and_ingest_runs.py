"""Sites and ingest runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import geoalchemy2
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table(
        "sites",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("source", sa.Text, nullable=False,
                  comment="Source id (MinMod source_id URI, or mrds/geojson)"),
        sa.Column("record_id", sa.Text, nullable=False, comment="The record's id within its source"),
        sa.Column("name", sa.Text),
        sa.Column("state", sa.String(2), comment="US postal code of the state the point lies in"),
        sa.Column("country", sa.String(2), nullable=False, server_default="US"),
        sa.Column("geom", geoalchemy2.Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
        sa.Column("species", pg.ARRAY(sa.Text), nullable=False, server_default="{}",
                  comment="Canonical commodity ids (gold, sand_and_gravel, ...)"),
        sa.Column("commodities", pg.ARRAY(sa.Text), nullable=False, server_default="{}",
                  comment="Commodity names as the source spelled them"),
        sa.Column("deposit_types", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("rank", sa.Text, comment="Site rank or development status as the source gave it"),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("source", "record_id", name="uq_sites_source_record"),
    )
    op.create_index("ix_sites_geom", "sites", ["geom"], postgresql_using="gist")
    op.create_index("ix_sites_species", "sites", ["species"], postgresql_using="gin")
    op.create_table(
        "ingest_runs",
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


def downgrade() -> None:
    op.drop_table("ingest_runs")
    op.drop_index("ix_sites_species", table_name="sites", postgresql_using="gin")
    op.drop_index("ix_sites_geom", table_name="sites", postgresql_using="gist")
    op.drop_table("sites")
