"""Read-side queries shared by the wall and the JSON API.

Every function takes a session, the settings, the working-day calendar and an explicit aware
``now`` (so tests and the wall agree on one clock) and returns JSON-ready dicts: aware
datetimes, dates, ints, floats, strings; rates are fractions in 0..1, ``None`` without data.

They read the aggregates the collector maintains (``commune_due_buckets``, ``commune_days``,
``centre_feeds``, ``queue_tickets``, ...) with a handful of GROUP BY queries per call and no
per-commune loops. Only the paged dossier lists touch ``dossiers``, through its indexes.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Executable,
    Result,
    Row,
    Select,
    SQLColumnExpression,
    String,
    and_,
    any_,
    case,
    extract,
    false,
    func,
    literal,
    select,
    true,
    union_all,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from control_center.domain import feed as feeds
from control_center.domain.calendar import LOCAL_TZ, WorkingCalendar
from control_center.domain.dossier import (
    DAILY_METRICS,
    FINISHED,
    NOT_ACCEPTED,
    RESULT_READY,
    RETURNED,
)
from control_center.models import (
    Alert,
    CentreFeed,
    Commune,
    CommuneBacklog,
    CommuneDay,
    CommuneDueBucket,
    CounterState,
    DeadLetter,
    DeadLetterCount,
    Dossier,
    DossierEvent,
    Heartbeat,
    Procedure,
    QueueTicket,
    SummarySnapshot,
)
from control_center.security.roles import UNRESTRICTED, Scope
from control_center.settings import Settings

RATE_WINDOW_DAYS = 30
DOSSIER_STATES = ("open", "overdue", "due_soon", "finished")
ALERT_STATES = ("open", "acknowledged", "resolved")
COLLECTOR_HEARTBEAT_PREFIX = "collector"
# Applicant names are personal data: the read API never repeats them.
_ENVELOPE_FIELDS = frozenset({"event_id", "type", "occurred_at", "commune_code", "dossier_code"})
_FINISHED_OUTCOMES = ("finished_early", "finished_on_time", "finished_overdue")


# --- time helpers ---------------------------------------------------------------------------


def local_today(now: datetime) -> date:
    return now.astimezone(LOCAL_TZ).date()


def local_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), LOCAL_TZ)


def due_soon_until(settings: Settings, calendar: WorkingCalendar, now: datetime) -> datetime:
    """End of the "due soon" window: one working day (by default) of working time after now."""
    return calendar.add_working_seconds(now, settings.due_soon_working_hours * 3600)


def _minutes(seconds: float | None, digits: int = 1) -> float | None:
    return None if seconds is None else round(float(seconds) / 60.0, digits)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _wait_seconds(session: Session) -> ColumnElement[Any]:
    """Seconds from ticket issue to call (or to service start when the call was not reported)."""
    called = func.coalesce(QueueTicket.called_at, QueueTicket.started_at)
    if session.get_bind().dialect.name == "postgresql":
        return extract("epoch", called - QueueTicket.issued_at)
    # SQLite stores UTC text that julianday() parses.
    return (func.julianday(called) - func.julianday(QueueTicket.issued_at)) * 86400.0


def in_scope(settings: Settings) -> ColumnElement[bool]:
    """Communes the settings cover: the province's, or every commune in national mode."""
    return true() if settings.national else Commune.province_code == settings.province


_SCOPE_CODES = "control_center.scope_codes"


def _scope_codes(session: Session, settings: Settings) -> list[str] | None:
    """The province's commune codes, read once per session; None when no row needs filtering:
    national scope, or a database whose communes are all this province's (a provincial
    deployment: ``db upgrade`` loads CC_PROVINCE's communes only, and the collector keeps
    aggregates for known communes only). Filtering by 124 codes that every row matches costs
    a wall refresh a tenth of its time (binding the list into every statement)."""
    if settings.national:
        return None
    memo: dict[str, list[str] | None] = session.info.setdefault(_SCOPE_CODES, {})
    if settings.province not in memo:
        others = select(Commune.code).where(Commune.province_code != settings.province)
        memo[settings.province] = (
            list(
                session.scalars(
                    select(Commune.code).where(Commune.province_code == settings.province)
                )
            )
            if session.scalar(select(others.exists()))
            else None
        )
    return memo[settings.province]


def commune_filter(
    session: Session, settings: Settings, column: SQLColumnExpression[Any]
) -> ColumnElement[bool]:
    """``column`` (a commune code) is one of the communes the settings cover.

    By the communes' codes, not ``IN (SELECT code FROM communes WHERE province_code = ...)``:
    given the subquery, PostgreSQL plans one province's per-commune aggregates inside a
    national database as a scan of every commune's rows; given the codes, it seeks the
    province's ranges of the indexes that start with the commune (aggregates, dossiers by
    commune and time, queue tickets by commune and day)."""
    codes = _scope_codes(session, settings)
    if codes is None:
        return true()
    if session.get_bind().dialect.name == "postgresql":
        # One array parameter, not one placeholder per commune for the driver to render.
        return column == any_(literal(codes, ARRAY(String())))
    return column.in_(codes)


# --- aggregate readers (one query each, grouped by commune) ----------------------------------

_SHARED_READS = "control_center.shared_reads"
_T = TypeVar("_T")


@contextmanager
def shared_reads(session: Session) -> Iterator[Session]:
    """Inside the block, a repeated aggregate read with the same arguments is answered from the
    first one: a wall refresh asks for the province summary and the commune rows, which read the
    same aggregates at the same ``now``. For read-only blocks only; scoped to one session (one
    request), so nothing outlives it and no worker keeps state. A block inside another (a
    province's shared reading computed inside the wall's refresh) shares the outer one's."""
    if _SHARED_READS in session.info:
        yield session
        return
    session.info[_SHARED_READS] = {}
    try:
        yield session
    finally:
        session.info.pop(_SHARED_READS, None)


def _shared(read: Callable[..., _T]) -> Callable[..., _T]:
    @functools.wraps(read)
    def wrapper(session: Session, settings: Settings, *args: Any) -> _T:
        memo = session.info.get(_SHARED_READS)
        if memo is None:
            return read(session, settings, *args)
        key = (read.__name__, settings.province, settings.scope, *args)
        if key not in memo:
            memo[key] = read(session, settings, *args)
        return memo[key]  # type: ignore[no-any-return]

    return wrapper


def _read(session: Session, stmt: Executable) -> Result[*tuple[Any, ...]]:
    """An aggregate read as plain rows, on the session's connection and transaction.

    ``session.execute`` runs column selects through the ORM's result loading too, which
    costs about 5 µs a row: with a refresh's few thousand aggregate rows, a fifth of the
    wall's refresh (docs/performance.md). Pending ORM changes are flushed first, as
    ``session.execute`` would."""
    if session.autoflush:
        session.flush()
    return session.connection().execute(stmt)


@_shared
def _due_counts(
    session: Session, settings: Settings, now: datetime, soon_until: datetime
) -> dict[str, dict[str, int]]:
    # The backlog total is one row per commune (kept by the collector with the buckets);
    # overdue and due soon only need the buckets due before ``soon_until`` (a range scan).
    b = CommuneDueBucket
    in_scope_ = commune_filter(session, settings, b.commune_code)
    counts: dict[str, dict[str, int]] = {}
    totals = select(CommuneBacklog.commune_code, CommuneBacklog.open_count).where(
        commune_filter(session, settings, CommuneBacklog.commune_code)
    )
    for code, total in _read(session, totals):
        counts[code] = {"open": int(total or 0), "overdue": 0, "due_soon": 0}
    # Overdue and due soon are two index ranges each side of ``now`` (in one statement):
    # summing each range reads half as much as one range with a CASE per bucket. A dossier
    # paused in time is in the backlog, never overdue or due soon (its due date moves with
    # the pause).
    ranges = {
        "overdue": b.due_minute < now,
        "due_soon": and_(b.due_minute >= now, b.due_minute < soon_until),
    }
    sums = union_all(
        *(
            select(literal(key), b.commune_code, func.sum(b.open_count))
            .where(in_range, in_scope_, b.paused == false())
            .group_by(b.commune_code)
            for key, in_range in ranges.items()
        )
    )
    for key, code, n in _read(session, sums):
        counts.setdefault(code, {"open": 0, "overdue": 0, "due_soon": 0})[key] = int(n or 0)
    return counts


