"""Channels the outbox delivers through: MQTT (paho 2.x), signed webhook, e-mail.

Each channel only moves bytes; what to send and when to retry is the outbox's business.
Nothing connects at import time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import smtplib
import ssl
import threading
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from control_center.settings import Settings

log = logging.getLogger(__name__)


def ack_topic_filter(province: str | None) -> str:
    """Acknowledgements of one province's centres, or of every province's (None: national)."""
    return f"dvc/v1/{province or '+'}/+/alerts/ack"


@dataclass(frozen=True)
class ReceivedAck:
    topic: str
    payload: bytes
    mid: int
    qos: int


class AlertsMqtt:
    """The alert engine's MQTT session: publishes alerts QoS 1, receives acknowledgements.

    Stable client id and a persistent session (clean_start=False + session expiry) so that
    acknowledgements sent while the engine was restarting are delivered when it is back.
    Acks are acknowledged to the broker (manual ack) only after they are stored.
    """

    def __init__(self, settings: Settings, client_id: str | None = None) -> None:
        self.settings = settings
        self.acks: queue.Queue[ReceivedAck] = queue.Queue()
        self._connected = threading.Event()
        self.client = Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or settings.alerts_mqtt_client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        target = settings.mqtt_parts()
        if target.username:
            self.client.username_pw_set(target.username, target.password)
        if target.tls:
            self.client.tls_set(**target.tls_options())
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_connect_fail = self._on_connect_fail
        self._target = target

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.mqtt_session_expiry_s
        self.client.connect_async(
            self._target.host, self._target.port, keepalive=30, clean_start=False, properties=props
        )
        self.client.loop_start()

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # paho callbacks: an exception here kills paho's loop thread, so catch everything.

    def _on_connect(
        self, client: Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        try:
            if reason.is_failure:
                log.warning("alerts MQTT connect refused: %s", reason)
                return
            # Subscribing here means a reconnect resubscribes.
            province = None if self.settings.national else self.settings.province
            client.subscribe(ack_topic_filter(province), qos=1)
            self._connected.set()
            log.info("alerts MQTT connected to %s", self._target)
        except Exception:
            log.exception("alerts on_connect failed")

    def _on_disconnect(
        self, _client: Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        self._connected.clear()
        log.warning("alerts MQTT disconnected: %s", reason)

    def _on_connect_fail(self, _client: Client, _userdata: Any) -> None:
        # Outbox rows wait meanwhile; the heartbeat shows mqtt_connected=false on the wall.
        log.warning("alerts MQTT broker %s unreachable; retrying", self._target)

    def _on_message(self, _client: Client, _userdata: Any, msg: MQTTMessage) -> None:
        try:
            self.acks.put(ReceivedAck(msg.topic, bytes(msg.payload), msg.mid, msg.qos))
        except Exception:
            log.exception("alerts on_message failed")

    def confirm(self, ack: ReceivedAck) -> None:
        """PUBACK an acknowledgement message once it is stored (or deliberately ignored)."""
        if ack.qos > 0:
            self.client.ack(ack.mid, ack.qos)

    # outbox channel

    def is_connected(self) -> bool:
        return self._connected.is_set() and self.client.is_connected()

    def publish_confirmed(
        self, messages: Sequence[tuple[str, bytes]], timeout: float
    ) -> list[str | None]:
        infos = []
        for topic, payload in messages:
            infos.append(self.client.publish(topic, payload, qos=1))
        out: list[str | None] = []
        for info in infos:
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
                out.append(f"publish refused: {info.rc.name}")
                continue
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                out.append(str(exc))
                continue
            out.append(None if info.is_published() else "no PUBACK within timeout")
        return out


class WebhookSender:
    """JSON POST with ``X-Signature: sha256=<hex HMAC of the body>`` when a secret is set."""

    def __init__(self, secret: str | None, timeout: float = 10.0) -> None:
        self.secret = secret
        self.timeout = timeout

    def send(self, target: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if self.secret:
            headers["X-Signature"] = "sha256=" + sign(self.secret, body)
        request = urllib.request.Request(target, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            if not 200 <= response.status < 300:
                raise RuntimeError(f"webhook answered HTTP {response.status}")


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class EmailSender:
    """Plain-text e-mail through ``smtp://user:pass@host:port`` (``smtps://`` for TLS)."""

    def __init__(self, smtp_url: str, sender: str, timeout: float = 15.0) -> None:
        self.url = urlsplit(smtp_url)
        if self.url.scheme not in {"smtp", "smtps"} or not self.url.hostname:
            raise ValueError("CC_SMTP_URL must look like smtp://user:pass@host:25")
        self.sender = sender
        self.timeout = timeout

    def send(self, target: str, payload: dict[str, Any]) -> None:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = target
        msg["Subject"] = payload.get("subject", "Cảnh báo hồ sơ hành chính")
        msg.set_content(payload.get("text", json.dumps(payload, ensure_ascii=False, indent=2)))
        host, port = self.url.hostname or "localhost", self.url.port
        if self.url.scheme == "smtps":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                host, port or 465, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(host, port or 25, timeout=self.timeout)
        with smtp:
            if self.url.username:
                smtp.login(unquote(self.url.username), unquote(self.url.password or ""))
            smtp.send_message(msg)


def webhook_from_settings(settings: Settings) -> WebhookSender | None:
    if not settings.alerts_webhook_url:
        return None
    secret = settings.alerts_webhook_secret
    return WebhookSender(secret.get_secret_value() if secret else None)


def email_from_settings(settings: Settings) -> EmailSender | None:
    if not settings.smtp_url or not settings.smtp_url.get_secret_value():
        return None
    return EmailSender(settings.smtp_url.get_secret_value(), settings.alerts_email_from)
