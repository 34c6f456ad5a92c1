"""Acknowledgements: a centre (or the province desk) says "we have seen it and are acting".

An acknowledged alert is not escalated further. Acks arrive on
``dvc/v1/{province}/{commune}/alerts/ack`` (``{"alert_id", "by", "occurred_at"}``); an ack on
a commune's topic may only acknowledge that commune's alerts, and the province desk
(``.../province/alerts/ack``) only province-level ones. Anything else is ignored and logged.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from alerts.policy import ACKNOWLEDGED, LEVEL_PROVINCE, OPEN
from control_center.models import Alert, Commune

log = logging.getLogger(__name__)

# A centre's clock may be minutes off; an ack "from the future" is recorded at arrival time.
MAX_CLOCK_SKEW = timedelta(minutes=10)


def acknowledge(session: Session, alert_id: uuid.UUID | str, by: str, at: datetime) -> bool:
    """open -> acknowledged, recording who and when. False when unknown or not open.

    A single conditional UPDATE, so two acks racing (MQTT and the wall) record only the first.
    """
    try:
        key = alert_id if isinstance(alert_id, uuid.UUID) else uuid.UUID(str(alert_id))
    except ValueError:
        return False
    result = session.execute(
        update(Alert)
        .where(Alert.alert_id == key, Alert.state == OPEN)
        .values(state=ACKNOWLEDGED, acknowledged_by=by[:200], acknowledged_at=at)
    )  # default synchronisation: an Alert already loaded in this session shows the new state
    return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True)
class AckOutcome:
    recorded: bool
    reason: str  # "recorded" or why it was ignored
    alert_id: str | None = None


def handle_ack_message(
    session: Session, topic: str, payload: bytes, province: str | None, now: datetime
) -> AckOutcome:
    """Validate one ack message and record it; never raises on bad input. ``province``: the
    one whose topics are listened to; None in national mode, where the topic must then be the
    province of the alert's commune."""
    parts = topic.split("/")
    if (
        len(parts) != 6
        or parts[:2] != ["dvc", "v1"]
        or (province is not None and parts[2] != province)
        or parts[4:] != ["alerts", "ack"]
    ):
        return _ignored("topic is not an alerts/ack topic of this province", topic)
    sender = parts[3]
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _ignored("payload is not JSON", topic)
    if not isinstance(data, dict):
        return _ignored("payload is not a JSON object", topic)
    raw_id, by = data.get("alert_id"), data.get("by")
    if not isinstance(by, str) or not by.strip() or len(by) > 200:
        return _ignored("'by' must be a non-empty string", topic, raw_id)
    try:
        alert_id = uuid.UUID(str(raw_id))
    except ValueError:
        return _ignored("alert_id is not a UUID", topic, raw_id)
    at = _parse_time(data.get("occurred_at"))
    if at is None:
        return _ignored("occurred_at is not an RFC 3339 timestamp with offset", topic, raw_id)
    if at > now + MAX_CLOCK_SKEW:
        at = now
    alert = session.get(Alert, alert_id)
    if alert is None:
        return _ignored("unknown alert", topic, raw_id)
    allowed = (
        sender == "province" and alert.level >= LEVEL_PROVINCE
    ) or sender == alert.commune_code
    if not allowed:
        return _ignored(f"alert belongs to {alert.commune_code}, not {sender}", topic, raw_id)
    if province is None:  # national: another province's desk may not acknowledge it
        commune = session.get(Commune, alert.commune_code) if alert.commune_code else None
        if commune is not None and commune.province_code != parts[2]:
            return _ignored(
                f"alert belongs to province {commune.province_code}, not {parts[2]}", topic, raw_id
            )
    if not acknowledge(session, alert_id, by.strip(), at):
        return _ignored(f"alert is {alert.state}, not open", topic, raw_id)
    log.info("alert %s acknowledged by %s (%s)", alert_id, by, sender)
    return AckOutcome(True, "recorded", str(alert_id))


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _ignored(reason: str, topic: str, alert_id: object = None) -> AckOutcome:
    log.warning("ignored alert ack on %s (alert_id=%r): %s", topic, alert_id, reason)
    return AckOutcome(False, reason, str(alert_id) if alert_id is not None else None)
