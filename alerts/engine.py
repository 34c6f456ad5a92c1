"""The escalation engine (``control-center alerts``).

One cycle (:func:`evaluate`) reads only what can fire: open dossiers due before a horizon
(partial index ``ix_dossiers_open_due``), the per-commune due buckets and daily counters the
collector maintains, the centre feeds and the waiting tickets. It never scans every dossier.

Alerts are keyed by ``(cause_key, level)`` (unique), so a restart or a second run of the same
cycle raises nothing twice. Every new alert and its notifications are written in the same
transaction; delivery (:mod:`alerts.outbox`) happens afterwards and at least once.

Flood control: on MQTT every alert is its own message (the CONTRACT.md payload, which centres
acknowledge by ``alert_id``), at most ``delivery.mqtt_per_topic_per_cycle`` per topic per
delivery pass; the rest follow in the next passes. Webhook and e-mail get one digest per
commune, level and cycle listing that cycle's new alerts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time as _time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select, true
from sqlalchemy.orm import Session

from alerts.acks import handle_ack_message
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
    ACTIVE_STATES,
    MAX_LEVEL,
    OPEN,
    RESOLVED,
    CommuneBacklog,
    Decision,
    DossierFacts,
    FeedFacts,
    Policy,
    QueueFacts,
    at_risk_decision,
    completion_rate,
    dossier_decisions,
    escalation_message,
    feed_decision,
    load_policy,
    overdue_jump_decision,
    queue_decision,
    should_escalate,
)
from control_center.db import insert_for, insert_ignore
from control_center.domain.calendar import LOCAL_TZ, WorkingCalendar
from control_center.domain.dossier import local_day
from control_center.models import (
    Alert,
    CentreFeed,
    Commune,
    CommuneDaily,
    CommuneDueBucket,
    Dossier,
    Heartbeat,
    OutboxMessage,
    QueueTicket,
    utcnow,
)
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

    decisions, examined = _dossier_decisions(session, calendar, now, policy)
    result.dossiers_examined = examined
    decisions += _commune_decisions(session, calendar, now, policy)
    wanted: dict[str, Decision] = {}
    for d in decisions:
        wanted.setdefault(d.cause_key, d)

    active = list(session.scalars(select(Alert).where(Alert.state.in_(ACTIVE_STATES))))
    active_keys = {(a.cause_key, a.level) for a in active}

    new_alerts = _raise(
        session,
        [d for d in wanted.values() if (d.cause_key, d.level) not in active_keys],
        now,
    )
    result.raised = [a.alert_id for a in new_alerts]

    resolved: list[Alert] = []
    for alert in active:
        if alert.cause_key not in wanted:
            alert.state = RESOLVED
            alert.resolved_at = now
            resolved.append(alert)
    result.resolved = [a.alert_id for a in resolved]

    escalated = _escalate(session, [a for a in active if a.state == OPEN], now, calendar, policy)
    result.escalated = [a.alert_id for a in escalated]

    result.outbox_written = _write_outbox(
        session, settings, policy, new_alerts + escalated, resolved, now
    )
    session.flush()
    return result


def due_dossiers_query(horizon: datetime) -> Select[*tuple[Any, ...]]:
    """Open dossiers due at or before ``horizon``: a range scan of ``ix_dossiers_open_due``."""
    # ``is_open = true`` (not IS TRUE) so SQLite's planner matches the partial index predicate.
    return select(
        Dossier.dossier_code,
        Dossier.commune_code,
        Dossier.due_at,
        Dossier.is_paused,
        Dossier.procedure_name,
        Dossier.apology_issued_at,
        Dossier.clock_start_at,
        Dossier.original_due_at,
    ).where(Dossier.is_open == true(), Dossier.due_at <= horizon)


def _dossier_decisions(
    session: Session, calendar: WorkingCalendar, now: datetime, policy: Policy
) -> tuple[list[Decision], int]:
    horizon = calendar.add_working_seconds(now, policy.lookahead_seconds(calendar))
    rows = session.execute(due_dossiers_query(horizon)).all()
    out: list[Decision] = []
    for r in rows:
        facts = DossierFacts(
            dossier_code=r.dossier_code,
            commune_code=r.commune_code,
            due_at=r.due_at,
            is_paused=bool(r.is_paused),
            procedure_name=r.procedure_name,
            apology_issued_at=r.apology_issued_at,
            clock_start_at=r.clock_start_at,
            original_due_at=r.original_due_at,
        )
        out.extend(dossier_decisions(facts, now, calendar, policy))
    return out, len(rows)


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
            .where(CommuneDueBucket.due_minute < now, CommuneDueBucket.commune_code.in_(communes))
            .group_by(CommuneDueBucket.commune_code)
        ).all()
    )
    today = local_day(now)
    start = today - timedelta(days=rule.history_days)
    finished: dict[str, dict[Any, int]] = defaultdict(dict)
    for commune_code, day, value in session.execute(
        select(CommuneDaily.commune_code, CommuneDaily.day, CommuneDaily.value).where(
            CommuneDaily.metric == "finished",
            CommuneDaily.day >= start,
            CommuneDaily.day < today,
            CommuneDaily.commune_code.in_(communes),
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
    """Commune names for messages, read once per cycle and only when a message needs one."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._names: dict[str, str] | None = None

    def get(self, code: str) -> str | None:
        if self._names is None:
            self._names = dict(self._session.execute(select(Commune.code, Commune.name)).all())
        return self._names.get(code)


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
    return [
        alert
        for chunk in _chunks(ids)
        for alert in session.scalars(select(Alert).where(Alert.alert_id.in_(chunk)))
    ]


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


