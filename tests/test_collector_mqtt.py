"""The collector against a real Mosquitto: nothing lost, nothing doubled, whatever fails."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

from collectors import service
from collectors.ingest import InboundMessage, Ingestor
from collectors.metrics import CollectorMetrics
from collectors.service import Collector
from collectors.worker import Received
from control_center import models as m
from control_center.settings import Settings
from tests.conftest import free_port
from tests.test_ingest import (
    COMMUNES,
    PROVINCE,
    assert_aggregates_consistent,
    dossier_event,
    make_settings,
    prepare_database,
)

pytestmark = pytest.mark.broker
REPO = Path(__file__).resolve().parents[1]


def stream(n_dossiers: int, prefix: str) -> list[tuple[str, bytes]]:
    """Two events per dossier (received, then completed), spread over the communes."""
    out = []
    for i in range(n_dossiers):
        code = f"{prefix}-{i:05d}"
        commune = COMMUNES[i % len(COMMUNES)]
        topic = f"dvc/v1/{PROVINCE}/{commune}/dossier"
        hours = (i % 200) * 0.5
        for etype, extra, dt in (
            ("received", {"procedure_code": "1.001193", "channel": "online"}, 0.0),
            ("completed", {}, 30.0),
        ):
            payload = dossier_event(f"{code}-{etype}", etype, code, hours + dt, commune, **extra)
            out.append((topic, json.dumps(payload).encode()))
    return out


def publish(
    port: int, messages: list[tuple[str, bytes]], auth: tuple[str, str] | None = None
) -> None:
    """Publish with QoS 1 and wait until the broker has accepted every message."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    if auth:
        client.username_pw_set(*auth)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(t, p, qos=1) for t, p in messages]
        for info in infos:
            info.wait_for_publish(timeout=30)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def count(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model.__table__)).scalar_one()


def wait_until(check: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}")


@dataclass
class Running:
    collector: Collector
    stop: threading.Event
    thread: threading.Thread

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(15)
        assert not self.thread.is_alive()


def start(settings: Settings, engine: Engine) -> Running:
    stop = threading.Event()
    collector = Collector(settings, Ingestor(engine, settings), CollectorMetrics(), stop)
    thread = threading.Thread(target=collector.run, daemon=True)
    thread.start()
    wait_until(collector.subscribed.is_set, what="collector subscribed")
    return Running(collector, stop, thread)


def settings_for(db_url: str, broker: Any, **kw: Any) -> Settings:
    return make_settings(
        db_url,
        mqtt_url=kw.pop("mqtt_url", broker.url),
        mqtt_client_id=kw.pop("client_id", "cc-test-collector"),
        collector_batch_seconds=0.05,
        **kw,
    )


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = prepare_database(sqlite_url)
    yield engine
    engine.dispose()


def test_published_events_are_stored_and_acknowledged(
    mosquitto: Any, sqlite_url: str, sqlite_engine: Engine
) -> None:
    running = start(settings_for(sqlite_url, mosquitto), sqlite_engine)
    try:
        publish(
            mosquitto.port, [*stream(100, "E2E"), (f"dvc/v1/08/{COMMUNES[0]}/dossier", b"nope")]
        )
        wait_until(lambda: count(sqlite_engine, m.DossierEvent) == 200, what="200 events")
        wait_until(lambda: count(sqlite_engine, m.DeadLetter) == 1, what="the dead letter")
        wait_until(lambda: count(sqlite_engine, m.Heartbeat) == 1, what="a heartbeat")
    finally:
        running.halt()
    assert count(sqlite_engine, m.Dossier) == 100
    assert_aggregates_consistent(sqlite_engine)
    assert running.collector.totals.stored == 200
    # Acknowledged: a new session with the same id gets nothing redelivered.
    again = start(settings_for(sqlite_url, mosquitto), sqlite_engine)
    time.sleep(1.0)
    again.halt()
    assert again.collector.totals.received == 0


def test_broker_restart_mid_stream_loses_nothing(
    mosquitto: Any, sqlite_url: str, sqlite_engine: Engine
) -> None:
    settings = settings_for(sqlite_url, mosquitto)
    running = start(settings, sqlite_engine)
    try:
        publish(mosquitto.port, stream(300, "R1"))
        mosquitto.restart()  # part of the stream may still be unacknowledged
        publish(mosquitto.port, stream(300, "R2"))
        wait_until(lambda: count(sqlite_engine, m.DossierEvent) == 1200, what="phase 1")
    finally:
        running.halt()
    # While the collector is away the broker queues for its persistent session, across a
    # broker restart too.
    publish(mosquitto.port, stream(300, "R3"))
    mosquitto.restart()
    running = start(settings, sqlite_engine)
    try:
        wait_until(lambda: count(sqlite_engine, m.DossierEvent) == 1800, what="queued backlog")
    finally:
        running.halt()
    assert count(sqlite_engine, m.Dossier) == 900
    assert_aggregates_consistent(sqlite_engine)


