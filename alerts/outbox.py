"""The outbox: notifications written with their alert, delivered at least once afterwards.

The engine writes an ``outbox`` row in the same transaction as the alert it announces, so a
crash between deciding and sending loses nothing: the next delivery pass sends it. A row is
marked sent only once the channel confirmed it (MQTT PUBACK, HTTP 2xx, SMTP accepted); until
then it is retried with exponential backoff. Receivers may therefore see a message twice and
should treat ``(alert_id, state)`` as the idempotency key.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts.policy import LOCAL_TZ, DeliveryPolicy
from control_center.models import Alert, OutboxMessage

log = logging.getLogger(__name__)

MQTT, WEBHOOK, EMAIL = "mqtt", "webhook", "email"


def alert_topic(province: str, level: int, commune_code: str | None) -> str:
    """Levels 1-2 go to the commune's own topic, level 3 to the province desk (CONTRACT.md)."""
    if level >= 3 or not commune_code:
        return f"dvc/v1/{province}/province/alerts"
    return f"dvc/v1/{province}/{commune_code}/alerts"


def _rfc3339(instant: datetime | None) -> str | None:
    # Centres work in Vietnam time and send +07:00; answer in the same offset.
    return instant.astimezone(LOCAL_TZ).isoformat(timespec="seconds") if instant else None


def alert_payload(alert: Alert) -> dict[str, Any]:
    """The CONTRACT.md alert payload (plus ``cause_key`` so receivers can group episodes)."""
    return {
        "alert_id": str(alert.alert_id),
        "kind": alert.kind,
        "level": alert.level,
        "commune_code": alert.commune_code,
        "dossier_code": alert.dossier_code,
        "due_at": _rfc3339(alert.due_at),
        "raised_at": _rfc3339(alert.raised_at),
        "state": alert.state,
        "message": alert.message,
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": _rfc3339(alert.acknowledged_at),
        "resolved_at": _rfc3339(alert.resolved_at),
        "cause_key": alert.cause_key,
    }


# --- channels -------------------------------------------------------------------------------


class MqttSender(Protocol):
    def is_connected(self) -> bool: ...

    def publish_confirmed(
        self, messages: Sequence[tuple[str, bytes]], timeout: float
    ) -> list[str | None]:
        """Publish QoS 1; per message None once PUBACKed, else the error."""
        ...


class Sender(Protocol):
    def send(self, target: str, payload: dict[str, Any]) -> None:
        """Deliver or raise."""
        ...


@dataclass
class DeliveryResult:
    sent: int = 0
    failed: int = 0
    deferred: int = 0  # over the per-topic cap or channel down: left for the next pass
    errors: list[str] = field(default_factory=list)


def backoff_seconds(attempts: int, policy: DeliveryPolicy) -> float:
    """2 s, 4 s, 8 s ... up to ``retry_max_s``: a broker that is down is not hammered."""
    return min(policy.retry_initial_s * (2 ** max(attempts - 1, 0)), policy.retry_max_s)


def pending(
    session: Session, now: datetime, limit: int = 1000, per_target: int | None = None
) -> list[OutboxMessage]:
    """Due rows, oldest first; with ``per_target`` at most that many per topic/URL/address.

    Taking the cap in the query (a window over the pending rows) rather than skipping rows
    afterwards matters after a first start on a big backlog: otherwise the oldest ``limit``
    rows, all of one commune, would fill every pass and the other 123 topics would wait.
    """
    due = (OutboxMessage.sent_at.is_(None), OutboxMessage.next_attempt_at <= now)
    if per_target is None:
        ids = select(OutboxMessage.id).where(*due).order_by(OutboxMessage.id).limit(limit)
    else:
        ranked = (
            select(
                OutboxMessage.id,
                func.row_number()
                .over(partition_by=OutboxMessage.target, order_by=OutboxMessage.id)
                .label("rank"),
            )
            .where(*due)
            .subquery()
        )
        ids = (
            select(ranked.c.id)
            .where(ranked.c.rank <= per_target)
            .order_by(ranked.c.id)
            .limit(limit)
        )
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.id.in_(ids.scalar_subquery()))
            .order_by(OutboxMessage.id)
        )
    )


def deliver_outbox(
    session: Session,
    now: datetime,
    policy: DeliveryPolicy,
    *,
    mqtt: MqttSender | None = None,
    webhook: Sender | None = None,
    email: Sender | None = None,
    limit: int = 1000,
) -> DeliveryResult:
    """One delivery pass over due outbox rows; the caller commits."""
    import json

    result = DeliveryResult()
    rows = pending(session, now, limit, per_target=policy.mqtt_per_topic_per_cycle)
    per_topic: Counter[str] = Counter()
    mqtt_rows: list[OutboxMessage] = []
    for row in rows:
        if row.channel == MQTT:
            if per_topic[row.target] >= policy.mqtt_per_topic_per_cycle:
                result.deferred += 1
                continue
            per_topic[row.target] += 1
            mqtt_rows.append(row)
            continue
        sender = webhook if row.channel == WEBHOOK else email if row.channel == EMAIL else None
        if sender is None:
            # Configuration changed since the row was written: keep it, retry slowly.
            _failed(row, now, policy, f"{row.channel} is not configured", result)
            continue
        try:
            sender.send(row.target, row.payload)
        except Exception as exc:  # any failure of a remote system is a retry, not a crash
            _failed(row, now, policy, f"{type(exc).__name__}: {exc}", result)
        else:
            _sent(row, now, result)

    if mqtt_rows:
        if mqtt is None or not mqtt.is_connected():
            # Not an attempt: nothing left the process. Try again next pass, no backoff growth
            # beyond the first step so delivery resumes promptly when the broker returns.
            for row in mqtt_rows:
                _failed(row, now, policy, "broker not connected", result, count=False)
        else:
            batch = [
                (row.target, json.dumps(row.payload, ensure_ascii=False).encode("utf-8"))
                for row in mqtt_rows
            ]
            outcomes = mqtt.publish_confirmed(batch, policy.publish_timeout_s)
            for row, error in zip(mqtt_rows, outcomes, strict=True):
                if error is None:
                    _sent(row, now, result)
                else:
                    _failed(row, now, policy, error, result)
    session.flush()
    return result


def _sent(row: OutboxMessage, now: datetime, result: DeliveryResult) -> None:
    row.attempts += 1
    row.sent_at = now
    row.last_error = None
    result.sent += 1


def _failed(
    row: OutboxMessage,
    now: datetime,
    policy: DeliveryPolicy,
    error: str,
    result: DeliveryResult,
    *,
    count: bool = True,
) -> None:
    if count:
        row.attempts += 1
        result.failed += 1
    else:
        result.deferred += 1
    row.last_error = error[:2000]
    row.next_attempt_at = now + timedelta(seconds=backoff_seconds(max(row.attempts, 1), policy))
    if len(result.errors) < 20:
        result.errors.append(f"{row.channel} {row.target}: {error}")