def _write_outbox(
    session: Session,
    settings: Settings,
    policy: Policy,
    new_alerts: list[Alert],
    resolved: list[Alert],
    now: datetime,
) -> int:
    rows: list[OutboxMessage] = []
    digests: dict[tuple[str, str, int], list[Alert]] = defaultdict(list)
    for alert in new_alerts:
        level = policy.level(alert.level)
        not_before = level.quiet_until(now) or now
        for channel in level.channels:
            if channel == MQTT:
                rows.append(
                    OutboxMessage(
                        alert_id=alert.alert_id,
                        channel=MQTT,
                        target=alert_topic(settings.province, alert.level, alert.commune_code),
                        payload=alert_payload(alert),
                        created_at=now,
                        next_attempt_at=not_before,
                    )
                )
            elif channel == WEBHOOK and settings.alerts_webhook_url:
                digests[(WEBHOOK, alert.commune_code or "", alert.level)].append(alert)
            elif channel == EMAIL and settings.smtp_url and level.email_to:
                digests[(EMAIL, alert.commune_code or "", alert.level)].append(alert)
    for (digest_channel, commune_code, level_no), alerts in sorted(digests.items()):
        level = policy.level(level_no)
        payload = _digest(settings, commune_code, level_no, alerts, now)
        target = (
            settings.alerts_webhook_url or ""
            if digest_channel == WEBHOOK
            else ", ".join(level.email_to)
        )
        rows.append(
            OutboxMessage(
                alert_id=None,
                channel=digest_channel,
                target=target,
                payload=payload,
                created_at=now,
                next_attempt_at=level.quiet_until(now) or now,
            )
        )
    unheard = _withdraw_unsent(session, resolved)
    if policy.delivery.announce_resolution:
        # Centres clear the alert from their screens; no webhook/e-mail for good news.
        for alert in resolved:
            if alert.alert_id not in unheard and MQTT in policy.level(alert.level).channels:
                rows.append(
                    OutboxMessage(
                        alert_id=alert.alert_id,
                        channel=MQTT,
                        target=alert_topic(settings.province, alert.level, alert.commune_code),
                        payload=alert_payload(alert),
                        created_at=now,
                        next_attempt_at=now,
                    )
                )
    session.add_all(rows)
    return len(rows)


