"""Layer versions, flagged clusters and jobs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import geoalchemy2
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "layer_versions",
        sa.Column("id", sa.Integer, sa.Identity(always=False), primary_key=True, comment="N of layers/v<N>/"),
        sa.Column("status", sa.Text, nullable=False, server_default="building",
                  comment="building, ready (files in place), failed or removed"),
        sa.Column("is_current", sa.Boolean, nullable=False, server_default=sa.false(),
                  comment="The version being served (at most one row)"),
        sa.Column("job_id", sa.Integer, comment="The job that built it"),
        sa.Column("model", pg.JSONB, nullable=False, server_default="{}",
                  comment="Model card summary (sha256, species)"),
        sa.Column("cube_sha256", sa.Text),
        sa.Column("ensemble", pg.JSONB, nullable=False, server_default="{}", comment="masks, seeds, evaluations"),
        sa.Column("layers", pg.JSONB, nullable=False, server_default="[]",
                  comment="[{id, species, kind, file, stats}] of the COGs in the folder"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("published_at", sa.DateTime(timezone=True)),
    )
    op.create_index("uq_layer_versions_current", "layer_versions", ["is_current"], unique=True,
                    postgresql_where=sa.text("is_current"))
    op.create_table(
        "clusters",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("layer_version", sa.Integer, sa.ForeignKey("layer_versions.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("species", sa.Text, nullable=False),
        sa.Column("rank", sa.Integer, nullable=False,
                  comment="1 = highest mean score of its species in its version"),
        sa.Column("mean_score", sa.Float, nullable=False),
        sa.Column("max_score", sa.Float, nullable=False),
        sa.Column("n_cells", sa.Integer, nullable=False),
        sa.Column("area_km2", sa.Float, nullable=False),
        sa.Column("geom", geoalchemy2.Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False),
        sa.Column("n_sites", sa.Integer, nullable=False, server_default="0"),
        sa.Column("sites", pg.JSONB, nullable=False, server_default="[]",
                  comment="Known sites of any commodity inside or near: [{id, name, species, distance_m}]"),
    )
    op.create_index("ix_clusters_geom", "clusters", ["geom"], postgresql_using="gist")
    op.create_index("ix_clusters_version_species", "clusters", ["layer_version", "species"])
    op.create_table(
        "jobs",
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
    )
    op.create_index("uq_jobs_one_running", "jobs", ["kind"], unique=True,
                    postgresql_where=sa.text("status = 'running'"))


def downgrade() -> None:
    op.drop_index("uq_jobs_one_running", table_name="jobs")
    op.drop_table("jobs")
    op.drop_index("ix_clusters_version_species", table_name="clusters")
    op.drop_index("ix_clusters_geom", table_name="clusters", postgresql_using="gist")
    op.drop_table("clusters")
    op.drop_index("uq_layer_versions_current", table_name="layer_versions")
    op.drop_table("layer_versions")
