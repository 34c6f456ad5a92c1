"""Summary snapshots: the wall's state figures against the same time yesterday (SQLite and
PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from control_center import queries, snapshots
from control_center.db import make_engine, session_factory
from control_center.domain.calendar import WorkingCalendar, load_calendar
from control_center.migrate import upgrade_schema
from control_center.models import SummarySnapshot
from control_center.settings import Settings, load_settings
from layouts.wall import kpi_tiles
from tests.test_queries import THUONG_LAM, World, seed_communes, vn

NOW = vn(11, 27, 10, 30)  # Friday 10:30
YESTERDAY = NOW - timedelta(days=1)


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


def overdue_dossiers(world: World, n: int, received_day: int = 10) -> None:
    # One received day and due date per call: the world inserts its aggregates, not adds.
    for _ in range(n):
        world.dossier(
            THUONG_LAM, received_at=vn(11, received_day, 9), due_at=vn(11, received_day + 10, 17)
        )
    world.commit()


def count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(SummarySnapshot)) or 0)


def tile_trend(tiles: list[Any], key: str) -> str | None:
    [tile] = [t for t in tiles if getattr(t, "data-kpi") == key]
    lines = [c.children for c in tile.children if "kpi-trend" in (c.className or "")]
    return lines[0] if lines else None


def test_one_snapshot_per_interval_and_old_ones_pruned(
    session: Session, settings: Settings, calendar: WorkingCalendar
) -> None:
    overdue_dossiers(World(session), 2)
    assert snapshots.take(session, settings, calendar, NOW - timedelta(days=9))
    assert snapshots.take(session, settings, calendar, YESTERDAY)
    assert not snapshots.take(session, settings, calendar, YESTERDAY + timedelta(minutes=4))
    assert snapshots.take(session, settings, calendar, YESTERDAY + timedelta(minutes=5))
    session.commit()
    # The 9-day-old one went when the next was written (kept for 8 days).
    assert count(session) == 2
    taken_at, figures = queries.snapshot_near(session, "08", YESTERDAY) or (None, {})
    assert taken_at == YESTERDAY
    assert figures["overdue"] == 2 and figures["open"] == 2
    assert set(snapshots.FIGURES) == set(figures)


def test_the_summary_compares_state_figures_with_the_snapshot_nearest_to_24h_ago(
    session: Session, settings: Settings, calendar: WorkingCalendar
) -> None:
    world = World(session)
    overdue_dossiers(world, 2)
    # Snapshots 20 and 7 minutes either side of "24 h ago": the nearer one counts.
    snapshots.take(session, settings, calendar, YESTERDAY - timedelta(minutes=20))
    overdue_dossiers(world, 1, received_day=11)
    snapshots.take(session, settings, calendar, YESTERDAY + timedelta(minutes=7))
    overdue_dossiers(world, 2, received_day=12)
    session.commit()

    summary = queries.province_summary(session, settings, calendar, NOW)

    assert summary["overdue"] == 5
    same_time = summary["trend"]["same_time_yesterday"]
    assert same_time["overdue"] == 3 and same_time["open"] == 3
    assert same_time["snapshot_at"] == YESTERDAY + timedelta(minutes=7)
    assert same_time["centres_online"] == 0 and same_time["due_soon"] == 0
    tiles = kpi_tiles(summary, "vi")
    assert tile_trend(tiles, "overdue") == "▲ 2 so với cùng giờ hôm qua"
    assert tile_trend(tiles, "open") == "▲ 2 so với cùng giờ hôm qua"
    en = kpi_tiles(summary, "en")
    assert tile_trend(en, "due_soon") == "→ 0 vs same time yesterday"


def test_without_a_snapshot_near_24h_ago_the_tiles_show_no_trend_not_zero(
    session: Session, settings: Settings, calendar: WorkingCalendar
) -> None:
    overdue_dossiers(World(session), 1)
    # 45 minutes off is too far to stand for "the same time yesterday".
    snapshots.take(session, settings, calendar, YESTERDAY - timedelta(minutes=45))
    session.commit()

    summary = queries.province_summary(session, settings, calendar, NOW)

    same_time = summary["trend"]["same_time_yesterday"]
    assert same_time["snapshot_at"] is None
    for key in queries.SNAPSHOT_TREND_FIGURES:
        assert same_time[key] is None, key
    tiles = kpi_tiles(summary, "vi")
    for key in ("open", "overdue", "due_soon", "queue_waiting", "centres", "progress_score"):
        assert tile_trend(tiles, key) is None, key


def test_snapshot_marks_fall_on_whole_intervals() -> None:
    start = vn(11, 26, 10, 3)
    marks = snapshots.marks(start, start + timedelta(minutes=21), timedelta(minutes=10))
    assert marks == [vn(11, 26, 10, 10), vn(11, 26, 10, 20)]