# The metrics rates are computed from over a 30-day window (on-time, online, the 766 score).
WINDOW_METRICS = (
    "received",
    "received_online",
    "finished_early",
    "finished_on_time",
    "finished_overdue",
)


@_shared
def _daily_counts(
    session: Session, settings: Settings, today: date
) -> dict[str, dict[str, dict[str, int]]]:
    """{commune: {span: {metric: n}}} from commune_days, for the spans ``today``,
    ``yesterday``, ``window`` (the 30 days ending today) and ``prev_window`` (the 30 days
    ending yesterday); the windows hold :data:`WINDOW_METRICS`. A span or a metric without
    data is absent (:func:`_metric` reads it as 0)."""
    d = CommuneDay
    yesterday = today - timedelta(days=1)
    window_start = today - timedelta(days=RATE_WINDOW_DAYS - 1)
    prev_start = window_start - timedelta(days=1)
    in_scope_ = commune_filter(session, settings, d.commune_code)
    out: dict[str, dict[str, dict[str, int]]] = {}

    # The window: each commune's days are one range of the primary key, summed per metric.
    window = (
        select(d.commune_code, *(func.sum(d.__table__.c[m]) for m in WINDOW_METRICS))
        .where(in_scope_, d.day >= window_start)
        .group_by(d.commune_code)
    )
    for code, *sums in _read(session, window):
        totals = [int(n or 0) for n in sums]
        out[code] = {
            "window": dict(zip(WINDOW_METRICS, totals, strict=True)),
            "prev_window": dict(zip(WINDOW_METRICS, totals, strict=True)),
        }

    # Today, yesterday and the day that drops out of yesterday's window: a row each per
    # commune. prev_window = window - today + that day.
    days = select(d.commune_code, d.day, *(d.__table__.c[m] for m in DAILY_METRICS)).where(
        d.day.in_([today, yesterday, prev_start]), in_scope_
    )
    for code, day, *values in _read(session, days):
        spans = out.setdefault(code, {})
        counts = dict(zip(DAILY_METRICS, values, strict=True))
        if day == yesterday:
            spans["yesterday"] = counts
            continue
        if day == today:
            spans["today"] = counts
        # today is in today's window only, prev_start in yesterday's only
        sign = -1 if day == today else 1
        prev = spans.setdefault("prev_window", dict.fromkeys(WINDOW_METRICS, 0))
        for metric in WINDOW_METRICS:
            prev[metric] += sign * counts[metric]
    return out


@_shared
def _queue_today(session: Session, settings: Settings, today: date) -> dict[str, dict[str, Any]]:
    q = QueueTicket
    wait = _wait_seconds(session)
    has_call = func.coalesce(q.called_at, q.started_at).is_not(None)
    stmt = (
        select(
            q.commune_code,
            func.sum(case((q.state == "waiting", 1), else_=0)),
            func.avg(case((and_(has_call, q.issued_at.is_not(None)), wait), else_=None)),
            func.min(case((q.state == "waiting", q.issued_at), else_=None)),
            func.sum(case((and_(has_call, q.issued_at.is_not(None)), 1), else_=0)),
        )
        .where(q.service_day == today, commune_filter(session, settings, q.commune_code))
        .group_by(q.commune_code)
    )
    out: dict[str, dict[str, Any]] = {}
    for code, waiting, avg_wait, oldest, waited in _read(session, stmt):
        out[code] = {
            "waiting": int(waiting or 0),
            "avg_wait_s": None if avg_wait is None else float(avg_wait),
            "oldest_waiting_at": _as_utc(oldest),
            "waited": int(waited or 0),  # tickets behind avg_wait_s, to weigh it in sums
        }
    return out


def _mean_wait_s(queues: Iterable[Mapping[str, Any]]) -> float | None:
    """The mean wait over several communes' tickets (:func:`_queue_today` entries): each
    commune's mean weighed by the tickets behind it. None when no ticket has been called."""
    total, n = 0.0, 0
    for q in queues:
        if q["avg_wait_s"] is not None and q["waited"]:
            total += q["avg_wait_s"] * q["waited"]
            n += q["waited"]
    return total / n if n else None


def _as_utc(value: Any) -> datetime | None:
    """An aggregate over a datetime column comes back as text on SQLite; normalise to aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _counters_open(session: Session, settings: Settings) -> dict[str, int]:
    stmt = (
        select(CounterState.commune_code, func.count())
        .where(
            CounterState.is_open.is_(True),
            commune_filter(session, settings, CounterState.commune_code),
        )
        .group_by(CounterState.commune_code)
    )
    return {code: int(n) for code, n in _read(session, stmt)}


@_shared
def _open_alerts_by_commune(session: Session, settings: Settings) -> dict[str | None, int]:
    """Open alerts per commune, None for the province's own; every one, whatever the scope
    (``settings`` only keys the shared reading)."""
    stmt = (
        select(Alert.commune_code, func.count())
        .where(Alert.state == "open")
        .group_by(Alert.commune_code)
    )
    return {code: int(n) for code, n in _read(session, stmt)}


# What the wall reads of a centre's feed (domain.feed and the rows below), as plain rows.
_FEED_COLUMNS = (
    CentreFeed.commune_code,
    CentreFeed.reported_state,
    CentreFeed.last_heartbeat_arrived_at,
    CentreFeed.last_event_at,
    CentreFeed.last_arrival_at,
    CentreFeed.last_lag_seconds,
)
# A plain row read by attribute like the model's object (a feed, or a commune below).
_Row = Row[*tuple[Any, ...]]


@_shared
def _feeds(session: Session, settings: Settings) -> dict[str, _Row]:
    rows = _read(
        session,
        select(*_FEED_COLUMNS).where(commune_filter(session, settings, CentreFeed.commune_code)),
    )
    return {f.commune_code: f for f in rows}


def _collector_beat_query() -> Select[datetime]:
    # Several collectors may share a subscription; the newest beat says data still flows.
    return select(func.max(Heartbeat.beat_at)).where(
        Heartbeat.name.like(f"{COLLECTOR_HEARTBEAT_PREFIX}%")
    )


def _collector_beat(session: Session) -> datetime | None:
    return _read(session, _collector_beat_query()).scalar()


def _metric(daily: Mapping[str, Mapping[str, int]], metric: str, when: str) -> int:
    return daily.get(when, {}).get(metric, 0)


def _on_time_rate(daily: Mapping[str, Mapping[str, int]], when: str) -> float | None:
    good = _metric(daily, "finished_early", when) + _metric(daily, "finished_on_time", when)
    finished = good + _metric(daily, "finished_overdue", when)
    return _rate(good, finished)


def _online_rate(daily: Mapping[str, Mapping[str, int]], when: str) -> float | None:
    return _rate(_metric(daily, "received_online", when), _metric(daily, "received", when))


def _merge_daily(
    per_commune: Iterable[Mapping[str, Mapping[str, int]]],
) -> dict[str, dict[str, int]]:
    """Communes' :func:`_daily_counts` summed span by span, metric by metric."""
    by_span: dict[str, list[Mapping[str, int]]] = defaultdict(list)
    for spans in per_commune:
        for span, counts in spans.items():
            by_span[span].append(counts)
    return {
        span: {metric: sum(c.get(metric, 0) for c in counts) for metric in DAILY_METRICS}
        for span, counts in by_span.items()
    }


# --- province summary -----------------------------------------------------------------------


