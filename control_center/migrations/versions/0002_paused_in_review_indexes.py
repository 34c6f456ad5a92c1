"""the review's covering indexes hold the pause

A dossier paused in time is neither overdue nor due soon (its due date moves with the pause);
the review filters say so with ``is_paused`` and ``paused_since``, which the open-dossier
indexes now carry so that its counts and pages stay index-only. The indexes are partial (open
dossiers only), so rebuilding them reads a small part of the table.

Revision ID: 0002_paused_in_review_indexes
Revises: 0001_initial
Create Date: 2026-11-26 18:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_paused_in_review_indexes"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = {
    "ix_dossiers_open_due": [
        "due_at",
        "dossier_code",
        "commune_code",
        "channel",
        "extension_count",
        "escalation_level",
    ],
    "ix_dossiers_open_level": ["escalation_level", "due_at", "dossier_code", "commune_code"],
    "ix_dossiers_open_officer": ["officer", "due_at", "dossier_code", "commune_code"],
}
_PAUSE = ["is_paused", "paused_since"]


def _rebuild(with_pause: bool) -> None:
    for name, columns in _INDEXES.items():
        op.drop_index(
            name,
            table_name="dossiers",
            sqlite_where=sa.text("is_open = 1"),
            postgresql_where=sa.text("is_open"),
        )
        op.create_index(
            name,
            "dossiers",
            columns + (_PAUSE if with_pause else []),
            sqlite_where=sa.text("is_open = 1"),
            postgresql_where=sa.text("is_open"),
        )


def upgrade() -> None:
    _rebuild(with_pause=True)


def downgrade() -> None:
    _rebuild(with_pause=False)
