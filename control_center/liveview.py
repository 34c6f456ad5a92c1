"""A province's wall reading, computed once every few seconds for every screen (``live_views``).

A wall refresh shows the province's summary and a row per commune: about fifteen aggregate
reads, 50-70 ms of database and CPU at a million dossiers (docs/performance.md), and the same
figures for every screen, every gunicorn worker and every API reader at that moment. So the
process that exists once per deployment, the alert engine's leader, computes the reading every
``CC_LIVE_VIEW_S`` (2 s) and stores it (:func:`publish`); a refresh reads that one row
(:func:`province_reading`). When there is none, or it is further than
``CC_LIVE_VIEW_MAX_AGE_S`` from the reader's clock (the engine stopped, a long cycle held it
up, a fresh database), the request computes the reading itself as it would without the
engine: no screen shows figures older than that as current, and the wall's own staleness
warning (the collector's heartbeat) is part of the reading either way.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from control_center.db import insert_for
from control_center.domain.calendar import WorkingCalendar
from control_center.models import LiveView
from control_center.national import province_view
from control_center.readcache import dumps, loads
from control_center.settings import Settings


def publish(
    session: Session, settings: Settings, calendar: WorkingCalendar, now: datetime
) -> dict[str, Any]:
    """Compute the province's reading at ``now`` and store it; returns it.

    A second writer (an engine handing over leadership) never replaces a newer reading with
    an older one."""
    view = province_view(session, settings, calendar, now)
    stmt = insert_for(session, LiveView.__table__).values(
        scope=settings.province, computed_at=now, document=dumps(view)
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["scope"],
            set_={"computed_at": stmt.excluded.computed_at, "document": stmt.excluded.document},
            where=LiveView.__table__.c.computed_at < stmt.excluded.computed_at,
        )
    )
    return view


def stored(session: Session, settings: Settings, now: datetime) -> dict[str, Any] | None:
    """The stored reading of the province when it was computed within
    ``live_view_max_age_s`` of ``now`` (either side: the engine's clock and the reader's may
    differ a little), else None."""
    if settings.live_view_max_age_s <= 0:
        return None
    row = session.execute(
        select(LiveView.computed_at, LiveView.document).where(LiveView.scope == settings.province)
    ).first()
    if row is None or abs(now - row.computed_at) > timedelta(seconds=settings.live_view_max_age_s):
        return None
    view: dict[str, Any] = loads(row.document)
    return view


def province_reading(
    session: Session, settings: Settings, calendar: WorkingCalendar, now: datetime
) -> dict[str, Any]:
    """``{"summary": ..., "communes": [...]}`` of the province (as
    :func:`control_center.national.province_view`): the stored reading while it is current,
    else computed now."""
    return stored(session, settings, now) or province_view(session, settings, calendar, now)
