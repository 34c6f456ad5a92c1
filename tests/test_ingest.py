"""Ingestion on SQLite and PostgreSQL: events stored once, dossiers and tickets derived,
aggregates equal to a recomputation, every rejection kept as a dead letter."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from collectors import validation as v
from collectors.ingest import InboundMessage, Ingestor, state_from_row
from control_center import models as m
from control_center.db import make_engine
from control_center.domain import dossier as dd
from control_center.domain.calendar import LOCAL_TZ
from control_center.migrate import upgrade_schema
from control_center.settings import Settings, load_settings

PROVINCE = "08"
COMMUNES = ("02269", "02272", "02275")
A, B, C = COMMUNES
# Procedures in the test catalogue: (code, processing days)
PROCEDURES = {"1.001193": 5.0, "1.000894": 3.0, "2.000001": None}
BASE = datetime(2025, 11, 3, 8, 0, tzinfo=LOCAL_TZ)  # Monday morning
ARRIVED = datetime(2026, 1, 28, 3, 0, tzinfo=UTC)  # everything arrives after it happened


# --- fixtures and helpers (also used by test_collector_mqtt.py) ----------------------------


def prepare_database(url: str) -> Engine:
    """Schema plus a few communes and procedures, as `control-center db upgrade` would leave."""
    engine = make_engine(url)
    upgrade_schema(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(m.Commune),
            [
                {"code": c, "province_code": PROVINCE, "name": f"Xã {c}", "division_type": "xã"}
                for c in COMMUNES
            ],
        )
        conn.execute(
            insert(m.Procedure),
            [
                {
                    "code": code,
                    "name": f"Thủ tục {code}",
                    "sector": "Hộ tịch",
                    "processing_days": days,
                    "processing_hours": None,
                    "full_online": False,
                    "catalogued": True,
                }
                for code, days in PROCEDURES.items()
            ],
        )
    return engine


def make_settings(url: str, **overrides: Any) -> Settings:
    return load_settings(database_url=url, province=PROVINCE, **overrides)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = prepare_database(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def ingestor(engine: Engine, db_url: str) -> Ingestor:
    return Ingestor(engine, make_settings(db_url))


def ts(hours: float) -> str:
    return (BASE + timedelta(hours=hours)).isoformat()


def dossier_event(
    event_id: str, etype: str, dossier: str, hours: float, commune: str = A, **extra: Any
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": etype,
        "occurred_at": ts(hours),
        "commune_code": commune,
        "dossier_code": dossier,
        **extra,
    }


def queue_event(
    event_id: str, etype: str, hours: float, commune: str = A, **extra: Any
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": etype,
        "occurred_at": ts(hours),
        "commune_code": commune,
        **extra,
    }


def msg(
    payload: Any, kind: str = "dossier", commune: str | None = None, **kw: Any
) -> InboundMessage:
    commune = commune or (payload.get("commune_code") if isinstance(payload, dict) else A)
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return InboundMessage(f"dvc/v1/{PROVINCE}/{commune}/{kind}", body, ARRIVED, **kw)


def rows(engine: Engine, model: Any, exclude: Sequence[str] = ()) -> list[dict[str, Any]]:
    table = model.__table__
    with engine.connect() as conn:
        out = [dict(r._mapping) for r in conn.execute(select(table))]
    for r in out:
        for k in exclude:
            r.pop(k, None)
    return sorted(out, key=lambda r: json.dumps(r, default=str, sort_keys=True))


def dossiers(engine: Engine) -> dict[str, dict[str, Any]]:
    return {r["dossier_code"]: r for r in rows(engine, m.Dossier, exclude=("updated_at",))}


def aggregates(engine: Engine) -> tuple[dict[Any, int], dict[Any, int]]:
    """commune_due_buckets and commune_days as stored, by (commune, day, metric) (zeros dropped)."""
    buckets: Counter[Any] = Counter()
    for r in rows(engine, m.CommuneDueBucket):
        buckets[(r["commune_code"], r["due_minute"], r["paused"])] += r["open_count"]
    daily = {
        (r["commune_code"], r["day"], metric): r[metric]
        for r in rows(engine, m.CommuneDay)
        for metric in dd.DAILY_METRICS
    }
    return (
        {k: n for k, n in buckets.items() if n},
        {k: n for k, n in daily.items() if n},
    )


def recomputed_aggregates(engine: Engine) -> tuple[dict[Any, int], dict[Any, int]]:
    """The same aggregates recomputed from scratch from the dossiers table."""
    buckets: Counter[Any] = Counter()
    daily: Counter[Any] = Counter()
    with engine.connect() as conn:
        for row in conn.execute(select(m.Dossier.__table__)):
            state = state_from_row(row)
            key = dd.due_bucket_key(state)
            if key is not None:
                buckets[key] += 1
            daily.update(dd.daily_contributions(state))
    return (
        {k: n for k, n in buckets.items() if n},
        {k: n for k, n in daily.items() if n},
    )


def assert_aggregates_consistent(engine: Engine) -> None:
    stored_buckets, stored_daily = aggregates(engine)
    expected_buckets, expected_daily = recomputed_aggregates(engine)
    assert stored_buckets == expected_buckets
    assert stored_daily == expected_daily
    # The wall's backlog total per commune moves with the buckets.
    expected_backlog: Counter[str] = Counter()
    for (commune, _, _), n in expected_buckets.items():
        expected_backlog[commune] += n
    stored_backlog = {r["commune_code"]: r["open_count"] for r in rows(engine, m.CommuneBacklog)}
    assert {c: n for c, n in stored_backlog.items() if n} == dict(expected_backlog)


# --- happy path ----------------------------------------------------------------------------


def lifecycle_messages() -> list[InboundMessage]:
    """Every dossier event type, queue event type and a status."""
    d1, d2, d3, d4, d5 = "D-001", "D-002", "D-003", "D-004", "D-005"
    received = {"procedure_code": "1.001193", "channel": "online", "applicant_name": "Nguyễn Văn A"}
    events = [
        # D-001: the full road to a returned result, with a supplement pause and a re-date
        dossier_event("e01", "received", d1, 0, **received),
        dossier_event("e02", "assigned", d1, 1, officer="Trần B", department="Tư pháp"),
        dossier_event("e03", "supplement_requested", d1, 2, reason="thiếu giấy tờ"),
        dossier_event("e04", "supplement_received", d1, 26),
        dossier_event("e05", "payment_requested", d1, 27),
        dossier_event("e06", "payment_received", d1, 28),
        dossier_event("e07", "extended", d1, 29, new_due_at=ts(24 * 14), reason="xác minh"),
        dossier_event("e08", "apology_issued", d1, 30),
        dossier_event("e09", "completed", d1, 48),
        dossier_event("e10", "returned", d1, 50),
        # D-002 rejected, D-003 withdrawn, D-004 transferred and still open
        dossier_event("e11", "received", d2, 3, procedure_code="1.000894", channel="counter"),
        dossier_event("e12", "rejected", d2, 4, reason="không đủ điều kiện"),
        dossier_event("e13", "received", d3, 5, procedure_code="1.000894", channel="post"),
        dossier_event("e14", "withdrawn", d3, 6),
        dossier_event("e15", "received", d4, 7, procedure_code="1.001193"),
        dossier_event("e16", "transferred", d4, 8, to_commune_code=B),
        # D-005: a procedure the catalogue does not know, due date given by the centre
        dossier_event("e17", "received", d5, 9, procedure_code="9.123456", due_at=ts(100)),
    ]
    queue = [
        queue_event("q01", "counter_opened", 0, counter="Q1"),
        queue_event(
            "q02",
            "ticket_issued",
            0.1,
            ticket_no="A001",
            channel="kiosk",
            service="Hộ tịch",
            priority="elderly",
        ),
        queue_event("q03", "ticket_called", 0.2, ticket_no="A001", counter="Q1"),
        queue_event("q04", "service_started", 0.25, ticket_no="A001", counter="Q1"),
        queue_event("q05", "ticket_completed", 0.5, ticket_no="A001", counter="Q1"),
        queue_event("q06", "ticket_issued", 0.3, ticket_no="A002", channel="zalo"),
        queue_event("q07", "ticket_cancelled", 0.9, ticket_no="A002", reason="no_show"),
        queue_event("q08", "ticket_issued", 0.4, ticket_no="A003", channel="web"),
        queue_event("q09", "counter_opened", 0, counter="Q2"),
        queue_event("q10", "counter_closed", 3, counter="Q2"),
    ]
    status = {"state": "online", "occurred_at": ts(51), "software": "iGate 3.2", "queue_waiting": 1}
    return (
        [msg(e) for e in events]
        + [msg(q, kind="queue") for q in queue]
        + [msg(status, kind="status", commune=A)]
    )


def test_happy_path_every_event_type(engine: Engine, ingestor: Ingestor) -> None:
    result = ingestor.process(lifecycle_messages())
    assert (result.stored, result.duplicates, result.dead_lettered, result.statuses) == (
        27,
        0,
        0,
        1,
    )

    ds = dossiers(engine)
    assert set(ds) == {"D-001", "D-002", "D-003", "D-004", "D-005"}
    d1 = ds["D-001"]
    assert d1["status"] == dd.RETURNED and not d1["is_open"]
    assert d1["officer"] == "Trần B" and d1["extension_count"] == 1
    assert d1["apology_issued_at"] is not None and d1["outcome"] == dd.EARLY
    assert d1["due_at"] == datetime.fromisoformat(ts(24 * 14)).astimezone(UTC)
    assert d1["event_count"] == 10
    assert ds["D-002"]["status"] == dd.NOT_ACCEPTED
    assert ds["D-003"]["status"] == dd.WITHDRAWN
    assert ds["D-004"]["commune_code"] == B and ds["D-004"]["received_commune_code"] == A
    assert ds["D-004"]["is_open"] and ds["D-004"]["due_at"] is not None
    assert ds["D-005"]["due_at"] == datetime.fromisoformat(ts(100)).astimezone(UTC)

    procedures = {r["code"]: r for r in rows(engine, m.Procedure)}
    assert procedures["9.123456"]["catalogued"] is False

    tickets = {r["ticket_no"]: r for r in rows(engine, m.QueueTicket)}
    assert tickets["A001"]["state"] == "completed" and tickets["A001"]["counter"] == "Q1"
    assert tickets["A001"]["priority"] == "elderly"
    assert tickets["A001"]["service_day"] == date(2025, 11, 3)
    assert tickets["A002"]["state"] == "cancelled" and tickets["A002"]["cancel_reason"] == "no_show"
    assert tickets["A003"]["state"] == "waiting"
    counters = {r["counter"]: r["is_open"] for r in rows(engine, m.CounterState)}
    assert counters == {"Q1": True, "Q2": False}

    feed = {r["commune_code"]: r for r in rows(engine, m.CentreFeed)}[A]
    assert feed["reported_state"] == "online" and feed["software"] == "iGate 3.2"
    assert feed["queue_waiting"] == 1 and feed["last_heartbeat_arrived_at"] == ARRIVED
    assert feed["events_total"] == 27 and feed["last_arrival_at"] == ARRIVED
    assert feed["last_event_at"] == datetime.fromisoformat(ts(50)).astimezone(UTC)
    assert feed["last_lag_seconds"] > 0

    buckets, daily = aggregates(engine)
    assert sum(buckets.values()) == 2  # D-004 and D-005 are open
    assert daily[(A, date(2025, 11, 3), "received")] == 5
    assert daily[(A, date(2025, 11, 3), "received_online")] == 1
    assert sum(n for (c, _, k), n in daily.items() if k == "finished_early") == 1
    assert sum(n for (c, _, k), n in daily.items() if k == "rejected") == 1
    assert sum(n for (c, _, k), n in daily.items() if k == "withdrawn") == 1
    assert_aggregates_consistent(engine)


def test_events_in_several_batches_move_aggregates(engine: Engine, ingestor: Ingestor) -> None:
    messages = lifecycle_messages()
    for i in range(0, len(messages), 3):
        ingestor.process(messages[i : i + 3])
        assert_aggregates_consistent(engine)
    assert dossiers(engine)["D-001"]["status"] == dd.RETURNED


def test_a_new_event_keeps_the_escalation_level_the_alert_engine_set(
    engine: Engine, ingestor: Ingestor
) -> None:
    messages = lifecycle_messages()
    ingestor.process(messages[:1])
    with engine.begin() as conn:  # as alerts.levels does when it raises a level-2 alert
        conn.execute(m.Dossier.__table__.update().values(escalation_level=2))
    ingestor.process(messages[1:3])
    assert dossiers(engine)["D-001"]["escalation_level"] == 2


def test_dossier_without_due_date_is_kept_and_counted_open(
    engine: Engine, ingestor: Ingestor
) -> None:
    e = dossier_event("n1", "received", "D-NODUE", 1, procedure_code="2.000001")
    ingestor.process(
        [msg(e), msg(dossier_event("n2", "received", "D-NODUE2", 2, procedure_code="2.000001"))]
    )
    ds = dossiers(engine)
    assert ds["D-NODUE"]["due_at"] is None and "no_due_date" in ds["D-NODUE"]["flags"]
    buckets, _ = aggregates(engine)
    assert buckets == {(A, None, False): 2}
    ingestor.process([msg(dossier_event("n3", "completed", "D-NODUE", 5))])
    assert aggregates(engine)[0] == {(A, None, False): 1}
    assert_aggregates_consistent(engine)


# --- idempotency and ordering ----------------------------------------------------------------


def snapshot(engine: Engine) -> dict[str, Any]:
    return {
        "dossiers": dossiers(engine),
        "events": rows(engine, m.DossierEvent),
        "queue_events": rows(engine, m.QueueEvent),
        "tickets": rows(engine, m.QueueTicket, exclude=("id",)),
        "counters": rows(engine, m.CounterState),
        "aggregates": aggregates(engine),
        "feeds": rows(engine, m.CentreFeed),
        "dead_letters": rows(engine, m.DeadLetter, exclude=("id",)),
    }


def test_duplicates_change_nothing(engine: Engine, ingestor: Ingestor) -> None:
    messages = lifecycle_messages()
    first = ingestor.process(messages + messages[:5])  # duplicates within the batch
    assert first.stored == 27 and first.duplicates == 5
    before = snapshot(engine)
    again = ingestor.process([m_ for m_ in messages if "status" not in m_.topic])
    assert again.stored == 0 and again.duplicates == 27
    assert snapshot(engine) == before


def random_history(rng: random.Random, n_dossiers: int) -> list[dict[str, Any]]:
    """Plausible dossier lives: receipt, handling, pauses, re-dates, an ending or none."""
    events: list[dict[str, Any]] = []
    for i in range(n_dossiers):
        code = f"R-{i:04d}"
        commune = rng.choice(COMMUNES)
        t = rng.uniform(0, 24 * 20)
        steps: list[tuple[str, float, dict[str, Any]]] = [
            (
                "received",
                t,
                {
                    "procedure_code": rng.choice([*PROCEDURES, "7.777777"]),
                    "channel": rng.choice(["online", "counter", "post"]),
                },
            )
        ]
        if rng.random() < 0.8:
            t += rng.uniform(0.1, 5)
            steps.append(("assigned", t, {"officer": f"cán bộ {rng.randint(1, 5)}"}))
        if rng.random() < 0.3:
            t += rng.uniform(1, 30)
            steps.append(("supplement_requested", t, {}))
            if rng.random() < 0.8:
                t += rng.uniform(1, 100)
                steps.append(("supplement_received", t, {}))
        if rng.random() < 0.2:
            t += rng.uniform(1, 10)
            steps.append(("extended", t, {"new_due_at": ts(t + rng.uniform(48, 300))}))
        if rng.random() < 0.15:
            t += rng.uniform(1, 10)
            steps.append(("apology_issued", t, {"new_due_at": ts(t + 72)}))
        if rng.random() < 0.1:
            t += rng.uniform(1, 10)
            steps.append(("transferred", t, {"to_commune_code": rng.choice(COMMUNES)}))
        end = rng.random()
        t += rng.uniform(1, 200)
        if end < 0.5:
            steps.append(("completed", t, {}))
            if rng.random() < 0.6:
                steps.append(("returned", t + rng.uniform(1, 48), {}))
        elif end < 0.6:
            steps.append(("rejected", t, {}))
        elif end < 0.7:
            steps.append(("withdrawn", t, {}))
        for n, (etype, hours, extra) in enumerate(steps, 1):
            events.append(dossier_event(f"{code}-{n}", etype, code, hours, commune, **extra))
    return events


def expected_from_scratch(
    events: list[dict[str, Any]], ingestor: Ingestor
) -> dict[str, dd.DossierState]:
    by_code: dict[str, list[dd.Event]] = {}
    for e in events:
        by_code.setdefault(e["dossier_code"], []).append(
            dd.Event(
                e["event_id"], e["type"], v.parse_rfc3339(e["occurred_at"]), e["commune_code"], e
            )
        )
    out = {}
    for code, evs in by_code.items():
        state = dd.derive_state(code, evs, ingestor.calendar, ingestor._terms)
        if state is not None:
            out[code] = state
    return out


COMPARED = (
    "commune_code",
    "received_commune_code",
    "status",
    "is_open",
    "is_paused",
    "received_at",
    "due_at",
    "original_due_at",
    "paused_since",
    "extension_count",
    "finished_at",
    "closed_at",
    "outcome",
    "event_count",
    "last_event_at",
)


def test_shuffled_arrival_with_duplicates_equals_in_order(
    engine: Engine, ingestor: Ingestor
) -> None:
    rng = random.Random(20251123)
    events = random_history(rng, 120)
    ingestor._refresh_reference(force=True)
    messages = [msg(e) for e in events]
    resent = rng.sample(messages, 60)  # centres resend parts of their backlog
    shuffled = messages + resent
    rng.shuffle(shuffled)
    i = 0
    while i < len(shuffled):
        size = rng.randint(1, 40)
        ingestor.process(shuffled[i : i + size])
        i += size

    ingestor._refresh_reference(force=True)  # the uncatalogued procedure is now in the table
    expected = expected_from_scratch(events, ingestor)
    stored = dossiers(engine)
    assert set(stored) == set(expected)
    for code, state in expected.items():
        got = {k: stored[code][k] for k in COMPARED}
        want = {k: getattr(state, k) for k in COMPARED if hasattr(state, k)}
        want.update(
            is_open=state.is_open, is_paused=state.is_paused, outcome=dd.finished_outcome(state)
        )
        assert got == want, code
    assert_aggregates_consistent(engine)
    assert len(rows(engine, m.DossierEvent)) == len(events)


def test_in_order_events_folded_onto_stored_states_equal_a_rederivation(
    engine: Engine, ingestor: Ingestor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events in time order, a few per batch, take the fast path (folded onto the stored
    state, no history read); the dossiers and aggregates equal a derivation from scratch."""
    folded = Counter()
    fold_onto = dd.fold_onto

    def counting(*args: Any) -> dd.DossierState | None:
        state = fold_onto(*args)
        folded[state is not None] += 1
        return state

    monkeypatch.setattr(dd, "fold_onto", counting)
    events = sorted(random_history(random.Random(7), 80), key=lambda e: e["occurred_at"])
    ingestor._refresh_reference(force=True)
    for i in range(0, len(events), 5):
        ingestor.process([msg(e) for e in events[i : i + 5]])

    assert folded[True] > len(events) // 3  # most later events took the fast path
    ingestor._refresh_reference(force=True)
    expected = expected_from_scratch(events, ingestor)
    stored = dossiers(engine)
    assert set(stored) == set(expected)
    for code, state in expected.items():
        got = {k: stored[code][k] for k in COMPARED}
        want = {k: getattr(state, k) for k in COMPARED if hasattr(state, k)}
        want.update(
            is_open=state.is_open, is_paused=state.is_paused, outcome=dd.finished_outcome(state)
        )
        assert got == want, code
    assert_aggregates_consistent(engine)