def _same_time_yesterday(session: Session, settings: Settings, now: datetime) -> dict[str, int]:
    """Province counters from yesterday's local midnight up to ``now - 24 h``.

    ``commune_days`` is per day, so the hour is read from ``dossiers``: one statement of three
    index range scans (commune, received_at / finished_at / returned_at), each bounded to part
    of one day's rows. Counted as ``commune_days`` counts them (received online by channel,
    finished = result ready or returned, returned = handed back), by the current commune.
    """
    cut = now - timedelta(days=1)
    start = local_midnight(local_today(cut))
    d = Dossier
    in_scope_ = commune_filter(session, settings, d.commune_code)
    received = select(
        func.count(), func.coalesce(func.sum(case((d.channel == "online", 1), else_=0)), 0)
    ).where(in_scope_, d.received_at >= start, d.received_at < cut)
    finished = select(func.count(), literal(0)).where(
        in_scope_,
        d.finished_at >= start,
        d.finished_at < cut,
        d.status.in_((RESULT_READY, RETURNED)),
    )
    returned = select(func.count(), literal(0)).where(
        in_scope_,
        d.returned_at.is_not(None),
        d.returned_at >= start,
        d.returned_at < cut,
        d.status == RETURNED,
    )
    rows = _read(session, union_all(received, finished, returned)).all()
    (n_received, n_online), (n_finished, _), (n_returned, _) = rows
    return {
        "received_today": int(n_received or 0),
        "received_online_today": int(n_online or 0),
        "completed_today": int(n_finished or 0),
        "returned_today": int(n_returned or 0),
    }


SNAPSHOT_NEAR = timedelta(minutes=30)  # a snapshot further from "24 h ago" compares nothing


def snapshot_near(
    session: Session, scope: str, at: datetime, within: timedelta = SNAPSHOT_NEAR
) -> tuple[datetime, dict[str, Any]] | None:
    """The summary snapshot of ``scope`` nearest to ``at`` and not further than ``within``:
    (taken_at, figures), or None. One statement: the nearest snapshot time on each side of
    ``at`` (a primary-key seek each), then those rows."""
    s = SummarySnapshot
    before = (
        select(func.max(s.taken_at))
        .where(s.scope == scope, s.taken_at <= at, s.taken_at >= at - within)
        .scalar_subquery()
    )
    after = (
        select(func.min(s.taken_at))
        .where(s.scope == scope, s.taken_at > at, s.taken_at <= at + within)
        .scalar_subquery()
    )
    found = _read(
        session,
        select(s.taken_at, s.figures).where(s.scope == scope, s.taken_at.in_([before, after])),
    ).all()
    if not found:
        return None
    taken_at, figures = min(found, key=lambda row: abs(row.taken_at - at))
    return taken_at, dict(figures)


def _snapshot_trend(session: Session, settings: Settings, now: datetime) -> dict[str, Any]:
    """The state figures (open, overdue, queue, centres, score) at the same time yesterday,
    from the nearest snapshot; every value None when there is none (no arrow, never 0)."""
    near = snapshot_near(session, settings.province, now - timedelta(days=1))
    taken_at, figures = near if near is not None else (None, {})
    trend: dict[str, Any] = {key: figures.get(key) for key in SNAPSHOT_TREND_FIGURES}
    trend["snapshot_at"] = taken_at
    return trend


# What a snapshot adds to "the same time yesterday" (the day counters are recounted exactly).
SNAPSHOT_TREND_FIGURES = (
    "open",
    "overdue",
    "due_soon",
    "queue_waiting",
    "centres_online",
    "centres_stale",
    "centres_offline",
    "progress_score",
)


def province_summary(
    session: Session, settings: Settings, calendar: WorkingCalendar, now: datetime
) -> dict[str, Any]:
    """Province totals for the wall's header tiles and ``GET /api/v1/summary``.

    ``progress_score`` follows Decision 766: 20 x (finished early or on time in the last 30
    days + open dossiers not yet due) / (finished with an outcome in the last 30 days + open
    dossiers with a due date). ``trend`` compares with yesterday: yesterday's whole-day
    counters (from ``commune_days``), dead letters up to the same time yesterday, the rates
    over the 30 days ending yesterday, and under ``same_time_yesterday`` the day counters from
    yesterday's midnight up to ``now - 24 h`` and the state figures of the summary snapshot
    nearest to ``now - 24 h`` (``snapshot_at``; None without one): what the wall's arrows
    compare with.
    """
    today = local_today(now)
    midnight = local_midnight(today)
    soon_until = due_soon_until(settings, calendar, now)

    due = _due_counts(session, settings, now, soon_until)
    open_total = sum(c["open"] for c in due.values())
    overdue = sum(c["overdue"] for c in due.values())
    due_soon = sum(c["due_soon"] for c in due.values())
    # The summary's single figures in one statement (one round trip, not five).
    dead = DeadLetter.arrived_at
    open_undated, centres_total, beat, dead_today, dead_yesterday = _read(
        session,
        select(
            select(func.coalesce(func.sum(CommuneDueBucket.open_count), 0))
            .where(
                CommuneDueBucket.due_minute.is_(None),
                commune_filter(session, settings, CommuneDueBucket.commune_code),
            )
            .scalar_subquery(),
            select(func.count()).select_from(Commune).where(in_scope(settings)).scalar_subquery(),
            _collector_beat_query().scalar_subquery(),
            select(func.count()).select_from(DeadLetter).where(dead >= midnight).scalar_subquery(),
            # Dead letters of yesterday up to the same time.
            select(func.count())
            .select_from(DeadLetter)
            .where(
                dead >= midnight - timedelta(days=1),
                dead < midnight,
                dead < now - timedelta(days=1),
            )
            .scalar_subquery(),
        ),
    ).one()
    open_in_time = open_total - overdue - int(open_undated or 0)

    daily = _merge_daily(_daily_counts(session, settings, today).values())
    good = _metric(daily, "finished_early", "window") + _metric(daily, "finished_on_time", "window")
    finished_rated = good + _metric(daily, "finished_overdue", "window")
    progress_base = finished_rated + open_in_time + overdue
    progress_score = (
        round(20.0 * (good + open_in_time) / progress_base, 2) if progress_base else None
    )

    queue = _queue_today(session, settings, today)
    waiting = sum(q["waiting"] for q in queue.values())
    avg_wait = _mean_wait_s(queue.values())

    feed_rows = _feeds(session, settings)
    states = [feeds.feed_state(f, now, settings) for f in feed_rows.values()]
    last_event_at = max(
        (f.last_event_at for f in feed_rows.values() if f.last_event_at), default=None
    )
    newest_arrival = max(
        (seen for f in feed_rows.values() if (seen := feeds.last_seen_at(f))), default=None
    )
    stale_after = timedelta(seconds=settings.wall_stale_after_s)
    data_stale = beat is None or now - beat > stale_after
    data_stale = data_stale or newest_arrival is None or now - newest_arrival > stale_after

    open_alerts = sum(_open_alerts_by_commune(session, settings).values())
    return {
        "open": open_total,
        "overdue": overdue,
        "due_soon": due_soon,
        "received_today": _metric(daily, "received", "today"),
        "received_online_today": _metric(daily, "received_online", "today"),
        "completed_today": _metric(daily, "finished", "today"),
        "returned_today": _metric(daily, "returned", "today"),
        "on_time_rate": _on_time_rate(daily, "window"),
        "online_rate": _online_rate(daily, "window"),
        "progress_score": progress_score,
        "queue_waiting": waiting,
        "avg_wait_minutes": _minutes(avg_wait),
        "centres_online": states.count(feeds.LIVE),
        "centres_stale": states.count(feeds.STALE),
        "centres_offline": states.count(feeds.OFFLINE),
        "centres_total": centres_total,
        "last_event_at": last_event_at,
        "data_as_of": beat,
        "data_stale": data_stale,
        "open_alerts": open_alerts,
        "dead_letters_today": int(dead_today or 0),
        "trend": {
            "received_today": _metric(daily, "received", "yesterday"),
            "received_online_today": _metric(daily, "received_online", "yesterday"),
            "completed_today": _metric(daily, "finished", "yesterday"),
            "returned_today": _metric(daily, "returned", "yesterday"),
            "on_time_rate": _on_time_rate(daily, "prev_window"),
            "online_rate": _online_rate(daily, "prev_window"),
            "dead_letters_today": int(dead_yesterday or 0),
            "same_time_yesterday": {
                **_same_time_yesterday(session, settings, now),
                **_snapshot_trend(session, settings, now),
            },
        },
    }