def as_received(msg: InboundMessage) -> Received:
    """An :class:`InboundMessage` as paho's thread would have enqueued it (QoS 1)."""
    return (msg.topic.encode(), msg.payload, msg.arrived_at.timestamp(), 0, 1, 1, msg.retained)


def test_the_ingest_process_stores_and_every_message_is_acknowledged(
    mosquitto: Any, db_url: str
) -> None:
    """The production path (``service.run``: the ingest child, batches sent as columns, the
    batch's PUBACKs as one write): stored, dead-lettered, and nothing left to redeliver."""
    engine = prepare_database(db_url)
    settings = settings_for(db_url, mosquitto, client_id="cc-test-child", collector_batch_size=64)
    start(settings, engine).halt()  # the persistent session: the broker queues from now on
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(settings, stop), daemon=True)
    thread.start()
    try:
        publish(
            mosquitto.port,
            [*stream(150, "CH"), (f"dvc/v1/08/{COMMUNES[0]}/dossier", b"\xff not utf-8")],
        )
        wait_until(lambda: count(engine, m.DossierEvent) == 300, what="300 events")
        wait_until(lambda: count(engine, m.DeadLetter) == 1, what="the dead letter")
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    with engine.connect() as conn:
        reason = conn.execute(select(m.DeadLetter.reason)).scalar_one()
        arrived = conn.execute(select(func.min(m.DossierEvent.arrived_at))).scalar_one()
    assert reason == "not_utf8"
    assert arrived is not None
    assert count(engine, m.Dossier) == 150
    assert_aggregates_consistent(engine)
    # Every message was acknowledged: the same session gets nothing redelivered.
    again = start(settings, engine)
    time.sleep(1.0)
    again.halt()
    assert again.collector.totals.received == 0
    engine.dispose()


