"""Summary snapshots: the province's wall figures every few minutes (``summary_snapshots``).

The wall shows each figure "against the same time yesterday". Day counters (received,
returned today) can be recounted for any hour from the dossiers; figures that are a *state* -
open, overdue and due-soon dossiers, tickets waiting, centres live / stale / offline, the
settlement-progress score - cannot: yesterday's state is gone once the dossiers change. So a
process that exists once per deployment, the alert engine (one leader), takes a snapshot every
:data:`SNAPSHOT_EVERY` as part of its cycle, and the summary reads the snapshot nearest to
``now - 24 h`` (:func:`control_center.queries.snapshot_near`).

The demo's backfill takes them along its history (:func:`marks`) so that a fresh demo shows
trends at once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from control_center import queries
from control_center.db import insert_for
from control_center.domain.calendar import WorkingCalendar
from control_center.models import SummarySnapshot
from control_center.settings import Settings

log = logging.getLogger(__name__)

SNAPSHOT_EVERY = timedelta(minutes=5)
# Long enough for "same time yesterday" across a long weekend's Monday; older ones are pruned.
KEEP_FOR = timedelta(days=8)

# The summary's figures that are states at an instant; counters and rates have exact trends.
FIGURES = (
    "open",
    "overdue",
    "due_soon",
    "queue_waiting",
    "avg_wait_minutes",
    "centres_online",
    "centres_stale",
    "centres_offline",
    "centres_total",
    "on_time_rate",
    "online_rate",
    "progress_score",
    "received_today",
    "returned_today",
)


def figures_of(summary: dict[str, Any]) -> dict[str, Any]:
    """The snapshot's content: the :data:`FIGURES` of a province summary."""
    return {key: summary.get(key) for key in FIGURES}


def take(
    session: Session,
    settings: Settings,
    calendar: WorkingCalendar,
    now: datetime,
    *,
    every: timedelta = SNAPSHOT_EVERY,
) -> bool:
    """Snapshot the province at ``now`` unless the newest snapshot is younger than ``every``.

    Returns whether one was written. Several writers (a second engine during a leadership
    hand-over) at worst write two snapshots a moment apart; the key keeps one per instant.
    """
    scope = settings.province
    latest = session.scalar(
        select(SummarySnapshot.taken_at)
        .where(SummarySnapshot.scope == scope)
        .order_by(SummarySnapshot.taken_at.desc())
        .limit(1)
    )
    if latest is not None and latest > now - every:
        return False
    summary = queries.province_summary(session, settings, calendar, now)
    session.execute(
        insert_for(session, SummarySnapshot.__table__)
        .values(scope=scope, taken_at=now, figures=figures_of(summary))
        .on_conflict_do_nothing(index_elements=["scope", "taken_at"])
    )
    session.execute(
        delete(SummarySnapshot).where(
            SummarySnapshot.scope == scope, SummarySnapshot.taken_at < now - KEEP_FOR
        )
    )
    return True


def marks(start: datetime, end: datetime, every: timedelta = SNAPSHOT_EVERY) -> list[datetime]:
    """The instants in ``[start, end]`` a snapshot is due, on multiples of ``every`` (UTC)."""
    step = every.total_seconds()
    first = datetime.fromtimestamp(-(-start.timestamp() // step) * step, tz=start.tzinfo)
    out = []
    at = first
    while at <= end:
        out.append(at)
        at += every
    return out
