"""The evaluation cycle against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session, sessionmaker

from alerts.acks import acknowledge, handle_ack_message
from alerts.engine import CycleResult, due_dossiers_query, evaluate, evaluate_crossings
from alerts.notifiers import ack_topic_filter
from alerts.policy import Duration, load_policy
from control_center.db import make_engine, session_factory
from control_center.domain.calendar import LOCAL_TZ, load_calendar
from control_center.migrate import upgrade_schema
from control_center.models import (
    Alert,
    CentreFeed,
    CommuneDay,
    CommuneDueBucket,
    Dossier,
    OutboxMessage,
    QueueTicket,
)
from control_center.settings import Settings, load_settings

CAL = load_calendar()
POLICY = load_policy()
COMMUNE = "02269"
CODE = "000.00.22.H56-251123-0001"


def local(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=LOCAL_TZ)


@dataclass
class World:
    engine: Engine
    factory: sessionmaker[Session]
    settings: Settings

    def cycle(self, now: datetime) -> CycleResult:
        with self.factory() as s, s.begin():
            return evaluate(s, self.settings, CAL, now, POLICY)

    def alerts(self, **where: object) -> list[Alert]:
        with self.factory() as s:
            q = select(Alert).order_by(Alert.level, Alert.kind)
            for k, v in where.items():
                q = q.where(getattr(Alert, k) == v)
            return list(s.scalars(q))

    def outbox(self) -> list[OutboxMessage]:
        with self.factory() as s:
            return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))

    def add(self, *rows: object) -> None:
        with self.factory() as s, s.begin():
            s.add_all(rows)

    def set_dossier(self, code: str, **values: object) -> None:
        with self.factory() as s, s.begin():
            s.execute(update(Dossier).where(Dossier.dossier_code == code).values(**values))


def make_world(url: str, **settings: object) -> World:
    engine = make_engine(url)
    upgrade_schema(engine)
    return World(engine, session_factory(engine), load_settings(database_url=url, **settings))


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    w = make_world(db_url)
    yield w
    w.engine.dispose()


def dossier(code: str = CODE, due: datetime | None = None, **kw: object) -> Dossier:
    received = kw.pop("received_at", local(2026, 11, 20, 8))
    values: dict[str, object] = {
        "dossier_code": code,
        "commune_code": COMMUNE,
        "received_commune_code": COMMUNE,
        "procedure_code": "1.001193",
        "procedure_name": "Đăng ký khai sinh",
        "status": 4,
        "is_open": True,
        "is_paused": False,
        "received_at": received,
        "clock_start_at": received,
        "due_at": due,
        "original_due_at": due,
        "last_event_at": received,
        "flags": [],
    }
    values.update(kw)
    return Dossier(**values)


def by_kind(alerts: list[Alert]) -> dict[tuple[str, int], Alert]:
    return {(a.kind, a.level): a for a in alerts}


# --- raising ------------------------------------------------------------------------------


def test_due_soon_is_raised_once_with_its_notification_in_the_same_transaction(
    world: World,
) -> None:
    world.add(dossier(due=local(2026, 11, 25, 17)))  # Tue 24 Nov is a holiday
    assert world.cycle(local(2026, 11, 23, 16, 59)).raised == []
    result = world.cycle(local(2026, 11, 23, 17))
    [alert] = world.alerts()
    assert result.raised == [alert.alert_id]
    assert (alert.kind, alert.level, alert.state) == ("due_soon", 1, "open")
    assert alert.commune_code == COMMUNE and alert.dossier_code == CODE
    assert alert.due_at == local(2026, 11, 25, 17)
    assert "còn 1 ngày làm việc" in alert.message
    [msg] = world.outbox()
    assert msg.channel == "mqtt" and msg.target == f"dvc/v1/08/{COMMUNE}/alerts"
    assert msg.alert_id == alert.alert_id and msg.sent_at is None
    assert msg.payload["alert_id"] == str(alert.alert_id)
    assert msg.payload["due_at"] == "2026-11-25T17:00:00+07:00"
    assert set(msg.payload) >= {
        "alert_id",
        "kind",
        "level",
        "commune_code",
        "dossier_code",
        "due_at",
        "raised_at",
        "state",
        "message",
    }


def test_repeated_cycles_and_a_restart_do_not_duplicate_alerts(db_url: str) -> None:
    w = make_world(db_url)
    w.add(dossier(due=local(2026, 11, 20, 17)))  # overdue
    now = local(2026, 11, 26, 9)
    first = w.cycle(now)
    assert len(first.raised) == 3  # overdue, apology_missing, overdue_2d
    assert w.cycle(now + timedelta(minutes=1)).raised == []
    w.engine.dispose()
    restarted = make_world(db_url)  # a new process: fresh engine, same database
    assert restarted.cycle(now + timedelta(minutes=2)).raised == []
    assert len(restarted.alerts()) == 3
    assert len(restarted.outbox()) == 3  # one MQTT message each; no webhook configured
    restarted.engine.dispose()


def test_province_level_alerts_go_to_the_province_topic(world: World) -> None:
    world.add(dossier(due=local(2026, 11, 20, 17)))
    world.cycle(local(2026, 11, 26, 9))
    topics = {m.payload["kind"]: m.target for m in world.outbox()}
    assert topics == {
        "overdue": f"dvc/v1/08/{COMMUNE}/alerts",
        "apology_missing": f"dvc/v1/08/{COMMUNE}/alerts",
        "overdue_2d": "dvc/v1/08/province/alerts",
    }


def test_quiet_hours_hold_the_notification_not_the_alert(world: World) -> None:
    world.add(dossier(due=local(2026, 11, 26, 17)))
    world.cycle(local(2026, 11, 26, 22))  # level 2 overdue raised at night
    overdue = world.alerts(kind="overdue")[0]
    assert overdue.state == "open"
    [msg] = [m for m in world.outbox() if m.alert_id == overdue.alert_id]
    assert msg.next_attempt_at == local(2026, 11, 27, 6, 30)


def test_only_open_dossiers_due_before_the_horizon_are_read(world: World) -> None:
    world.add(
        dossier("A", due=local(2026, 11, 27, 9)),
        dossier("B", due=local(2026, 12, 20, 9)),  # far away
        dossier("C", due=local(2026, 11, 20, 9), is_open=False, status=10),  # returned
        dossier("D", due=None),  # no due date
    )
    result = world.cycle(local(2026, 11, 26, 9))
    assert result.dossiers_examined == 1
    assert [a.dossier_code for a in world.alerts()] == ["A"]


def test_a_dossier_paused_in_time_is_not_late_one_paused_after_its_due_date_is(
    world: World,
) -> None:
    """Waiting for the citizen stops the clock: past its stored due date a dossier paused
    before it is not overdue (its due date moves with the pause); one paused late stays late."""
    due = local(2026, 11, 25, 17)
    world.add(
        dossier("IN-TIME", due=due, status=5, is_paused=True, paused_since=local(2026, 11, 23, 9)),
        dossier("LATE", due=due, status=5, is_paused=True, paused_since=local(2026, 11, 26, 9)),
    )
    world.cycle(local(2026, 11, 30, 10))
    assert {a.dossier_code for a in world.alerts()} == {"LATE"}


def test_the_horizon_is_exact_to_the_minute_on_both_backends(world: World) -> None:
    # Thu 09:00 + one working day (the widest before-due rule) = Fri 09:00.
    world.add(
        dossier("EDGE", due=local(2026, 11, 27, 9)),
        dossier("AFTER", due=local(2026, 11, 27, 9, 1)),
        dossier("LATE", due=local(2026, 11, 25, 17)),
    )
    result = world.cycle(local(2026, 11, 26, 9))
    assert result.dossiers_examined == 2
    assert {a.dossier_code for a in world.alerts()} == {"EDGE", "LATE"}
    assert {a.due_at for a in world.alerts() if a.dossier_code == "LATE"} == {
        local(2026, 11, 25, 17)
    }


def test_the_cycle_query_uses_the_open_due_partial_index(sqlite_url: str) -> None:
    w = make_world(sqlite_url)
    with w.engine.connect() as conn:
        sql = str(
            due_dossiers_query(local(2026, 11, 26, 9)).compile(
                dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}
            )
        )
        plan = " ".join(str(r) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
    assert "ix_dossiers_open_due" in plan
    w.engine.dispose()


# --- resolution ---------------------------------------------------------------------------


def test_alerts_resolve_when_the_dossier_is_returned(world: World) -> None:
    world.add(dossier(due=local(2026, 11, 20, 17)))
    world.cycle(local(2026, 11, 26, 9))
    with world.factory() as s, s.begin():  # the centres were told
        s.execute(update(OutboxMessage).values(sent_at=local(2026, 11, 26, 9, 1)))
    world.set_dossier(CODE, is_open=False, status=10, finished_at=local(2026, 11, 26, 9, 30))
    result = world.cycle(local(2026, 11, 26, 9, 31))
    assert len(result.resolved) == 3
    assert {a.state for a in world.alerts()} == {"resolved"}
    resolutions = [m for m in world.outbox() if m.payload["state"] == "resolved"]
    assert len(resolutions) == 3  # centres are told to clear them
    assert all(m.sent_at is None for m in resolutions)


def test_an_alert_resolved_before_it_went_out_is_never_announced(world: World) -> None:
    # Raised at night (level 2 held by quiet hours), returned before the morning.
    world.add(dossier(due=local(2026, 11, 26, 17)))
    world.cycle(local(2026, 11, 26, 22))
    assert world.outbox()
    world.set_dossier(CODE, is_open=False, status=10, finished_at=local(2026, 11, 27, 6))
    world.cycle(local(2026, 11, 27, 6, 1))
    assert {a.state for a in world.alerts()} == {"resolved"}
    assert world.outbox() == []  # neither "open" at 06:30 nor "resolved"


def test_an_extension_resolves_due_soon_and_watches_the_new_date(world: World) -> None:
    world.add(dossier(due=local(2026, 11, 27, 9)))
    world.cycle(local(2026, 11, 26, 9))
    world.set_dossier(CODE, due_at=local(2026, 12, 4, 17), extension_count=1)
    result = world.cycle(local(2026, 11, 26, 10))
    assert len(result.resolved) == 1 and result.raised == []
    [old] = world.alerts()
    assert old.state == "resolved" and old.resolved_at == local(2026, 11, 26, 10)
    # The new date gets its own warning when its time comes.
    later = world.cycle(local(2026, 12, 3, 17))
    assert len(later.raised) == 1
    assert world.alerts(state="open")[0].due_at == local(2026, 12, 4, 17)


def test_a_transfer_resolves_the_first_communes_alerts_and_warns_the_new_handler(
    world: World,
) -> None:
    world.add(dossier(due=local(2026, 11, 27, 9)))
    world.cycle(local(2026, 11, 26, 9))
    [first] = world.alerts()
    assert first.commune_code == COMMUNE and first.state == "open"
    world.set_dossier(CODE, commune_code="02272")  # transferred to another commune
    result = world.cycle(local(2026, 11, 26, 9, 5))
    assert result.resolved == [first.alert_id] and len(result.raised) == 1
    [new] = world.alerts(state="open")
    assert new.commune_code == "02272" and new.kind == "due_soon"
    topics = {m.target for m in world.outbox() if m.alert_id == new.alert_id}
    assert topics == {"dvc/v1/08/02272/alerts"}


# --- acknowledgement and escalation --------------------------------------------------------


def test_a_missed_alert_escalates_one_level_keeping_kind_and_cause(world: World) -> None:
    world.add(dossier(due=local(2026, 11, 30, 17)))
    world.cycle(local(2026, 11, 27, 17))  # Friday 17:00: due_soon at level 1
    [first] = world.alerts()
    # 4 working hours later is Monday 11:00 (the weekend does not count).
    assert world.cycle(local(2026, 11, 30, 10, 59)).escalated == []
    result = world.cycle(local(2026, 11, 30, 11))
    [up] = world.alerts(kind="due_soon", level=2)
    assert result.escalated == [up.alert_id]
    assert up.cause_key == first.cause_key and up.state == "open"
    assert up.message.startswith("[Chuyển cấp 2: chưa được xác nhận sau 4 giờ làm việc]")
    assert world.alerts(kind="due_soon", level=1)[0].escalated_at == local(2026, 11, 30, 11)
    assert world.cycle(local(2026, 11, 30, 11, 5)).escalated == []  # once only


def test_an_acknowledged_alert_does_not_escalate(world: World) -> None:
    world.add(dossier(due=local(2026, 11, 30, 17)))
    world.cycle(local(2026, 11, 27, 17))
    [first] = world.alerts()
    with world.factory() as s, s.begin():
        assert acknowledge(s, first.alert_id, "Nguyễn Văn A", local(2026, 11, 27, 17, 5))
    with world.factory() as s, s.begin():
        assert not acknowledge(s, first.alert_id, "someone else", local(2026, 11, 27, 17, 6))
    assert world.cycle(local(2026, 11, 30, 15)).escalated == []
    [acked] = world.alerts(kind="due_soon")
    assert acked.state == "acknowledged"
    assert acked.acknowledged_by == "Nguyễn Văn A"
    assert acked.acknowledged_at == local(2026, 11, 27, 17, 5)


# due_soon three working days ahead, so that a warning lives long enough to go up two levels.
EARLY_POLICY = POLICY.model_copy(
    update={
        "dossier_rules": tuple(
            r.model_copy(update={"before_due": Duration.model_validate("3 working days")})
            if r.kind == "due_soon"
            else r
            for r in POLICY.dossier_rules
        )
    }
)


def early_cycle(world: World, now: datetime) -> CycleResult:
    with world.factory() as s, s.begin():
        return evaluate(s, world.settings, CAL, now, EARLY_POLICY)


def test_without_any_acknowledgement_the_escalation_reaches_the_province(world: World) -> None:
    world.add(dossier(due=local(2026, 12, 9, 17)))
    early_cycle(world, local(2026, 12, 4, 17))  # Friday 17:00: 3 working days left, level 1
    early_cycle(world, local(2026, 12, 7, 11))  # 4 working hours unanswered: level 2
    assert early_cycle(world, local(2026, 12, 8, 10, 59)).escalated == []
    result = early_cycle(world, local(2026, 12, 8, 11))  # a working day later: level 3
    [top] = world.alerts(kind="due_soon", level=3)
    assert result.escalated == [top.alert_id]
    assert top.message.startswith("[Chuyển cấp 3: chưa được xác nhận sau 1 ngày làm việc]")
    assert {m.target for m in world.outbox() if m.alert_id == top.alert_id} == {
        "dvc/v1/08/province/alerts"
    }


def test_a_late_acknowledgement_stops_the_escalation_going_further(world: World) -> None:
    world.add(dossier(due=local(2026, 12, 9, 17)))
    early_cycle(world, local(2026, 12, 4, 17))
    early_cycle(world, local(2026, 12, 7, 11))
    [low] = world.alerts(kind="due_soon", level=1)
    assert world.alerts(kind="due_soon", level=2)[0].state == "open"
    with world.factory() as s, s.begin():  # the centre answers after all
        assert acknowledge(s, low.alert_id, "Bộ phận một cửa", local(2026, 12, 7, 11, 30))
    # The leadership's copy is still unanswered a working day later, but someone is on it.
    assert early_cycle(world, local(2026, 12, 8, 11)).escalated == []
    assert world.alerts(kind="due_soon", level=3) == []


def test_the_dossier_row_keeps_its_escalation_level_through_raise_escalate_resolve(
    world: World,
) -> None:
    # The review filters and sorts by dossiers.escalation_level: it must follow the alerts.
    def level() -> int:
        with world.factory() as s:
            return s.scalar(select(Dossier.escalation_level).where(Dossier.dossier_code == CODE))

    world.add(dossier(due=local(2026, 12, 9, 17)), dossier("quiet", due=local(2027, 1, 29, 17)))
    assert level() == 0
    early_cycle(world, local(2026, 12, 4, 17))  # raised at level 1
    assert level() == 1
    early_cycle(world, local(2026, 12, 7, 11))  # escalated to level 2
    assert level() == 2
    [low] = world.alerts(kind="due_soon", level=1)
    with world.factory() as s, s.begin():  # acknowledged is still unresolved
        assert acknowledge(s, low.alert_id, "Bộ phận một cửa", local(2026, 12, 7, 11, 30))
    early_cycle(world, local(2026, 12, 7, 12))
    assert level() == 2
    world.set_dossier(CODE, is_open=False, status=10, finished_at=local(2026, 12, 7, 13))
    assert len(early_cycle(world, local(2026, 12, 7, 13, 1)).resolved) == 2
    assert level() == 0
    with world.factory() as s:
        assert (
            s.scalar(select(Dossier.escalation_level).where(Dossier.dossier_code == "quiet")) == 0
        )


def test_an_ack_from_another_commune_or_for_an_unknown_alert_is_ignored(world: World) -> None:
    world.add(dossier(due=local(2026, 11, 30, 17)))
    world.cycle(local(2026, 11, 27, 17))
    [alert] = world.alerts()
    now = local(2026, 11, 27, 17, 10)

    def ack(topic: str, alert_id: object) -> bool:
        payload = f'{{"alert_id": "{alert_id}", "by": "cán bộ", "occurred_at": "2026-11-27T17:09:00+07:00"}}'
        with world.factory() as s, s.begin():
            return handle_ack_message(s, topic, payload.encode(), "08", now).recorded

    assert not ack("dvc/v1/08/02272/alerts/ack", alert.alert_id)  # another commune
    assert not ack("dvc/v1/08/province/alerts/ack", alert.alert_id)  # level 1 is not theirs
    assert not ack(f"dvc/v1/08/{COMMUNE}/alerts/ack", uuid.uuid4())
    with world.factory() as s, s.begin():
        assert not handle_ack_message(
            s, f"dvc/v1/08/{COMMUNE}/alerts/ack", b"not json", "08", now
        ).recorded
    assert world.alerts()[0].state == "open"
    assert ack(f"dvc/v1/08/{COMMUNE}/alerts/ack", alert.alert_id)
    assert world.alerts()[0].state == "acknowledged"


def test_in_national_mode_each_provinces_alerts_go_to_its_own_topics(db_url: str) -> None:
    """CC_SCOPE=national: one engine for the country; a Hồ Chí Minh City commune's alerts go to
    dvc/v1/79/..., its desk's are acknowledged on 79's topic only."""
    from tests.national_seed import HCMC_A, seed_country

    world = make_world(db_url, scope="national")
    seed_country(world.engine)
    late = local(2026, 11, 20, 17)
    world.add(
        dossier(due=late),
        dossier("HCM-1", due=late, commune_code=HCMC_A, received_commune_code=HCMC_A),
    )
    world.cycle(local(2026, 11, 26, 9))
    topics = {
        (m.payload["dossier_code"], m.payload["kind"]): m.target
        for m in world.outbox()
        if m.payload.get("dossier_code")
    }
    assert topics == {
        (CODE, "overdue"): f"dvc/v1/08/{COMMUNE}/alerts",
        (CODE, "apology_missing"): f"dvc/v1/08/{COMMUNE}/alerts",
        (CODE, "overdue_2d"): "dvc/v1/08/province/alerts",
        ("HCM-1", "overdue"): f"dvc/v1/79/{HCMC_A}/alerts",
        ("HCM-1", "apology_missing"): f"dvc/v1/79/{HCMC_A}/alerts",
        ("HCM-1", "overdue_2d"): "dvc/v1/79/province/alerts",
    }
    [desk_alert] = world.alerts(dossier_code="HCM-1", kind="overdue_2d")
    now = local(2026, 11, 26, 9, 5)

    def ack(topic: str) -> bool:
        payload = f'{{"alert_id": "{desk_alert.alert_id}", "by": "trực ban", "occurred_at": "2026-11-26T09:04:00+07:00"}}'
        with world.factory() as s, s.begin():
            return handle_ack_message(s, topic, payload.encode(), None, now).recorded

    assert not ack("dvc/v1/08/province/alerts/ack")  # another province's desk
    assert ack("dvc/v1/79/province/alerts/ack")
    assert ack_topic_filter(None) == "dvc/v1/+/+/alerts/ack"
    world.engine.dispose()


# --- commune-wide rules --------------------------------------------------------------------


def test_feed_offline_is_raised_and_resolves_when_the_centre_is_back(world: World) -> None:
    world.add(
        CentreFeed(
            commune_code=COMMUNE,
            reported_state="offline",
            reported_at=local(2026, 11, 26, 9),
            last_heartbeat_arrived_at=local(2026, 11, 26, 9),
            last_arrival_at=local(2026, 11, 26, 9),
        )
    )
    assert world.cycle(local(2026, 11, 26, 9, 29)).raised == []
    world.cycle(local(2026, 11, 26, 9, 30))
    [alert] = world.alerts()
    assert (alert.kind, alert.level) == ("feed_offline", 3)
    with world.factory() as s, s.begin():
        feed = s.get(CentreFeed, COMMUNE)
        assert feed is not None
        feed.reported_state = "online"
        feed.last_heartbeat_arrived_at = feed.last_arrival_at = local(2026, 11, 26, 10)
    world.cycle(local(2026, 11, 26, 10, 1))
    assert world.alerts()[0].state == "resolved"


def test_queue_wait_is_raised_and_resolves_when_the_queue_drains(world: World) -> None:
    issued = local(2026, 11, 26, 8)
    ticket = QueueTicket(
        commune_code=COMMUNE,
        service_day=date(2026, 11, 26),
        ticket_no="A001",
        state="waiting",
        issued_at=issued,
        last_event_at=issued,
    )
    world.add(ticket)
    assert world.cycle(issued + timedelta(minutes=59)).raised == []
    world.cycle(issued + timedelta(minutes=61))
    [alert] = world.alerts()
    assert alert.kind == "queue_wait" and "A001" in alert.message
    with world.factory() as s, s.begin():
        s.execute(update(QueueTicket).values(state="called"))
    world.cycle(issued + timedelta(minutes=62))
    assert world.alerts()[0].state == "resolved"


def test_an_overdue_jump_is_reported_to_the_province(world: World) -> None:
    now = local(2026, 11, 26, 10)
    world.add(
        CommuneDueBucket(commune_code=COMMUNE, due_minute=local(2026, 11, 25, 16), open_count=3),
        CommuneDueBucket(commune_code=COMMUNE, due_minute=local(2026, 11, 26, 8), open_count=2),
        # Long overdue ones are the backlog, not the jump.
        CommuneDueBucket(commune_code=COMMUNE, due_minute=local(2026, 11, 2, 8), open_count=40),
        CommuneDueBucket(commune_code="02272", due_minute=local(2026, 11, 26, 8), open_count=4),
    )
    world.cycle(now)
    jumps = world.alerts(kind="overdue_jump")
    assert [(a.commune_code, a.level) for a in jumps] == [(COMMUNE, 3)]
    assert "5 hồ sơ mới quá hạn" in jumps[0].message


def test_at_risk_forecast_uses_backlog_and_recent_completion_rate(world: World) -> None:
    now = local(2026, 11, 26, 9)
    rows: list[object] = [
        CommuneDueBucket(commune_code=COMMUNE, due_minute=local(2026, 11, 27, 9), open_count=9),
        CommuneDueBucket(commune_code="02272", due_minute=local(2026, 11, 27, 9), open_count=9),
    ]
    for i in range(1, 15):  # 14 days of history
        day = date(2026, 11, 26) - timedelta(days=i)
        rows.append(CommuneDay(commune_code=COMMUNE, day=day, finished=1))
        rows.append(CommuneDay(commune_code="02272", day=day, finished=30))
    world.add(*rows)
    world.cycle(now)
    [risk] = world.alerts(kind="at_risk")
    assert risk.commune_code == COMMUNE and risk.level == 2
    assert "dự báo" in risk.message


def test_acknowledging_updates_an_alert_already_loaded_in_the_session(world: World) -> None:
    # The wall's API loads the alert, acknowledges it, and answers with its fields.
    world.add(dossier(due=local(2026, 11, 30, 17)))
    world.cycle(local(2026, 11, 27, 17))
    with world.factory() as s, s.begin():
        alert = s.scalars(select(Alert)).one()
        assert acknowledge(s, alert.alert_id, "Trưởng bộ phận", local(2026, 11, 27, 17, 3))
        assert alert.state == "acknowledged" and alert.acknowledged_by == "Trưởng bộ phận"


# --- crossings between cycles ---------------------------------------------------------------


def crossing(world: World, since: datetime, now: datetime) -> CycleResult:
    with world.factory() as s, s.begin():
        return evaluate_crossings(s, world.settings, CAL, since, now, POLICY)


def test_a_threshold_crossed_between_cycles_is_raised_within_the_second(world: World) -> None:
    # Due Monday 30 Nov 17:00: one working day left from Friday 27 Nov 17:00.
    world.add(dossier(due=local(2026, 11, 30, 17)))
    world.add(dossier("000.00.22.H56-251123-0002", due=local(2026, 12, 1, 17)))
    five = local(2026, 11, 27, 17)
    world.cycle(five - timedelta(seconds=10))
    assert world.alerts() == []
    assert crossing(world, five - timedelta(seconds=10), five - timedelta(seconds=1)).raised == []
    result = crossing(world, five - timedelta(seconds=1), five)
    [alert] = world.alerts()
    assert result.raised == [alert.alert_id] and alert.kind == "due_soon"
    assert alert.dossier_code == CODE and alert.raised_at == five
    assert [m.target for m in world.outbox()] == [f"dvc/v1/08/{COMMUNE}/alerts"]
    # The next full cycle finds it already raised, and so does the next check.
    assert world.cycle(five + timedelta(seconds=5)).raised == []
    assert crossing(world, five, five + timedelta(seconds=1)).raised == []


def test_crossings_raise_what_full_cycles_raise(tmp_path: Path) -> None:
    """Every second or every cycle, the same alerts: around a weekend and the 24 Nov holiday."""
    dues = [
        local(2026, 11, d, h, m)
        for d in (20, 23, 25, 26, 27, 30)
        for h, m in ((7, 30), (11, 30), (13, 30), (17, 0))
    ]
    rows = [
        dossier(f"X-{i:03}", due=due, apology_issued_at=due if i % 5 == 0 else None)
        for i, due in enumerate(dues)
    ]
    world = make_world(f"sqlite:///{tmp_path / 'crossings.db'}")
    other = make_world(f"sqlite:///{tmp_path / 'cycles.db'}")
    world.add(*rows)
    other.add(
        *[
            dossier(r.dossier_code, due=r.due_at, apology_issued_at=r.apology_issued_at)
            for r in rows
        ]
    )
    start, end, step = local(2026, 11, 19, 16), local(2026, 12, 1, 9), timedelta(minutes=37)
    world.cycle(start)
    other.cycle(start)
    t = start
    while t < end:
        crossing(world, t, t + step)  # between cycles: only crossings
        t += step
        other.cycle(t)  # a full cycle at every step

    def raised(w: World) -> set[tuple[str, int]]:
        return {
            (a.cause_key, a.level)
            for a in w.alerts()
            if a.dossier_code and not a.message.startswith("[Chuyển cấp")
        }

    assert raised(world) == raised(other)
    assert {k for k, _ in raised(world) if ":due_soon:" in k}  # the test saw every kind
    assert {k for k, _ in raised(world) if ":overdue_2d:" in k}
    assert {k for k, _ in raised(world) if ":due_today:" in k}
    world.engine.dispose()
    other.engine.dispose()
