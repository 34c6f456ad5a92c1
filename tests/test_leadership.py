"""Two alert engines, one active: the database lease (SQLite and PostgreSQL).

Unit level: who may take the lease and when, and that a unit of work that sends keeps a
standby out until it committed. Process level: two real ``control-center alerts`` processes
on one database and one Mosquitto; every alert sent exactly once while the leader is killed
(SIGKILL) and while a leader frozen past its lease (SIGSTOP) wakes up again (SIGCONT).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from alerts.engine import LEASE_NAME, _deliver, _Fenced, _LeaderUnits
from alerts.policy import parse_policy
from control_center.db import transaction
from control_center.lease import Lease, LeaseLost
from control_center.models import Alert, Dossier, OutboxMessage
from control_center.models import Lease as LeaseRow
from tests.conftest import Mosquitto, free_port
from tests.test_alert_engine import COMMUNE, World, dossier, make_world

REPO = Path(__file__).resolve().parent.parent

POLICY_YAML = """
levels:
  1: {target: commune_centre, quiet_hours: [], channels: [mqtt]}
  2: {target: commune_leadership, quiet_hours: [], channels: [mqtt]}
  3: {target: province, quiet_hours: [], channels: [mqtt]}
dossier_rules:
  - {kind: overdue, level: 1, after_due: 0}
commune_rules:
  overdue_jump: {enabled: false}
  feed_offline: {enabled: false}
  queue_wait: {enabled: false}
  at_risk: {enabled: false}