# --- communes -------------------------------------------------------------------------------


def _commune_row(
    commune: Commune | _Row,
    *,
    due: dict[str, int] | None,
    daily: dict[str, dict[str, int]],
    queue: dict[str, Any] | None,
    counters_open: int,
    feed: _Row | None,
    open_alerts: int,
    settings: Settings,
    now: datetime,
) -> dict[str, Any]:
    due = due or {"open": 0, "overdue": 0, "due_soon": 0}
    oldest = queue["oldest_waiting_at"] if queue else None
    return {
        "code": commune.code,
        "name": commune.name,
        "province_code": commune.province_code,
        "division_type": commune.division_type,
        "open": due["open"],
        "overdue": due["overdue"],
        "due_soon": due["due_soon"],
        "queue_waiting": queue["waiting"] if queue else 0,
        "avg_wait_minutes": _minutes(queue["avg_wait_s"]) if queue else None,
        "longest_wait_minutes": (
            _minutes(max(0.0, (now - oldest).total_seconds())) if oldest else None
        ),
        "counters_open": counters_open,
        "on_time_rate": _on_time_rate(daily, "window"),
        "online_rate": _online_rate(daily, "window"),
        "received_today": _metric(daily, "received", "today"),
        "returned_today": _metric(daily, "returned", "today"),
        "last_seen_at": feeds.last_seen_at(feed),
        "feed_state": feeds.feed_state(feed, now, settings),
        "lag_seconds": feed.last_lag_seconds if feed else None,
        "open_alerts": open_alerts,
    }


def _commune_rows_for(
    session: Session,
    settings: Settings,
    calendar: WorkingCalendar,
    now: datetime,
    communes: Sequence[Commune | _Row],
) -> list[dict[str, Any]]:
    today = local_today(now)
    due = _due_counts(session, settings, now, due_soon_until(settings, calendar, now))
    daily = _daily_counts(session, settings, today)
    queue = _queue_today(session, settings, today)
    counters = _counters_open(session, settings)
    feed_rows = _feeds(session, settings)
    alerts = _open_alerts_by_commune(session, settings)
    return [
        _commune_row(
            c,
            due=due.get(c.code),
            daily=daily.get(c.code, {}),
            queue=queue.get(c.code),
            counters_open=counters.get(c.code, 0),
            feed=feed_rows.get(c.code),
            open_alerts=alerts.get(c.code, 0),
            settings=settings,
            now=now,
        )
        for c in communes
    ]


def commune_rows(
    session: Session, settings: Settings, calendar: WorkingCalendar, now: datetime
) -> list[dict[str, Any]]:
    """One row per commune of the province, in code order; communes without data get zeros."""
    communes = _read(
        session,
        select(Commune.code, Commune.name, Commune.province_code, Commune.division_type)
        .where(in_scope(settings))
        .order_by(Commune.code),
    ).all()
    return _commune_rows_for(session, settings, calendar, now, communes)


def province_rows(
    session: Session, settings: Settings, calendar: WorkingCalendar, now: datetime
) -> list[dict[str, Any]]:
    """One row per province in scope (the 34 in national mode), in code order.

    Sums of the same per-commune aggregate reads as :func:`commune_rows` (shared inside
    :func:`shared_reads`), grouped by each commune's province: no extra scan, and a province's
    figures always add up to its communes'. Rates are recomputed from the summed counters.
    """
    from vietnam_provinces import Province

    today = local_today(now)
    due = _due_counts(session, settings, now, due_soon_until(settings, calendar, now))
    daily = _daily_counts(session, settings, today)
    queue = _queue_today(session, settings, today)
    feed_rows = _feeds(session, settings)
    alerts = _open_alerts_by_commune(session, settings)
    # Short names, as on the map: the package writes cities "Thành phố Hà Nội".
    names = {f"{int(p.code):02d}": p.name.removeprefix("Thành phố ") for p in Province.iter_all()}

    provinces: dict[str, dict[str, Any]] = {}
    metrics: dict[str, list[dict[str, dict[str, int]]]] = {}
    queues: dict[str, list[dict[str, Any]]] = defaultdict(list)
    communes = select(Commune.code, Commune.province_code).where(in_scope(settings))
    for code, province in _read(session, communes.order_by(Commune.province_code)):
        row = provinces.get(province)
        if row is None:
            row = provinces[province] = {
                "code": province,
                "name": names.get(province, province),
                "communes": 0,
                "open": 0,
                "overdue": 0,
                "due_soon": 0,
                "queue_waiting": 0,
                "open_alerts": 0,
                "centres_online": 0,
                "centres_stale": 0,
                "centres_offline": 0,
            }
            metrics[province] = []
        row["communes"] += 1
        for key, value in (due.get(code) or {}).items():
            row[key] += value
        ticket = queue.get(code)
        if ticket:
            row["queue_waiting"] += ticket["waiting"]
            queues[province].append(ticket)
        row["open_alerts"] += alerts.get(code, 0)
        state = feeds.feed_state(feed_rows.get(code), now, settings)
        if state in (feeds.LIVE, feeds.STALE, feeds.OFFLINE):
            row[f"centres_{'online' if state == feeds.LIVE else state}"] += 1
        metrics[province].append(daily.get(code, {}))

    out = []
    for province, row in sorted(provinces.items()):
        summed = _merge_daily(metrics[province])
        row |= {
            "centres_total": row["communes"],
            "avg_wait_minutes": _minutes(_mean_wait_s(queues[province])),
            "on_time_rate": _on_time_rate(summed, "window"),
            "online_rate": _online_rate(summed, "window"),
            "received_today": _metric(summed, "received", "today"),
            "returned_today": _metric(summed, "returned", "today"),
        }
        out.append(row)
    return out


def commune_detail(
    session: Session,
    settings: Settings,
    calendar: WorkingCalendar,
    code: str,
    now: datetime,
    *,
    scope: Scope = UNRESTRICTED,
) -> dict[str, Any] | None:
    """The commune's row plus its last 30 days, overdue dossiers, today's queue and feed.

    None for a commune outside the province or outside ``scope``.
    """
    if not scope.allows(code):
        return None
    commune = session.get(Commune, code)
    if commune is None or not (settings.national or commune.province_code == settings.province):
        return None
    detail = _commune_rows_for(session, settings, calendar, now, [commune])[0]
    today = local_today(now)
    first_day = today - timedelta(days=RATE_WINDOW_DAYS - 1)

    days = CommuneDay.__table__
    per_day = {
        row.day: row._mapping
        for row in _read(
            session, select(days).where(days.c.commune_code == code, days.c.day >= first_day)
        )
    }
    no_counts = dict.fromkeys(DAILY_METRICS, 0)
    detail["daily"] = []
    for day in (first_day + timedelta(days=i) for i in range(RATE_WINDOW_DAYS)):
        n = per_day.get(day, no_counts)
        detail["daily"].append(
            {
                "day": day,
                "received": n["received"],
                "received_online": n["received_online"],
                "returned": n["returned"],
                # "on time" in the Decision 766 sense: early or on the due date.
                "finished_on_time": n["finished_early"] + n["finished_on_time"],
                "finished_overdue": n["finished_overdue"],
            }
        )

    detail["overdue_dossiers"] = list_dossiers(
        session, settings, calendar, now, commune=code, state="overdue", limit=50, scope=scope
    )["items"]

    tickets = session.execute(
        select(
            QueueTicket.issued_at, func.coalesce(QueueTicket.called_at, QueueTicket.started_at)
        ).where(
            QueueTicket.commune_code == code,
            QueueTicket.service_day == today,
            QueueTicket.issued_at.is_not(None),
        )
    ).all()
    by_hour: dict[int, list[float]] = defaultdict(list)
    issued_by_hour: dict[int, int] = defaultdict(int)
    for issued_at, called_raw in tickets:
        if issued_at is None:  # excluded by the query; keeps the type checker honest
            continue
        hour = issued_at.astimezone(LOCAL_TZ).hour
        issued_by_hour[hour] += 1
        called_at = _as_utc(called_raw)
        if called_at is not None:
            by_hour[hour].append((called_at - issued_at).total_seconds())
    detail["queue_by_hour"] = [
        {
            "hour": hour,
            "tickets": issued_by_hour[hour],
            "avg_wait_minutes": (
                _minutes(sum(by_hour[hour]) / len(by_hour[hour])) if by_hour[hour] else None
            ),
        }
        for hour in sorted(issued_by_hour)
    ]

    feed = session.get(CentreFeed, code)
    detail["feed"] = {
        "state": detail["feed_state"],
        "reported_state": feed.reported_state if feed else None,
        "reported_at": feed.reported_at if feed else None,
        "last_heartbeat_arrived_at": feed.last_heartbeat_arrived_at if feed else None,
        "last_event_at": feed.last_event_at if feed else None,
        "last_arrival_at": feed.last_arrival_at if feed else None,
        "last_lag_seconds": feed.last_lag_seconds if feed else None,
        "software": feed.software if feed else None,
        "queue_waiting_reported": feed.queue_waiting if feed else None,
        "events_total": feed.events_total if feed else 0,
        "dead_letters_total": feed.dead_letters_total if feed else 0,
    }
    detail["alerts"] = list_alerts(session, commune=code, limit=20, scope=scope)
    return detail


