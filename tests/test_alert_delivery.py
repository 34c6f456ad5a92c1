"""Delivery through the outbox: a real Mosquitto, a real paho client at the commune centre,
a local webhook receiver. At least once, in the face of crashes and a broker that goes away."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select

from alerts.engine import evaluate, run
from alerts.notifiers import WebhookSender, email_from_settings
from alerts.outbox import deliver_outbox
from alerts.policy import parse_policy
from control_center.models import Alert, Heartbeat, OutboxMessage, SummarySnapshot
from tests.conftest import free_port
from tests.test_alert_engine import CAL, CODE, COMMUNE, POLICY, World, dossier, local, make_world

pytestmark = pytest.mark.broker

NOW = local(2026, 11, 27, 17)  # Friday 17:00: a dossier due Monday 17:00 is "1 working day left"


def running_clock(start: datetime) -> Callable[[], datetime]:
    """Wall time moving forward from ``start`` so that retry backoff elapses in the test."""
    t0 = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - t0)


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached")


@contextmanager
def alert_engine(world: World, clock: Callable[[], datetime]) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(
        target=run, args=(world.settings, stop), kwargs={"clock": clock, "policy": POLICY}
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(15)
        assert not thread.is_alive()


class Centre:
    """A commune centre's software: subscribes to its alerts topic, keeps its session."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self.topic = topic
        self.subscribed = threading.Event()
        self.client = Client(
            CallbackAPIVersion.VERSION2, client_id=f"centre-{uuid.uuid4().hex[:8]}", protocol=5
        )
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def _on_connect(self, client: Client, *_args: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, _c: Client, _u: Any, msg: MQTTMessage) -> None:
        self.messages.append(json.loads(msg.payload))

    def ack(self, alert_id: str, by: str, province: str = "08", commune: str = COMMUNE) -> None:
        body = {"alert_id": alert_id, "by": by, "occurred_at": "2026-11-27T17:02:00+07:00"}
        info = self.client.publish(
            f"dvc/v1/{province}/{commune}/alerts/ack", json.dumps(body), qos=1
        )
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def world(sqlite_url: str, mosquitto: Any) -> Iterator[World]:
    w = make_world(sqlite_url, mqtt_url=mosquitto.url, alerts_interval_s=0.2)
    yield w
    w.engine.dispose()


def alert_count(world: World) -> int:
    with world.factory() as s:
        return s.scalar(select(func.count()).select_from(Alert)) or 0


def test_the_centre_receives_its_alert_and_its_ack_is_recorded(
    world: World, mosquitto: Any
) -> None:
    world.add(dossier(due=local(2026, 11, 30, 17)))
    centre = Centre(mosquitto.port, f"dvc/v1/08/{COMMUNE}/alerts")
    try:
        with alert_engine(world, running_clock(NOW)):
            wait_until(lambda: centre.messages)
            [msg] = centre.messages
            assert msg["kind"] == "due_soon" and msg["level"] == 1 and msg["state"] == "open"
            assert msg["dossier_code"] == CODE and msg["commune_code"] == COMMUNE
            assert "còn 1 ngày làm việc" in msg["message"]
            centre.ack(msg["alert_id"], "Bộ phận một cửa xã Thượng Lâm")
            wait_until(lambda: world.alerts()[0].state == "acknowledged")
            wait_until(lambda: world.outbox()[0].sent_at is not None)
        [alert] = world.alerts()
        assert alert.acknowledged_by == "Bộ phận một cửa xã Thượng Lâm"
        assert alert.acknowledged_at == local(2026, 11, 27, 17, 2)
        with world.factory() as s:
            beat = s.get(Heartbeat, "alerts")
            assert beat is not None and beat.info.get("mqtt_connected") is True
            # The cycle also snapshots the wall's figures ("same time yesterday" tomorrow).
            [snapshot] = s.scalars(select(SummarySnapshot))
            assert snapshot.scope == "08" and snapshot.taken_at >= NOW
            assert {"open", "overdue", "due_soon", "centres_online"} <= set(snapshot.figures)
    finally:
        centre.close()


def test_an_ack_published_by_another_commune_is_ignored(world: World, mosquitto: Any) -> None:
    world.add(dossier(due=local(2026, 11, 30, 17)))
    centre = Centre(mosquitto.port, f"dvc/v1/08/{COMMUNE}/alerts")
    try:
        with alert_engine(world, running_clock(NOW)):
            wait_until(lambda: centre.messages)
            alert_id = centre.messages[0]["alert_id"]
            centre.ack(alert_id, "someone", commune="02272")
            centre.ack(str(uuid.uuid4()), "someone")  # unknown alert
            centre.ack(alert_id, "Đúng xã")  # then the right one, to know both were processed
            wait_until(lambda: world.alerts()[0].state == "acknowledged")
        assert world.alerts()[0].acknowledged_by == "Đúng xã"
    finally:
        centre.close()