delivery: {mqtt_per_topic_per_cycle: 1000, retry_initial_s: 1, retry_max_s: 2}
"""
POLICY = parse_policy(__import__("yaml").safe_load(POLICY_YAML))


class FakeTime:
    """Both clocks a lease reads, moved by hand: wall time (UTC) and monotonic seconds."""

    def __init__(self) -> None:
        self.wall = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    w = make_world(db_url)
    yield w
    w.engine.dispose()


def lease(name: str, t: FakeTime, ttl: float = 10.0) -> Lease:
    return Lease(LEASE_NAME, ttl, name, clock=t.now, monotonic=t.monotonic)


def test_one_holder_at_a_time_and_a_standby_takes_over_after_expiry(world: World) -> None:
    t = FakeTime()
    a, b = lease("a", t), lease("b", t)
    assert a.acquire(world.factory) and a.token == 1
    assert not b.acquire(world.factory) and not b.held
    t.advance(9)
    assert a.acquire(world.factory)  # renewed: good for another 10 s from now
    t.advance(9)
    assert not b.acquire(world.factory)
    t.advance(2)  # a has not renewed for 11 s: expired
    assert b.acquire(world.factory) and b.token == 2
    assert not a.valid()
    with world.factory() as s:
        row = s.get(LeaseRow, LEASE_NAME)
        assert row is not None and (row.holder, row.token) == ("b", 2)
    # a, back from a pause, learns it at its next attempt and stays standby.
    assert not a.acquire(world.factory) and not a.held


def test_a_stale_holder_cannot_confirm_a_unit_of_work(world: World) -> None:
    t = FakeTime()
    a, b = lease("a", t), lease("b", t)
    assert a.acquire(world.factory)
    t.advance(11)
    assert b.acquire(world.factory)
    t.mono -= 11  # a's own clock has not seen the pause (the worst case): the database has
    assert a.valid()
    with pytest.raises(LeaseLost), transaction(world.factory) as s:
        a.hold(s)
    assert not a.held
    a.token = 1  # and even a unit that skipped the first check cannot commit
    a._renewed(t.monotonic())
    with pytest.raises(LeaseLost), transaction(world.factory) as s:
        s.add(dossier(code="WRITTEN-BY-STALE-LEADER", due=t.now()))
        a.confirm(s)
    with world.factory() as s:
        assert s.get(Dossier, "WRITTEN-BY-STALE-LEADER") is None


def test_release_hands_over_without_waiting_for_expiry(world: World) -> None:
    t = FakeTime()
    a, b = lease("a", t), lease("b", t)
    assert a.acquire(world.factory)
    with transaction(world.factory) as s:
        a.release(s)
    assert b.acquire(world.factory) and b.token == 2


class RecordingMqtt:
    """An outbox MQTT channel that records what it was asked to publish."""

    def __init__(self) -> None:
        self.published: list[str] = []

    def is_connected(self) -> bool:
        return True

    def publish_confirmed(
        self, messages: Sequence[tuple[str, bytes]], timeout: float
    ) -> list[str | None]:
        self.published += [json.loads(body)["alert_id"] for _topic, body in messages]
        return [None] * len(messages)


def pending_alerts(world: World, n: int, now: datetime) -> None:
    """n alerts, each with one unsent MQTT row, as a cycle leaves them."""
    with transaction(world.factory) as s:
        for i in range(n):
            alert = Alert(
                cause_key=f"test:{i}",
                kind="overdue",
                level=1,
                commune_code=COMMUNE,
                raised_at=now,
                state="open",
                message="quá hạn",
            )
            s.add(alert)
            s.flush()
            s.add(
                OutboxMessage(
                    alert_id=alert.alert_id,
                    channel="mqtt",
                    target=f"dvc/v1/08/{COMMUNE}/alerts",
                    payload={"alert_id": str(alert.alert_id)},
                    created_at=now,
                    next_attempt_at=now,
                )
            )


def test_a_leader_frozen_past_its_lease_sends_nothing_when_it_wakes(world: World) -> None:
    t = FakeTime()
    a, b = lease("a", t), lease("b", t)
    assert a.acquire(world.factory)
    pending_alerts(world, 3, t.now())
    a_mqtt, b_mqtt = RecordingMqtt(), RecordingMqtt()
    sending = threading.Event()

    class FreezesBeforePublishing(RecordingMqtt):
        def publish_confirmed(
            self, messages: Sequence[tuple[str, bytes]], timeout: float
        ) -> list[str | None]:
            sending.set()
            t.advance(30)  # SIGSTOP here, SIGCONT 30 s later
            return _Fenced(a_mqtt, a).publish_confirmed(messages, timeout)

    with pytest.raises(LeaseLost):
        _deliver(
            world.factory, _LeaderUnits(a), POLICY, t.now(), FreezesBeforePublishing(), None, None
        )
    assert sending.is_set() and a_mqtt.published == []
    assert b.acquire(world.factory)
    result = _deliver(
        world.factory, _LeaderUnits(b), POLICY, t.now(), _Fenced(b_mqtt, b), None, None
    )
    assert result.sent == 3 and len(set(b_mqtt.published)) == 3
    assert all(m.sent_at is not None and m.attempts == 1 for m in world.outbox())


def test_a_takeover_waits_for_the_leaders_delivery_and_sees_it_committed(world: World) -> None:
    t = FakeTime()
    a, b = lease("a", t, ttl=10), lease("b", t, ttl=10)
    assert a.acquire(world.factory)
    pending_alerts(world, 2, t.now())
    a_mqtt, b_mqtt = RecordingMqtt(), RecordingMqtt()
    taken: list[bool] = []
    started = threading.Event()

    class SlowPublish(RecordingMqtt):
        def publish_confirmed(
            self, messages: Sequence[tuple[str, bytes]], timeout: float
        ) -> list[str | None]:
            # The lease runs out for the standby while the leader is mid-delivery.
            t.wall += timedelta(seconds=11)
            threading.Thread(target=lambda: taken.append(b.acquire(world.factory))).start()
            started.set()
            time.sleep(0.3)
            return a_mqtt.publish_confirmed(messages, timeout)

    result = _deliver(
        world.factory, _LeaderUnits(a), POLICY, t.now(), _Fenced(SlowPublish(), a), None, None
    )
    assert started.is_set() and result.sent == 2
    deadline = time.monotonic() + 10
    while not taken and time.monotonic() < deadline:
        time.sleep(0.05)
    # The standby waited for the delivery to commit; whether it then took the lease or not
    # (the leader renewed it in that very transaction), the rows are sent exactly once.
    assert taken
    if not b.held:
        t.advance(11)
        assert b.acquire(world.factory)
    assert _deliver(world.factory, _LeaderUnits(b), POLICY, t.now(), b_mqtt, None, None).sent == 0
    assert len(a_mqtt.published) == 2 and b_mqtt.published == []


# --- two real processes -------------------------------------------------------------------


class AlertsProcess:
    """``control-center alerts`` as its own process, with its own MQTT client id."""

    def __init__(self, name: str, db_url: str, broker: Mosquitto, policy: Path, log: Path):
        self.name = name
        self.metrics_port = free_port()
        env = {
            **os.environ,
            "CC_DATABASE_URL": db_url,
            "CC_MQTT_URL": broker.url,
            "CC_POLICY_FILE": str(policy),
            "CC_ALERTS_INTERVAL_S": "0.5",
            "CC_ALERTS_LEASE_S": str(LEASE_S),
            "CC_ALERTS_MQTT_CLIENT_ID": f"alerts-{name}-{uuid.uuid4().hex[:6]}",
            "CC_ALERTS_METRICS_PORT": str(self.metrics_port),
            "CC_LOG_LEVEL": "INFO",
        }
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "control_center.cli", "alerts"],
            cwd=REPO,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def is_leader(self) -> bool | None:
        """The process's own cc_alerts_is_leader gauge; None while it does not answer."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("cc_alerts_is_leader "):
                return float(line.split()[1]) == 1.0
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


