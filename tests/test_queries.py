"""Read-side queries against hand-built data, on SQLite and PostgreSQL.

The rows are what the collector would have written: dossiers plus the aggregates
(``commune_due_buckets``, ``commune_days``) kept consistent with them by :class:`World`.
Dates: Friday 27 November 2026 is a working day, the weekend follows, Monday 30 is a working day.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from alerts import levels
from collectors.ingest import commune_day_rows, recount_commune_backlog
from control_center import queries
from control_center.db import make_engine, session_factory
from control_center.domain.calendar import LOCAL_TZ, WorkingCalendar, load_calendar
from control_center.domain.dossier import FINISHED, NOT_ACCEPTED, PAUSED, RETURNED
from control_center.domain.feed import feed_state
from control_center.migrate import upgrade_schema
from control_center.models import (
    Alert,
    CentreFeed,
    Commune,
    CommuneDay,
    CommuneDueBucket,
    CounterState,
    DeadLetter,
    DeadLetterCount,
    Dossier,
    DossierEvent,
    Heartbeat,
    QueueTicket,
)
from control_center.reference import province_communes
from control_center.settings import Settings, load_settings

THUONG_LAM = "02269"
HA_GIANG_2 = "00691"
NGOC_DUONG = "00700"


def vn(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LOCAL_TZ)


FRI_0900 = vn(11, 27, 9)
FRI_1030 = vn(11, 27, 10, 30)
FRI_1730 = vn(11, 27, 17, 30)
FRI_DUE = vn(11, 27, 17)


class World:
    """Builds dossiers, tickets, feeds... and the aggregates the collector keeps for them."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.buckets: Counter[tuple[str, datetime | None, bool]] = Counter()
        self.daily: Counter[tuple[str, Any, str]] = Counter()
        self._n = 0

    def dossier(
        self,
        commune: str,
        *,
        received_at: datetime,
        due_at: datetime | None,
        status: int = 4,
        finished_at: datetime | None = None,
        outcome: str | None = None,
        channel: str = "online",
        code: str | None = None,
        **extra: Any,
    ) -> Dossier:
        self._n += 1
        code = code or f"000.00.22.H56-261127-{self._n:04d}"
        is_open = status not in FINISHED and status != NOT_ACCEPTED
        d = Dossier(
            dossier_code=code,
            commune_code=commune,
            received_commune_code=commune,
            procedure_code="1.001193",
            procedure_name="Đăng ký khai sinh",
            sector="Hộ tịch",
            channel=channel,
            status=status,
            is_open=is_open,
            is_paused=status in PAUSED,
            received_at=received_at,
            clock_start_at=received_at,
            due_at=due_at,
            original_due_at=due_at,
            finished_at=finished_at,
            outcome=outcome,
            flags=[],
            event_count=1,
            last_event_at=finished_at or received_at,
            **extra,
        )
        self.session.add(d)
        if is_open:
            minute = due_at.replace(second=0, microsecond=0) if due_at else None
            paused_since = extra.get("paused_since")
            # As domain.dossier.due_bucket_key: paused before its due date = clock stopped.
            paused = bool(
                d.is_paused and due_at and (paused_since is None or paused_since < due_at)
            )
            self.buckets[(commune, minute, paused)] += 1
        day = received_at.astimezone(LOCAL_TZ).date()
        self.daily[(commune, day, "received")] += 1
        if channel == "online":
            self.daily[(commune, day, "received_online")] += 1
        if finished_at is not None:
            fday = finished_at.astimezone(LOCAL_TZ).date()
            self.daily[(commune, fday, "finished")] += 1
            if outcome:
                self.daily[(commune, fday, f"finished_{outcome}")] += 1
            if status == RETURNED:
                self.daily[(commune, fday, "returned")] += 1
        return d

    def ticket(
        self,
        commune: str,
        no: str,
        *,
        issued_at: datetime,
        called_at: datetime | None = None,
        state: str = "waiting",
    ) -> None:
        self.session.add(
            QueueTicket(
                commune_code=commune,
                service_day=issued_at.astimezone(LOCAL_TZ).date(),
                ticket_no=no,
                state=state,
                channel="kiosk",
                priority="normal",
                issued_at=issued_at,
                called_at=called_at,
                last_event_at=called_at or issued_at,
            )
        )

    def feed(self, commune: str, *, arrived_at: datetime, lag: float = 1.0, **extra: Any) -> None:
        values: dict[str, Any] = {
            "reported_state": "online",
            "reported_at": arrived_at,
            "last_heartbeat_arrived_at": arrived_at,
            "last_event_at": arrived_at - timedelta(seconds=lag),
            "last_arrival_at": arrived_at,
            "last_lag_seconds": lag,
            "events_total": 10,
        }
        values.update(extra)
        self.session.add(CentreFeed(commune_code=commune, **values))

    def alert(
        self, commune: str | None, *, state: str = "open", raised_at: datetime, **extra: Any
    ) -> Alert:
        a = Alert(
            alert_id=uuid.uuid4(),
            cause_key=f"overdue:{uuid.uuid4().hex}",
            kind=extra.pop("kind", "overdue"),
            level=extra.pop("level", 1),
            commune_code=commune,
            raised_at=raised_at,
            state=state,
            message="Hồ sơ quá hạn",
            **extra,
        )
        self.session.add(a)
        return a

    def commit(self) -> None:
        for (commune, minute, paused), n in self.buckets.items():
            self.session.add(
                CommuneDueBucket(
                    commune_code=commune, due_minute=minute, paused=paused, open_count=n
                )
            )
        for row in commune_day_rows(self.daily):
            self.session.add(CommuneDay(**row))
        self.session.flush()
        recount_commune_backlog(self.session.connection())
        self.buckets.clear()
        self.daily.clear()
        # Alerts added by hand: keep the dossiers' stored level as the alert engine would.
        self.session.flush()
        levels.recompute(self.session, self.session.scalars(select(Alert.dossier_code).distinct()))
        self.session.commit()


