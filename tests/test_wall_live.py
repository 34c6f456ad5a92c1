"""The wall end to end: a commune centre publishes over MQTT, the real collector stores it, the
wall in headless Chromium shows it; the collector stops, the wall says its data is old.

The collector is ``collectors.service.run`` (with its ingest child process) against a real
Mosquitto the test starts and the same SQLite file the wall reads.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from collectors import service
from control_center.app import create_app
from control_center.db import make_engine
from control_center.domain.calendar import LOCAL_TZ
from control_center.settings import Settings, load_settings
from layouts import ids
from layouts.format import fmt_int
from tests.conftest import free_port
from tests.test_wall_browser import api_summary, kpi_value, set_viewport, severe_errors, text
from tests.wall_seed import NOW, THUONG_LAM, seed_province

pytest_plugins = ["tests.browser_plugin"]
pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]

STALE_AFTER_S = 60


class Clock:
    """The wall's clock: the seeded morning, until the test moves it on."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class RunningCollector:
    def __init__(self, settings: Settings) -> None:
        self.stop_event = threading.Event()
        self.thread = threading.Thread(
            target=service.run, args=(settings, self.stop_event), daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "collector did not stop"


@pytest.fixture
def live(tmp_path: Path, mosquitto: Any) -> Iterator[tuple[Settings, RunningCollector]]:
    url = f"sqlite:///{tmp_path / 'cc.db'}"
    engine = make_engine(url)
    seed_province(engine)
    engine.dispose()
    settings = load_settings(
        database_url=url,
        mqtt_url=mosquitto.url,
        mqtt_client_id=f"wall-test-{uuid.uuid4().hex[:8]}",
        collector_batch_seconds=0.05,
        wall_refresh_s=2,
        wall_stale_after_s=STALE_AFTER_S,
    )
    collector = RunningCollector(settings)
    try:
        yield settings, collector
    finally:
        collector.stop()


def publish(port: int, topic: str, payload: dict[str, Any]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"centre-{uuid.uuid4().hex}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def received_event(occurred_at: datetime) -> dict[str, Any]:
    code = f"000.00.22.H56-251125-{uuid.uuid4().hex[:6]}"
    return {
        "event_id": f"evt-{uuid.uuid4().hex}",
        "type": "received",
        "occurred_at": occurred_at.astimezone(LOCAL_TZ).isoformat(),
        "commune_code": THUONG_LAM,
        "dossier_code": code,
        "procedure_code": "1.001193",
        "procedure_name": "Đăng ký khai sinh",
        "sector": "Hộ tịch",
        "channel": "online",
    }


def test_an_event_published_by_a_centre_reaches_the_wall_and_silence_raises_the_banner(
    dash_duo: Any, mosquitto: Any, live: tuple[Settings, RunningCollector]
) -> None:
    settings, collector = live
    clock = Clock(NOW)
    app = create_app(settings, clock=clock)
    set_viewport(dash_duo.driver)
    dash_duo.start_server(app, port=free_port())
    before = api_summary(dash_duo)
    dash_duo.wait_for_text_to_equal(
        '[data-kpi="received_today"] .kpi-value', fmt_int(before["received_today"], "vi"), 15
    )

    publish(
        mosquitto.port,
        f"dvc/v1/08/{THUONG_LAM}/dossier",
        received_event(NOW - timedelta(minutes=1)),
    )
    # Collector batch, commit, then the wall's next 2 s tick: well within 10 s.
    dash_duo.wait_for_text_to_equal(
        '[data-kpi="received_today"] .kpi-value',
        fmt_int(before["received_today"] + 1, "vi"),
        timeout=10,
    )
    assert kpi_value(dash_duo, "open") == fmt_int(before["open"] + 1, "vi")
    assert api_summary(dash_duo)["received_today"] == before["received_today"] + 1
    assert not dash_duo.find_element(f"#{ids.WALL_STALE_BANNER}").is_displayed()

    # The collector stops; time passes beyond the threshold without a heartbeat.
    collector.stop()
    clock.now = datetime.now(UTC) + timedelta(seconds=STALE_AFTER_S + 30)
    dash_duo.wait_for_element(f"#{ids.WALL_STALE_BANNER}:not(.hidden)", timeout=10)
    assert "CẢNH BÁO" in text(dash_duo, f"#{ids.WALL_STALE_BANNER}")
    assert severe_errors(dash_duo) == []
