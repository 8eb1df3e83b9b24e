"""Clusters: the nearest known site of the species, a ranking score, and the sites inside.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("clusters", sa.Column(
        "score", sa.Float, nullable=False, server_default="0",
        comment="mean_score x ln(1 + n_cells) x ln(1 + km to nearest_site, capped at 50)"))
    op.add_column("clusters", sa.Column(
        "nearest_site", pg.JSONB, comment="Nearest known site of the species: {id, name, source, lon, lat}"))
    op.add_column("clusters", sa.Column("nearest_distance_m", sa.Float,
                                        comment="Distance from the cluster to nearest_site, in metres (EPSG:5070)"))
    op.alter_column("clusters", "rank", existing_type=sa.Integer, existing_nullable=False,
                    comment="1 = highest score of its species in its version")
    op.alter_column("clusters", "sites", existing_type=pg.JSONB, existing_nullable=False,
                    comment="Known sites of any commodity inside: [{id, name, species, commodities}]")


def downgrade() -> None:
    op.alter_column("clusters", "sites", existing_type=pg.JSONB, existing_nullable=False,
                    comment="Known sites of any commodity inside or near: [{id, name, species, distance_m}]")
    op.alter_column("clusters", "rank", existing_type=sa.Integer, existing_nullable=False,
                    comment="1 = highest mean score of its species in its version")
    op.drop_column("clusters", "nearest_distance_m")
    op.drop_column("clusters", "nearest_site")
    op.drop_column("clusters", "score")