def seed_communes(session: Session) -> None:
    # A reference commune's fields are the communes table's columns.
    session.add_all(Commune(**asdict(c)) for c in province_communes("08"))
    session.commit()


@pytest.fixture
def settings(db_url: str) -> Settings:
    return load_settings(database_url=db_url, province="08")


@pytest.fixture
def calendar() -> WorkingCalendar:
    return load_calendar()


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    engine = make_engine(db_url)
    upgrade_schema(engine)
    with session_factory(engine)() as s:
        seed_communes(s)
        yield s
    engine.dispose()


@pytest.fixture
def world(session: Session) -> World:
    return World(session)


# --- feed state (pure) ----------------------------------------------------------------------

THRESHOLDS = SimpleNamespace(
    feed_stale_after_s=300, feed_offline_after_s=1800, feed_catching_up_lag_s=600
)
NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def _feed(**values: Any) -> SimpleNamespace:
    base = {
        "reported_state": "online",
        "last_heartbeat_arrived_at": None,
        "last_arrival_at": None,
        "last_lag_seconds": None,
    }
    base.update(values)
    return SimpleNamespace(**base)


def test_a_centre_never_heard_from_is_unknown() -> None:
    assert feed_state(None, NOW, THRESHOLDS) == "unknown"
    assert feed_state(_feed(reported_state=None), NOW, THRESHOLDS) == "unknown"


def test_a_centre_sending_current_events_is_live() -> None:
    feed = _feed(last_arrival_at=NOW - timedelta(seconds=20), last_lag_seconds=3)
    assert feed_state(feed, NOW, THRESHOLDS) == "live"


def test_heartbeats_alone_keep_a_quiet_centre_live() -> None:
    feed = _feed(
        last_heartbeat_arrived_at=NOW - timedelta(seconds=30),
        last_arrival_at=NOW - timedelta(hours=3),
    )
    assert feed_state(feed, NOW, THRESHOLDS) == "live"


@pytest.mark.parametrize(
    ("silence_s", "expected"),
    [(299, "live"), (300, "stale"), (1799, "stale"), (1800, "offline"), (6 * 3600, "offline")],
)
def test_silence_makes_a_centre_stale_then_offline(silence_s: int, expected: str) -> None:
    feed = _feed(last_arrival_at=NOW - timedelta(seconds=silence_s), last_lag_seconds=1)
    assert feed_state(feed, NOW, THRESHOLDS) == expected


def test_last_will_says_offline_at_once() -> None:
    feed = _feed(
        reported_state="offline",
        last_heartbeat_arrived_at=NOW - timedelta(seconds=5),
        last_arrival_at=NOW - timedelta(seconds=5),
    )
    assert feed_state(feed, NOW, THRESHOLDS) == "offline"


def test_events_after_the_last_will_mean_the_centre_is_back() -> None:
    feed = _feed(
        reported_state="offline",
        last_heartbeat_arrived_at=NOW - timedelta(minutes=2),
        last_arrival_at=NOW - timedelta(seconds=5),
        last_lag_seconds=2,
    )
    assert feed_state(feed, NOW, THRESHOLDS) == "live"


def test_a_centre_flushing_an_old_backlog_is_catching_up() -> None:
    feed = _feed(last_arrival_at=NOW - timedelta(seconds=2), last_lag_seconds=4 * 3600)
    assert feed_state(feed, NOW, THRESHOLDS) == "catching_up"
    # Once it goes quiet again, silence is what matters.
    quiet = _feed(last_arrival_at=NOW - timedelta(minutes=10), last_lag_seconds=4 * 3600)
    assert feed_state(quiet, NOW, THRESHOLDS) == "stale"