def test_a_crash_between_deciding_and_sending_still_delivers_once(
    world: World, mosquitto: Any
) -> None:
    world.add(dossier(due=local(2026, 11, 30, 17)))
    world.cycle(NOW)  # decided and committed; the process "dies" before delivering
    assert alert_count(world) == 1 and world.outbox()[0].sent_at is None
    centre = Centre(mosquitto.port, f"dvc/v1/08/{COMMUNE}/alerts")
    try:
        with alert_engine(world, running_clock(NOW + timedelta(seconds=30))):
            wait_until(lambda: world.outbox()[0].sent_at is not None)
            wait_until(lambda: centre.messages)
            time.sleep(1.0)  # a few more cycles: nothing new may appear
        assert alert_count(world) == 1
        assert [m["alert_id"] for m in centre.messages] == [str(world.alerts()[0].alert_id)]
    finally:
        centre.close()


def test_notifications_wait_for_a_broker_that_is_down_and_go_out_when_it_returns(
    world: World, mosquitto: Any
) -> None:
    centre = Centre(mosquitto.port, f"dvc/v1/08/{COMMUNE}/alerts")
    try:
        mosquitto.stop()
        world.add(dossier(due=local(2026, 11, 30, 17)))
        with alert_engine(world, running_clock(NOW)):
            row = wait_until(lambda: (r := world.outbox()) and r[0].last_error and r[0])
            assert row.sent_at is None and "not connected" in row.last_error
            mosquitto.start()
            wait_until(lambda: world.outbox()[0].sent_at is not None, timeout=60)
            wait_until(lambda: centre.messages, timeout=30)
        assert centre.messages[0]["kind"] == "due_soon"
        assert alert_count(world) == 1
    finally:
        centre.close()


# --- the outbox without a broker --------------------------------------------------------------


class FakeBroker:
    def __init__(self, connected: bool = True, fail: bool = False) -> None:
        self.connected, self.fail = connected, fail
        self.published: list[tuple[str, bytes]] = []

    def is_connected(self) -> bool:
        return self.connected

    def publish_confirmed(
        self, messages: Sequence[tuple[str, bytes]], timeout: float
    ) -> list[str | None]:
        if self.fail:
            return ["no PUBACK within timeout"] * len(messages)
        self.published.extend(messages)
        return [None] * len(messages)


@pytest.fixture
def offline_world(sqlite_url: str) -> Iterator[World]:
    w = make_world(sqlite_url)
    yield w
    w.engine.dispose()


def test_a_flood_is_capped_per_topic_per_pass_and_nothing_is_lost(offline_world: World) -> None:
    policy = POLICY.delivery.model_copy(update={"mqtt_per_topic_per_cycle": 4})
    offline_world.add(*[dossier(f"D-{i:03}", due=local(2026, 11, 30, 17)) for i in range(10)])
    offline_world.cycle(NOW)
    broker = FakeBroker()
    sent_per_pass = []
    for _ in range(3):
        with offline_world.factory() as s, s.begin():
            sent_per_pass.append(deliver_outbox(s, NOW, policy, mqtt=broker).sent)
    assert sent_per_pass == [4, 4, 2]
    assert len({json.loads(p)["alert_id"] for _, p in broker.published}) == 10


def test_a_backlog_of_one_commune_does_not_hold_up_the_others(offline_world: World) -> None:
    # 30 alerts of Thượng Lâm were written first, then one of another commune: the other
    # commune's alert goes out in the first pass, not after Thượng Lâm's backlog.
    policy = POLICY.delivery.model_copy(update={"mqtt_per_topic_per_cycle": 4})
    offline_world.add(*[dossier(f"D-{i:03}", due=local(2026, 11, 30, 17)) for i in range(30)])
    offline_world.cycle(NOW)
    offline_world.add(dossier("E-001", due=local(2026, 11, 30, 17), commune_code="02272"))
    offline_world.cycle(NOW + timedelta(seconds=10))
    broker = FakeBroker()
    with offline_world.factory() as s, s.begin():
        assert (
            deliver_outbox(s, NOW + timedelta(seconds=10), policy, mqtt=broker, limit=8).sent == 5
        )
    topics = [topic for topic, _ in broker.published]
    assert topics.count(f"dvc/v1/08/{COMMUNE}/alerts") == 4
    assert "dvc/v1/08/02272/alerts" in topics