def test_queue_events_out_of_order(engine: Engine, ingestor: Ingestor) -> None:
    q = [
        queue_event("t3", "ticket_completed", 0.5, ticket_no="B001", counter="Q3"),
        queue_event("t2", "ticket_called", 0.2, ticket_no="B001", counter="Q3"),
        queue_event("c2", "counter_opened", 0.0, counter="Q3"),
    ]
    ingestor.process([msg(e, kind="queue") for e in q])
    assert rows(engine, m.QueueTicket)[0]["state"] == "completed"
    # the issue arrives last; a close that happened before the late opening keeps it open
    ingestor.process(
        [
            msg(
                queue_event("t1", "ticket_issued", 0.1, ticket_no="B001", priority="priority"),
                kind="queue",
            ),
            msg(queue_event("c1", "counter_closed", -1.0, counter="Q3"), kind="queue"),
        ]
    )
    ticket = rows(engine, m.QueueTicket)[0]
    assert ticket["state"] == "completed" and ticket["priority"] == "priority"
    assert ticket["issued_at"] == datetime.fromisoformat(ts(0.1)).astimezone(UTC)
    assert rows(engine, m.CounterState)[0]["is_open"] is True


def test_same_ticket_number_on_another_day_is_another_ticket(
    engine: Engine, ingestor: Ingestor
) -> None:
    ingestor.process(
        [
            msg(queue_event("d1", "ticket_issued", 0, ticket_no="A001"), kind="queue"),
            msg(queue_event("d2", "ticket_issued", 24, ticket_no="A001"), kind="queue"),
            msg(queue_event("d3", "ticket_completed", 24.5, ticket_no="A001"), kind="queue"),
        ]
    )
    states = {r["service_day"]: r["state"] for r in rows(engine, m.QueueTicket)}
    assert states == {date(2025, 11, 3): "waiting", date(2025, 11, 4): "completed"}


