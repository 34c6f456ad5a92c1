"""The escalation engine (``control-center alerts``).

One cycle (:func:`evaluate`) reads only what can fire: open dossiers due before a horizon
(partial index ``ix_dossiers_open_due``), the per-commune due buckets and daily counters the
collector maintains, the centre feeds and the waiting tickets. It never scans every dossier.

Alerts are keyed by ``(cause_key, level)`` (unique), so a restart or a second run of the same
cycle raises nothing twice. Every new alert and its notifications are written in the same
transaction; delivery (:mod:`alerts.outbox`) happens afterwards and at least once.

Flood control: on MQTT every alert is its own message (the CONTRACT.md payload, which centres
acknowledge by ``alert_id``), at most ``delivery.mqtt_per_topic_per_cycle`` per topic per
delivery pass; the rest follow in the next passes. When one commune has more new level-3
alerts in a cycle than ``delivery.province_digest_after``, the province desk gets one digest
for it and the alerts themselves go to the commune's topic. Webhook and e-mail get one digest
per commune, level and cycle listing that cycle's new alerts.

Between cycles, :func:`evaluate_crossings` raises what crossed a threshold in the last second,
so the delay to the commune does not depend on how long a full cycle takes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time as _time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Select, false, func, insert, select, true
from sqlalchemy.engine.cursor import CursorFetchStrategy
from sqlalchemy.orm import Session

from alerts import levels
from alerts.acks import handle_ack_message
from alerts.metrics import AlertsMetrics
from alerts.outbox import (
    EMAIL,
    MQTT,
    WEBHOOK,
    DeliveryResult,
    alert_payload,
    alert_topic,
    deliver_outbox,
)
from alerts.policy import (
    ACKNOWLEDGED,
    ACTIVE_STATES,
    LEVEL_PROVINCE,
    MAX_LEVEL,
    OPEN,
    RESOLVED,
    CommuneBacklog,
    Decision,
    DossierFacts,
    DossierHit,
    DueClock,
    FeedFacts,
    Policy,
    QueueFacts,
    at_risk_decision,
    completion_rate,
    dossier_hits,
    escalation_message,
    feed_decision,
    load_policy,
    overdue_jump_decision,
    queue_decision,
    should_escalate,
    stamped_cause_key,
)
from control_center import liveview, snapshots
from control_center.db import insert_for, insert_ignore
from control_center.domain.calendar import LOCAL_TZ, WorkingCalendar
from control_center.domain.dossier import local_day
from control_center.lease import Lease, LeaseLost
from control_center.models import (
    Alert,
    CentreFeed,
    Commune,
    CommuneDay,
    CommuneDueBucket,
    Dossier,
    Heartbeat,
    OutboxMessage,
    QueueTicket,
    utcnow,
)
from control_center.queries import clock_running
from control_center.settings import Settings

log = logging.getLogger(__name__)

HEARTBEAT_NAME = "alerts"


@dataclass
class CycleResult:
    now: datetime
    dossiers_examined: int = 0
    raised: list[uuid.UUID] = field(default_factory=list)
    escalated: list[uuid.UUID] = field(default_factory=list)  # the new, higher-level alerts
    resolved: list[uuid.UUID] = field(default_factory=list)
    outbox_written: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "dossiers_examined": self.dossiers_examined,
            "raised": len(self.raised),
            "escalated": len(self.escalated),
            "resolved": len(self.resolved),
            "outbox_written": self.outbox_written,
        }


# --- one evaluation cycle -------------------------------------------------------------------


def evaluate(
    session: Session,
    settings: Settings,
    calendar: WorkingCalendar,
    now: datetime,
    policy: Policy | None = None,
) -> CycleResult:
    """Decide, raise, resolve and escalate; write notifications to the outbox. Caller commits."""
    policy = policy or load_policy(settings.policy_file)
    result = CycleResult(now=now)

    # Active alerts as plain (cause, level) tuples (:func:`plain_rows`): at provincial scale
    # there are hundreds of thousands, and only the few that change this cycle are loaded as
    # objects.
    active_keys: set[tuple[str, int]] = set(
        plain_rows(
            session,
            select(Alert.cause_key, Alert.level).where(Alert.state.in_(ACTIVE_STATES)),
        )
    )
    active_causes = {key for key, _level in active_keys}

    # What should exist (``wanted``) and what to raise (``fresh``: each new cause once, its
    # message written chunk by chunk below), streamed from the due dossiers.
    wanted: set[str] = set()
    fresh: dict[str, _DueHit | Decision] = {}
    for hit in _dossier_hits(session, calendar, now, policy, result):
        wanted.add(hit.cause_key)
        if (hit.cause_key, hit.level) not in active_keys:
            fresh.setdefault(hit.cause_key, hit)
    for d in _commune_decisions(session, calendar, now, policy):
        wanted.add(d.cause_key)
        if (d.cause_key, d.level) not in active_keys:
            fresh.setdefault(d.cause_key, d)

    gone = sorted(active_causes - wanted)
    resolved = _active_alerts(session, gone)
    for alert in resolved:
        alert.state = RESOLVED
        alert.resolved_at = now
    levels.recompute(session, (a.dossier_code for a in resolved))
    result.resolved = [a.alert_id for a in resolved]

    # An acknowledgement at any level stops the cause's escalation: someone is on it, even if
    # the centre acknowledged only after its alert had already gone up to the leadership.
    seen = set(session.scalars(select(Alert.cause_key).where(Alert.state == ACKNOWLEDGED)))
    due = _escalation_candidates(session, calendar, now, policy)
    candidates = sorted({key for key, _level in due if key in wanted and key not in seen})
    escalated = _escalate(
        session,
        [a for a in _active_alerts(session, candidates) if (a.cause_key, a.level) in due],
        now,
        calendar,
        policy,
    )
    result.escalated = [a.alert_id for a in escalated]

    province_level = Counter(
        x.commune_code
        for x in (*fresh.values(), *escalated)
        if x.level >= LEVEL_PROVINCE and x.commune_code
    )
    cap = policy.delivery.province_digest_after
    notes = _Notifications(
        session, settings, policy, now, {c for c, n in province_level.items() if n > cap}
    )
    notes.resolved(resolved)
    notes.announce(escalated)
    for chunk in _chunks(list(fresh.values()), RAISE_CHUNK):
        decisions = [x.decision(calendar) if isinstance(x, _DueHit) else x for x in chunk]
        raised = _raise(session, decisions, now)
        result.raised += [a.alert_id for a in raised]
        notes.announce(raised)
        notes.flush()
        for alert in raised:  # announced: nothing keeps them in memory any more
            session.expunge(alert)
    result.outbox_written = notes.finish()
    session.flush()
    return result


CROSSING_CHECK_S = 1.0  # between cycles, how often the engine looks for crossed thresholds


def evaluate_crossings(
    session: Session,
    settings: Settings,
    calendar: WorkingCalendar,
    since: datetime,
    now: datetime,
    policy: Policy | None = None,
) -> CycleResult:
    """Raise the dossier alerts whose threshold was crossed in ``(since, now]``; caller commits.

    Between two full cycles (:func:`evaluate`, every ``CC_ALERTS_INTERVAL_S``) the process
    runs this every second, so a warning reaches its commune within about a second of its
    moment however long a full cycle over a big backlog takes. Each rule's threshold maps the
    interval onto a narrow range of due dates (one range scan each); the exact rule decides on
    those few dossiers, and ``ON CONFLICT DO NOTHING`` skips what is already raised. It only
    raises: resolution, escalation, commune rules and share thresholds (``N%``) wait for the
    full cycle.
    """
    policy = policy or load_policy(settings.policy_file)
    result = CycleResult(now=now)
    if now <= since:
        return result
    rows: dict[str, Any] = {}
    for low, high in crossing_windows(calendar, since, now, policy):
        query = due_dossiers_query(high, with_processing_time=False).where(Dossier.due_at > low)
        for r in plain_rows(session, query):
            rows[r[0]] = r
    result.dossiers_examined = len(rows)
    clock = DueClock(now, calendar)
    to_time = _time_reader(session)
    decisions = [
        hit.decision(calendar)
        for r in rows.values()
        for hit in dossier_hits(_facts(r, to_time), clock, policy)
        if not hit.rule.uses_share
    ]
    raised = _raise(session, decisions, now)
    result.raised = [a.alert_id for a in raised]
    if raised:
        province_level = Counter(
            a.commune_code for a in raised if a.level >= LEVEL_PROVINCE and a.commune_code
        )
        cap = policy.delivery.province_digest_after
        notes = _Notifications(
            session, settings, policy, now, {c for c, n in province_level.items() if n > cap}
        )
        notes.announce(raised)
        result.outbox_written = notes.finish()
    return result


def crossing_windows(
    calendar: WorkingCalendar, since: datetime, now: datetime, policy: Policy
) -> list[tuple[datetime, datetime]]:
    """Per dossier rule, the due dates ``(low, high]`` whose threshold fell in ``(since, now]``.

    A little wide on purpose (a minute before, one working second after, so that a threshold
    landing on the end of a working day also takes the dossiers due at the next day's start):
    the exact rule decides, the unique key removes repeats.
    """
    margin = timedelta(minutes=1)
    out: list[tuple[datetime, datetime]] = []
    for rule in policy.dossier_rules:
        if not rule.enabled or rule.uses_share:
            continue
        if rule.before_due is not None:
            ahead = rule.before_due.seconds(calendar)
            if rule.at_most is not None:
                ahead = min(ahead, rule.at_most.seconds(calendar))
            low = calendar.add_working_seconds(since, ahead) - margin
            out.append((low, calendar.add_working_seconds(now, ahead + 1)))
        elif rule.after_due is not None:
            late = rule.after_due.seconds(calendar)
            if late <= 0:
                out.append((since - margin, now))
            else:
                low = calendar.add_working_seconds(since, -late) - margin
                out.append((low, calendar.add_working_seconds(now, -late) + margin))
        elif local_day(since) != local_day(now):  # on the due day: from local midnight
            midnight = datetime.combine(local_day(now), time(0), tzinfo=LOCAL_TZ)
            out.append((midnight - margin, midnight + timedelta(days=1)))
    return out


def due_dossiers_query(
    horizon: datetime, *, with_processing_time: bool = True
) -> Select[*tuple[Any, ...]]:
    """Open dossiers due at or before ``horizon``: a range scan of ``ix_dossiers_open_due``.

    Only what the rules need: whether an apology slip exists (not when), and the legal
    processing time's ends only for a policy with share thresholds.
    """
    columns: list[Any] = [
        Dossier.dossier_code,
        Dossier.commune_code,
        Dossier.due_at,
        Dossier.is_paused,
        Dossier.procedure_name,
        Dossier.apology_issued_at.is_not(None).label("has_apology"),
    ]
    if with_processing_time:
        columns += [Dossier.clock_start_at, Dossier.original_due_at]
    # ``is_open = true`` (not IS TRUE) so SQLite's planner matches the partial index predicate.
    # Read with :func:`plain_rows`, in this column order (:func:`_facts`).
    return select(*columns).where(
        Dossier.is_open == true(),
        Dossier.due_at <= horizon,
        # Paused in time: the due date moves with the pause, nothing is due while it lasts
        # (domain.dossier.clock_stopped_in_time); paused after the due date it stays late.
        clock_running(),
    )


class _DueHit(NamedTuple):
    """A rule that applies to a due dossier; the Decision (and its message) only when new.

    A tuple, not a dataclass: a big backlog makes a hundred thousand of these per cycle.
    """

    cause_key: str
    level: int
    rule: Any
    seconds: float
    row: tuple[Any, ...]  # a due_dossiers_query row
    to_time: Callable[[Any], datetime | None]

    @property
    def commune_code(self) -> str:
        return str(self.row[1])

    def decision(self, calendar: WorkingCalendar) -> Decision:
        facts = _facts(self.row, self.to_time)
        return DossierHit(self.rule, facts, self.seconds, self.cause_key).decision(calendar)


def plain_rows(
    session: Session, query: Select[Any] | Any, batch: int = 10_000
) -> Iterator[tuple[Any, ...]]:
    """The query's rows as the driver returns them: plain tuples, no result processing.

    A cycle reads a hundred thousand due dossiers and a few hundred thousand active alert
    keys; SQLAlchemy's Row objects and type processing cost more than the reads themselves.
    Strings, integers and booleans come back usable (SQLite: 0/1); datetimes go through
    :func:`_time_reader`. Parameters are bound as usual, on the session's connection inside
    its transaction; the driver's cursor is then read directly, in batches.
    """
    session.flush()
    result = session.connection().execute(query)
    try:
        if type(result.cursor_strategy) is not CursorFetchStrategy:  # pragma: no cover
            # A buffering strategy holds rows the cursor no longer has: read them through it.
            yield from (tuple(row) for row in result)
            return
        while rows := result.cursor.fetchmany(batch):
            yield from rows
    finally:
        result.close()


def _time_reader(session: Session) -> Callable[[Any], datetime | None]:
    """Driver value of a ``UTCDateTime`` column -> aware UTC datetime: the column type's own
    result processing (SQLite's text parsed, then UTC attached)."""
    dialect = session.connection().dialect
    column_type = Dossier.__table__.c.due_at.type
    process = column_type.dialect_impl(dialect).result_processor(dialect, None)
    if process is None:  # pragma: no cover - UTCDateTime always processes
        return lambda value: value  # type: ignore[no-any-return]
    return process  # type: ignore[no-any-return]


def _facts(r: tuple[Any, ...], to_time: Callable[[Any], datetime | None]) -> DossierFacts:
    due_at = to_time(r[2])
    assert due_at is not None  # the query reads due dossiers only
    return DossierFacts(
        dossier_code=r[0],
        commune_code=r[1],
        due_at=due_at,
        is_paused=bool(r[3]),
        procedure_name=r[4],
        has_apology=bool(r[5]),
        clock_start_at=to_time(r[6]) if len(r) > 6 else None,
        original_due_at=to_time(r[7]) if len(r) > 7 else None,
    )


def _dossier_hits(
    session: Session,
    calendar: WorkingCalendar,
    now: datetime,
    policy: Policy,
    result: CycleResult,
) -> Iterator[_DueHit]:
    """The dossier rules that apply now, streamed from the open dossiers due before the horizon.

    Without share thresholds the rules that apply depend only on the due date, the pause and
    whether an apology slip exists, so they are decided once per such combination (a few
    dozen), not once per dossier: a backlog of a million costs a loop, not a million decisions.
    """
    horizon = calendar.add_working_seconds(now, policy.lookahead_seconds(calendar))
    shares = any(rule.enabled and rule.uses_share for rule in policy.dossier_rules)
    clock = DueClock(now, calendar)
    same: dict[tuple[Any, bool, bool], list[tuple[Any, int, float, str]]] = {}
    query = due_dossiers_query(horizon, with_processing_time=shares)
    to_time = _time_reader(session)
    for r in plain_rows(session, query):
        result.dossiers_examined += 1
        if shares:
            for h in dossier_hits(_facts(r, to_time), clock, policy):
                yield _DueHit(h.cause_key, h.rule.level, h.rule, h.seconds, r, to_time)
            continue
        code, commune, due, paused, _name, apology = r[:6]
        signature = (due, apology, paused)
        applies = same.get(signature)
        if applies is None:
            facts = _facts(r, to_time)
            stamp = clock.stamp(facts.due_at) if facts.due_at is not None else ""
            applies = same[signature] = [
                (h.rule, h.rule.level, h.seconds, stamp) for h in dossier_hits(facts, clock, policy)
            ]
        for rule, level, seconds, stamp in applies:
            yield _DueHit(
                stamped_cause_key(code, rule.kind, stamp, commune),
                level,
                rule,
                seconds,
                r,
                to_time,
            )


def _escalation_candidates(
    session: Session, calendar: WorkingCalendar, now: datetime, policy: Policy
) -> set[tuple[str, int]]:
    """(cause, level) of open alerts old enough to be escalated now, by index range scans.

    One calendar computation per level gives the latest ``raised_at`` that may be due; the
    exact test, :func:`should_escalate`, then runs on the few alerts found.
    """
    out: set[tuple[str, int]] = set()
    for level in range(1, MAX_LEVEL):
        after = policy.level(level).escalate_after
        if after is None:
            continue
        seconds = after.seconds(calendar)
        cutoff = (
            _working_before(calendar, now, seconds)
            if after.working
            else now - timedelta(seconds=seconds)
        )
        rows = session.execute(
            select(Alert.cause_key, Alert.level).where(
                Alert.state == OPEN,
                Alert.raised_at <= cutoff + timedelta(seconds=1),  # the bisection's rounding
                Alert.escalated_at.is_(None),
                Alert.level == level,
            )
        )
        out.update((key, lvl) for key, lvl in rows)
    return out


def _active_alerts(session: Session, cause_keys: list[str]) -> list[Alert]:
    """The open or acknowledged alerts of these causes, any level (unique index on the key)."""
    return [
        alert
        for chunk in _chunks(cause_keys)
        for alert in session.scalars(
            select(Alert).where(Alert.cause_key.in_(chunk), Alert.state.in_(ACTIVE_STATES))
        )
    ]


def _commune_decisions(
    session: Session, calendar: WorkingCalendar, now: datetime, policy: Policy
) -> list[Decision]:
    rules = policy.commune_rules
    names = _CommuneNames(session)
    out: list[Decision] = []

    if rules.feed_offline.enabled:
        for feed in session.scalars(select(CentreFeed)):
            d = feed_decision(
                FeedFacts(
                    commune_code=feed.commune_code,
                    reported_state=feed.reported_state,
                    last_heartbeat_arrived_at=feed.last_heartbeat_arrived_at,
                    last_arrival_at=feed.last_arrival_at,
                    commune_name=names.get(feed.commune_code),
                ),
                now,
                calendar,
                policy,
            )
            if d:
                out.append(d)

    if rules.queue_wait.enabled:
        today = local_day(now)
        waiting = session.execute(
            select(
                QueueTicket.commune_code,
                func.count(),
                func.min(QueueTicket.issued_at),
            )
            .where(QueueTicket.state == "waiting", QueueTicket.service_day == today)
            .group_by(QueueTicket.commune_code)
        ).all()
        for commune_code, count, oldest in waiting:
            facts = QueueFacts(commune_code, today, int(count), _aware(oldest))
            if queue_decision(facts, now, policy) is None:
                continue
            ticket_no = session.scalar(
                select(QueueTicket.ticket_no)
                .where(
                    QueueTicket.commune_code == commune_code,
                    QueueTicket.service_day == today,
                    QueueTicket.state == "waiting",
                )
                .order_by(QueueTicket.issued_at)
                .limit(1)
            )
            facts = QueueFacts(
                commune_code, today, int(count), _aware(oldest), ticket_no, names.get(commune_code)
            )
            d = queue_decision(facts, now, policy)
            if d:
                out.append(d)

    if rules.overdue_jump.enabled:
        window_start = _working_before(calendar, now, rules.overdue_jump.window.seconds(calendar))
        for commune_code, newly in session.execute(
            select(CommuneDueBucket.commune_code, func.sum(CommuneDueBucket.open_count))
            .where(
                CommuneDueBucket.due_minute >= window_start,
                CommuneDueBucket.due_minute < now,
                CommuneDueBucket.paused == false(),
            )
            .group_by(CommuneDueBucket.commune_code)
        ):
            d = overdue_jump_decision(
                commune_code, int(newly or 0), now, policy, names.get(commune_code)
            )
            if d:
                out.append(d)

    if rules.at_risk.enabled:
        out.extend(_at_risk(session, calendar, now, policy, names))
    return out


def _at_risk(
    session: Session,
    calendar: WorkingCalendar,
    now: datetime,
    policy: Policy,
    names: _CommuneNames,
) -> list[Decision]:
    rule = policy.commune_rules.at_risk
    horizon = calendar.add_working_seconds(
        now, rule.horizon_working_days * calendar.seconds_per_day
    )
    upcoming: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for commune_code, due_minute, count in session.execute(
        select(
            CommuneDueBucket.commune_code,
            CommuneDueBucket.due_minute,
            CommuneDueBucket.open_count,
        ).where(
            CommuneDueBucket.due_minute >= now,
            CommuneDueBucket.paused == false(),
            CommuneDueBucket.due_minute <= horizon,
            CommuneDueBucket.open_count > 0,
        )
    ):
        if due_minute is None:
            continue
        days = calendar.working_seconds_between(now, due_minute) / calendar.seconds_per_day
        upcoming[commune_code].append((days, int(count)))
    if not upcoming:
        return []
    communes = sorted(upcoming)
    overdue = dict(
        session.execute(
            select(CommuneDueBucket.commune_code, func.sum(CommuneDueBucket.open_count))
            .where(
                CommuneDueBucket.due_minute < now,
                CommuneDueBucket.paused == false(),
                CommuneDueBucket.commune_code.in_(communes),
            )
            .group_by(CommuneDueBucket.commune_code)
        ).all()
    )
    today = local_day(now)
    start = today - timedelta(days=rule.history_days)
    finished: dict[str, dict[Any, int]] = defaultdict(dict)
    for commune_code, day, value in session.execute(
        select(CommuneDay.commune_code, CommuneDay.day, CommuneDay.finished).where(
            CommuneDay.day >= start,
            CommuneDay.day < today,
            CommuneDay.commune_code.in_(communes),
        )
    ):
        finished[commune_code][day] = int(value)
    out = []
    for commune_code in communes:
        backlog = CommuneBacklog(
            commune_code=commune_code,
            overdue_now=int(overdue.get(commune_code) or 0),
            upcoming=tuple(upcoming[commune_code]),
            rate_per_working_day=completion_rate(finished[commune_code], start, today, calendar),
            commune_name=names.get(commune_code),
        )
        d = at_risk_decision(backlog, now, policy)
        if d:
            out.append(d)
    return out


class _CommuneNames:
    """Commune names for messages and, in national mode (``CC_SCOPE``), their provinces for
    topics: read once per cycle and only when a message first needs one."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._rows: dict[str, tuple[str, str]] | None = None

    def _read(self) -> dict[str, tuple[str, str]]:
        if self._rows is None:
            rows = self._session.execute(select(Commune.code, Commune.name, Commune.province_code))
            self._rows = {code: (name, province) for code, name, province in rows}
        return self._rows

    def get(self, code: str) -> str | None:
        found = self._read().get(code)
        return found[0] if found else None

    def province(self, settings: Settings, code: str | None) -> str:
        """Whose topics: the province's, or in national mode the commune's province."""
        if not settings.national or not code:
            return settings.province
        found = self._read().get(code)
        return found[1] if found else settings.province


def _working_before(calendar: WorkingCalendar, now: datetime, seconds: float) -> datetime:
    """The instant ``seconds`` of working time before ``now`` (the calendar only adds forward)."""
    if seconds <= 0:
        return now
    # Step back whole calendar days until enough working time lies between, then refine.
    start = now
    while calendar.working_seconds_between(start, now) < seconds:
        start -= timedelta(days=1)
    lo, hi = start, now
    for _ in range(40):
        mid = lo + (hi - lo) / 2
        if calendar.working_seconds_between(mid, now) >= seconds:
            lo = mid
        else:
            hi = mid
    return lo


def _aware(value: datetime | None) -> datetime | None:
    # Aggregates (min) bypass the column type, so SQLite hands back a naive UTC string/datetime.
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# --- raising, escalating, resolving ---------------------------------------------------------


def _raise(session: Session, decisions: list[Decision], now: datetime) -> list[Alert]:
    if not decisions:
        return []
    rows = [
        {
            "alert_id": uuid.uuid4(),
            "cause_key": d.cause_key,
            "kind": d.kind,
            "level": d.level,
            "commune_code": d.commune_code,
            "dossier_code": d.dossier_code,
            "due_at": d.due_at,
            "raised_at": now,
            "state": OPEN,
            "message": d.message,
        }
        for d in decisions
    ]
    return _insert_alerts(session, rows)


def _insert_alerts(session: Session, rows: list[dict[str, Any]]) -> list[Alert]:
    """Insert, skipping causes already alerted at that level (even resolved ones)."""
    inserted = insert_ignore(session, Alert.__table__, rows, ["cause_key", "level"])
    if not inserted:
        return []
    new_keys = set(inserted)
    ids = [r["alert_id"] for r in rows if (r["cause_key"], r["level"]) in new_keys]
    alerts = [
        alert
        for chunk in _chunks(ids)
        for alert in session.scalars(select(Alert).where(Alert.alert_id.in_(chunk)))
    ]
    levels.raised(session, alerts)  # the dossiers' stored escalation level, same transaction
    return alerts


def _chunks(items: list[Any], size: int = 5000) -> Iterator[list[Any]]:
    # SQLite caps bound parameters per statement; a first start may raise thousands of alerts.
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _escalate(
    session: Session,
    open_alerts: Iterable[Alert],
    now: datetime,
    calendar: WorkingCalendar,
    policy: Policy,
) -> list[Alert]:
    rows = []
    for alert in open_alerts:
        if not should_escalate(
            state=alert.state,
            level=alert.level,
            raised_at=alert.raised_at,
            escalated_at=alert.escalated_at,
            now=now,
            calendar=calendar,
            policy=policy,
        ):
            continue
        alert.escalated_at = now
        waited = calendar.working_seconds_between(alert.raised_at, now)
        level = min(alert.level + 1, MAX_LEVEL)
        rows.append(
            {
                "alert_id": uuid.uuid4(),
                "cause_key": alert.cause_key,
                "kind": alert.kind,
                "level": level,
                "commune_code": alert.commune_code,
                "dossier_code": alert.dossier_code,
                "due_at": alert.due_at,
                "raised_at": now,
                "state": OPEN,
                "message": escalation_message(alert.message, level, waited, calendar),
            }
        )
    session.flush()
    return _insert_alerts(session, rows) if rows else []


RAISE_CHUNK = 2000  # alerts raised, announced and let go of at a time: memory stays bounded
DIGEST_MAX_IDS = 200  # keeps a digest far below the contract's 64 KiB per message


@dataclass
class _DigestPart:
    """One digest being gathered over a cycle: the count, and only the first alerts in full."""

    count: int = 0
    kinds: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def add(self, alert: Alert) -> None:
        self.count += 1
        self.kinds[alert.kind] += 1
        if len(self.alerts) < DIGEST_MAX_IDS:
            self.alerts.append(alert_payload(alert))


class _Notifications:
    """The cycle's outbox rows, written as alerts are raised, chunk by chunk.

    Per-alert MQTT messages are written at once; digests (webhook and e-mail per commune,
    level and cycle; the province desk's per commune) are gathered and written at the end.
    ``digest_communes``: communes with more new level-3 alerts this cycle than
    ``delivery.province_digest_after`` (see :meth:`announce`).
    """

    def __init__(
        self,
        session: Session,
        settings: Settings,
        policy: Policy,
        now: datetime,
        digest_communes: set[str],
    ) -> None:
        self.session, self.settings, self.policy, self.now = session, settings, policy, now
        self.digest_communes = digest_communes
        self.rows: list[dict[str, Any]] = []
        self.written = 0
        self.digests: dict[tuple[str, str, int], _DigestPart] = defaultdict(_DigestPart)
        self.province_desk: dict[str, _DigestPart] = defaultdict(_DigestPart)
        self.communes = _CommuneNames(session)

    def announce(self, alerts: Iterable[Alert]) -> None:
        """Province-level alerts go to the province topic one by one, unless their commune has
        more than ``province_digest_after`` this cycle (a first start on a big backlog, a
        centre back from days offline): then the province desk gets one ``alert_digest`` for
        the commune, and each alert's own payload goes to the commune's topic, where the
        centre can act on it and acknowledge it by ``alert_id``. The wall, the alerts page and
        the API list every alert."""
        for alert in alerts:
            province = self.communes.province(self.settings, alert.commune_code)
            level = self.policy.level(alert.level)
            not_before = level.quiet_until(self.now) or self.now
            commune = alert.commune_code or ""
            for channel in level.channels:
                if channel == MQTT:
                    if alert.level >= LEVEL_PROVINCE and commune in self.digest_communes:
                        self.province_desk[commune].add(alert)
                        topic = alert_topic(province, 1, commune)
                    else:
                        topic = alert_topic(province, alert.level, alert.commune_code)
                    self.rows.append(_mqtt_row(alert, topic, self.now, not_before))
                elif channel == WEBHOOK and self.settings.alerts_webhook_url:
                    self.digests[(WEBHOOK, commune, alert.level)].add(alert)
                elif channel == EMAIL and self.settings.smtp_url and level.email_to:
                    self.digests[(EMAIL, commune, alert.level)].add(alert)

    def resolved(self, alerts: list[Alert]) -> None:
        heard = _withdraw_unsent(self.session, alerts)
        if self.policy.delivery.announce_resolution:
            # Centres clear the alert from their screens, on the topics that heard it open (a
            # digested province alert was heard on its commune's topic); no webhook/e-mail
            # for good news.
            for alert in alerts:
                for topic in sorted(heard.get(alert.alert_id, ())):
                    self.rows.append(_mqtt_row(alert, topic, self.now, self.now))

    def flush(self) -> None:
        self.session.flush()  # withdrawn rows and alert changes go first
        for chunk in _chunks(self.rows):
            # Core executemany: a first start writes tens of thousands of rows.
            self.session.execute(insert(OutboxMessage), chunk)
        self.written += len(self.rows)
        self.rows = []

    def finish(self) -> int:
        settings, now = self.settings, self.now
        for (channel, commune, level_no), part in sorted(self.digests.items()):
            level = self.policy.level(level_no)
            target = (
                settings.alerts_webhook_url or ""
                if channel == WEBHOOK
                else ", ".join(level.email_to)
            )
            payload = _digest(
                self.communes.province(settings, commune), commune, level_no, part, now
            )
            self.rows.append(
                _outbox_row(None, channel, target, payload, now, level.quiet_until(now) or now)
            )
        if self.province_desk:
            not_before = self.policy.level(LEVEL_PROVINCE).quiet_until(now) or now
            for commune, part in sorted(self.province_desk.items()):
                province = self.communes.province(settings, commune)
                topic = alert_topic(province, LEVEL_PROVINCE, None)
                payload = province_digest(
                    province,
                    commune,
                    self.communes.get(commune),
                    part,
                    alert_topic(province, 1, commune),
                    now,
                )
                self.rows.append(_outbox_row(None, MQTT, topic, payload, now, not_before))
        self.flush()
        return self.written


def _outbox_row(
    alert_id: uuid.UUID | None,
    channel: str,
    target: str,
    payload: dict[str, Any],
    now: datetime,
    not_before: datetime,
) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "channel": channel,
        "target": target,
        "payload": payload,
        "created_at": now,
        "attempts": 0,
        "next_attempt_at": not_before,
    }


def _mqtt_row(alert: Alert, topic: str, now: datetime, not_before: datetime) -> dict[str, Any]:
    return _outbox_row(alert.alert_id, MQTT, topic, alert_payload(alert), now, not_before)


def province_digest(
    province: str,
    commune_code: str,
    commune_name: str | None,
    part: _DigestPart,
    alerts_topic: str,
    now: datetime,
) -> dict[str, Any]:
    """The province desk's summary of one commune's new level-3 alerts in one cycle."""
    where = commune_name or commune_code
    by_kind = ", ".join(f"{kind}: {n}" for kind, n in sorted(part.kinds.items()))
    return {
        "type": "alert_digest",
        "digest_id": str(uuid.uuid4()),
        "province_code": province,
        "commune_code": commune_code,
        "level": LEVEL_PROVINCE,
        "generated_at": now.astimezone(LOCAL_TZ).isoformat(timespec="seconds"),
        "count": part.count,
        "kinds": dict(sorted(part.kinds.items())),
        "alert_ids": [a["alert_id"] for a in part.alerts],
        "dossier_codes": [a["dossier_code"] for a in part.alerts if a["dossier_code"]],
        "truncated": part.count > len(part.alerts),
        "alerts_topic": alerts_topic,
        "message": (
            f"{where}: {part.count} cảnh báo cấp tỉnh mới ({by_kind}). Từng cảnh báo được gửi "
            f"tới {alerts_topic} và xem trên trang Cảnh báo."
        ),
    }


def _withdraw_unsent(session: Session, resolved: list[Alert]) -> dict[uuid.UUID, set[str]]:
    """Drop notifications of alerts resolved before they went out (quiet hours, broker down).

    Otherwise a centre would hear "resolved" now and "open" when the held message is finally
    sent. Returns, per alert, the MQTT topics that were told it is open: only those hear that
    it is resolved, and an alert nobody was told about is not announced either.
    """
    heard: dict[uuid.UUID, set[str]] = defaultdict(set)
    ids = [a.alert_id for a in resolved]
    for chunk in _chunks(ids):
        for row in session.scalars(select(OutboxMessage).where(OutboxMessage.alert_id.in_(chunk))):
            if row.sent_at is None:
                session.delete(row)
            elif row.channel == MQTT and row.alert_id is not None:
                heard[row.alert_id].add(row.target)
    return heard


def _digest(
    province: str, commune_code: str, level: int, part: _DigestPart, now: datetime
) -> dict[str, Any]:
    """Webhook / e-mail digest: every new alert counted, the first 200 in full."""
    where = commune_code or province
    lines = [f"- [{a['kind']}] {a['message']}" for a in part.alerts]
    if part.count > len(part.alerts):
        lines.append(f"... và {part.count - len(part.alerts)} cảnh báo khác (xem trang Cảnh báo).")
    return {
        "type": "alert_digest",
        "province_code": province,
        "commune_code": commune_code or None,
        "level": level,
        "generated_at": now.astimezone(LOCAL_TZ).isoformat(timespec="seconds"),
        "count": part.count,
        "alerts": part.alerts,
        "truncated": part.count > len(part.alerts),
        "subject": f"[Cảnh báo cấp {level}] {where}: {part.count} cảnh báo mới",
        "text": "\n".join(lines),
    }


# --- heartbeat ------------------------------------------------------------------------------


def write_heartbeat(session: Session, now: datetime, info: dict[str, Any]) -> None:
    ins = insert_for(session, Heartbeat.__table__)
    session.execute(
        ins.values(name=HEARTBEAT_NAME, beat_at=now, info=info).on_conflict_do_update(
            index_elements=["name"], set_={"beat_at": now, "info": info}
        )
    )


# --- the process ----------------------------------------------------------------------------


LEASE_NAME = "alerts"


def run(
    settings: Settings,
    stop_event: threading.Event | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
    policy: Policy | None = None,
    lease: Lease | None = None,
) -> None:
    """Evaluate, deliver, beat, every ``alerts_interval_s``, until ``stop_event`` is set.

    Several instances may run (one per host, say): only the holder of the ``alerts`` lease
    (:mod:`control_center.lease`) evaluates, writes and sends; the others wait on standby, record
    acknowledgements, and take over within ``alerts_lease_s * 4 / 3`` of the holder's last
    renewal.
    Acknowledgements received over MQTT are recorded between cycles (within half a second).
    A failing cycle (database away, bad row) is logged and retried next interval.
    """
    from alerts.notifiers import AlertsMqtt, email_from_settings, webhook_from_settings
    from control_center.db import engine_from_settings, session_factory, transaction
    from control_center.runtime import calendar_from_settings

    stop = stop_event or threading.Event()
    policy = policy or load_policy(settings.policy_file)
    calendar = calendar_from_settings(settings)
    engine = engine_from_settings(settings)
    _limit_idle_transactions(engine, settings.alerts_lease_s)
    factory = session_factory(engine)
    lease = lease or Lease(LEASE_NAME, settings.alerts_lease_s)
    metrics = AlertsMetrics()
    if settings.alerts_metrics_port:
        metrics.serve(settings.alerts_metrics_port)
    mqtt = AlertsMqtt(settings)
    webhook, email = webhook_from_settings(settings), email_from_settings(settings)
    # What the leader sends goes through the fence: nothing leaves once the lease ran out.
    units = _LeaderUnits(lease)
    channels = (
        _Fenced(mqtt, lease),
        _Fenced(webhook, lease) if webhook else None,
        _Fenced(email, lease) if email else None,
    )
    mqtt.start()
    log.info(
        "alert engine started: %s, instance %s",
        settings.redacted().get("mqtt_url"),
        lease.holder,
    )
    next_cycle = next_check = next_view = 0.0
    checked: datetime | None = None  # up to when thresholds have been looked at
    publishes_view = settings.live_view_s > 0 and not settings.national
    try:
        while not stop.is_set():
            _drain_acks(mqtt, factory, settings, clock)
            metrics.mqtt_connected.set(1 if mqtt.is_connected() else 0)
            if lease.renewal_due() or not lease.valid():
                was_leader = lease.held
                if _try_lead(lease, factory) and not was_leader:
                    log.info("alert engine %s is now the active instance", lease.holder)
                    metrics.leadership_changes.labels("acquired").inc()
                    next_cycle, checked = 0.0, None  # catch up at once: a full cycle first
                elif was_leader and not lease.held:
                    log.warning("alert engine %s lost the lease: standby", lease.holder)
                    metrics.leadership_changes.labels("lost").inc()
            metrics.is_leader.set(1 if lease.valid() else 0)
            try:
                if not lease.valid():
                    pass  # standby: acknowledgements only
                elif _time.monotonic() >= next_cycle:
                    next_cycle = _time.monotonic() + settings.alerts_interval_s
                    next_check = _time.monotonic() + CROSSING_CHECK_S
                    checked = (
                        _cycle(
                            factory, units, settings, calendar, policy, clock, *channels, metrics
                        )
                        or checked
                    )
                elif checked is not None and _time.monotonic() >= next_check:
                    next_check = _time.monotonic() + CROSSING_CHECK_S
                    checked = _crossings(
                        factory, units, settings, calendar, policy, clock, checked, *channels
                    )
                if publishes_view and lease.valid() and _time.monotonic() >= next_view:
                    next_view = _time.monotonic() + settings.live_view_s
                    _publish_view(factory, units, settings, calendar, clock)
            except LeaseLost as exc:
                log.warning("alert engine %s stopped acting: %s", lease.holder, exc)
                metrics.leadership_changes.labels("lost").inc()
                metrics.is_leader.set(0)
            stop.wait(min(0.25, settings.alerts_interval_s))
    finally:
        mqtt.stop()
        if lease.valid():
            try:
                with transaction(factory) as session:
                    lease.release(session)
            except Exception:
                log.exception("releasing the alerts lease failed; a standby waits for expiry")
        engine.dispose()
        log.info("alert engine stopped")


def _try_lead(lease: Lease, factory: Any) -> bool:
    """Take or renew the lease. A database that does not answer is not a crash: a holder keeps
    its token and renews once the database is back, unless its lease ran out meanwhile."""
    try:
        return lease.acquire(factory)
    except Exception:
        log.exception("alerts lease: database unavailable")
        return False


class _LeaderUnits:
    """``transaction(factory)`` for the lease holder. Every unit of work confirms the lease as
    its last statement; one that sends (``sending=True``) also takes it as its first, so that
    nobody can take the lease over between reading the outbox and marking its rows sent.

    Deciding takes it first on PostgreSQL only (a row lock that blocks nobody else). On SQLite
    it would be the database's write lock for the whole cycle, holding up the collector; the
    confirmation at the end rolls the cycle back if a standby took over meanwhile, which needs
    a cycle longer than ``alerts_lease_s``.
    """

    def __init__(self, lease: Lease) -> None:
        self.lease = lease

    @contextmanager
    def __call__(self, factory: Any, *, sending: bool = False) -> Iterator[Session]:
        from control_center.db import transaction

        with transaction(factory) as session:
            if sending or session.get_bind().dialect.name == "postgresql":
                self.lease.hold(session)
            yield session
            self.lease.confirm(session)


class _Fenced:
    """A delivery channel that refuses to send once this instance's lease ran out.

    The database lock stops a standby from taking over mid-delivery; this stops the other
    case, a holder frozen (SIGSTOP, VM pause) past its lease that wakes up with messages in
    hand: its monotonic clock tells it before anything leaves the process.
    """

    def __init__(self, channel: Any, lease: Lease) -> None:
        self.channel, self.lease = channel, lease

    def is_connected(self) -> bool:
        return bool(self.channel.is_connected())

    def publish_confirmed(
        self, messages: Sequence[tuple[str, bytes]], timeout: float
    ) -> list[str | None]:
        self._check()
        return list(self.channel.publish_confirmed(messages, timeout))

    def send(self, target: str, payload: dict[str, Any]) -> None:
        self._check()
        self.channel.send(target, payload)

    def _check(self) -> None:
        if not self.lease.valid():
            raise LeaseLost(f"lease {self.lease.name} ran out before sending")


def _limit_idle_transactions(engine: Any, lease_s: float) -> None:
    """PostgreSQL ends a session left idle inside a transaction for twice the lease (30 s at
    least).

    A frozen leader holding the lease row's lock would otherwise keep every standby waiting
    for as long as it stays frozen.
    """
    if engine.dialect.name != "postgresql":
        return
    from sqlalchemy import event

    timeout_ms = int(max(2 * lease_s, 30.0) * 1000)

    @event.listens_for(engine, "connect")
    def _set_timeout(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET idle_in_transaction_session_timeout = {timeout_ms}")
        dbapi_conn.commit()


def _cycle(
    factory: Any,
    transaction: Any,
    settings: Settings,
    calendar: WorkingCalendar,
    policy: Policy,
    clock: Callable[[], datetime],
    mqtt: Any,
    webhook: Any,
    email: Any,
    metrics: AlertsMetrics | None = None,
) -> datetime | None:
    """One full cycle; the instant it evaluated, None when it failed.

    :class:`LeaseLost` propagates: the caller stops acting at once.
    """
    info: dict[str, Any] = {}
    evaluated: datetime | None = None
    started = _time.perf_counter()
    try:
        now = clock()
        with transaction(factory) as session:
            result = evaluate(session, settings, calendar, now, policy)
        evaluated = now
        info.update(result.summary())
        if result.raised or result.escalated or result.resolved:
            log.info("alerts cycle: %s", result.summary())
        delivered = _deliver(factory, transaction, policy, clock(), mqtt, webhook, email)
        info.update(sent=delivered.sent, failed=delivered.failed, deferred=delivered.deferred)
        if delivered.errors:
            log.warning("alerts delivery problems: %s", delivered.errors[:5])
        if metrics is not None:
            metrics.observe_cycle(info, _time.perf_counter() - started)
            metrics.observe_delivery(delivered.sent, delivered.failed, delivered.deferred)
            metrics.cycles.labels("ok").inc()
    except LeaseLost:
        raise
    except Exception as exc:
        log.exception("alerts cycle failed")
        info["error"] = f"{type(exc).__name__}: {exc}"[:500]
        if metrics is not None:
            metrics.cycles.labels("failed").inc()
    try:  # the wall's "same time yesterday" of its state figures; one writer: the leader
        with transaction(factory) as session:
            snapshots.take(session, settings, calendar, clock())
    except LeaseLost:
        raise
    except Exception:
        log.exception("summary snapshot failed")
    try:
        with transaction(factory) as session:
            info["mqtt_connected"] = bool(mqtt.is_connected())
            write_heartbeat(session, clock(), info)
    except LeaseLost:
        raise
    except Exception:
        log.exception("alerts heartbeat failed")
    return evaluated


def _crossings(
    factory: Any,
    transaction: Any,
    settings: Settings,
    calendar: WorkingCalendar,
    policy: Policy,
    clock: Callable[[], datetime],
    since: datetime,
    mqtt: Any,
    webhook: Any,
    email: Any,
) -> datetime:
    """Raise and send what crossed a threshold since ``since``; up to when it looked."""
    try:
        now = clock()
        with transaction(factory) as session:
            result = evaluate_crossings(session, settings, calendar, since, now, policy)
        if result.raised:
            log.info("alerts crossing: %d raised", len(result.raised))
            _deliver(factory, transaction, policy, clock(), mqtt, webhook, email)
        return now
    except LeaseLost:
        raise
    except Exception:
        log.exception("alerts crossing check failed")  # the next full cycle catches up
        return since


def _publish_view(
    factory: Any,
    transaction: Any,
    settings: Settings,
    calendar: WorkingCalendar,
    clock: Callable[[], datetime],
) -> None:
    """The province's wall reading for every screen (:mod:`control_center.liveview`). A
    failure only means the walls compute the figures themselves until the next one."""
    try:
        with transaction(factory) as session:
            liveview.publish(session, settings, calendar, clock())
    except LeaseLost:
        raise
    except Exception as exc:  # every few seconds while the database is away: no traceback
        log.warning("wall reading not stored: %s", f"{type(exc).__name__}: {exc}"[:300])


def _deliver(
    factory: Any,
    transaction: Any,
    policy: Policy,
    now: datetime,
    mqtt: Any,
    webhook: Any,
    email: Any,
) -> DeliveryResult:
    units = transaction if isinstance(transaction, _LeaderUnits) else None
    with units(factory, sending=True) if units else transaction(factory) as session:
        return deliver_outbox(
            session, now, policy.delivery, mqtt=mqtt, webhook=webhook, email=email
        )


def _drain_acks(mqtt: Any, factory: Any, settings: Settings, clock: Callable[[], datetime]) -> None:
    from control_center.db import transaction

    while True:
        try:
            ack = mqtt.acks.get_nowait()
        except queue.Empty:
            return
        try:
            with transaction(factory) as session:
                province = None if settings.national else settings.province
                handle_ack_message(session, ack.topic, ack.payload, province, clock())
        except Exception:
            # Database away: the broker redelivers the unacknowledged message later.
            log.exception("recording an alert ack failed")
            return
        mqtt.confirm(ack)
