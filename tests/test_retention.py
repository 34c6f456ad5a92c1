"""Retention (``control-center db prune``) on SQLite and PostgreSQL: history older than the
cutoff archived and dropped, current state untouched, and a late event for a dossier whose
history was pruned never re-derives it from what is left."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from collectors.ingest import InboundMessage, Ingestor
from control_center import models as m
from control_center.domain.calendar import LOCAL_TZ
from control_center.retention import parse_age, prune
from tests.test_ingest import (
    PROVINCE,
    A,
    aggregates,
    assert_aggregates_consistent,
    dossiers,
    make_settings,
    prepare_database,
    rows,
)

REPO = Path(__file__).resolve().parent.parent
NOW = datetime.now(UTC).replace(microsecond=0)


def morning(days_ago: int) -> datetime:
    """08:00 in the province that many days ago: a day's events stay on one local day."""
    day = (NOW - timedelta(days=days_ago)).astimezone(LOCAL_TZ).date()
    return datetime.combine(day, time(8), LOCAL_TZ).astimezone(UTC)


OLD = morning(500)
RECENT = morning(100)


def at(base: datetime, hours: float) -> str:
    return (base + timedelta(hours=hours)).isoformat()


def message(payload: Any, kind: str = "dossier", arrived: datetime | None = None) -> InboundMessage:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return InboundMessage(f"dvc/v1/{PROVINCE}/{A}/{kind}", body, arrived or NOW)


def dossier_event(event_id: str, kind: str, code: str, when: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": kind,
        "occurred_at": when,
        "commune_code": A,
        "dossier_code": code,
        **extra,
    }