def test_newest_heartbeat_wins_and_retained_ones_do_not_count_as_alive(
    engine: Engine, ingestor: Ingestor
) -> None:
    new = {"state": "offline", "occurred_at": ts(10)}
    old = {"state": "online", "occurred_at": ts(5), "software": "v1", "queue_waiting": 3}
    ingestor.process([msg(new, kind="status", commune=B, retained=True)])
    ingestor.process([msg(old, kind="status", commune=B)])
    feed = {r["commune_code"]: r for r in rows(engine, m.CentreFeed)}[B]
    assert feed["reported_state"] == "offline"
    assert feed["reported_at"] == datetime.fromisoformat(ts(10)).astimezone(UTC)
    assert feed["last_heartbeat_arrived_at"] == ARRIVED  # from the live (not retained) one
    assert feed["events_total"] == 0


# --- dead letters -------------------------------------------------------------------------------


def test_every_rejection_is_dead_lettered_and_counted(engine: Engine, ingestor: Ingestor) -> None:
    good = dossier_event("x0", "received", "D-X", 0, procedure_code="1.001193")
    future = (ARRIVED + timedelta(minutes=30)).isoformat()
    cases = {
        v.PAYLOAD_TOO_LARGE: msg({**good, "procedure_name": "x" * 70000}),
        v.NOT_UTF8: msg(b"\xff\xfe\x00garbage", commune=A),
        v.NOT_JSON: msg(b"{oops", commune=A),
        v.NOT_OBJECT: msg(b"[1,2,3]", commune=A),
        v.MISSING_FIELD: msg({k: x for k, x in good.items() if k != "dossier_code"}),
        v.INVALID_FIELD: msg({**good, "channel": "fax"}),
        v.UNKNOWN_TYPE: msg({**good, "type": "archived"}),
        v.BAD_TOPIC: InboundMessage("dvc/v1/08/2269/dossier", json.dumps(good).encode(), ARRIVED),
        v.WRONG_PROVINCE: InboundMessage(
            f"dvc/v1/01/{A}/dossier", json.dumps(good).encode(), ARRIVED
        ),
        v.UNKNOWN_COMMUNE: msg({**good, "commune_code": "09999"}),
        v.COMMUNE_MISMATCH: msg({**good, "commune_code": B}, commune=A),
        v.FUTURE_TIMESTAMP: msg({**good, "occurred_at": future}),
    }
    result = ingestor.process(list(cases.values()))
    assert result.stored == 0 and result.dead_lettered == len(cases)
    assert result.by_reason == Counter(dict.fromkeys(cases, 1))

    letters = {r["reason"]: r for r in rows(engine, m.DeadLetter)}
    assert set(letters) == set(cases)
    assert letters[v.COMMUNE_MISMATCH]["event_id"] == "x0"
    assert letters[v.COMMUNE_MISMATCH]["commune_code"] == A
    assert letters[v.BAD_TOPIC]["commune_code"] is None
    assert letters[v.PAYLOAD_TOO_LARGE]["payload_size"] > 70000
    assert len(letters[v.PAYLOAD_TOO_LARGE]["payload_excerpt"]) == 2048
    assert "\ufffd" in letters[v.NOT_UTF8]["payload_excerpt"]

    counts = {(r["commune_code"], r["reason"]): r["count"] for r in rows(engine, m.DeadLetterCount)}
    assert counts[(A, v.INVALID_FIELD)] == 1 and counts[("", v.BAD_TOPIC)] == 1
    assert counts[("09999", v.UNKNOWN_COMMUNE)] == 1
    feeds = {r["commune_code"]: r["dead_letters_total"] for r in rows(engine, m.CentreFeed)}
    assert feeds == {A: 10}  # the known commune only: 12 minus bad topic and unknown commune
    assert dossiers(engine) == {}

    nul = msg({**good, "event_id": "x1", "applicant_name": "A\u0000B"})  # PostgreSQL-proof
    ingestor.process([cases[v.NOT_JSON], nul])
    counts = {(r["commune_code"], r["reason"]): r["count"] for r in rows(engine, m.DeadLetterCount)}
    assert counts[(A, v.NOT_JSON)] == 2 and counts[(A, v.INVALID_FIELD)] == 2