# --- dossiers -------------------------------------------------------------------------------


def _dossier_filter(
    state: str | None, now: datetime, soon_until: datetime
) -> list[ColumnElement[bool]]:
    if state is None:
        return []
    # ``is_open = true``, not ``IS 1``: only then does SQLite's planner use the partial indexes
    # on open dossiers (a full scan of a million rows otherwise).
    is_open = Dossier.is_open == true()
    if state == "open":
        return [is_open]
    if state == "overdue":
        return [is_open, Dossier.due_at < now, clock_running()]
    if state == "due_soon":
        return [is_open, Dossier.due_at >= now, Dossier.due_at < soon_until, clock_running()]
    if state == "finished":
        return [Dossier.status.in_(sorted(FINISHED))]
    raise ValueError(f"state must be one of {', '.join(DOSSIER_STATES)}")


def clock_running() -> ColumnElement[bool]:
    """Not paused in time (``domain.dossier.clock_stopped_in_time``): such a dossier's due
    date moves with its pause, so it is neither overdue nor due soon, as in the due buckets."""
    return ~and_(Dossier.is_paused == true(), Dossier.paused_since < Dossier.due_at)


def _dossier_order(state: str | None) -> list[Any]:
    if state in ("open", "overdue", "due_soon"):
        # Most urgent first: the longest overdue at the top.
        return [Dossier.due_at.asc().nulls_last(), Dossier.dossier_code]
    if state == "finished":
        return [Dossier.finished_at.desc().nulls_last(), Dossier.dossier_code]
    return [Dossier.received_at.desc(), Dossier.dossier_code]


def _working_days_overdue(d: Dossier, calendar: WorkingCalendar, now: datetime) -> float | None:
    if d.due_at is None:
        return None
    end = now if d.is_open else d.finished_at
    if end is None or end <= d.due_at:
        return 0.0
    return round(calendar.working_days_between(d.due_at, end), 2)


def dossier_outcome(d: Dossier, now: datetime) -> str | None:
    """Finished: early / on_time / overdue; open: in_time / overdue_open / no_due (DOMAIN.md)."""
    if not d.is_open:
        return d.outcome
    if d.due_at is None:
        return "no_due"
    if _stopped_in_time(d):
        return "in_time"
    return "overdue_open" if d.due_at < now else "in_time"


def _stopped_in_time(d: Dossier) -> bool:
    """``domain.dossier.clock_stopped_in_time`` of a dossier row."""
    if not d.is_paused or d.due_at is None:
        return False
    return d.paused_since is None or d.paused_since < d.due_at


def dossier_state(d: Dossier, now: datetime, soon_until: datetime) -> str:
    """The dossier's place on the wall: open / due_soon / overdue / finished / rejected."""
    if d.status in FINISHED:
        return "finished"
    if d.status == NOT_ACCEPTED or not d.is_open:
        return "rejected"
    if _stopped_in_time(d):
        return "open"
    if d.due_at is not None and d.due_at < now:
        return "overdue"
    if d.due_at is not None and d.due_at < soon_until:
        return "due_soon"
    return "open"


def _dossier_item(
    d: Dossier,
    commune_name: str | None,
    calendar: WorkingCalendar,
    now: datetime,
    scope: Scope = UNRESTRICTED,
) -> dict[str, Any]:
    return {
        "dossier_code": d.dossier_code,
        "commune_code": d.commune_code,
        "commune_name": commune_name,
        "procedure_code": d.procedure_code,
        "procedure_name": d.procedure_name,
        "sector": d.sector,
        "channel": d.channel,
        "status": d.status,
        "received_at": d.received_at,
        "due_at": d.due_at,
        "finished_at": d.finished_at,
        "outcome": dossier_outcome(d, now),
        "working_days_overdue": _working_days_overdue(d, calendar, now),
        "apology_issued": d.apology_issued_at is not None,
        "extended": d.extension_count > 0,
        "officer": scope.officer(d.officer),
        # Personal data: in full only for the roles of CC_PERSONAL_DATA_ROLES, else masked.
        "applicant_name": scope.applicant(d.applicant_name),
    }


def list_dossiers(
    session: Session,
    settings: Settings,
    calendar: WorkingCalendar,
    now: datetime,
    *,
    commune: str | None = None,
    state: str | None = None,
    limit: int = 50,
    offset: int = 0,
    scope: Scope = UNRESTRICTED,
) -> dict[str, Any]:
    """A page of dossiers, most urgent first; ``state`` is open / overdue / due_soon / finished."""
    soon_until = due_soon_until(settings, calendar, now)
    conditions = _dossier_filter(state, now, soon_until)
    if commune is not None:
        conditions.append(Dossier.commune_code == commune)
    conditions.extend(scope.where(Dossier.commune_code))
    total = session.scalar(select(func.count()).select_from(Dossier).where(*conditions))
    page = session.execute(
        select(Dossier, Commune.name)
        .outerjoin(Commune, Commune.code == Dossier.commune_code)
        .where(*conditions)
        .order_by(*_dossier_order(state))
        .limit(limit)
        .offset(offset)
    ).all()
    return {
        "total": int(total or 0),
        "limit": limit,
        "offset": offset,
        "items": [_dossier_item(d, name, calendar, now, scope) for d, name in page],
    }


def dossier_detail(
    session: Session,
    settings: Settings,
    calendar: WorkingCalendar,
    code: str,
    now: datetime,
    *,
    scope: Scope = UNRESTRICTED,
) -> dict[str, Any] | None:
    """One dossier with its clock (due date, pauses, apology, extension) and event timeline.

    None when unknown or outside ``scope`` (a commune user asking for another commune's).
    """
    row = session.execute(
        select(Dossier, Commune.name)
        .outerjoin(Commune, Commune.code == Dossier.commune_code)
        .where(Dossier.dossier_code == code, *scope.where(Dossier.commune_code))
    ).first()
    if row is None:
        return None
    d, commune_name = row
    soon_until = due_soon_until(settings, calendar, now)
    detail = _dossier_item(d, commune_name, calendar, now, scope)
    events = session.scalars(
        select(DossierEvent)
        .where(DossierEvent.dossier_code == code)
        .order_by(DossierEvent.occurred_at, DossierEvent.event_id)
    )
    detail.update(
        {
            "state": dossier_state(d, now, soon_until),
            "received_commune_code": d.received_commune_code,
            "department": d.department,
            "is_open": d.is_open,
            "paused": d.is_paused,
            "clock_start_at": d.clock_start_at,
            "original_due_at": d.original_due_at,
            "paused_seconds": d.paused_seconds,
            "apology": {"issued_at": d.apology_issued_at} if d.apology_issued_at else None,
            "extension": (
                {"count": d.extension_count, "original_due_at": d.original_due_at}
                if d.extension_count
                else None
            ),
            "flags": list(d.flags or []),
            "event_count": d.event_count,
            "last_event_at": d.last_event_at,
            "timeline": [
                {
                    "event_id": e.event_id,
                    "type": e.type,
                    "occurred_at": e.occurred_at,
                    "arrived_at": e.arrived_at,
                    "commune_code": e.commune_code,
                    "details": scope.details(
                        {k: v for k, v in (e.payload or {}).items() if k not in _ENVELOPE_FIELDS}
                    ),
                }
                for e in events
            ],
            "alerts": dossier_alerts(session, code),
        }
    )
    return detail