def _withdraw_unsent(session: Session, resolved: list[Alert]) -> set[uuid.UUID]:
    """Drop notifications of alerts resolved before they went out (quiet hours, broker down).

    Otherwise a centre would hear "resolved" now and "open" when the held message is finally
    sent. Returns the alerts nobody was told about, whose resolution is not announced either.
    """
    if not resolved:
        return set()
    ids = [a.alert_id for a in resolved]
    sent: set[uuid.UUID | None] = set()
    for chunk in _chunks(ids):
        for row in session.scalars(select(OutboxMessage).where(OutboxMessage.alert_id.in_(chunk))):
            if row.sent_at is None:
                session.delete(row)
            else:
                sent.add(row.alert_id)
    return {a for a in ids if a not in sent}


def _digest(
    settings: Settings, commune_code: str, level: int, alerts: list[Alert], now: datetime
) -> dict[str, Any]:
    items = [alert_payload(a) for a in alerts]
    where = commune_code or settings.province
    lines = [f"- [{a.kind}] {a.message}" for a in alerts]
    return {
        "type": "alert_digest",
        "province_code": settings.province,
        "commune_code": commune_code or None,
        "level": level,
        "generated_at": now.astimezone(LOCAL_TZ).isoformat(timespec="seconds"),
        "count": len(items),
        "alerts": items,
        "subject": f"[Cảnh báo cấp {level}] {where}: {len(items)} cảnh báo mới",
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


def run(
    settings: Settings,
    stop_event: threading.Event | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
    policy: Policy | None = None,
) -> None:
    """Evaluate, deliver, beat, every ``alerts_interval_s``, until ``stop_event`` is set.

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
    factory = session_factory(engine)
    mqtt = AlertsMqtt(settings)
    webhook, email = webhook_from_settings(settings), email_from_settings(settings)
    mqtt.start()
    log.info("alert engine started: %s", settings.redacted().get("mqtt_url"))
    next_cycle = 0.0
    try:
        while not stop.is_set():
            _drain_acks(mqtt, factory, settings, clock)
            if _time.monotonic() >= next_cycle:
                next_cycle = _time.monotonic() + settings.alerts_interval_s
                _cycle(
                    factory, transaction, settings, calendar, policy, clock, mqtt, webhook, email
                )
            stop.wait(min(0.25, settings.alerts_interval_s))
    finally:
        mqtt.stop()
        engine.dispose()
        log.info("alert engine stopped")


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
) -> None:
    info: dict[str, Any] = {}
    try:
        now = clock()
        with transaction(factory) as session:
            result = evaluate(session, settings, calendar, now, policy)
        info.update(result.summary())
        if result.raised or result.escalated or result.resolved:
            log.info("alerts cycle: %s", result.summary())
        delivered = _deliver(factory, transaction, policy, clock(), mqtt, webhook, email)
        info.update(sent=delivered.sent, failed=delivered.failed, deferred=delivered.deferred)
        if delivered.errors:
            log.warning("alerts delivery problems: %s", delivered.errors[:5])
    except Exception as exc:
        log.exception("alerts cycle failed")
        info["error"] = f"{type(exc).__name__}: {exc}"[:500]
    try:
        with transaction(factory) as session:
            info["mqtt_connected"] = bool(mqtt.is_connected())
            write_heartbeat(session, clock(), info)
    except Exception:
        log.exception("alerts heartbeat failed")


def _deliver(
    factory: Any,
    transaction: Any,
    policy: Policy,
    now: datetime,
    mqtt: Any,
    webhook: Any,
    email: Any,
) -> DeliveryResult:
    with transaction(factory) as session:
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
                handle_ack_message(session, ack.topic, ack.payload, settings.province, clock())
        except Exception:
            # Database away: the broker redelivers the unacknowledged message later.
            log.exception("recording an alert ack failed")
            return
        mqtt.confirm(ack)