def test_orphan_events_are_dead_lettered_after_grace_then_resolved(
    engine: Engine, db_url: str
) -> None:
    ingestor = Ingestor(engine, make_settings(db_url, orphan_grace_s=3600))
    orphan = [
        msg(dossier_event("o2", "assigned", "D-LATE", 2)),
        msg(dossier_event("o3", "completed", "D-LATE", 30)),
    ]
    assert ingestor.process(orphan).stored == 2
    assert dossiers(engine) == {}
    assert ingestor.sweep_orphans(ARRIVED + timedelta(minutes=30)) == 0  # still in grace
    assert ingestor.sweep_orphans(ARRIVED + timedelta(hours=2)) == 1
    assert ingestor.sweep_orphans(ARRIVED + timedelta(hours=3)) == 0  # only once
    letter = rows(engine, m.DeadLetter)[0]
    assert letter["reason"] == v.UNKNOWN_DOSSIER and letter["resolved_at"] is None
    assert "D-LATE" in letter["detail"]

    # A new process finds orphans from the table, not only from memory.
    fresh = Ingestor(engine, make_settings(db_url, orphan_grace_s=3600))
    assert fresh.sweep_orphans(ARRIVED + timedelta(hours=5)) == 0

    fresh.process([msg(dossier_event("o1", "received", "D-LATE", 0, procedure_code="1.001193"))])
    d = dossiers(engine)["D-LATE"]
    assert d["status"] == dd.RESULT_READY and d["event_count"] == 3
    assert rows(engine, m.DeadLetter)[0]["resolved_at"] is not None
    assert_aggregates_consistent(engine)