# --- alerts and dead letters ----------------------------------------------------------------


def alert_payload(a: Alert) -> dict[str, Any]:
    return {
        "alert_id": str(a.alert_id),
        "kind": a.kind,
        "level": a.level,
        "commune_code": a.commune_code,
        "dossier_code": a.dossier_code,
        "due_at": a.due_at,
        "raised_at": a.raised_at,
        "state": a.state,
        "message": a.message,
        "acknowledged_at": a.acknowledged_at,
        "acknowledged_by": a.acknowledged_by,
        "resolved_at": a.resolved_at,
        "escalated_at": a.escalated_at,
    }


def list_alerts(
    session: Session,
    *,
    state: str | None = None,
    commune: str | None = None,
    communes: Collection[str] | None = None,
    limit: int = 100,
    scope: Scope = UNRESTRICTED,
) -> list[dict[str, Any]]:
    """Newest first; ``communes``: of those communes only (a province of a national database)."""
    stmt = select(Alert).where(*scope.where(Alert.commune_code))
    if state is not None:
        stmt = stmt.where(Alert.state == state)
    if commune is not None:
        stmt = stmt.where(Alert.commune_code == commune)
    if communes is not None:
        stmt = stmt.where(Alert.commune_code.in_(sorted(communes)))
    stmt = stmt.order_by(Alert.raised_at.desc(), Alert.alert_id).limit(limit)
    return [alert_payload(a) for a in session.scalars(stmt)]


def list_dead_letters(
    session: Session,
    *,
    commune: str | None = None,
    reason: str | None = None,
    limit: int = 100,
    offset: int = 0,
    scope: Scope = UNRESTRICTED,
) -> dict[str, Any]:
    """Rejected messages, newest first, with the all-time count per reason (``counts``).

    A payload may hold personal data: excerpts and details are masked unless ``scope`` shows it.
    """
    conditions: list[ColumnElement[bool]] = scope.where(DeadLetter.commune_code)
    if commune is not None:
        conditions.append(DeadLetter.commune_code == commune)
    if reason is not None:
        conditions.append(DeadLetter.reason == reason)
    total = session.scalar(select(func.count()).select_from(DeadLetter).where(*conditions))
    rows = session.scalars(
        select(DeadLetter)
        .where(*conditions)
        .order_by(DeadLetter.arrived_at.desc(), DeadLetter.id.desc())
        .limit(limit)
        .offset(offset)
    )
    counts_stmt = select(DeadLetterCount.reason, func.sum(DeadLetterCount.count)).group_by(
        DeadLetterCount.reason
    )
    if commune is not None:
        counts_stmt = counts_stmt.where(DeadLetterCount.commune_code == commune)
    counts_stmt = counts_stmt.where(*scope.where(DeadLetterCount.commune_code))
    counts = {r: int(n or 0) for r, n in session.execute(counts_stmt)}
    return {
        "total": int(total or 0),
        "limit": limit,
        "offset": offset,
        "counts": dict(sorted(counts.items())),
        "items": [
            {
                "id": dl.id,
                "arrived_at": dl.arrived_at,
                "topic": dl.topic,
                "commune_code": dl.commune_code,
                "reason": dl.reason,
                "detail": scope.text(dl.detail),
                "event_id": dl.event_id,
                "payload_excerpt": scope.text(dl.payload_excerpt),
                "payload_size": dl.payload_size,
                "resolved_at": dl.resolved_at,
            }
            for dl in rows
        ],
    }


# --- figures for /metrics -------------------------------------------------------------------


def metrics_snapshot(
    session: Session, settings: Settings, calendar: WorkingCalendar, now: datetime
) -> dict[str, Any]:
    """Gauges for Prometheus: backlog, feed states, dead letters by reason, alerts, freshness."""
    soon_until = due_soon_until(settings, calendar, now)
    due = _due_counts(session, settings, now, soon_until)
    feed_rows = _feeds(session, settings)
    states = {s: 0 for s in feeds.FEED_STATES}
    for f in feed_rows.values():
        states[feeds.feed_state(f, now, settings)] += 1
    centres_total = int(
        session.scalar(select(func.count()).select_from(Commune).where(in_scope(settings))) or 0
    )
    # Communes never heard from have no centre_feeds row.
    states[feeds.UNKNOWN] += max(0, centres_total - len(feed_rows))
    dead = {
        r: int(n or 0)
        for r, n in session.execute(
            select(DeadLetterCount.reason, func.sum(DeadLetterCount.count)).group_by(
                DeadLetterCount.reason
            )
        )
    }
    alerts = {
        (state, int(level)): int(n)
        for state, level, n in session.execute(
            select(Alert.state, Alert.level, func.count()).group_by(Alert.state, Alert.level)
        )
    }
    beat = _collector_beat(session)
    return {
        "open": sum(c["open"] for c in due.values()),
        "overdue": sum(c["overdue"] for c in due.values()),
        "due_soon": sum(c["due_soon"] for c in due.values()),
        "feed_states": states,
        "dead_letters": dead,
        "alerts": alerts,
        "collector_beat_age_s": None if beat is None else (now - beat).total_seconds(),
    }


__all__ = [
    "ALERT_STATES",
    "DOSSIER_STATES",
    "alert_payload",
    "commune_detail",
    "commune_rows",
    "dossier_detail",
    "dossier_outcome",
    "dossier_state",
    "due_soon_until",
    "list_alerts",
    "list_dead_letters",
    "list_dossiers",
    "local_today",
    "metrics_snapshot",
    "province_summary",
]


# --- leaders' review: the overdue grid and its exports (issue 5) ----------------------------

# "attention" = what leaders review: overdue plus due within one working day.
REVIEW_STATES = ("attention", "overdue", "due_soon", "open", "finished", "all")
REVIEW_YES_NO = {"yes": True, "no": False}
REVIEW_SORT_KEYS = (
    "working_days_overdue",
    "due_at",
    "received_at",
    "dossier_code",
    "commune_name",
    "sector",
    "procedure_name",
    "channel",
    "apology_issued",
    "extended",
    "escalation_level",
    "officer",
)
REVIEW_MAX_TEXT = 120


@dataclass(frozen=True)
class ReviewFilters:
    """The filters of the overdue review: the grid, its URL, the API and the exports share them.

    ``escalation_level`` is the highest level among the dossier's unresolved alerts, 0 for none.
    ``officer`` matches part of the handler's name, case-insensitively; the others are exact.
    """

    state: str = "attention"
    commune: str | None = None
    sector: str | None = None
    procedure: str | None = None
    channel: str | None = None
    officer: str | None = None
    apology: bool | None = None
    extended: bool | None = None
    escalation_level: int | None = None
    sort: tuple[tuple[str, str], ...] = ()

    def to_params(self) -> dict[str, str]:
        """Query-string form (the inverse of :func:`review_filters_from_params`), defaults left out."""
        params: dict[str, str] = {}
        if self.state != "attention":
            params["state"] = self.state
        for name in ("commune", "sector", "procedure", "channel", "officer"):
            value = getattr(self, name)
            if value:
                params[name] = value
        for name in ("apology", "extended"):
            value = getattr(self, name)
            if value is not None:
                params[name] = "yes" if value else "no"
        if self.escalation_level is not None:
            params["level"] = str(self.escalation_level)
        if self.sort:
            params["sort"] = ",".join(f"{'-' if d == 'desc' else ''}{k}" for k, d in self.sort)
        return params