# --- overdue and due soon across the weekend ------------------------------------------------


def test_due_friday_five_pm_is_due_soon_in_the_morning_and_overdue_at_half_past_five(
    session: Session, world: World, settings: Settings, calendar: WorkingCalendar
) -> None:
    friday = world.dossier(THUONG_LAM, received_at=vn(11, 20, 9), due_at=FRI_DUE)
    monday = world.dossier(THUONG_LAM, received_at=vn(11, 23, 9), due_at=vn(11, 30, 10))
    world.dossier(THUONG_LAM, received_at=vn(11, 25, 9), due_at=vn(12, 2, 17))
    world.dossier(
        THUONG_LAM,
        received_at=vn(11, 20, 9),
        due_at=vn(11, 26, 17),
        status=RETURNED,
        finished_at=vn(11, 26, 10),
        outcome="on_time",
    )
    world.commit()

    morning = queries.province_summary(session, settings, calendar, FRI_0900)
    assert (morning["open"], morning["overdue"], morning["due_soon"]) == (3, 0, 1)
    due_soon = queries.list_dossiers(session, settings, calendar, FRI_0900, state="due_soon")
    assert [d["dossier_code"] for d in due_soon["items"]] == [friday.dossier_code]

    # One working day after Friday 10:30 is Monday 10:30: Monday 10:00 is now due soon.
    later = queries.province_summary(session, settings, calendar, FRI_1030)
    assert (later["overdue"], later["due_soon"]) == (0, 2)

    evening = queries.province_summary(session, settings, calendar, FRI_1730)
    assert (evening["open"], evening["overdue"], evening["due_soon"]) == (3, 1, 1)
    overdue = queries.list_dossiers(session, settings, calendar, FRI_1730, state="overdue")
    assert [d["dossier_code"] for d in overdue["items"]] == [friday.dossier_code]
    due_soon = queries.list_dossiers(session, settings, calendar, FRI_1730, state="due_soon")
    assert [d["dossier_code"] for d in due_soon["items"]] == [monday.dossier_code]

    row = next(
        r
        for r in queries.commune_rows(session, settings, calendar, FRI_1730)
        if r["code"] == THUONG_LAM
    )
    assert (row["open"], row["overdue"], row["due_soon"]) == (3, 1, 1)

    detail = queries.dossier_detail(session, settings, calendar, friday.dossier_code, FRI_1730)
    assert detail is not None
    assert detail["state"] == "overdue"
    assert detail["outcome"] == "overdue_open"
    # Monday 09:00 is two working hours past Friday 17:00 (07:00-09:00): a quarter of a day.
    monday_detail = queries.dossier_detail(
        session, settings, calendar, friday.dossier_code, vn(11, 30, 9)
    )
    assert monday_detail is not None
    assert monday_detail["working_days_overdue"] == 0.25


def test_every_commune_of_the_province_gets_a_row(
    session: Session, world: World, settings: Settings, calendar: WorkingCalendar
) -> None:
    world.dossier(THUONG_LAM, received_at=vn(11, 27, 8), due_at=vn(12, 3, 17))
    world.commit()
    rows = queries.commune_rows(session, settings, calendar, FRI_0900)
    assert len(rows) == 124
    assert [r["code"] for r in rows] == sorted(r["code"] for r in rows)
    by_code = {r["code"]: r for r in rows}
    assert by_code[THUONG_LAM]["name"] == "Xã Thượng Lâm"
    assert by_code[THUONG_LAM]["open"] == 1
    assert by_code[THUONG_LAM]["received_today"] == 1
    quiet = by_code[NGOC_DUONG]
    assert quiet["open"] == 0 and quiet["queue_waiting"] == 0
    assert quiet["feed_state"] == "unknown"
    assert quiet["on_time_rate"] is None and quiet["avg_wait_minutes"] is None


# --- daily figures, rates and the Decision 766 progress score -------------------------------


