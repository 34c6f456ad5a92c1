"""A small, known province state for the wall tests, written straight into the aggregates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from collectors.ingest import recount_commune_backlog
from control_center.db import session_factory
from control_center.domain.calendar import LOCAL_TZ
from control_center.migrate import upgrade_schema
from control_center.models import (
    Alert,
    CentreFeed,
    CommuneDay,
    CommuneDueBucket,
    CounterState,
    Dossier,
    Heartbeat,
    QueueTicket,
)
from control_center.reference import province_communes, seed_reference_data

# Wednesday 25 November 2026, 10:00 in the province: a working day.
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=LOCAL_TZ).astimezone(UTC)
THUONG_LAM = "02269"
HA_GIANG_2 = "00691"
OFFLINE_COMMUNE = "01165"
STALE_COMMUNE = "00700"
PROCEDURE_NAMES = (
    "Đăng ký khai sinh",
    "Cấp bản sao trích lục hộ tịch",
    "Chứng thực bản sao từ bản chính giấy tờ, văn bản do cơ quan, tổ chức có thẩm quyền của "
    "Việt Nam; cơ quan, tổ chức có thẩm quyền của nước ngoài; cơ quan, tổ chức có thẩm quyền "
    "của Việt Nam liên kết với cơ quan, tổ chức có thẩm quyền của nước ngoài cấp hoặc chứng nhận",
)


def seed_province(engine: Engine, *, collector_beat_age_s: float = 5.0) -> None:
    """Schema, the 124 communes, and a morning's worth of aggregates around :data:`NOW`."""
    upgrade_schema(engine)
    today = NOW.astimezone(LOCAL_TZ).date()
    with session_factory(engine)() as session, session.begin():
        seed_reference_data(session, "08")
        # Open dossiers per due minute: Thượng Lâm is the worst commune.
        buckets = [
            (THUONG_LAM, NOW - timedelta(days=3), 4),
            (THUONG_LAM, NOW - timedelta(hours=2), 3),
            (THUONG_LAM, NOW + timedelta(hours=3), 2),
            (THUONG_LAM, NOW + timedelta(days=10), 20),
            (HA_GIANG_2, NOW - timedelta(days=1), 2),
            (HA_GIANG_2, NOW + timedelta(hours=1), 5),
            (HA_GIANG_2, NOW + timedelta(days=5), 40),
            (STALE_COMMUNE, NOW + timedelta(days=4), 11),
        ]
        for code, due, n in buckets:
            session.add(
                CommuneDueBucket(
                    commune_code=code, due_minute=due.replace(second=0, microsecond=0), open_count=n
                )
            )
        session.flush()
        recount_commune_backlog(session.connection())
        for code, received, online, returned in [
            (THUONG_LAM, 30, 27, 12),
            (HA_GIANG_2, 55, 50, 31),
            (STALE_COMMUNE, 8, 6, 2),
        ]:
            counts = {
                "received": received,
                "received_online": online,
                "returned": returned,
                "finished": returned,
                "finished_on_time": returned - 1,
                "finished_overdue": 1,
            }
            session.add(CommuneDay(commune_code=code, day=today, **counts))
            session.add(
                CommuneDay(
                    commune_code=code,
                    day=today - timedelta(days=1),
                    **{metric: value + 3 for metric, value in counts.items()},
                )
            )
        # Feeds: everyone live except one stale and one offline centre.
        for commune in province_communes("08"):
            if commune.code == OFFLINE_COMMUNE:
                seen, state = NOW - timedelta(hours=3), "offline"
            elif commune.code == STALE_COMMUNE:
                seen, state = NOW - timedelta(minutes=12), "online"
            else:
                seen, state = NOW - timedelta(seconds=20), "online"
            session.add(
                CentreFeed(
                    commune_code=commune.code,
                    reported_state=state,
                    reported_at=seen,
                    last_heartbeat_arrived_at=seen,
                    last_event_at=seen,
                    last_arrival_at=seen,
                    last_lag_seconds=2.0,
                    software="iGate 3.2",
                    events_total=10,
                )
            )
        for i in range(7):
            session.add(
                QueueTicket(
                    commune_code=THUONG_LAM,
                    service_day=today,
                    ticket_no=f"A{i:03d}",
                    state="waiting" if i >= 3 else "completed",
                    channel="kiosk",
                    priority="normal",
                    issued_at=NOW - timedelta(minutes=60 - 5 * i),
                    called_at=None if i >= 3 else NOW - timedelta(minutes=40 - 5 * i),
                    last_event_at=NOW - timedelta(minutes=1),
                )
            )
        session.add(
            CounterState(commune_code=THUONG_LAM, counter="1", is_open=True, last_event_at=NOW)
        )
        for i, level in enumerate((1, 2, 3)):
            session.add(
                Alert(
                    cause_key=f"overdue:{THUONG_LAM}-{i}",
                    kind="overdue",
                    level=level,
                    commune_code=THUONG_LAM,
                    dossier_code=f"000.00.22.H56-251123-000{i}",
                    due_at=NOW - timedelta(days=1),
                    raised_at=NOW - timedelta(minutes=30 - i),
                    state="open",
                    # As the engine writes them: the procedure's name, sometimes very long.
                    message=f"Hồ sơ 000.00.22.H56-251123-000{i} ({PROCEDURE_NAMES[i]})"
                    f" đã quá hạn (cấp {level})",
                )
            )
        for i in range(3):
            received = NOW - timedelta(days=9)
            session.add(
                Dossier(
                    dossier_code=f"000.00.22.H56-251116-000{i}",
                    commune_code=THUONG_LAM,
                    received_commune_code=THUONG_LAM,
                    procedure_code="1.001193",
                    procedure_name="Đăng ký khai sinh",
                    sector="Hộ tịch",
                    channel="online",
                    status=4,
                    is_open=True,
                    received_at=received,
                    clock_start_at=received,
                    due_at=NOW - timedelta(days=3),
                    original_due_at=NOW - timedelta(days=3),
                    apology_issued_at=NOW - timedelta(days=4) if i == 0 else None,
                    flags=[],
                    event_count=2,
                    last_event_at=NOW - timedelta(days=5),
                )
            )
        session.add(
            Heartbeat(
                name="collector",
                beat_at=NOW - timedelta(seconds=collector_beat_age_s),
                info={},
            )
        )
