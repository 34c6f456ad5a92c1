"""The country's figures (``CC_SCOPE=national``), read once per period for every viewer.

:func:`national_view` reads the per-commune aggregates once and sums them three ways: the
country (the ``GET /api/v1/summary`` document), each province (``GET /api/v1/provinces``) and
the communes to watch. At 3,321 communes and millions of dossiers that is about a million
aggregate rows, so :func:`cached_national_view` shares one reading per ``CC_NATIONAL_CACHE_S``
between every browser and gunicorn worker of the machine (:mod:`control_center.readcache`);
the wall and the API then answer from it, and agree with each other by construction. A
province's figures inside the national deployment are shared the same way
(:func:`cached_province_view`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from control_center import queries
from control_center.domain.calendar import WorkingCalendar
from control_center.readcache import SharedCache
from control_center.settings import Settings

COMMUNES_TO_WATCH = 10
_SILENT = {"offline": 0, "stale": 1}
_SILENT_FIELDS = ("code", "name", "province_code", "feed_state", "last_seen_at")


def communes_to_watch(
    rows: list[dict[str, Any]], n: int = COMMUNES_TO_WATCH
) -> list[dict[str, Any]]:
    """Communes with overdue or soon-due dossiers, worst first (overdue, then due soon)."""
    troubled = [r for r in rows if r["overdue"] > 0 or r["due_soon"] > 0]
    troubled.sort(key=lambda r: (-r["overdue"], -r["due_soon"], r["name"]))
    return troubled[:n]


def national_view(
    session: Session, settings: Settings, calendar: WorkingCalendar, now: datetime
) -> dict[str, Any]:
    """``summary`` (the country), ``provinces`` (34 rows), ``communes_to_watch`` (worst 10)
    and ``silent_centres`` (every stale or offline centre, with its province)."""
    with queries.shared_reads(session):
        summary = queries.province_summary(session, settings, calendar, now)
        communes = queries.commune_rows(session, settings, calendar, now)
        provinces = queries.province_rows(session, settings, calendar, now)
    silent = [
        {key: row[key] for key in _SILENT_FIELDS}
        for row in communes
        if row["feed_state"] in _SILENT
    ]
    return {
        "summary": summary,
        "provinces": provinces,
        "communes_to_watch": communes_to_watch(communes),
        "silent_centres": silent,
    }


def cached_national_view(
    session: Session, settings: Settings, calendar: WorkingCalendar, now: datetime
) -> dict[str, Any]:
    """:func:`national_view`, computed at most once per ``CC_NATIONAL_CACHE_S`` on this machine."""
    return _shared(
        settings, "national-view", lambda: national_view(session, settings, calendar, now)
    )


def province_view(
    session: Session, settings: Settings, calendar: WorkingCalendar, now: datetime
) -> dict[str, Any]:
    """One province's ``summary`` and ``communes`` (its rows), read together."""
    with queries.shared_reads(session):
        return {
            "summary": queries.province_summary(session, settings, calendar, now),
            "communes": queries.commune_rows(session, settings, calendar, now),
        }


def cached_province_view(
    session: Session, settings: Settings, calendar: WorkingCalendar, now: datetime
) -> dict[str, Any]:
    """:func:`province_view` of ``settings.province`` in a national deployment, shared like
    the country's reading: a province's wall, its ``/summary?province=`` and its communes read
    a few hundred thousand aggregate rows among the country's millions (100-200 ms), the same
    for every viewer of that province."""
    return _shared(
        settings,
        f"province-view:{settings.province}",
        lambda: province_view(session, settings, calendar, now),
    )


def _shared(settings: Settings, name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    if settings.national_cache_s <= 0:
        return compute()
    # The database (not its password) names the entry: tests and sites never share one.
    database = hashlib.sha256(settings.database_url.encode()).hexdigest()[:16]
    cache = SharedCache(settings.cache_dir, settings.national_cache_s)
    value: dict[str, Any] = cache.get(f"{name}:{database}", compute)
    return value
