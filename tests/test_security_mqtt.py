"""The broker side: a real Mosquitto with the password file and ACL ``control-center mqtt-acl``
writes refuses a centre publishing into another commune's topics and lets it publish into its
own; it refuses unknown users and wrong passwords."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from control_center.cli import main as cli_main
from control_center.security.mqtt_acl import (
    ALERTS_USER,
    COLLECTOR_USER,
    centre_user,
    check_password,
    read_password_file,
    write_broker_files,
)
from tests.conftest import Mosquitto
from tests.test_queries import HA_GIANG_2, THUONG_LAM

pytestmark = pytest.mark.broker


def secured(broker: Mosquitto, out: Path) -> None:
    """Restart the test's broker with sign-in and the generated ACL."""
    text = broker.conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
    text += f"password_file {out / 'passwords'}\nacl_file {out / 'acl'}\n"
    broker.conf.write_text(text)
    broker.restart()


def connect(broker: Mosquitto, user: str, password: str, client_id: str) -> tuple[mqtt.Client, Any]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.username_pw_set(user, password)
    result: dict[str, Any] = {}
    connected = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        result["reason"] = reason
        connected.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    assert connected.wait(5), "no CONNACK"
    return client, result["reason"]


def test_the_generated_acl_keeps_each_centre_in_its_own_topics(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    out = tmp_path / "acl"
    created = write_broker_files(out, "08", [THUONG_LAM, HA_GIANG_2])
    secured(mosquitto, out)

    collector, reason = connect(mosquitto, COLLECTOR_USER, created[COLLECTOR_USER], "collector")
    assert not reason.is_failure
    received: list[tuple[str, bytes]] = []
    collector.on_message = lambda _c, _u, msg: received.append((msg.topic, msg.payload))
    subscribed = threading.Event()
    collector.on_subscribe = lambda *_a: subscribed.set()
    collector.subscribe("dvc/v1/08/+/dossier", qos=1)
    assert subscribed.wait(5)

    centre, reason = connect(
        mosquitto, centre_user(THUONG_LAM), created[centre_user(THUONG_LAM)], "c1"
    )
    assert not reason.is_failure
    # Into another commune's topic: Mosquitto acknowledges and drops it (MQTT 3.1.1 has no
    # reason code for "not authorised"), so nobody subscribed ever receives it.
    centre.publish(f"dvc/v1/08/{HA_GIANG_2}/dossier", b'{"forged": true}', qos=1).wait_for_publish(
        5
    )
    # Into its own: delivered.
    centre.publish(f"dvc/v1/08/{THUONG_LAM}/dossier", b'{"own": true}', qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not received:
        time.sleep(0.05)
    time.sleep(0.5)  # a forged message, had it passed, would have arrived first
    assert received == [(f"dvc/v1/08/{THUONG_LAM}/dossier", b'{"own": true}')]

    # A centre cannot read another commune's alerts, only its own.
    alerts, _ = connect(mosquitto, ALERTS_USER, created[ALERTS_USER], "alerts")
    heard: list[str] = []
    centre.on_message = lambda _c, _u, msg: heard.append(msg.topic)
    done = threading.Event()
    centre.on_subscribe = lambda *_a: done.set()
    centre.subscribe([(f"dvc/v1/08/{HA_GIANG_2}/alerts", 1), (f"dvc/v1/08/{THUONG_LAM}/alerts", 1)])
    assert done.wait(5)
    alerts.publish(f"dvc/v1/08/{HA_GIANG_2}/alerts", b"{}", qos=1).wait_for_publish(5)
    alerts.publish(f"dvc/v1/08/{THUONG_LAM}/alerts", b"{}", qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not heard:
        time.sleep(0.05)
    time.sleep(0.5)
    assert heard == [f"dvc/v1/08/{THUONG_LAM}/alerts"]

    # Wrong password, unknown user: refused at CONNECT.
    _bad, reason = connect(mosquitto, centre_user(THUONG_LAM), "not-the-password", "c2")
    assert reason.is_failure
    _nobody, reason = connect(mosquitto, "someone", "whatever-password", "c3")
    assert reason.is_failure
    for client in (collector, centre, alerts, _bad, _nobody):
        client.loop_stop()
        client.disconnect()


def test_running_it_again_keeps_existing_passwords(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "acl"
    assert cli_main(["mqtt-acl", "--out", str(out)]) == 0
    first = read_password_file(out / "passwords")
    printed = capsys.readouterr().out
    assert len(first) == 124 + 3  # every commune of Tuyên Quang and the three services
    assert (out / "passwords").stat().st_mode & 0o777 == 0o600
    user, password = next(
        line.split("\t") for line in printed.splitlines() if line.startswith("centre-02269\t")
    )
    assert check_password(password, first[user])
    acl = (out / "acl").read_text()
    assert "user centre-02269\ntopic read dvc/v1/08/02269/alerts\n" in acl
    assert "topic write dvc/v1/08/02269/dossier" in acl

    assert cli_main(["mqtt-acl", "--out", str(out), "--reset", "centre-02269"]) == 0
    second = read_password_file(out / "passwords")
    assert "new passwords" in capsys.readouterr().out
    assert second[centre_user(HA_GIANG_2)] == first[centre_user(HA_GIANG_2)]
    assert second["centre-02269"] != first["centre-02269"]


def test_in_national_mode_every_province_gets_its_desk_and_centres(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("CC_SCOPE", "national")
    out = tmp_path / "acl"
    assert cli_main(["mqtt-acl", "--out", str(out)]) == 0
    users = read_password_file(out / "passwords")
    assert "3321 centres, 34 province desk(s)" in capsys.readouterr().out
    assert len(users) == 3321 + 34 + 2
    acl = (out / "acl").read_text()
    assert f"user {COLLECTOR_USER}\ntopic read dvc/v1/+/+/dossier\n" in acl
    assert f"user {ALERTS_USER}\ntopic read dvc/v1/+/+/alerts/ack\n" in acl
    assert "user province-desk-79\ntopic read dvc/v1/79/province/alerts\n" in acl
    # A centre writes under its own province and commune only.
    assert f"user {centre_user(THUONG_LAM)}\ntopic read dvc/v1/08/{THUONG_LAM}/alerts\n" in acl
    desks_and_centres = acl.split("user province-desk-01\n", 1)[1]
    assert "dvc/v1/+" not in desks_and_centres  # only the two services read every province