def queue_event(event_id: str, kind: str, when: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": kind, "occurred_at": when, "commune_code": A, **extra}


RECEIVED = {"procedure_code": "1.001193", "channel": "online"}
OLD_CLOSED_RECEIVED = dossier_event("oc1", "received", "OLD-CLOSED", at(OLD, 0), **RECEIVED)


def history() -> list[InboundMessage]:
    events = [
        # Closed long before the cutoff: its events go.
        OLD_CLOSED_RECEIVED,
        dossier_event("oc2", "assigned", "OLD-CLOSED", at(OLD, 1), officer="Trần B"),
        dossier_event("oc3", "completed", "OLD-CLOSED", at(OLD, 48)),
        dossier_event("oc4", "returned", "OLD-CLOSED", at(OLD, 50)),
        # Received as long ago but still open: its events stay (its state may be re-derived).
        dossier_event("oo1", "received", "OLD-OPEN", at(OLD, 2), **RECEIVED),
        # Received before the cutoff, closed after it: stays.
        dossier_event("ol1", "received", "OLD-LATE-CLOSE", at(OLD, 3), **RECEIVED),
        dossier_event("ol2", "completed", "OLD-LATE-CLOSE", at(RECENT, 0)),
        # Recent: stays.
        dossier_event("r1", "received", "RECENT", at(RECENT, 1), **RECEIVED),
        dossier_event("r2", "completed", "RECENT", at(RECENT, 30)),
    ]
    tickets = [
        queue_event("q1", "ticket_issued", at(OLD, 1), ticket_no="A001", channel="kiosk"),
        queue_event("q2", "ticket_called", at(OLD, 1.2), ticket_no="A001", counter="1"),
        queue_event("q3", "ticket_completed", at(OLD, 1.5), ticket_no="A001", counter="1"),
        queue_event("q4", "ticket_issued", at(RECENT, 1), ticket_no="A001", channel="kiosk"),
    ]
    return [
        *(message(e, arrived=datetime.fromisoformat(e["occurred_at"])) for e in events),
        *(message(e, "queue", datetime.fromisoformat(e["occurred_at"])) for e in tickets),
        message(b"{not json", arrived=OLD),
        message(b"{not json either", arrived=RECENT),
    ]


def add_alerts(engine: Engine) -> None:
    from sqlalchemy.orm import Session

    def alert(key: str, dossier: str | None, state: str, resolved: datetime | None) -> m.Alert:
        return m.Alert(
            cause_key=key,
            kind="overdue",
            level=2,
            commune_code=A,
            dossier_code=dossier,
            raised_at=OLD,
            state=state,
            message="quá hạn",
            resolved_at=resolved,
        )

    with Session(engine) as s, s.begin():
        gone = alert("old-closed", "OLD-CLOSED", "resolved", OLD + timedelta(days=3))
        kept_open_dossier = alert("old-open", "OLD-OPEN", "resolved", OLD + timedelta(days=3))
        kept_recent = alert("recent", "RECENT", "resolved", RECENT)
        kept_active = alert("active", "OLD-OPEN", "open", None)
        s.add_all([gone, kept_open_dossier, kept_recent, kept_active])
        s.flush()
        for a, sent in ((gone, OLD), (kept_recent, RECENT), (kept_active, None)):
            s.add(
                m.OutboxMessage(
                    alert_id=a.alert_id,
                    channel="mqtt",
                    target="t",
                    payload={},
                    created_at=OLD,
                    next_attempt_at=OLD,
                    sent_at=sent,
                )
            )
        # A digest (no alert) sent long ago, and one never delivered: only the first goes.
        s.add(
            m.OutboxMessage(
                channel="webhook",
                target="u",
                payload={},
                created_at=OLD,
                next_attempt_at=OLD,
                sent_at=OLD,
            )
        )
        s.add(
            m.OutboxMessage(
                channel="webhook",
                target="u",
                payload={},
                created_at=OLD,
                next_attempt_at=OLD,
                sent_at=None,
            )
        )
        s.add(m.SummarySnapshot(scope=PROVINCE, taken_at=OLD, figures={"open": 1}))
        s.add(m.SummarySnapshot(scope=PROVINCE, taken_at=RECENT, figures={"open": 2}))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = prepare_database(db_url)
    Ingestor(eng, make_settings(db_url)).process(history())
    add_alerts(eng)
    yield eng
    eng.dispose()


def column(engine: Engine, model: Any, name: str) -> set[Any]:
    with engine.connect() as conn:
        return set(conn.scalars(select(getattr(model, name))))


def test_age_is_days_weeks_or_years_and_never_under_a_month() -> None:
    assert parse_age("400d") == parse_age("400") == timedelta(days=400)
    assert parse_age("2y") == timedelta(days=730) and parse_age("57w") == timedelta(days=399)
    for wrong in ("29d", "400 days", "-1d", ""):
        with pytest.raises(ValueError):
            parse_age(wrong)


def test_prune_drops_old_history_and_keeps_every_current_figure(
    engine: Engine, tmp_path: Path
) -> None:
    state_before, aggregates_before = dossiers(engine), aggregates(engine)
    counts_before = rows(engine, m.DeadLetterCount)
    tickets_before = {(r["service_day"], r["ticket_no"]) for r in rows(engine, m.QueueTicket)}
    assert len(tickets_before) == 2

    result = prune(engine, timedelta(days=400), now=NOW, archive_dir=tmp_path / "archive")

    assert result.rows == {
        "dossier_events": 4,
        "queue_events": 3,
        "queue_tickets": 1,
        "dead_letters": 1,
        "outbox": 2,
        "alerts": 1,
        "summary_snapshots": 1,
    }
    # The current state and every aggregate the wall reads are exactly as before.
    assert dossiers(engine) == state_before
    assert aggregates(engine) == aggregates_before
    assert_aggregates_consistent(engine)
    assert rows(engine, m.DeadLetterCount) == counts_before
    # What went, and what stayed.
    assert column(engine, m.DossierEvent, "event_id") == {"oo1", "ol1", "ol2", "r1", "r2"}
    assert column(engine, m.QueueEvent, "event_id") == {"q4"}
    tickets_after = {(r["service_day"], r["ticket_no"]) for r in rows(engine, m.QueueTicket)}
    assert tickets_after == {max(tickets_before)}
    assert column(engine, m.DeadLetter, "payload_excerpt") == {"{not json either"}
    assert column(engine, m.Alert, "cause_key") == {"old-open", "recent", "active"}
    with engine.connect() as conn:
        unsent = conn.scalar(
            select(func.count())
            .select_from(m.OutboxMessage)
            .where(m.OutboxMessage.sent_at.is_(None))
        )
    assert unsent == 2 and len(rows(engine, m.OutboxMessage)) == 3
    assert column(engine, m.SummarySnapshot, "taken_at") == {RECENT}

    # Every dropped row is in the archive, once.
    archived: dict[str, list[dict[str, Any]]] = {}
    for path in result.archives:
        table = path.name.split("-")[0]
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            archived[table] = [json.loads(line) for line in fh]
    assert {t: len(r) for t, r in archived.items()} == result.rows
    assert {r["event_id"] for r in archived["dossier_events"]} == {"oc1", "oc2", "oc3", "oc4"}
    assert archived["alerts"][0]["cause_key"] == "old-closed"

    # A second run finds nothing more.
    assert prune(engine, timedelta(days=400), now=NOW).rows == {}


def test_a_late_event_for_a_pruned_dossier_does_not_rebuild_it(engine: Engine, db_url: str) -> None:
    prune(engine, timedelta(days=400), now=NOW)
    before, aggregates_before = dossiers(engine), aggregates(engine)
    assert before["OLD-CLOSED"]["status"] == 10 and before["OLD-CLOSED"]["event_count"] == 4
    # The centre resends its old received event (its id is no longer known) and an event it
    # never sent back then, out of order: re-derived from these two alone, the dossier would
    # be open again, received long ago and overdue ever since.
    late = [
        message(OLD_CLOSED_RECEIVED),
        message(dossier_event("oc-late", "assigned", "OLD-CLOSED", at(OLD, 5), officer="Lê C")),
    ]
    result = Ingestor(engine, make_settings(db_url)).process(late)
    assert result.stored == 2  # kept: nothing a centre published is lost
    after = dossiers(engine)
    assert after["OLD-CLOSED"] == before["OLD-CLOSED"]
    assert aggregates(engine) == aggregates_before
    assert_aggregates_consistent(engine)
    assert column(engine, m.DeadLetter, "reason") == {"not_json"}


def test_dossiers_with_their_full_history_still_take_late_events(
    engine: Engine, db_url: str
) -> None:
    prune(engine, timedelta(days=400), now=NOW)
    late = message(dossier_event("oo-late", "assigned", "OLD-OPEN", at(OLD, 1), officer="Lê C"))
    Ingestor(engine, make_settings(db_url)).process([late])
    assert dossiers(engine)["OLD-OPEN"]["officer"] == "Lê C"
    assert_aggregates_consistent(engine)


def test_command_line_prune_uses_the_setting_and_refuses_without_an_age(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    env = {"CC_DATABASE_URL": db_url, "CC_PROVINCE": PROVINCE, "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "control_center.cli", "db", "prune"]
    refused = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "--older-than" in refused.stderr
    done = subprocess.run(
        [*cmd, "--archive", str(tmp_path)],
        cwd=REPO,
        env={**env, "CC_RETENTION_DAYS": "400"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "dossier_events=4" in done.stdout and "archived to" in done.stdout
    assert column(engine, m.DossierEvent, "event_id") == {"oo1", "ol1", "ol2", "r1", "r2"}