def review_filters_from_params(params: Any) -> ReviewFilters:
    """Parse query-string parameters (any mapping of str -> str); ``ValueError`` says what is wrong.

    Unknown parameters are ignored (``lang``, ``limit``... belong to the caller).
    """

    def text_param(name: str) -> str | None:
        raw = params.get(name)
        if raw is None or str(raw).strip() == "":
            return None
        value = str(raw).strip()
        if len(value) > REVIEW_MAX_TEXT:
            raise ValueError(f"{name} must be at most {REVIEW_MAX_TEXT} characters")
        return value

    def yes_no(name: str) -> bool | None:
        raw = text_param(name)
        if raw is None:
            return None
        if raw not in REVIEW_YES_NO:
            raise ValueError(f"{name} must be yes or no")
        return REVIEW_YES_NO[raw]

    state = text_param("state") or "attention"
    if state not in REVIEW_STATES:
        raise ValueError(f"state must be one of {', '.join(REVIEW_STATES)}")
    commune = text_param("commune")
    if commune is not None and not (len(commune) == 5 and commune.isdigit()):
        raise ValueError("commune must be a 5-digit commune code, e.g. 02269")
    channel = text_param("channel")
    if channel is not None and channel not in ("online", "counter", "post"):
        raise ValueError("channel must be one of online, counter, post")
    level_raw = text_param("level")
    level = None
    if level_raw is not None:
        if level_raw not in ("0", "1", "2", "3"):
            raise ValueError("level must be 0 (no open alert), 1, 2 or 3")
        level = int(level_raw)
    sort: list[tuple[str, str]] = []
    for part in (text_param("sort") or "").split(","):
        part = part.strip()
        if not part:
            continue
        key = part.lstrip("-")
        if key not in REVIEW_SORT_KEYS:
            raise ValueError(f"sort keys must be among {', '.join(REVIEW_SORT_KEYS)}")
        sort.append((key, "desc" if part.startswith("-") else "asc"))
    return ReviewFilters(
        state=state,
        commune=commune,
        sector=text_param("sector"),
        procedure=text_param("procedure"),
        channel=channel,
        officer=text_param("officer"),
        apology=yes_no("apology"),
        extended=yes_no("extended"),
        escalation_level=level,
        sort=tuple(sort),
    )


_OPEN_STATES = ("attention", "overdue", "due_soon", "open")


def _officer_names(session: Session, needle: str) -> list[str]:
    """Handlers of open dossiers whose name contains ``needle``, case-insensitively.

    No B-tree serves a substring, and a trigram index (pg_trgm) finds the matching dossiers
    but must then visit each one's row: 25,000 scattered heap pages for a common name at a
    million dossiers, 0.6-0.8 s. There are few distinct handler names, though: a recursive
    query walks ``ix_dossiers_open_officer`` from one distinct name to the next (one index
    seek each, a "loose index scan"), the names are matched, and the dossiers are then read
    by name from the same index, index-only. The match is the filter's own
    (``lower(officer) LIKE '%needle%'``), so the rows are those a scan would find.
    """
    d = Dossier.__table__
    after = d.alias("after")
    is_open = d.c.is_open == true()
    names = select(func.min(d.c.officer).label("officer")).where(is_open).cte(recursive=True)
    following = (
        select(func.min(after.c.officer))
        .where(after.c.is_open == true(), after.c.officer > names.c.officer)
        .scalar_subquery()
    )
    names = names.union_all(select(following).where(names.c.officer.is_not(None)))
    return list(
        session.scalars(
            select(names.c.officer).where(
                names.c.officer.is_not(None),
                func.lower(names.c.officer).contains(needle.lower(), autoescape=True),
            )
        )
    )


def _officer_condition(session: Session, filters: ReviewFilters) -> ColumnElement[bool]:
    officer = filters.officer or ""
    if filters.state in _OPEN_STATES:
        return Dossier.officer.in_(_officer_names(session, officer))
    # Finished dossiers are not in the open-dossier index: scan, as for any other text.
    return func.lower(Dossier.officer).contains(officer.lower(), autoescape=True)


def _review_conditions(
    session: Session,
    filters: ReviewFilters,
    settings: Settings,
    now: datetime,
    soon_until: datetime,
) -> list[ColumnElement[bool]]:
    d = Dossier
    state = filters.state
    # "is_open = true", not "is_open IS TRUE": PostgreSQL only matches the former (which it
    # reduces to "is_open") against the partial indexes' predicate, and then walks the open
    # dossiers by due date instead of scanning the table.
    is_open = d.is_open == true()
    conditions: list[ColumnElement[bool]]
    # Paused in time: in the backlog, never overdue or due soon (as on the wall), read from
    # the covering indexes, which hold the pause.
    if state == "attention":
        conditions = [is_open, d.due_at < soon_until, clock_running()]
    elif state == "overdue":
        conditions = [is_open, d.due_at < now, clock_running()]
    elif state == "due_soon":
        conditions = [is_open, d.due_at >= now, d.due_at < soon_until, clock_running()]
    elif state == "open":
        conditions = [is_open]
    elif state == "finished":
        conditions = [d.status.in_(sorted(FINISHED))]
    else:
        conditions = []
    commune_code: ColumnElement[Any] = Dossier.__table__.c.commune_code
    if session.get_bind().dialect.name == "sqlite":
        # SQLite would drive the query from the province's list (one index seek per commune,
        # then a sort of every match, reading each row for the other filters). As "+column"
        # (SQLite's documented way to keep a term off an index) it is a filter applied while
        # the covering due-date index is read in order, and the page stops the scan.
        commune_code = UnaryExpression(commune_code, operator=custom_op("+"), type_=String())
    conditions.append(commune_filter(session, settings, commune_code))
    if filters.commune:
        conditions.append(d.commune_code == filters.commune)
    if filters.sector:
        conditions.append(d.sector == filters.sector)
    if filters.procedure:
        conditions.append(d.procedure_code == filters.procedure)
    if filters.channel:
        conditions.append(d.channel == filters.channel)
    if filters.officer:
        conditions.append(_officer_condition(session, filters))
    if filters.apology is not None:
        conditions.append(
            d.apology_issued_at.is_not(None) if filters.apology else d.apology_issued_at.is_(None)
        )
    if filters.extended is not None:
        conditions.append(d.extension_count > 0 if filters.extended else d.extension_count == 0)
    if filters.escalation_level is not None:
        conditions.append(d.escalation_level == filters.escalation_level)
    return conditions


def _review_order(filters: ReviewFilters) -> list[Any]:
    d = Dossier
    columns: dict[str, Any] = {
        # More working days overdue = an earlier due date.
        "working_days_overdue": d.due_at,
        "due_at": d.due_at,
        "received_at": d.received_at,
        "dossier_code": d.dossier_code,
        "commune_name": Commune.name,
        "sector": d.sector,
        "procedure_name": d.procedure_name,
        "channel": d.channel,
        "apology_issued": d.apology_issued_at.is_not(None),
        "extended": d.extension_count > 0,
        "escalation_level": d.escalation_level,
        "officer": d.officer,
    }
    not_null = {"dossier_code", "escalation_level"}
    order: list[Any] = []
    for key, direction in filters.sort:
        column = columns[key]
        descending = direction == "desc"
        if key == "working_days_overdue":
            descending = not descending
        if key in not_null:
            # No NULLS LAST on a NOT NULL column: PostgreSQL would no longer match the
            # ordering to ix_dossiers_open_level read backwards.
            order.append(column.desc() if descending else column.asc())
        else:
            order.append(column.desc().nulls_last() if descending else column.asc().nulls_last())
    if not filters.sort:  # ends with the dossier code already
        return _dossier_order("overdue" if filters.state != "finished" else "finished")
    return [*order, d.dossier_code]