def test_processing_refuses_to_run_without_reference_data(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade_schema(engine)
    ingestor = Ingestor(engine, make_settings(db_url))
    from collectors.ingest import ReferenceDataMissing

    with pytest.raises(ReferenceDataMissing):
        ingestor.process([msg(dossier_event("z", "received", "D-Z", 0, procedure_code="1"))])
    with engine.connect() as conn:
        assert conn.execute(select(m.DeadLetter)).first() is None
    engine.dispose()


def test_events_are_stored_as_sent_and_read_back_as_through_the_orm(
    engine: Engine, ingestor: Ingestor
) -> None:
    """The collector's fast insert path (pre-converted values, raw JSON text) stores what the
    ORM types would: the payload as sent, UTC instants that compare and order correctly."""
    body = dossier_event(
        "raw-1", "received", "RAW-1", 0.25, procedure_code="1.001193", applicant_name="Lê Thị Ánh"
    )
    body["occurred_at"] = "2025-11-03T08:15:30.123456+07:00"
    body["extra"] = {"nested": [1, 2.5, None, "ơ"]}
    ingestor.process([msg(body)])
    with engine.connect() as conn:
        row = conn.execute(select(m.DossierEvent)).one()
        dossier = conn.execute(select(m.Dossier)).one()
        later = conn.execute(
            select(m.DossierEvent.event_id).where(
                m.DossierEvent.occurred_at > datetime(2025, 11, 3, 1, 15, 30, 123455, tzinfo=UTC)
            )
        ).all()
    assert row.payload == body
    assert row.occurred_at == datetime(2025, 11, 3, 1, 15, 30, 123456, tzinfo=UTC)
    assert row.arrived_at == ARRIVED
    assert dossier.received_at == row.occurred_at and dossier.due_at is not None
    assert dossier.due_at.tzinfo is not None
    assert [r.event_id for r in later] == ["raw-1"]  # compared as instants, not as text


def test_sqlite_text_of_an_instant_is_what_sqlalchemy_stores() -> None:
    from sqlalchemy.dialects import sqlite

    from collectors.ingest import sqlite_utc_text

    dialect = sqlite.dialect()
    process = m.UTCDateTime().dialect_impl(dialect).bind_processor(dialect)  # decorator + DATETIME
    assert process is not None
    for instant in (
        datetime(2025, 11, 3, 8, 15, 30, 123456, tzinfo=LOCAL_TZ),
        datetime(2026, 1, 1, 0, 0, tzinfo=UTC),
        datetime(999, 1, 1, 23, 59, 59, tzinfo=UTC),
    ):
        assert sqlite_utc_text(instant) == process(instant)
