"""Two Mosquitto brokers bridged with the shipped ``config/mosquitto/bridge.conf``: commune
centres publish to an edge broker, the collector subscribes on the central one, alerts flow
back, and what is published while the link is down arrives once it is back."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine

from control_center import models as m
from tests.conftest import Mosquitto
from tests.test_collector_mqtt import count, publish, settings_for, start, stream, wait_until
from tests.test_ingest import COMMUNES, PROVINCE, assert_aggregates_consistent, prepare_database

pytestmark = pytest.mark.broker
BRIDGE_CONF = Path(__file__).resolve().parents[1] / "config" / "mosquitto" / "bridge.conf"


class Listener:
    """Subscribes on one broker and keeps what arrives."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"listen-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.messages.append(
            (msg.topic, bytes(msg.payload), bool(msg.retain))
        )
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        assert subscribed.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[Mosquitto, Mosquitto]]:
    """(edge, central): the central broker runs the shipped bridge file towards the edge."""
    (tmp_path / "edge").mkdir()
    (tmp_path / "central").mkdir()
    edge, central = Mosquitto(tmp_path / "edge"), Mosquitto(tmp_path / "central")
    bridge = re.sub(
        r"^address .*$",
        f"address 127.0.0.1:{edge.port}",
        BRIDGE_CONF.read_text(),
        count=1,
        flags=re.MULTILINE,
    )
    with central.conf.open("a") as conf:
        conf.write("\n" + bridge)
    edge.start()
    central.start()
    try:
        wait_for_link(central)
        yield edge, central
    finally:
        central.kill()
        edge.kill()


def wait_for_link(central: Mosquitto) -> None:
    state = Listener(central.port, "$SYS/broker/connection/control-center-bridge-edge-a/state")
    try:
        wait_until(lambda: any(p == b"1" for _t, p, _r in state.messages), 15, "bridge up")
    finally:
        state.close()


def status(commune: str) -> tuple[str, bytes]:
    body = {"state": "online", "occurred_at": "2026-11-26T09:00:00+07:00", "queue_waiting": 3}
    return f"dvc/v1/{PROVINCE}/{commune}/status", json.dumps(body).encode()


def test_events_published_on_the_edge_are_stored_by_a_collector_on_the_central_broker(
    brokers: tuple[Mosquitto, Mosquitto], db_url: str
) -> None:
    edge, central = brokers
    engine: Engine = prepare_database(db_url)
    collector = start(settings_for(db_url, central, client_id="cc-central"), engine)
    try:
        publish(edge.port, stream(100, "EDGE"))
        wait_until(lambda: count(engine, m.DossierEvent) == 200, 20, "events over the bridge")
        # Committed, then acknowledged: stopping the broker between the two is a redelivery
        # (at least once), which the collector counts as duplicates and stores once.
        wait_until(lambda: collector.collector.totals.stored == 200, 10, "acknowledged")

        # Alerts go the other way, to centres connected to the edge only.
        centre = Listener(edge.port, f"dvc/v1/{PROVINCE}/+/alerts")
        alert = {"alert_id": str(uuid.uuid4()), "kind": "overdue", "level": 1}
        publish(
            central.port, [(f"dvc/v1/{PROVINCE}/{COMMUNES[0]}/alerts", json.dumps(alert).encode())]
        )
        wait_until(lambda: len(centre.messages) == 1, 10, "alert over the bridge")
        assert json.loads(centre.messages[0][1]) == alert
        centre.close()

        # The central broker goes away; the centres keep publishing to their edge broker.
        central.stop()
        publish(edge.port, [*stream(30, "WHILE-DOWN"), status(COMMUNES[1])])
        central.start()
        wait_until(lambda: count(engine, m.DossierEvent) == 260, 30, "events queued on the edge")
        wait_until(lambda: count(engine, m.CentreFeed) >= 1, 10, "the heartbeat")
    finally:
        collector.halt()
    assert count(engine, m.Dossier) == 130
    assert collector.collector.totals.stored == 260  # every event stored once, none twice
    assert_aggregates_consistent(engine)
    engine.dispose()


def test_retained_heartbeats_stay_retained_through_the_bridge(
    brokers: tuple[Mosquitto, Mosquitto],
) -> None:
    edge, central = brokers
    topic_filter = f"dvc/v1/{PROVINCE}/+/status"
    early = Listener(central.port, topic_filter)
    publish_retained(edge.port, *status(COMMUNES[2]))
    try:  # on the central broker now (a subscriber that was there gets it live, not retained)
        wait_until(lambda: early.messages != [], 10, "status over the bridge")
    finally:
        early.close()
    late = Listener(central.port, topic_filter)  # subscribes afterwards
    try:
        wait_until(lambda: late.messages != [], 10, "retained status on the central broker")
        topic, _payload, retained = late.messages[0]
        assert topic == f"dvc/v1/{PROVINCE}/{COMMUNES[2]}/status" and retained
    finally:
        late.close()


def publish_retained(port: int, topic: str, payload: bytes) -> Any:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