def _review_item(
    d: Dossier,
    commune_name: str | None,
    calendar: WorkingCalendar,
    now: datetime,
    scope: Scope = UNRESTRICTED,
) -> dict[str, Any]:
    item = _dossier_item(d, commune_name, calendar, now, scope)
    item["escalation_level"] = int(d.escalation_level or 0)
    return item


def review_rows(
    session: Session,
    settings: Settings,
    calendar: WorkingCalendar,
    now: datetime,
    filters: ReviewFilters,
    *,
    offset: int = 0,
    limit: int = 100,
    scope: Scope = UNRESTRICTED,
) -> dict[str, Any]:
    """One page of the overdue review (the grid's block, ``GET /api/v1/review``).

    Items are the dossier-list fields plus ``escalation_level``. The default order is the most
    overdue first; ``filters.sort`` overrides it; ``total`` counts every match.

    The page is found in two steps (a "deferred join"): the codes of the page's dossiers in
    order, then those rows. The first step reads only indexed columns, so with the default
    order and the common filters (commune, channel, extension, level) it runs on the covering
    index ``ix_dossiers_open_due`` alone: skipping to a deep page (the grid asks for any block
    the scroll bar lands on, so offsets stay) walks index entries instead of whole rows, and
    the count is an index-only count.
    """
    soon_until = due_soon_until(settings, calendar, now)
    conditions = _review_conditions(session, filters, settings, now, soon_until)
    conditions.extend(scope.where(Dossier.commune_code))
    total = session.scalar(select(func.count()).select_from(Dossier).where(*conditions))
    keys = select(Dossier.dossier_code).where(*conditions)
    if any(key == "commune_name" for key, _ in filters.sort):
        keys = keys.outerjoin(Commune, Commune.code == Dossier.commune_code)
    keys = keys.order_by(*_review_order(filters)).limit(limit).offset(offset)
    codes = list(session.scalars(keys))
    rows: dict[str, Any] = {}
    if codes:
        # Plain column rows (same attribute names as a Dossier): building ORM instances
        # was most of the page's Python time.
        for row in session.execute(
            select(*Dossier.__table__.c, Commune.name.label("review_commune_name"))
            .outerjoin(Commune, Commune.code == Dossier.commune_code)
            .where(Dossier.dossier_code.in_(codes))
        ):
            rows[row.dossier_code] = row
    return {
        "total": int(total or 0),
        "limit": limit,
        "offset": offset,
        "items": [
            _review_item(cast(Dossier, rows[c]), rows[c].review_commune_name, calendar, now, scope)
            for c in codes
            if c in rows
        ],
    }


def iter_review_rows(
    session: Session,
    settings: Settings,
    calendar: WorkingCalendar,
    now: datetime,
    filters: ReviewFilters,
    *,
    max_rows: int,
    batch: int = 2000,
    scope: Scope = UNRESTRICTED,
) -> Iterator[dict[str, Any]]:
    """Every matching row (up to ``max_rows``) in the review's order, streamed for exports:
    the database cursor is read ``batch`` rows at a time so memory stays bounded."""
    soon_until = due_soon_until(settings, calendar, now)
    conditions = _review_conditions(session, filters, settings, now, soon_until)
    # Plain column rows, not ORM objects: a fifth of an export's time went into building and
    # expunging instances. The row has the same attribute names as a Dossier, but only the
    # columns _review_item reads: when no index gives the order (state "all" or "finished",
    # most sorts) every match is sorted, and narrow rows sort faster and convert faster.
    c = Dossier.__table__.c
    columns = (
        c.dossier_code, c.commune_code, c.procedure_code, c.procedure_name, c.sector,
        c.channel, c.status, c.received_at, c.due_at, c.finished_at, c.is_open, c.outcome,
        c.is_paused, c.paused_since, c.apology_issued_at, c.extension_count, c.officer,
        c.applicant_name, c.escalation_level,
    )  # fmt: skip
    if session.get_bind().dialect.name == "postgresql":
        # For this transaction only: with the default 4 MB, keeping the best 50,000 of a
        # million sorted rows spills to disk (an external merge of every row) instead of a
        # top-N heap sort in memory (1.5-2x faster for the export's query).
        session.execute(select(func.set_config("work_mem", "64MB", True)))
    stmt = (
        select(*columns, Commune.name.label("review_commune_name"))
        .outerjoin(Commune, Commune.code == Dossier.commune_code)
        .where(*conditions, *scope.where(Dossier.commune_code))
        .order_by(*_review_order(filters))
    )
    result = session.execute(stmt.limit(max_rows).execution_options(yield_per=batch))
    for row in result:
        dossier = cast(Dossier, row)
        yield _review_item(dossier, row.review_commune_name, calendar, now, scope)


def review_choices(
    session: Session, settings: Settings, *, scope: Scope = UNRESTRICTED
) -> dict[str, list[tuple[str, str]]]:
    """Options of the review's filter lists: communes of the province (of ``scope``), sectors
    and procedures of the catalogue (small tables; never a scan of the dossiers)."""
    communes = session.execute(
        select(Commune.code, Commune.name)
        .where(in_scope(settings), *scope.where(Commune.code))
        .order_by(Commune.name)
    ).all()
    sectors = session.scalars(
        select(Procedure.sector).where(Procedure.sector.is_not(None)).distinct()
    ).all()
    procedures = session.execute(
        select(Procedure.code, Procedure.name).order_by(Procedure.name)
    ).all()
    return {
        "communes": [(code, name) for code, name in communes],
        "sectors": [(s, s) for s in sorted(s for s in sectors if s)],
        "procedures": [(code, f"{name} ({code})") for code, name in procedures],
    }


# --- alerts page and alert history (issue 6) -------------------------------------------------

ALERT_PAGE_MAX = 200


def alerts_page(
    session: Session,
    *,
    state: str | None = None,
    level: int | None = None,
    commune: str | None = None,
    kind: str | None = None,
    limit: int = 25,
    offset: int = 0,
    scope: Scope = UNRESTRICTED,
) -> dict[str, Any]:
    """Alerts newest first, filtered and paged: ``total`` (matching) and ``items`` (payloads).

    The filters follow the indexes ``ix_alerts_state_raised`` and ``ix_alerts_commune``.
    """
    conditions: list[ColumnElement[bool]] = scope.where(Alert.commune_code)
    if state is not None:
        conditions.append(Alert.state == state)
    if level is not None:
        conditions.append(Alert.level == level)
    if commune is not None:
        conditions.append(Alert.commune_code == commune)
    if kind is not None:
        conditions.append(Alert.kind == kind)
    limit = min(max(limit, 1), ALERT_PAGE_MAX)
    offset = max(offset, 0)
    total = session.scalar(select(func.count()).select_from(Alert).where(*conditions))
    rows = session.scalars(
        select(Alert)
        .where(*conditions)
        .order_by(Alert.raised_at.desc(), Alert.level.desc(), Alert.alert_id)
        .limit(limit)
        .offset(offset)
    )
    return {
        "total": int(total or 0),
        "limit": limit,
        "offset": offset,
        "items": [alert_payload(a) for a in rows],
    }


def dossier_alerts(session: Session, dossier_code: str, limit: int = 100) -> list[dict[str, Any]]:
    """A dossier's alert history, newest first (index ``ix_alerts_dossier``)."""
    rows = session.scalars(
        select(Alert)
        .where(Alert.dossier_code == dossier_code)
        .order_by(Alert.raised_at.desc(), Alert.level.desc(), Alert.alert_id)
        .limit(limit)
    )
    return [alert_payload(a) for a in rows]


def commune_names(session: Session, settings: Settings) -> dict[str, str]:
    """Code -> name of the province's communes (a small reference table)."""
    rows = session.execute(select(Commune.code, Commune.name).where(in_scope(settings)))
    return {code: name for code, name in rows}
