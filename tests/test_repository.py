"""The data model on a migrated SQLite file and a real PostgreSQL: timestamps, idempotency keys,
the open-backlog index and the upsert helpers the collector relies on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, Select, func, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from collectors.ingest import commune_day_rows
from control_center.db import add_counts, insert_ignore, make_engine, session_factory
from control_center.domain.dossier import DAILY_METRICS
from control_center.migrate import upgrade_schema
from control_center.models import CommuneDay, CommuneDueBucket, Dossier, DossierEvent
from control_center.reference import province_communes

ICT = timezone(timedelta(hours=7))  # what centres send (+07:00)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    upgrade_schema(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


def _event(event_id: str, occurred_at: datetime, **extra: object) -> dict[str, object]:
    return {
        "event_id": event_id,
        "dossier_code": extra.get("dossier_code", "000.00.22.H56-251123-0001"),
        "commune_code": "02269",
        "type": extra.get("type", "received"),
        "occurred_at": occurred_at,
        "arrived_at": datetime(2025, 11, 24, 3, 0, tzinfo=UTC),
        "payload": extra.get("payload", {"procedure_code": "1.001193"}),
    }


# --- timestamps -----------------------------------------------------------------------------


def test_a_plus_0700_timestamp_comes_back_equal_and_in_utc(
    sessions: sessionmaker[Session],
) -> None:
    sent = datetime(2025, 11, 24, 9, 30, 15, 123000, tzinfo=ICT)
    with sessions.begin() as session:
        session.add(DossierEvent(**_event("e1", sent)))

    with sessions() as session:
        stored = session.scalars(select(DossierEvent.occurred_at)).one()

    assert stored == sent
    assert stored.utcoffset() == timedelta(0)
    assert (stored.hour, stored.minute) == (2, 30)


def test_events_sort_by_instant_whatever_offset_they_were_sent_with(
    sessions: sessionmaker[Session],
) -> None:
    # 08:00+07:00 is 01:00Z: earlier than 02:00Z although its wall-clock reads later.
    late_clock = datetime(2025, 11, 24, 8, 0, tzinfo=ICT)
    utc_sender = datetime(2025, 11, 24, 2, 0, tzinfo=UTC)
    with sessions.begin() as session:
        session.add(DossierEvent(**_event("utc", utc_sender)))
        session.add(DossierEvent(**_event("ict", late_clock)))

    with sessions() as session:
        order = session.scalars(select(DossierEvent.event_id).order_by(DossierEvent.occurred_at))
        assert list(order) == ["ict", "utc"]
        since = session.scalars(
            select(DossierEvent.event_id).where(
                DossierEvent.occurred_at > datetime(2025, 11, 24, 8, 30, tzinfo=ICT)
            )
        )
        assert list(since) == ["utc"]


def test_a_naive_timestamp_is_refused_rather_than_guessed(
    sessions: sessionmaker[Session],
) -> None:
    with pytest.raises(StatementError, match="naive datetime"), sessions.begin() as session:
        session.add(DossierEvent(**_event("naive", datetime(2025, 11, 24, 9, 0))))


# --- idempotency key ------------------------------------------------------------------------


def test_event_id_is_unique(sessions: sessionmaker[Session]) -> None:
    at = datetime(2025, 11, 24, 9, 0, tzinfo=ICT)
    with sessions.begin() as session:
        session.add(DossierEvent(**_event("dup", at)))
    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.add(DossierEvent(**_event("dup", at + timedelta(minutes=5), type="completed")))


def test_insert_ignore_keeps_the_first_copy_and_reports_only_new_keys(
    sessions: sessionmaker[Session],
) -> None:
    at = datetime(2025, 11, 24, 9, 0, tzinfo=ICT)
    table = DossierEvent.__table__
    with sessions.begin() as session:
        assert insert_ignore(session, table, [_event("a", at)], ["event_id"]) == ["a"]

    resend = [
        _event("a", at, type="completed"),  # a resend of a stored event
        _event("b", at),
        _event("b", at, type="completed"),  # the same new event twice in one batch
        _event("c", at + timedelta(minutes=1)),
    ]
    with sessions.begin() as session:
        inserted = insert_ignore(session, table, resend, ["event_id"])

    assert sorted(inserted) == ["b", "c"]
    with sessions() as session:
        rows = dict(session.execute(select(DossierEvent.event_id, DossierEvent.type)).all())
    assert rows == {"a": "received", "b": "received", "c": "received"}
    with sessions.begin() as session:
        assert insert_ignore(session, table, [], ["event_id"]) == []


def test_insert_ignore_with_a_composite_key_returns_tuples(
    sessions: sessionmaker[Session],
) -> None:
    table = CommuneDay.__table__
    key = ["commune_code", "day"]
    row = {"commune_code": "02269", "day": date(2025, 11, 24), "received": 3}
    with sessions.begin() as session:
        assert insert_ignore(session, table, [row], key) == [("02269", date(2025, 11, 24))]
        assert insert_ignore(session, table, [{**row, "received": 99}], key) == []
    with sessions() as session:
        assert session.scalars(select(CommuneDay.received)).one() == 3


# --- counters -------------------------------------------------------------------------------


def test_commune_days_has_a_column_per_day_counter() -> None:
    assert [c.name for c in CommuneDay.__table__.c][2:] == list(DAILY_METRICS)


def test_commune_day_rows_put_a_commune_s_day_in_one_row() -> None:
    monday = date(2026, 11, 23)
    counts = {
        ("02272", monday, "received"): 1,
        ("02269", monday, "received"): 2,
        ("02269", monday, "finished_overdue"): -1,  # a delta moving out
        ("02269", monday, "returned"): 0,
    }
    rows = commune_day_rows(counts)
    assert [(r["commune_code"], r["day"]) for r in rows] == [("02269", monday), ("02272", monday)]
    assert {k: n for k, n in rows[0].items() if k in DAILY_METRICS and n} == {
        "received": 2,
        "finished_overdue": -1,
    }
    assert commune_day_rows({("02269", monday, "returned"): 0}) == []
    with pytest.raises(ValueError, match="not a day counter"):
        commune_day_rows({("02269", monday, "finished_late"): 1})


def test_add_counts_inserts_then_adds_deltas(sessions: sessionmaker[Session]) -> None:
    table = CommuneDay.__table__
    key = ["commune_code", "day"]
    day = date(2025, 11, 24)
    with sessions.begin() as session:
        add_counts(
            session,
            table,
            [
                {"commune_code": "02269", "day": day, "finished": 2},
                {"commune_code": "02269", "day": day - timedelta(days=1), "finished": 1},
            ],
            key,
            "finished",
        )
    with sessions.begin() as session:
        add_counts(
            session,
            table,
            [
                {"commune_code": "02269", "day": day, "finished": 3},
                # A dossier moving out of a count arrives as a negative delta.
                {"commune_code": "02269", "day": day - timedelta(days=1), "finished": -1},
                {"commune_code": "00691", "day": day, "finished": 1},
            ],
            key,
            "finished",
        )
        add_counts(session, table, [], key, "finished")

    with sessions() as session:
        values = {
            (c, d): v
            for c, d, v in session.execute(
                select(CommuneDay.commune_code, CommuneDay.day, CommuneDay.finished)
            )
        }
    assert values == {
        ("02269", day): 5,
        ("02269", day - timedelta(days=1)): 0,
        ("00691", day): 1,
    }


def test_add_counts_sums_the_same_key_twice_in_one_batch(
    sessions: sessionmaker[Session],
) -> None:
    # Two dossiers due in the same minute of the same commune change one bucket in one batch.
    due = datetime(2025, 11, 26, 10, 0, tzinfo=UTC)
    table = CommuneDueBucket.__table__
    key = ["commune_code", "due_minute", "paused"]
    bucket = {"commune_code": "02269", "due_minute": due, "paused": False, "open_count": 1}
    with sessions.begin() as session:
        add_counts(
            session,
            table,
            [bucket, bucket, {**bucket, "due_minute": due + timedelta(minutes=1)}],
            key,
            "open_count",
        )
    with sessions() as session:
        buckets = dict(
            session.execute(select(CommuneDueBucket.due_minute, CommuneDueBucket.open_count)).all()
        )
    assert buckets == {due: 2, due + timedelta(minutes=1): 1}


# --- the open-backlog partial index ---------------------------------------------------------


def _dossier(n: int, *, commune: str, open_: bool, due: datetime) -> dict[str, object]:
    received = due - timedelta(days=3)
    return {
        "dossier_code": f"000.00.22.H56-251123-{n:04d}",
        "commune_code": commune,
        "received_commune_code": commune,
        "procedure_code": "1.001193",
        "status": 4 if open_ else 10,
        "is_open": open_,
        "is_paused": False,
        "received_at": received,
        "due_at": due,
        "paused_seconds": 0.0,
        "extension_count": 0,
        "flags": [],
        "event_count": 1,
        "last_event_at": received,
        "updated_at": received,
    }


def _fill_dossiers(session: Session, count: int) -> None:
    """A province-shaped table: 124 communes, a third of the dossiers still open."""
    base = datetime(2025, 11, 1, 2, 0, tzinfo=UTC)
    communes = [c.code for c in province_communes("08")]
    rows = [
        _dossier(
            n,
            commune=communes[n % len(communes)],
            open_=n % 3 == 0,
            due=base + timedelta(minutes=3 * n),
        )
        for n in range(count)
    ]
    session.execute(Dossier.__table__.insert(), rows)


def test_the_open_backlog_index_exists_and_is_partial(engine: Engine) -> None:
    indexes = {ix["name"]: ix for ix in inspect(engine).get_indexes("dossiers")}
    assert indexes["ix_dossiers_open_commune_due"]["column_names"] == ["commune_code", "due_at"]
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            definition = conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
                {"n": "ix_dossiers_open_commune_due"},
            ).scalar_one()
        assert "WHERE is_open" in definition
    else:
        with engine.connect() as conn:
            sql = conn.execute(
                text("SELECT sql FROM sqlite_master WHERE name = :n"),
                {"n": "ix_dossiers_open_commune_due"},
            ).scalar_one()
        assert "WHERE is_open = 1" in sql


def _plan(conn: Connection, query: Select[Any]) -> str:
    compiled = query.compile(conn.engine, compile_kwargs={"literal_binds": True})
    if conn.dialect.name == "postgresql":
        return "\n".join(conn.execute(text(f"EXPLAIN {compiled}")).scalars())
    return "\n".join(str(row[-1]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))


def test_open_dossiers_per_commune_by_due_date_use_the_partial_index(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        _fill_dossiers(session, 20000)
    now = datetime(2025, 11, 20, 2, 0, tzinfo=UTC)
    # How the wall and the alert engine ask: a commune's open dossiers, most urgent first,
    # and how many of them are overdue.
    backlog = (
        select(Dossier.dossier_code, Dossier.due_at, Dossier.is_open, Dossier.commune_code)
        .where(Dossier.is_open, Dossier.commune_code == "02269")
        .order_by(Dossier.due_at)
        .limit(50)
    )
    overdue = (
        select(func.count())
        .select_from(Dossier)
        .where(Dossier.is_open, Dossier.commune_code == "02269", Dossier.due_at < now)
    )

    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE dossiers"))
            conn.execute(text("SET enable_seqscan = off"))
        plans = [_plan(conn, backlog), _plan(conn, overdue)]
        rows = conn.execute(backlog).all()
        overdue_count = conn.execute(overdue).scalar_one()

    for plan in plans:
        assert "ix_dossiers_open_commune_due" in plan, plan
    assert len(rows) == 50
    assert all(r.is_open and r.commune_code == "02269" for r in rows)
    assert [r.due_at for r in rows] == sorted(r.due_at for r in rows)
    assert overdue_count == sum(1 for r in rows if r.due_at < now) > 0