def test_today_counters_rates_and_progress_score(
    session: Session, world: World, settings: Settings, calendar: WorkingCalendar
) -> None:
    now = vn(11, 27, 10)
    # Received today: one online, one at the counter; both open and in time.
    world.dossier(THUONG_LAM, received_at=vn(11, 27, 8), due_at=vn(12, 4, 17))
    world.dossier(HA_GIANG_2, received_at=vn(11, 27, 9), due_at=vn(12, 4, 17), channel="counter")
    # Finished in the last 30 days: 2 early/on time (one returned today), 1 overdue.
    world.dossier(
        THUONG_LAM,
        received_at=vn(11, 20, 8),
        due_at=vn(11, 27, 17),
        status=RETURNED,
        finished_at=vn(11, 27, 9),
        outcome="early",
    )
    world.dossier(
        THUONG_LAM,
        received_at=vn(11, 18, 8),
        due_at=vn(11, 26, 17),
        status=RETURNED,
        finished_at=vn(11, 26, 16),
        outcome="on_time",
        channel="counter",
    )
    world.dossier(
        HA_GIANG_2,
        received_at=vn(11, 10, 8),
        due_at=vn(11, 17, 17),
        status=9,
        finished_at=vn(11, 26, 11),
        outcome="overdue",
    )
    # Open and overdue.
    world.dossier(HA_GIANG_2, received_at=vn(11, 12, 8), due_at=vn(11, 20, 17))
    # Out of the 30-day window: counts for nothing.
    world.dossier(
        NGOC_DUONG,
        received_at=vn(10, 1, 8),
        due_at=vn(10, 8, 17),
        status=RETURNED,
        finished_at=vn(10, 10, 9),
        outcome="overdue",
    )
    world.commit()

    s = queries.province_summary(session, settings, calendar, now)
    assert s["received_today"] == 2
    assert s["received_online_today"] == 1
    assert s["completed_today"] == 1
    assert s["returned_today"] == 1
    assert s["on_time_rate"] == pytest.approx(2 / 3, abs=1e-4)
    # Received in the window: 6 dossiers, 4 of them online.
    assert s["online_rate"] == pytest.approx(4 / 6, abs=1e-4)
    # 20 x (2 finished well + 2 open in time) / (3 finished + 3 open)
    assert s["progress_score"] == pytest.approx(20 * 4 / 6, abs=0.01)
    assert (s["open"], s["overdue"]) == (3, 1)
    # Yesterday: one finished on time, one overdue, and nothing received.
    assert s["trend"]["completed_today"] == 2
    assert s["trend"]["returned_today"] == 1
    assert s["trend"]["received_today"] == 0
    assert set(s) >= {
        "open", "overdue", "due_soon", "received_today", "received_online_today", "completed_today",
        "returned_today", "on_time_rate", "online_rate", "progress_score", "queue_waiting",
        "avg_wait_minutes", "centres_online", "centres_stale", "centres_offline", "centres_total",
        "last_event_at", "data_as_of", "data_stale", "open_alerts", "dead_letters_today", "trend",
    }  # fmt: skip

    rows = {r["code"]: r for r in queries.commune_rows(session, settings, calendar, now)}
    assert rows[THUONG_LAM]["on_time_rate"] == 1.0
    assert rows[HA_GIANG_2]["on_time_rate"] == 0.0
    assert rows[HA_GIANG_2]["online_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert rows[NGOC_DUONG]["on_time_rate"] is None


def day_counters(same_time: dict[str, Any]) -> dict[str, Any]:
    keys = ("received_today", "received_online_today", "completed_today", "returned_today")
    return {key: same_time[key] for key in keys}


def test_trend_counts_yesterday_up_to_the_same_time(
    session: Session, world: World, settings: Settings, calendar: WorkingCalendar
) -> None:
    # Friday 10:00: the arrows compare with Thursday 00:00 up to (not including) Thursday 10:00.
    now = vn(11, 27, 10)
    due = vn(12, 4, 17)
    world.dossier(THUONG_LAM, received_at=vn(11, 26, 8), due_at=due)  # online, counted
    world.dossier(HA_GIANG_2, received_at=vn(11, 26, 9, 59), due_at=due, channel="counter")
    world.dossier(THUONG_LAM, received_at=vn(11, 26, 10), due_at=due)  # at the cut: not yet
    world.dossier(THUONG_LAM, received_at=vn(11, 26, 15), due_at=due)  # Thursday afternoon
    world.dossier(THUONG_LAM, received_at=vn(11, 27, 8), due_at=due)  # today
    # Received Wednesday night, result ready Thursday 09:00 (not yet handed back).
    world.dossier(
        NGOC_DUONG,
        received_at=vn(11, 25, 23, 30),
        due_at=vn(11, 27, 17),
        status=9,
        finished_at=vn(11, 26, 9),
        outcome="early",
    )
    # Ready Thursday 08:30 and handed back 09:30: completed and returned by the same time.
    world.dossier(
        THUONG_LAM,
        received_at=vn(11, 20, 8),
        due_at=vn(11, 27, 17),
        status=RETURNED,
        finished_at=vn(11, 26, 8, 30),
        returned_at=vn(11, 26, 9, 30),
        outcome="early",
    )
    # Ready on Tuesday, collected Thursday 09:45: returned by then, completed days before.
    world.dossier(
        HA_GIANG_2,
        received_at=vn(11, 19, 8),
        due_at=vn(11, 26, 17),
        status=RETURNED,
        finished_at=vn(11, 24, 9),
        returned_at=vn(11, 26, 9, 45),
        outcome="early",
    )
    # Ready 11:00 and returned 11:30 on Thursday: after the same time.
    world.dossier(
        HA_GIANG_2,
        received_at=vn(11, 19, 8),
        due_at=vn(11, 26, 17),
        status=RETURNED,
        finished_at=vn(11, 26, 11),
        returned_at=vn(11, 26, 11, 30),
        outcome="on_time",
    )
    # Withdrawn on Thursday morning: closed, but not a completion.
    world.dossier(
        THUONG_LAM, received_at=vn(11, 18, 8), due_at=None, status=7, finished_at=vn(11, 26, 8)
    )
    world.commit()

    s = queries.province_summary(session, settings, calendar, now)
    assert s["received_today"] == 1
    assert s["trend"]["received_today"] == 4  # all of Thursday, kept for compatibility
    # No summary snapshot yet: the state figures have no "same time yesterday" (None, not 0).
    assert s["trend"]["same_time_yesterday"]["snapshot_at"] is None
    assert s["trend"]["same_time_yesterday"]["overdue"] is None
    assert day_counters(s["trend"]["same_time_yesterday"]) == {
        "received_today": 2,
        "received_online_today": 1,
        "completed_today": 2,
        "returned_today": 2,
    }

    evening = queries.province_summary(session, settings, calendar, vn(11, 27, 17))
    assert day_counters(evening["trend"]["same_time_yesterday"]) == {
        "received_today": 4,
        "received_online_today": 3,
        "completed_today": 3,
        "returned_today": 3,
    }
    # Five minutes after midnight, yesterday's first five minutes had nothing.
    night = queries.province_summary(session, settings, calendar, vn(11, 27, 0, 5))
    assert set(day_counters(night["trend"]["same_time_yesterday"]).values()) == {0}


def test_empty_province_has_no_rates_and_stale_data(
    session: Session, settings: Settings, calendar: WorkingCalendar
) -> None:
    s = queries.province_summary(session, settings, calendar, FRI_0900)
    assert s["open"] == 0
    assert s["on_time_rate"] is None and s["online_rate"] is None and s["progress_score"] is None
    assert s["centres_total"] == 124
    assert s["data_stale"] is True
    assert s["data_as_of"] is None


# --- queues and feeds -----------------------------------------------------------------------


def test_queue_waiting_and_wait_times(
    session: Session, world: World, settings: Settings, calendar: WorkingCalendar
) -> None:
    now = vn(11, 27, 10)
    world.ticket(
        THUONG_LAM, "A001", issued_at=vn(11, 27, 8), called_at=vn(11, 27, 8, 10), state="completed"
    )
    world.ticket(
        THUONG_LAM, "A002", issued_at=vn(11, 27, 8, 5), called_at=vn(11, 27, 8, 25), state="serving"
    )
    world.ticket(THUONG_LAM, "A003", issued_at=vn(11, 27, 9), state="waiting")
    world.ticket(THUONG_LAM, "A004", issued_at=vn(11, 27, 9, 40), state="waiting")
    world.ticket(
        HA_GIANG_2, "B001", issued_at=vn(11, 27, 9, 30), called_at=vn(11, 27, 10), state="serving"
    )
    # Yesterday's ticket never called: not part of today's queue.
    world.ticket(THUONG_LAM, "Z999", issued_at=vn(11, 26, 16), state="waiting")
    session.add_all(
        [
            CounterState(commune_code=THUONG_LAM, counter="1", is_open=True, last_event_at=now),
            CounterState(commune_code=THUONG_LAM, counter="2", is_open=True, last_event_at=now),
            CounterState(commune_code=THUONG_LAM, counter="3", is_open=False, last_event_at=now),
        ]
    )
    world.commit()

    rows = {r["code"]: r for r in queries.commune_rows(session, settings, calendar, now)}
    tl = rows[THUONG_LAM]
    assert tl["queue_waiting"] == 2
    assert tl["avg_wait_minutes"] == 15.0
    assert tl["longest_wait_minutes"] == 60.0
    assert tl["counters_open"] == 2
    assert rows[HA_GIANG_2]["avg_wait_minutes"] == 30.0

    s = queries.province_summary(session, settings, calendar, now)
    assert s["queue_waiting"] == 2
    assert s["avg_wait_minutes"] == pytest.approx((10 + 20 + 30) / 3, abs=0.1)

    detail = queries.commune_detail(session, settings, calendar, THUONG_LAM, now)
    assert detail is not None
    assert detail["queue_by_hour"] == [
        {"hour": 8, "tickets": 2, "avg_wait_minutes": 15.0},
        {"hour": 9, "tickets": 2, "avg_wait_minutes": None},
    ]


def test_centre_feeds_and_data_freshness(
    session: Session, world: World, settings: Settings, calendar: WorkingCalendar
) -> None:
    now = vn(11, 27, 10)
    world.feed(THUONG_LAM, arrived_at=now - timedelta(seconds=10))
    world.feed(HA_GIANG_2, arrived_at=now - timedelta(minutes=10))
    world.feed(NGOC_DUONG, arrived_at=now - timedelta(seconds=30), reported_state="offline")
    world.feed("00706", arrived_at=now - timedelta(seconds=5), lag=3 * 3600)
    session.add(Heartbeat(name="collector-1", beat_at=now - timedelta(seconds=5), info={}))
    world.commit()

    s = queries.province_summary(session, settings, calendar, now)
    assert (s["centres_online"], s["centres_stale"], s["centres_offline"]) == (1, 1, 1)
    assert s["centres_total"] == 124
    assert s["data_as_of"] == now - timedelta(seconds=5)
    assert s["data_stale"] is False
    assert s["last_event_at"] == now - timedelta(seconds=10 + 1)

    rows = {r["code"]: r for r in queries.commune_rows(session, settings, calendar, now)}
    assert rows[THUONG_LAM]["feed_state"] == "live"
    assert rows[THUONG_LAM]["last_seen_at"] == now - timedelta(seconds=10)
    assert rows["00706"]["feed_state"] == "catching_up"
    assert rows["00706"]["lag_seconds"] == 3 * 3600

    # The collector stopped beating three minutes ago: the wall must say so.
    later = now + timedelta(minutes=3)
    assert queries.province_summary(session, settings, calendar, later)["data_stale"] is True


# --- commune detail -------------------------------------------------------------------------


def test_commune_detail(
    session: Session, world: World, settings: Settings, calendar: WorkingCalendar
) -> None:
    now = vn(11, 27, 10)
    late = world.dossier(THUONG_LAM, received_at=vn(11, 10, 8), due_at=vn(11, 17, 17))
    later = world.dossier(THUONG_LAM, received_at=vn(11, 12, 8), due_at=vn(11, 19, 17))
    world.dossier(HA_GIANG_2, received_at=vn(11, 12, 8), due_at=vn(11, 19, 17))
    world.dossier(
        THUONG_LAM,
        received_at=vn(11, 20, 8),
        due_at=vn(11, 27, 17),
        status=RETURNED,
        finished_at=vn(11, 26, 9),
        outcome="early",
    )
    world.feed(THUONG_LAM, arrived_at=now - timedelta(seconds=10), software="iGate 3.2")
    world.alert(THUONG_LAM, raised_at=now - timedelta(hours=1), dossier_code=late.dossier_code)
    world.alert(HA_GIANG_2, raised_at=now - timedelta(hours=1))
    world.commit()

    d = queries.commune_detail(session, settings, calendar, THUONG_LAM, now)
    assert d is not None
    assert d["code"] == THUONG_LAM and d["overdue"] == 2 and d["open_alerts"] == 1
    assert [x["dossier_code"] for x in d["overdue_dossiers"]] == [
        late.dossier_code,
        later.dossier_code,
    ]
    assert len(d["daily"]) == 30
    assert d["daily"][-1]["day"] == now.date()
    by_day = {x["day"]: x for x in d["daily"]}
    assert by_day[vn(11, 26).date()]["finished_on_time"] == 1
    assert by_day[vn(11, 12).date()]["received"] == 1
    assert by_day[vn(11, 11).date()]["received"] == 0
    assert d["feed"]["software"] == "iGate 3.2" and d["feed"]["state"] == "live"
    assert [a["dossier_code"] for a in d["alerts"]] == [late.dossier_code]

    assert queries.commune_detail(session, settings, calendar, "99999", now) is None


# --- dossier lists and detail ---------------------------------------------------------------


def test_list_dossiers_filters_orders_and_pages(
    session: Session, world: World, settings: Settings, calendar: WorkingCalendar
) -> None:
    now = vn(11, 27, 10)
    overdue_codes = []
    for i in range(7):
        d = world.dossier(THUONG_LAM, received_at=vn(11, 2 + i, 8), due_at=vn(11, 10 + i, 17))
        overdue_codes.append(d.dossier_code)
    world.dossier(HA_GIANG_2, received_at=vn(11, 3, 8), due_at=vn(11, 11, 17))
    done = world.dossier(
        THUONG_LAM,
        received_at=vn(11, 20, 8),
        due_at=vn(11, 27, 17),
        status=RETURNED,
        finished_at=vn(11, 26, 9),
        outcome="early",
        apology_issued_at=None,
        officer="Nguyễn Văn A",
    )
    world.commit()

    page1 = queries.list_dossiers(
        session, settings, calendar, now, commune=THUONG_LAM, state="overdue", limit=5
    )
    page2 = queries.list_dossiers(
        session, settings, calendar, now, commune=THUONG_LAM, state="overdue", limit=5, offset=5
    )
    assert page1["total"] == page2["total"] == 7
    codes = [d["dossier_code"] for d in page1["items"] + page2["items"]]
    assert codes == overdue_codes  # the longest overdue first
    assert all(d["commune_name"] == "Xã Thượng Lâm" for d in page1["items"])
    assert {d["outcome"] for d in page1["items"]} == {"overdue_open"}
    assert page1["items"][0]["working_days_overdue"] > page1["items"][1]["working_days_overdue"] > 0

    everything = queries.list_dossiers(session, settings, calendar, now)
    assert everything["total"] == 9
    finished = queries.list_dossiers(session, settings, calendar, now, state="finished")
    assert [d["dossier_code"] for d in finished["items"]] == [done.dossier_code]
    item = finished["items"][0]
    assert item["outcome"] == "early" and item["officer"] == "Nguyễn Văn A"
    assert item["working_days_overdue"] == 0.0
    assert item["apology_issued"] is False and item["extended"] is False
    open_ = queries.list_dossiers(session, settings, calendar, now, state="open")
    assert open_["total"] == 8


def test_dossier_detail_timeline_in_occurrence_order(
    session: Session, world: World, settings: Settings, calendar: WorkingCalendar
) -> None:
    now = vn(11, 27, 10)
    d = world.dossier(
        THUONG_LAM,
        received_at=vn(11, 20, 8),
        due_at=vn(12, 1, 17),
        status=5,
        applicant_name="Trần Thị B",
        apology_issued_at=vn(11, 26, 9),
        extension_count=1,
        paused_seconds=7200.0,
    )
    world.commit()
    arrived = vn(11, 27, 9)  # a backlog: all arrived together, out of order
    for event_id, type_, at, payload in [
        ("e3", "supplement_requested", vn(11, 24, 9), {"reason": "Thiếu giấy tờ"}),
        (
            "e1",
            "received",
            vn(11, 20, 8),
            {"procedure_code": "1.001193", "applicant_name": "Trần Thị B"},
        ),
        ("e2", "assigned", vn(11, 21, 8), {"officer": "Lê C"}),
    ]:
        session.add(
            DossierEvent(
                event_id=event_id,
                dossier_code=d.dossier_code,
                commune_code=THUONG_LAM,
                type=type_,
                occurred_at=at,
                arrived_at=arrived,
                payload={"event_id": event_id, "type": type_, **payload},
            )
        )
    session.commit()

    detail = queries.dossier_detail(session, settings, calendar, d.dossier_code, now)
    assert detail is not None
    assert [e["type"] for e in detail["timeline"]] == [
        "received",
        "assigned",
        "supplement_requested",
    ]
    assert detail["timeline"][2]["details"] == {"reason": "Thiếu giấy tờ"}
    assert "Trần Thị B" not in repr(detail)  # personal data stays in the database
    assert detail["paused"] is True and detail["paused_seconds"] == 7200.0
    assert detail["apology"] == {"issued_at": vn(11, 26, 9)}
    assert detail["extension"]["count"] == 1
    assert detail["state"] == "open"
    assert queries.dossier_detail(session, settings, calendar, "nope", now) is None


# --- alerts and dead letters ----------------------------------------------------------------


def test_alerts_and_dead_letters(
    session: Session, world: World, settings: Settings, calendar: WorkingCalendar
) -> None:
    now = vn(11, 27, 10)
    first = world.alert(THUONG_LAM, raised_at=now - timedelta(hours=2))
    second = world.alert(THUONG_LAM, raised_at=now - timedelta(hours=1), level=2)
    world.alert(
        HA_GIANG_2, raised_at=now - timedelta(hours=3), state="acknowledged", acknowledged_by="x"
    )
    world.alert(None, raised_at=now - timedelta(minutes=5), level=3, kind="centre_offline")
    for i, (commune, reason, at) in enumerate(
        [
            (THUONG_LAM, "invalid_json", now - timedelta(minutes=5)),
            (THUONG_LAM, "missing_field", now - timedelta(minutes=3)),
            (HA_GIANG_2, "invalid_json", now - timedelta(hours=20)),
            (THUONG_LAM, "invalid_json", now - timedelta(days=1, minutes=10)),
        ]
    ):
        session.add(
            DeadLetter(
                arrived_at=at,
                topic=f"dvc/v1/08/{commune}/dossier",
                commune_code=commune,
                reason=reason,
                detail="bad",
                event_id=f"x{i}",
                payload_excerpt="{",
                payload_size=1,
            )
        )
    session.add_all(
        [
            DeadLetterCount(commune_code=THUONG_LAM, reason="invalid_json", count=2),
            DeadLetterCount(commune_code=THUONG_LAM, reason="missing_field", count=1),
            DeadLetterCount(commune_code=HA_GIANG_2, reason="invalid_json", count=1),
        ]
    )
    world.commit()

    open_alerts = queries.list_alerts(session, state="open")
    assert len(open_alerts) == 3
    assert open_alerts[0]["kind"] == "centre_offline"  # newest first
    tl = queries.list_alerts(session, state="open", commune=THUONG_LAM)
    assert [a["alert_id"] for a in tl] == [str(second.alert_id), str(first.alert_id)]
    assert set(tl[0]) >= {
        "alert_id", "kind", "level", "commune_code", "dossier_code", "due_at", "raised_at",
        "state", "message", "acknowledged_at", "acknowledged_by",
    }  # fmt: skip
    assert queries.list_alerts(session, limit=2) and len(queries.list_alerts(session, limit=2)) == 2

    dl = queries.list_dead_letters(session, commune=THUONG_LAM, limit=2)
    assert dl["total"] == 3
    assert [x["reason"] for x in dl["items"]] == ["missing_field", "invalid_json"]
    assert dl["counts"] == {"invalid_json": 2, "missing_field": 1}
    assert queries.list_dead_letters(session)["counts"] == {"invalid_json": 3, "missing_field": 1}
    assert queries.list_dead_letters(session, reason="invalid_json")["total"] == 3

    s = queries.province_summary(session, settings, calendar, now)
    # Today began at 00:00 +07:00: the 20-hour-old letter arrived yesterday.
    assert s["dead_letters_today"] == 2
    assert s["trend"]["dead_letters_today"] == 1
    assert s["open_alerts"] == 3


def test_wall_queries_do_not_loop_over_communes(
    session: Session, world: World, settings: Settings, calendar: WorkingCalendar
) -> None:
    # The wall refreshes every few seconds for 124 communes: one query per commune would
    # multiply the database load by the size of the province.
    now = vn(11, 27, 10)
    for code in (THUONG_LAM, HA_GIANG_2, NGOC_DUONG):
        world.dossier(code, received_at=vn(11, 20, 8), due_at=vn(11, 26, 17))
        world.feed(code, arrived_at=now - timedelta(seconds=5))
        world.ticket(code, "A001", issued_at=vn(11, 27, 8))
    world.commit()
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        queries.commune_rows(session, settings, calendar, now)
        rows_statements = len(statements)
        statements.clear()
        queries.province_summary(session, settings, calendar, now)
        summary_statements = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # A handful of statements whatever the number of communes (124 here would mean a loop);
    # the due counts are two (the backlog rows; the overdue and the due-soon ranges in one
    # UNION ALL), the daily reads two (the window and the three days), and the
    # same-time-yesterday counters one more (three index ranges in one UNION ALL); the
    # summary's single figures are one statement, the nearest snapshot one more.
    assert rows_statements <= 10
    assert summary_statements <= 10


def test_a_province_leaves_out_other_provinces_communes_in_a_shared_database(
    db_url: str, session: Session, world: World, settings: Settings, calendar: WorkingCalendar
) -> None:
    now = vn(11, 27, 10)
    world.dossier(THUONG_LAM, received_at=vn(11, 27, 8), due_at=vn(11, 27, 9))
    world.commit()
    bound: list[int] = []

    def count_parameters(*args: Any) -> None:
        parameters = args[3]
        bound.append(len(parameters) if isinstance(parameters, list | tuple | dict) else 1)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count_parameters)
    try:
        alone = queries.province_summary(session, settings, calendar, now)
        queries.commune_rows(session, settings, calendar, now)
    finally:
        event.remove(engine, "before_cursor_execute", count_parameters)
    # The database holds this province only: no statement binds its 124 commune codes.
    assert max(bound) < 50
    assert (alone["open"], alone["overdue"], alone["received_today"]) == (1, 1, 1)

    # Another province's commune and a dossier there (a national database, say).
    other = province_communes("01")[0]
    session.add(Commune(**asdict(other)))
    world.dossier(other.code, received_at=vn(11, 27, 8), due_at=vn(11, 27, 9))
    world.commit()
    with session_factory(engine)() as fresh:  # the scope is read once per session
        shared = queries.province_summary(fresh, settings, calendar, now)
        codes = {r["code"] for r in queries.commune_rows(fresh, settings, calendar, now)}
        national = queries.province_summary(
            fresh, load_settings(database_url=db_url, scope="national"), calendar, now
        )
    assert (shared["open"], shared["overdue"], shared["received_today"]) == (1, 1, 1)
    assert other.code not in codes and len(codes) == 124
    assert (national["open"], national["overdue"], national["received_today"]) == (2, 2, 2)
