"""the wall's reading stored for every screen: ``live_views``

The alert engine's leader computes a province's wall reading (its summary and commune rows)
every few seconds and keeps it here, one row per scope; wall refreshes and API readers read
that row instead of each summing the aggregates (``control_center.liveview``).

Revision ID: 0005_live_views
Revises: 0004_commune_days
Create Date: 2026-11-27 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import control_center.models

revision: str = "0005_live_views"
down_revision: str | None = "0004_commune_days"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "live_views",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("computed_at", control_center.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_live_views")),
    )


def downgrade() -> None:
    op.drop_table("live_views")
