"""the wall's refresh reads less: a backlog row per commune and covering indexes

- ``commune_backlog``: open dossiers per commune, kept by the collector with the due buckets
  (filled here from them), so the backlog total is one row per commune, not a sum of one
  bucket per open dossier.
- ``ix_commune_daily_window`` in (commune, metric, day) order: the 30-day window sums read
  one range per commune and metric, in GROUP BY order.
- the dossiers' received / finished / returned indexes carry channel and status, so "the
  same time yesterday" counts read the indexes alone.

Revision ID: 0003_wall_refresh_reads
Revises: 0002_paused_in_review_indexes
Create Date: 2026-11-26 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_wall_refresh_reads"
down_revision: str | None = "0002_paused_in_review_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RETURNED_WHERE = {
    "sqlite_where": sa.text("returned_at IS NOT NULL"),
    "postgresql_where": sa.text("returned_at IS NOT NULL"),
}


def _dossier_indexes(covering: bool) -> None:
    extra = {"received": ["channel"], "finished": ["status"], "returned": ["status"]}
    for name, where in (("received", {}), ("finished", {}), ("returned", _RETURNED_WHERE)):
        index = f"ix_dossiers_commune_{name}"
        op.drop_index(index, table_name="dossiers", **where)  # type: ignore[arg-type]
        columns = ["commune_code", f"{name}_at"] + (extra[name] if covering else [])
        op.create_index(index, "dossiers", columns, **where)  # type: ignore[arg-type]


def upgrade() -> None:
    op.create_table(
        "commune_backlog",
        sa.Column("commune_code", sa.String(length=5), nullable=False),
        sa.Column("open_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("commune_code", name=op.f("pk_commune_backlog")),
    )
    op.execute(
        "INSERT INTO commune_backlog (commune_code, open_count) "
        "SELECT commune_code, sum(open_count) FROM commune_due_buckets GROUP BY commune_code"
    )
    op.create_index(
        "ix_commune_daily_window", "commune_daily", ["commune_code", "metric", "day", "value"]
    )
    _dossier_indexes(covering=True)


def downgrade() -> None:
    _dossier_indexes(covering=False)
    op.drop_index("ix_commune_daily_window", table_name="commune_daily")
    op.drop_table("commune_backlog")
