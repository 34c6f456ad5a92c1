"""A small, known national state: every commune of the 34 provinces, data in three of them."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from collectors.ingest import recount_commune_backlog
from control_center.db import session_factory
from control_center.domain.calendar import LOCAL_TZ
from control_center.migrate import upgrade_schema
from control_center.models import (
    CentreFeed,
    CommuneDay,
    CommuneDueBucket,
    Heartbeat,
    QueueTicket,
)
from control_center.reference import province_communes, seed_reference_data
from tests.wall_seed import HA_GIANG_2, NOW, THUONG_LAM

HANOI, HCMC, TUYEN_QUANG = "01", "79", "08"
# Two communes in each of three provinces; Hà Nội is the worst province.
HANOI_A, HANOI_B = (c.code for c in province_communes(HANOI)[:2])
HCMC_A, HCMC_B = (c.code for c in province_communes(HCMC)[:2])
SEEDED = {
    TUYEN_QUANG: (THUONG_LAM, HA_GIANG_2),
    HANOI: (HANOI_A, HANOI_B),
    HCMC: (HCMC_A, HCMC_B),
}
# (commune, due relative to NOW, open dossiers)
BUCKETS = [
    (THUONG_LAM, -timedelta(days=3), 4),
    (THUONG_LAM, timedelta(hours=3), 2),
    (HA_GIANG_2, timedelta(days=5), 40),
    (HANOI_A, -timedelta(days=2), 30),
    (HANOI_A, timedelta(hours=2), 6),
    (HANOI_B, -timedelta(hours=5), 9),
    (HANOI_B, timedelta(days=8), 100),
    (HCMC_A, -timedelta(days=1), 1),
    (HCMC_B, timedelta(days=3), 75),
]


def seed_country(engine: Engine, *, collector_beat_age_s: float = 5.0) -> None:
    """Schema, all 3,321 communes, and a morning's aggregates in Tuyên Quang, Hà Nội and HCMC."""
    upgrade_schema(engine)
    today = NOW.astimezone(LOCAL_TZ).date()
    with session_factory(engine)() as session, session.begin():
        seed_reference_data(session, None)
        for code, offset, n in BUCKETS:
            session.add(
                CommuneDueBucket(
                    commune_code=code,
                    due_minute=(NOW + offset).replace(second=0, microsecond=0),
                    open_count=n,
                )
            )
        session.flush()
        recount_commune_backlog(session.connection())
        for k, code in enumerate(c for pair in SEEDED.values() for c in pair):
            received, online, on_time, late = 10 + 7 * k, 8 + 6 * k, 5 + k, k % 3
            session.add(
                CommuneDay(
                    commune_code=code,
                    day=today,
                    received=received,
                    received_online=online,
                    finished=on_time + late,
                    finished_on_time=on_time,
                    finished_overdue=late,
                    returned=on_time,
                )
            )
            # Hà Nội's second centre has gone offline; the others are live.
            seen = NOW - (timedelta(hours=3) if code == HANOI_B else timedelta(seconds=20))
            session.add(
                CentreFeed(
                    commune_code=code,
                    reported_state="online",
                    reported_at=seen,
                    last_heartbeat_arrived_at=seen,
                    last_event_at=seen,
                    last_arrival_at=seen,
                    last_lag_seconds=2.0,
                    software="iGate 3.2",
                    events_total=10,
                )
            )
            for i in range(k + 1):
                session.add(
                    QueueTicket(
                        commune_code=code,
                        service_day=today,
                        ticket_no=f"A{i:03d}",
                        state="waiting" if i % 2 else "completed",
                        channel="kiosk",
                        priority="normal",
                        issued_at=NOW - timedelta(minutes=50 - i),
                        called_at=None if i % 2 else NOW - timedelta(minutes=40 - i),
                        last_event_at=NOW - timedelta(minutes=1),
                    )
                )
        session.add(
            Heartbeat(
                name="collector", beat_at=NOW - timedelta(seconds=collector_beat_age_s), info={}
            )
        )