LEASE_S = 3.0


class AlertListener:
    """A commune centre (and the province desk) listening to every alerts topic."""

    def __init__(self, port: int) -> None:
        self.alert_ids: Counter[str] = Counter()
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = Client(CallbackAPIVersion.VERSION2, client_id=f"listener-{uuid.uuid4()}")
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("dvc/v1/08/+/alerts", qos=1)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, _c: Client, _u: Any, msg: MQTTMessage) -> None:
        with self.lock:
            self.alert_ids[json.loads(msg.payload)["alert_id"]] += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not reached within {timeout} s: {what}")


@pytest.mark.broker
def test_two_engine_processes_send_every_alert_once_through_kill_and_freeze(
    db_url: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    world = make_world(db_url)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_YAML)
    listener = AlertListener(mosquitto.port)
    engines: list[AlertsProcess] = []
    added = 0

    def add_overdue(n: int) -> None:
        nonlocal added
        due = datetime.now(UTC) - timedelta(hours=1)
        world.add(
            *(
                dossier(code=f"LEAD-{added + i:04d}", due=due, received_at=due - timedelta(days=5))
                for i in range(n)
            )
        )
        added += n

    def sent_once() -> bool:
        with world.factory() as s:
            rows = s.execute(select(OutboxMessage.sent_at, OutboxMessage.attempts)).all()
            alerts = s.scalar(select(func.count()).select_from(Alert))
        with listener.lock:
            heard = len(listener.alert_ids)
        return (
            alerts == added
            and len(rows) == added
            and heard == added
            and all(r.sent_at is not None for r in rows)
        )

    def leader() -> AlertsProcess | None:
        answers = [(e, e.is_leader()) for e in engines if e.proc.poll() is None]
        leaders = [e for e, yes in answers if yes]
        assert len(leaders) <= 1, "two instances acting at once"
        return leaders[0] if leaders else None

    try:
        engines = [
            AlertsProcess(n, db_url, mosquitto, policy, tmp_path / f"alerts-{n}.log")
            for n in ("a", "b")
        ]
        first = wait_for(leader, 30, "one engine leads")
        standby = next(e for e in engines if e is not first)
        add_overdue(10)
        wait_for(sent_once, 20, "the first alerts sent")
        # Under load the standby's metrics server may answer a moment after the leader's.
        wait_for(lambda: standby.is_leader() is not None, 20, "the standby's metrics answer")
        assert standby.is_leader() is False

        # The leader dies without a word: the standby takes over within the lease.
        first.proc.kill()
        first.proc.wait(5)
        killed_at = time.monotonic()
        add_overdue(10)
        second = wait_for(leader, LEASE_S + 10, "the standby takes over")
        assert second is standby
        assert time.monotonic() - killed_at <= LEASE_S * 4 / 3 + 3
        wait_for(sent_once, 20, "alerts sent after the takeover")

        # A third instance stands by; the leader freezes past its lease, then wakes up.
        engines.append(AlertsProcess("c", db_url, mosquitto, policy, tmp_path / "alerts-c.log"))
        wait_for(lambda: engines[-1].is_leader() is False, 30, "the third instance on standby")
        second.proc.send_signal(signal.SIGSTOP)
        add_overdue(10)
        third = wait_for(
            lambda: engines[-1].is_leader() and engines[-1], LEASE_S + 10, "takeover from frozen"
        )
        wait_for(sent_once, 20, "alerts sent while the old leader is frozen")
        second.proc.send_signal(signal.SIGCONT)
        add_overdue(10)
        wait_for(sent_once, 20, "alerts sent after the old leader woke up")
        wait_for(lambda: second.is_leader() is False, 10, "the woken leader is standby")
        time.sleep(2 * 0.5 + 1)  # a few more cycles of both
        assert leader() is third
    finally:
        for e in engines:
            e.stop()
        listener.close()
        world.engine.dispose()

    assert added == 40
    assert sent_once()
    duplicates = {k: n for k, n in listener.alert_ids.items() if n > 1}
    assert duplicates == {}, f"sent more than once: {duplicates}"
    assert all(m.attempts == 1 for m in world.outbox())
    woke = (tmp_path / "alerts-b.log").read_text() + (tmp_path / "alerts-a.log").read_text()
    assert "stopped acting" in woke or "lost the lease" in woke
