"""the day counters as one row per commune and day: ``commune_days`` replaces ``commune_daily``

``commune_daily`` kept a row per commune, day and metric; the wall's 30-day window summed five
of them per commune and day (18,600 index entries for a province, a quarter of a refresh).
``commune_days`` keeps one row per commune and day with a column per metric, WITHOUT ROWID on
SQLite so a commune's days are read in place. The counters are moved over unchanged.

Revision ID: 0004_commune_days
Revises: 0003_wall_refresh_reads
Create Date: 2026-11-27 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_commune_days"
down_revision: str | None = "0003_wall_refresh_reads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As control_center.domain.dossier.DAILY_METRICS when this revision was written: a migration
# keeps its own copy, so a later change to the domain cannot rewrite history.
METRICS = (
    "received",
    "received_online",
    "finished",
    "finished_early",
    "finished_on_time",
    "finished_overdue",
    "finished_no_due",
    "returned",
    "rejected",
    "withdrawn",
)


def upgrade() -> None:
    op.create_table(
        "commune_days",
        sa.Column("commune_code", sa.String(length=5), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *(sa.Column(metric, sa.Integer(), nullable=False) for metric in METRICS),
        sa.PrimaryKeyConstraint("commune_code", "day", name=op.f("pk_commune_days")),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_commune_days_day", "commune_days", ["day"])
    columns = ", ".join(METRICS)
    pivot = ", ".join(
        f"coalesce(sum(CASE WHEN metric = '{metric}' THEN value END), 0)" for metric in METRICS
    )
    op.execute(
        f"INSERT INTO commune_days (commune_code, day, {columns}) "
        f"SELECT commune_code, day, {pivot} FROM commune_daily "
        f"WHERE metric IN ({', '.join(repr(m) for m in METRICS)}) "
        "GROUP BY commune_code, day"
    )
    for index in ("ix_commune_daily_window", "ix_commune_daily_day", "ix_commune_daily_cover"):
        op.drop_index(index, table_name="commune_daily")
    op.drop_table("commune_daily")


def downgrade() -> None:
    op.create_table(
        "commune_daily",
        sa.Column("commune_code", sa.String(length=5), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("commune_code", "day", "metric", name=op.f("pk_commune_daily")),
    )
    op.create_index(
        "ix_commune_daily_cover", "commune_daily", ["commune_code", "day", "metric", "value"]
    )
    op.create_index("ix_commune_daily_day", "commune_daily", ["day", "metric"])
    op.create_index(
        "ix_commune_daily_window", "commune_daily", ["commune_code", "metric", "day", "value"]
    )
    op.execute(
        "INSERT INTO commune_daily (commune_code, day, metric, value) "
        + " UNION ALL ".join(
            f"SELECT commune_code, day, '{metric}', {metric} FROM commune_days WHERE {metric} <> 0"
            for metric in METRICS
        )
    )
    op.drop_index("ix_commune_days_day", table_name="commune_days")
    op.drop_table("commune_days")