def overdue_2d(offline_world: World, n: int, commune: str = COMMUNE) -> None:
    offline_world.add(
        *[
            dossier(f"{commune}-{i:03}", due=local(2026, 11, 20, 17), commune_code=commune)
            for i in range(n)
        ]
    )


def province_messages(offline_world: World) -> list[dict[str, Any]]:
    return [m.payload for m in offline_world.outbox() if m.target == "dvc/v1/08/province/alerts"]


def test_a_few_province_alerts_reach_the_province_desk_one_by_one(offline_world: World) -> None:
    overdue_2d(offline_world, 3)
    offline_world.cycle(local(2026, 11, 26, 9))  # 3 working days late: overdue_2d, level 3
    desk = province_messages(offline_world)
    assert [m["kind"] for m in desk] == ["overdue_2d"] * 3
    assert all(m["level"] == 3 and m["state"] == "open" for m in desk)


def test_a_backlog_reaches_the_province_desk_as_one_digest_per_commune(
    offline_world: World,
) -> None:
    overdue_2d(offline_world, 40)
    overdue_2d(offline_world, 2, commune="02272")
    offline_world.cycle(local(2026, 11, 26, 9))
    desk = province_messages(offline_world)
    digests = [m for m in desk if m.get("type") == "alert_digest"]
    assert len(digests) == 1 and len(desk) == 3  # Thượng Lâm digested; 02272's two one by one
    [digest] = digests
    assert digest["commune_code"] == COMMUNE and digest["count"] == 40
    assert digest["kinds"] == {"overdue_2d": 40} and digest["truncated"] is False
    assert digest["alerts_topic"] == f"dvc/v1/08/{COMMUNE}/alerts"
    assert "Xã Thượng Lâm" in digest["message"] or COMMUNE in digest["message"]
    assert len(json.dumps(digest, ensure_ascii=False).encode()) < 64 * 1024
    # Every alert's own payload is still published, on the commune's topic.
    level3 = {a.alert_id for a in offline_world.alerts(level=3, commune_code=COMMUNE)}
    assert {uuid.UUID(i) for i in digest["alert_ids"]} == level3
    on_commune = [
        m.payload
        for m in offline_world.outbox()
        if m.target == f"dvc/v1/08/{COMMUNE}/alerts" and m.payload.get("level") == 3
    ]
    assert {uuid.UUID(p["alert_id"]) for p in on_commune} == level3
    # When one of them resolves, the topic that heard it open hears it resolved.
    broker = FakeBroker()
    for _ in range(10):
        with offline_world.factory() as s, s.begin():
            deliver_outbox(s, local(2026, 11, 26, 9, 1), POLICY.delivery, mqtt=broker)
    offline_world.set_dossier(f"{COMMUNE}-000", is_open=False, status=10)
    offline_world.cycle(local(2026, 11, 26, 9, 5))
    resolved = [
        m for m in offline_world.outbox() if m.sent_at is None and m.payload.get("level") == 3
    ]
    assert [(m.target, m.payload["state"]) for m in resolved] == [
        (f"dvc/v1/08/{COMMUNE}/alerts", "resolved")
    ]


def test_an_unconfirmed_publish_is_retried_with_growing_backoff(offline_world: World) -> None:
    offline_world.add(dossier(due=local(2026, 11, 30, 17)))
    offline_world.cycle(NOW)
    broker = FakeBroker(fail=True)
    now = NOW
    waits = []
    for _ in range(3):
        with offline_world.factory() as s, s.begin():
            deliver_outbox(s, now, POLICY.delivery, mqtt=broker)
        [row] = offline_world.outbox()
        waits.append((row.next_attempt_at - now).total_seconds())
        with offline_world.factory() as s, s.begin():  # not yet due: nothing is tried
            assert deliver_outbox(s, now, POLICY.delivery, mqtt=broker).failed == 0
        now = row.next_attempt_at
    assert waits == [2.0, 4.0, 8.0]
    [row] = offline_world.outbox()
    assert row.sent_at is None and row.attempts == 3
    broker.fail = False
    with offline_world.factory() as s, s.begin():
        assert deliver_outbox(s, now, POLICY.delivery, mqtt=broker).sent == 1


