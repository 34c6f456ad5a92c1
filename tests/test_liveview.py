"""The province's wall reading stored by the alert engine and read by every screen
(``control_center.liveview``), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from plotly.io.json import to_json_plotly
from sqlalchemy import Engine, select, update

from alerts.engine import run as run_engine
from control_center import liveview
from control_center.app import create_app
from control_center.db import make_engine, session_factory
from control_center.models import CommuneBacklog, LiveView
from control_center.national import province_view
from control_center.readcache import dumps, loads
from control_center.runtime import calendar_from_settings
from control_center.settings import Settings, load_settings
from layouts import ids
from layouts.format import fmt_int
from layouts.queue import queue_totals, total_tiles
from tests.conftest import Mosquitto
from tests.test_wall_callbacks import queue_tick, wall_tick
from tests.wall_seed import NOW, THUONG_LAM, seed_province


@pytest.fixture
def seeded(db_url: str) -> Iterator[tuple[Engine, Settings]]:
    engine = make_engine(db_url)
    seed_province(engine)
    yield engine, load_settings(database_url=db_url)
    engine.dispose()


def publish(engine: Engine, settings: Settings, now: datetime) -> dict[str, Any]:
    with session_factory(engine).begin() as session:
        return liveview.publish(session, settings, calendar_from_settings(settings), now)


def reading(engine: Engine, settings: Settings, now: datetime) -> dict[str, Any]:
    with session_factory(engine)() as session:
        return liveview.province_reading(session, settings, calendar_from_settings(settings), now)


def computed(engine: Engine, settings: Settings, now: datetime) -> dict[str, Any]:
    with session_factory(engine)() as session:
        return province_view(session, settings, calendar_from_settings(settings), now)


def add_backlog(engine: Engine, n: int) -> None:
    """More open dossiers at Thượng Lâm: a reading computed now differs from the stored one."""
    with session_factory(engine).begin() as session:
        session.execute(
            update(CommuneBacklog)
            .where(CommuneBacklog.commune_code == THUONG_LAM)
            .values(open_count=CommuneBacklog.open_count + n)
        )


def test_the_stored_reading_reads_back_as_computed(seeded: tuple[Engine, Settings]) -> None:
    engine, settings = seeded
    published = publish(engine, settings, NOW)

    assert published == computed(engine, settings, NOW)
    # Datetimes come back aware and equal, numbers as numbers, every commune's row.
    assert reading(engine, settings, NOW + timedelta(seconds=1)) == published
    assert isinstance(published["summary"]["data_as_of"], datetime)
    assert len(published["communes"]) == 124


def test_a_reading_is_used_while_current_and_computed_when_not(
    seeded: tuple[Engine, Settings],
) -> None:
    engine, settings = seeded
    stored_open = publish(engine, settings, NOW)["summary"]["open"]
    add_backlog(engine, 100)
    max_age = timedelta(seconds=settings.live_view_max_age_s)

    assert reading(engine, settings, NOW + max_age)["summary"]["open"] == stored_open
    # Older than the limit (the engine stopped), or far ahead of the reader's clock: computed.
    later = NOW + max_age + timedelta(seconds=1)
    assert reading(engine, settings, later)["summary"]["open"] == stored_open + 100
    earlier = NOW - max_age - timedelta(seconds=1)
    assert reading(engine, settings, earlier)["summary"]["open"] == stored_open + 100
    # CC_LIVE_VIEW_MAX_AGE_S=0: never read.
    off = settings.model_copy(update={"live_view_max_age_s": 0.0})
    assert reading(engine, off, NOW)["summary"]["open"] == stored_open + 100


def test_an_older_reading_never_replaces_a_newer_one(seeded: tuple[Engine, Settings]) -> None:
    engine, settings = seeded
    first = publish(engine, settings, NOW)
    add_backlog(engine, 7)
    publish(engine, settings, NOW - timedelta(seconds=3))  # a slower writer, finishing late

    with session_factory(engine)() as session:
        row = session.execute(select(LiveView.computed_at, LiveView.scope)).one()
    assert row == (NOW, "08")
    assert reading(engine, settings, NOW) == first

    publish(engine, settings, NOW + timedelta(seconds=2))
    assert reading(engine, settings, NOW)["summary"]["open"] == first["summary"]["open"] + 7


def _kpi_value(children: Any, key: str) -> Any:
    """The value text of the wall's KPI tile ``key`` in a callback response's components."""
    if isinstance(children, list):
        for child in children:
            found = _kpi_value(child, key)
            if found is not None:
                return found
        return None
    if not isinstance(children, dict):
        return None
    props = children.get("props", {})
    if props.get("data-kpi") == key:
        return _kpi_value_text(props.get("children"))
    return _kpi_value(props.get("children"), key)


def _kpi_value_text(children: Any) -> Any:
    for child in children if isinstance(children, list) else [children]:
        if isinstance(child, dict):
            props = child.get("props", {})
            if "kpi-value" in (props.get("className") or "").split():
                return props.get("children")
            found = _kpi_value_text(props.get("children"))
            if found is not None:
                return found
    return None


def test_the_wall_the_queue_view_and_the_api_show_the_stored_reading(
    seeded: tuple[Engine, Settings], db_url: str
) -> None:
    engine, settings = seeded
    view = publish(engine, settings, NOW - timedelta(seconds=2))
    # Figures no computation of this database gives: whatever shows them read the stored row.
    view["summary"]["open"] += 100_000
    view["summary"]["queue_waiting"] += 77
    thuong_lam = next(c for c in view["communes"] if c["code"] == THUONG_LAM)
    thuong_lam["queue_waiting"] += 77
    with session_factory(engine).begin() as session:
        session.execute(update(LiveView).values(document=dumps(view)))
    client = create_app(load_settings(database_url=db_url), clock=lambda: NOW).server.test_client()

    out = wall_tick(client, tick=None, measure="overdue", built=None).get_json()["response"]
    assert _kpi_value(out[ids.WALL_KPIS]["children"], "open") == fmt_int(
        view["summary"]["open"], "vi"
    )
    assert client.get("/api/v1/summary").get_json()["open"] == view["summary"]["open"]
    communes = client.get("/api/v1/communes").get_json()
    assert {c["code"]: c["queue_waiting"] for c in communes} == {
        c["code"]: c["queue_waiting"] for c in view["communes"]
    }
    queue = queue_tick(client)
    expected = total_tiles(queue_totals(view["communes"], view["summary"]), "vi")
    assert queue[ids.QUEUE_TOTALS]["children"] == json.loads(to_json_plotly(expected))


@pytest.mark.broker
def test_the_alert_engine_leader_stores_the_reading_every_few_seconds(
    sqlite_url: str, mosquitto: Mosquitto
) -> None:
    engine = make_engine(sqlite_url)
    seed_province(engine, collector_beat_age_s=0)
    settings = load_settings(
        database_url=sqlite_url,
        mqtt_url=mosquitto.url,
        policy_file=None,
        alerts_lease_s=2.0,
        live_view_s=0.5,
    )
    stop = threading.Event()
    thread = threading.Thread(target=run_engine, args=(settings, stop), daemon=True)
    thread.start()

    def stored() -> Any:
        with session_factory(engine)() as session:
            return session.execute(select(LiveView.computed_at, LiveView.document)).first()

    try:
        deadline = time.monotonic() + 20
        while stored() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        first = stored()
        assert first is not None, "no reading stored within 20 s"
        time.sleep(1.5)
        second = stored()
        assert second.computed_at > first.computed_at  # kept current, every live_view_s
        assert abs(datetime.now(UTC) - second.computed_at) < timedelta(seconds=5)
        # The province's figures at that instant, as a request would compute them.
        document = loads(second.document)
        fresh = computed(engine, settings, second.computed_at)
        for key in ("open", "overdue", "due_soon", "queue_waiting", "centres_online"):
            assert document["summary"][key] == fresh["summary"][key], key
        assert [c["code"] for c in document["communes"]] == [c["code"] for c in fresh["communes"]]
    finally:
        stop.set()
        thread.join(30)
        engine.dispose()
    assert not thread.is_alive()