def collector_process(
    settings: Settings, log: Path, metrics_port: int | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CC_DATABASE_URL": settings.database_url,
        "CC_MQTT_URL": settings.mqtt_url.get_secret_value() if settings.mqtt_url else "",
        "CC_MQTT_CLIENT_ID": settings.mqtt_client_id,
        "CC_PROVINCE": settings.province,
        "CC_COLLECTOR_BATCH_SIZE": "50",
        "CC_LOG_LEVEL": "INFO",
    }
    if metrics_port:
        env["CC_COLLECTOR_METRICS_PORT"] = str(metrics_port)
    return subprocess.Popen(
        [sys.executable, "-m", "collectors"],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def child_pids(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def metrics_text(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def test_killed_collector_process_loses_and_doubles_nothing(
    mosquitto: Any, sqlite_url: str, sqlite_engine: Engine, tmp_path: Path
) -> None:
    settings = settings_for(sqlite_url, mosquitto, client_id="cc-test-kill")
    log = tmp_path / "collector.log"
    proc = collector_process(settings, log)
    wait_until(lambda: "subscribed" in log.read_text(), what="collector subscribed")
    messages = stream(1500, "K")
    try:
        publisher = threading.Thread(target=publish, args=(mosquitto.port, messages))
        publisher.start()
        wait_until(lambda: count(sqlite_engine, m.DossierEvent) >= 300, 20, "first batches")
        children = child_pids(proc.pid)
        assert children, "the ingest child process should be running"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # The ingest child notices its parent is gone and exits by itself.
        wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), 10)
        stored_at_kill = count(sqlite_engine, m.DossierEvent)
        publisher.join(30)
        assert stored_at_kill < len(messages), "kill came too late to prove anything"
        port = free_port()
        proc = collector_process(settings, log, metrics_port=port)
        wait_until(lambda: count(sqlite_engine, m.DossierEvent) == 3000, 20, "all events")
        # The restarted process stored exactly what the killed one had not.
        wait_until(
            lambda: (
                f"cc_collector_stored_total {float(3000 - stored_at_kill)}" in metrics_text(port)
            ),
            what="the stored counter on /metrics",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    with sqlite_engine.connect() as conn:
        events_total = conn.execute(select(func.sum(m.CentreFeed.events_total))).scalar_one()
    assert events_total == 3000  # each event applied once
    assert count(sqlite_engine, m.Dossier) == 1500
    assert_aggregates_consistent(sqlite_engine)
    assert proc.returncode == 0, log.read_text()[-2000:]


def test_locked_sqlite_database_delays_but_loses_nothing(
    mosquitto: Any, sqlite_url: str, sqlite_engine: Engine
) -> None:
    running = start(settings_for(sqlite_url, mosquitto), sqlite_engine)
    locker = sqlite3.connect(make_url(sqlite_url).database, timeout=1)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        publish(mosquitto.port, stream(100, "L"))
        time.sleep(1.5)
        locker.rollback()
        wait_until(lambda: count(sqlite_engine, m.DossierEvent) == 200, what="events after unlock")
    finally:
        locker.close()
        running.halt()
    assert_aggregates_consistent(sqlite_engine)


@pytest.mark.postgres
def test_unreachable_postgres_is_retried_without_loss(mosquitto: Any, pg_url: str) -> None:
    engine = prepare_database(pg_url)
    name = make_url(pg_url).database
    admin = create_engine(make_url(pg_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    running = start(settings_for(pg_url, mosquitto), engine)
    try:
        publish(mosquitto.port, stream(50, "P0"))
        wait_until(lambda: count(engine, m.DossierEvent) == 100, what="before the outage")
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
        publish(mosquitto.port, stream(150, "P1"))
        registry = running.collector.metrics.registry
        wait_until(
            lambda: (registry.get_sample_value("cc_collector_db_retries_total") or 0) >= 2,
            what="retries during the outage",
        )
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        wait_until(lambda: count(engine, m.DossierEvent) == 400, what="events after the outage")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        running.halt()
        admin.dispose()
    assert count(engine, m.Dossier) == 200
    assert_aggregates_consistent(engine)
    engine.dispose()


def test_shared_subscription_group_stores_each_event_once(mosquitto: Any, db_url: str) -> None:
    engine = prepare_database(db_url)
    one = start(settings_for(db_url, mosquitto, client_id="cc-a", mqtt_shared_group="cc"), engine)
    two = start(settings_for(db_url, mosquitto, client_id="cc-b", mqtt_shared_group="cc"), engine)
    try:
        publish(mosquitto.port, stream(500, "S"))
        wait_until(lambda: count(engine, m.Dossier) == 500, 20, "all dossiers")
        with engine.connect() as conn:
            completed = conn.execute(
                select(func.count()).select_from(m.Dossier).where(m.Dossier.is_open.is_(False))
            ).scalar_one()
        wait_until(lambda: count(engine, m.DossierEvent) == 1000, what="all events")
    finally:
        one.halt()
        two.halt()
    received = one.collector.totals.received, two.collector.totals.received
    assert sum(received) == 1000 and min(received) > 0  # split, not copied
    assert one.collector.totals.duplicates + two.collector.totals.duplicates == 0
    with engine.connect() as conn:
        completed = conn.execute(
            select(func.count()).select_from(m.Dossier).where(m.Dossier.is_open.is_(False))
        ).scalar_one()
    # Both events of a dossier may land on different collectors: the state must see both.
    assert completed == 500
    assert_aggregates_consistent(engine)
    engine.dispose()


def test_a_message_the_collector_fails_on_is_dead_lettered_not_blocking(
    sqlite_url: str, sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collectors import ingest
    from tests.test_ingest import msg

    real = ingest.dd.derive_state

    def derive_with_a_bug(code: str, *args: Any, **kwargs: Any) -> Any:
        if code == "POISON":
            raise ZeroDivisionError("bug in the fold")
        return real(code, *args, **kwargs)

    monkeypatch.setattr(ingest.dd, "derive_state", derive_with_a_bug)
    settings = make_settings(sqlite_url)
    collector = Collector(
        settings, Ingestor(sqlite_engine, settings), CollectorMetrics(), threading.Event()
    )
    received = {"procedure_code": "1.001193"}
    batch = [
        msg(dossier_event("ok-1", "received", "FINE-1", 1, **received)),
        msg(dossier_event("bad-1", "received", "POISON", 2, **received)),
        msg(dossier_event("ok-2", "received", "FINE-2", 3, **received)),
    ]
    assert collector.commit([as_received(m) for m in batch])
    with sqlite_engine.connect() as conn:
        letters = conn.execute(
            select(m.DeadLetter.reason, m.DeadLetter.detail, m.DeadLetter.payload_excerpt)
        ).all()
        stored = set(conn.execute(select(m.Dossier.dossier_code)).scalars())
    assert stored == {"FINE-1", "FINE-2"}
    assert len(letters) == 1 and letters[0].reason == "processing_error"
    assert "ZeroDivisionError" in letters[0].detail
    assert letters[0].payload_excerpt == batch[1].payload.decode()  # kept whole, replayable


class GatedIngestor(Ingestor):
    """An ingestor whose database is 'slow' until the gate opens."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()

    def process(self, batch: Any) -> Any:
        self.gate.wait(30)
        return super().process(batch)


def test_a_full_queue_pushes_back_to_the_broker_and_loses_nothing(
    mosquitto: Any, sqlite_url: str, sqlite_engine: Engine
) -> None:
    settings = settings_for(sqlite_url, mosquitto, collector_queue_max=20, collector_batch_size=10)
    stop = threading.Event()
    ingestor = GatedIngestor(sqlite_engine, settings)
    collector = Collector(settings, ingestor, CollectorMetrics(), stop)
    thread = threading.Thread(target=collector.run, daemon=True)
    thread.start()
    wait_until(collector.subscribed.is_set, what="collector subscribed")
    try:
        publish(mosquitto.port, stream(300, "BP"))  # the broker accepted all 600
        wait_until(lambda: collector.inbox.full(), what="the in-memory queue to fill")
        depths = []
        for _ in range(20):  # the database stays slow: memory must not grow with the backlog
            depths.append(collector.inbox.qsize())
            time.sleep(0.05)
        assert max(depths) <= 20
        assert count(sqlite_engine, m.DossierEvent) == 0
        ingestor.gate.set()
        wait_until(lambda: count(sqlite_engine, m.DossierEvent) == 600, 30, "the whole backlog")
    finally:
        ingestor.gate.set()
        stop.set()
        thread.join(15)
    assert collector.totals.stored == 600 and collector.totals.duplicates == 0
    assert count(sqlite_engine, m.Dossier) == 300
    assert_aggregates_consistent(sqlite_engine)


def password_broker(mosquitto: Any, user: str, password: str) -> None:
    """Restart the test's broker with anonymous access off and one user in a password file."""
    passwords = mosquitto.workdir / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), user, password],
        check=True,
        capture_output=True,
    )
    passwords.chmod(0o600)
    conf = mosquitto.conf.read_text().replace(
        "allow_anonymous true", f"allow_anonymous false\npassword_file {passwords}"
    )
    mosquitto.conf.write_text(conf)
    mosquitto.restart()


def test_username_and_password_come_from_the_mqtt_url(
    mosquitto: Any, sqlite_url: str, sqlite_engine: Engine
) -> None:
    password = "p@ss:w/rd ơ"  # percent-encoded in the URL
    password_broker(mosquitto, "collector", password)
    port = mosquitto.port
    quoted = urllib.parse.quote(password, safe="")

    wrong = settings_for(sqlite_url, mosquitto, mqtt_url=f"mqtt://collector:nope@127.0.0.1:{port}")
    stop = threading.Event()
    refused = Collector(wrong, Ingestor(sqlite_engine, wrong), CollectorMetrics(), stop)
    thread = threading.Thread(target=refused.run, daemon=True)
    thread.start()
    time.sleep(1.5)
    assert not refused.subscribed.is_set()  # a wrong password gets nowhere
    stop.set()
    thread.join(15)

    settings = settings_for(
        sqlite_url, mosquitto, mqtt_url=f"mqtt://collector:{quoted}@127.0.0.1:{port}"
    )
    running = start(settings, sqlite_engine)
    try:
        publish(port, stream(20, "AUTH"), auth=("collector", password))
        wait_until(lambda: count(sqlite_engine, m.DossierEvent) == 40, what="authenticated stream")
    finally:
        running.halt()
    assert count(sqlite_engine, m.Dossier) == 20


def test_mqtt_311_keeps_a_persistent_session_across_restarts(
    mosquitto: Any, sqlite_url: str, sqlite_engine: Engine
) -> None:
    settings = settings_for(sqlite_url, mosquitto, mqtt_protocol="3.1.1", client_id="cc-311")
    running = start(settings, sqlite_engine)
    try:
        assert running.collector.client.protocol == mqtt.MQTTv311
        publish(mosquitto.port, stream(50, "V3A"))
        wait_until(lambda: count(sqlite_engine, m.DossierEvent) == 100, what="live events")
    finally:
        running.halt()
    # Away: clean_session=False keeps the subscription, and the broker queues for it.
    publish(mosquitto.port, stream(50, "V3B"))
    mosquitto.restart()
    running = start(settings, sqlite_engine)
    try:
        wait_until(lambda: count(sqlite_engine, m.DossierEvent) == 200, what="queued backlog")
    finally:
        running.halt()
    assert running.collector.totals.stored == 100  # only the backlog; nothing redelivered twice
    assert count(sqlite_engine, m.Dossier) == 100
    assert_aggregates_consistent(sqlite_engine)