# --- webhook ----------------------------------------------------------------------------------


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    status = 204

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers), body))
        self.send_response(Receiver.status)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    Receiver.received, Receiver.status = [], 204
    server = HTTPServer(("127.0.0.1", free_port()), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    server.server_close()


def test_leadership_gets_one_signed_webhook_digest_per_commune_per_cycle(
    sqlite_url: str, webhook: str
) -> None:
    w = make_world(sqlite_url, alerts_webhook_url=webhook, alerts_webhook_secret="s3cret")
    w.add(
        dossier("A", due=local(2026, 11, 26, 17)),
        dossier("B", due=local(2026, 11, 26, 16)),
    )
    now = local(2026, 11, 27, 9)  # both one working hour late at most: level 2 only
    w.cycle(now)
    sender = WebhookSender("s3cret")
    with w.factory() as s, s.begin():
        result = deliver_outbox(s, now, POLICY.delivery, mqtt=FakeBroker(), webhook=sender)
    assert result.failed == 0
    [(headers, body)] = Receiver.received
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Signature"] == f"sha256={expected}"
    digest = json.loads(body)
    assert digest["commune_code"] == COMMUNE and digest["level"] == 2
    assert sorted((a["dossier_code"], a["kind"]) for a in digest["alerts"]) == [
        ("A", "apology_missing"),
        ("A", "overdue"),
        ("B", "apology_missing"),
        ("B", "overdue"),
    ]
    w.engine.dispose()


def test_a_failing_webhook_is_kept_and_retried(sqlite_url: str, webhook: str) -> None:
    Receiver.status = 500
    w = make_world(sqlite_url, alerts_webhook_url=webhook)
    w.add(dossier(due=local(2026, 11, 26, 17)))
    now = local(2026, 11, 27, 9)
    w.cycle(now)
    with w.factory() as s, s.begin():
        deliver_outbox(s, now, POLICY.delivery, mqtt=FakeBroker(), webhook=WebhookSender(None))
    with w.factory() as s:
        [row] = s.scalars(select(OutboxMessage).where(OutboxMessage.channel == "webhook"))
    assert row.sent_at is None and row.attempts == 1 and "500" in (row.last_error or "")
    Receiver.status = 204
    with w.factory() as s, s.begin():
        deliver_outbox(
            s, row.next_attempt_at, POLICY.delivery, mqtt=FakeBroker(), webhook=WebhookSender(None)
        )
    assert len(Receiver.received) == 2
    w.engine.dispose()


# --- e-mail -----------------------------------------------------------------------------------


class SmtpSink:
    """A minimal SMTP server on 127.0.0.1 that keeps what it is sent."""

    def __init__(self) -> None:
        import socketserver

        self.mails: list[str] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(b"220 sink\r\n")
                data: list[bytes] = []
                in_data = False
                for raw in self.rfile:
                    if in_data:
                        if raw.rstrip(b"\r\n") == b".":
                            in_data = False
                            sink.mails.append(b"".join(data).decode("utf-8"))
                            self.wfile.write(b"250 queued\r\n")
                        else:
                            data.append(raw)
                        continue
                    verb = raw[:4].upper()
                    if verb == b"DATA":
                        in_data, data = True, []
                        self.wfile.write(b"354 go\r\n")
                    elif verb == b"QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    elif verb == b"EHLO":
                        self.wfile.write(b"250-sink\r\n250 8BITMIME\r\n")
                    else:
                        self.wfile.write(b"250 ok\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_province_gets_an_email_digest(sqlite_url: str) -> None:
    sink = SmtpSink()
    try:
        doc = POLICY.model_dump(mode="json")
        doc["levels"]["3"]["email_to"] = ["vanphong@tuyenquang.example"]
        policy = parse_policy(doc)
        w = make_world(sqlite_url, smtp_url=sink.url)
        w.add(dossier(due=local(2026, 11, 20, 17)))
        now = local(2026, 11, 26, 9)
        with w.factory() as s, s.begin():
            evaluate(s, w.settings, CAL, now, policy)
        with w.factory() as s, s.begin():
            deliver_outbox(
                s, now, policy.delivery, mqtt=FakeBroker(), email=email_from_settings(w.settings)
            )
        [raw] = sink.mails  # one digest: the only level-3 alert is overdue_2d
        mail = email.message_from_string(raw, policy=email.policy.default)
        assert mail["To"] == "vanphong@tuyenquang.example"
        assert mail["Subject"] == f"[Cảnh báo cấp 3] {COMMUNE}: 1 cảnh báo mới"
        assert "[overdue_2d] Hồ sơ 000.00.22.H56-251123-0001" in mail.get_content()
        w.engine.dispose()
    finally:
        sink.close()
