"""Validation of inbound MQTT messages (pure: no I/O).

:func:`validate_message` turns a topic and raw payload into a :class:`ValidEvent` or a
:class:`Rejection` carrying one of the stable reason codes in :data:`REASONS`. Operators see
these codes on the wall and in ``GET /api/v1/dead-letters``, so they never change meaning.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Container
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Stable reason codes (documented in docs/collector.md).
PAYLOAD_TOO_LARGE = "payload_too_large"
NOT_UTF8 = "not_utf8"
NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
MISSING_FIELD = "missing_field"
INVALID_FIELD = "invalid_field"
UNKNOWN_TYPE = "unknown_type"
BAD_TOPIC = "bad_topic"
WRONG_PROVINCE = "wrong_province"
UNKNOWN_COMMUNE = "unknown_commune"
COMMUNE_MISMATCH = "commune_mismatch"
FUTURE_TIMESTAMP = "future_timestamp"
UNKNOWN_DOSSIER = "unknown_dossier"  # decided by the ingestor's orphan sweep, not here
PROCESSING_ERROR = "processing_error"  # a valid message our own code failed on (a bug)

REASONS: dict[str, str] = {
    PAYLOAD_TOO_LARGE: "payload larger than 64 KiB",
    NOT_UTF8: "payload is not UTF-8",
    NOT_JSON: "payload is not JSON",
    NOT_OBJECT: "payload is JSON but not an object",
    MISSING_FIELD: "a required field is missing",
    INVALID_FIELD: "a field has the wrong type or format",
    UNKNOWN_TYPE: "the type is not one of this topic's event types",
    BAD_TOPIC: "topic is not dvc/v1/{province}/{commune}/{dossier|queue|status}",
    WRONG_PROVINCE: "topic names another province than the one this control centre serves",
    UNKNOWN_COMMUNE: "topic names a commune code that is not in the reference data",
    COMMUNE_MISMATCH: "payload commune_code differs from the topic's commune",
    FUTURE_TIMESTAMP: "occurred_at more than 10 minutes after arrival",
    UNKNOWN_DOSSIER: "events for a dossier whose received event never arrived",
    PROCESSING_ERROR: "the collector failed on this message (a bug; see detail)",
}

DOSSIER, QUEUE, STATUS = "dossier", "queue", "status"
TOPIC_RE = re.compile(
    r"^dvc/v1/(?P<province>\d{2})/(?P<commune>\d{5})/(?P<kind>dossier|queue|status)$"
)
# RFC 3339 date-time: an explicit offset is required (a naive local time is ambiguous).
RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


@dataclass(frozen=True)
class Topic:
    province: str
    commune_code: str
    kind: str  # dossier / queue / status


@functools.lru_cache(maxsize=4096)
def parse_topic(topic: str) -> Topic | None:
    # Cached: a province has a few hundred topics, and every message names one.
    m = TOPIC_RE.match(topic)
    if not m:
        return None
    return Topic(m["province"], m["commune"], m["kind"])


_FRACTION_RE = re.compile(r"\.(\d+)")


def parse_rfc3339(value: str) -> datetime:
    """An aware datetime from an RFC 3339 string with offset; ValueError otherwise."""
    if not isinstance(value, str) or not RFC3339_RE.match(value):
        raise ValueError(
            "must be an RFC 3339 timestamp with offset, e.g. 2025-11-23T08:15:00+07:00"
        )
    text = value.replace("z", "Z").replace("t", "T")
    if "." in text:
        frac = _FRACTION_RE.search(text)
        if frac and len(frac.group(1)) > 6:  # fromisoformat takes at most microseconds
            text = text.replace(frac.group(0), "." + frac.group(1)[:6])
    return datetime.fromisoformat(text)


# --- payload models (CONTRACT.md tables) --------------------------------------------------

Code5 = Annotated[str, Field(pattern=r"^\d{5}$")]
Id64 = Annotated[str, Field(min_length=1, max_length=64)]
Text = Annotated[str, Field(max_length=2000)]


def _check_ts(value: str | None) -> str | None:
    if value is not None:
        parse_rfc3339(value)
    return value


def _to_instant(value: Any) -> Any:
    # Parsed once here; the payload keeps the string as sent.
    return parse_rfc3339(value) if value is not None else None


class _Base(BaseModel):
    # strict: a number where a string is expected is an error, not silently converted
    model_config = ConfigDict(strict=True, extra="allow")

    event_id: Id64
    type: str
    occurred_at: datetime
    commune_code: Code5

    _ts = field_validator("occurred_at", mode="before")(_to_instant)


class DossierEventModel(_Base):
    dossier_code: Id64


class Received(DossierEventModel):
    type: Literal["received"]
    procedure_code: Id64
    procedure_name: Text | None = None
    sector: Annotated[str, Field(max_length=120)] | None = None
    channel: Literal["online", "counter", "post"] | None = None
    due_at: str | None = None
    processing_days: Annotated[float, Field(ge=0, le=3650)] | None = None
    applicant_name: Annotated[str, Field(max_length=200)] | None = None

    _due = field_validator("due_at")(_check_ts)


class Assigned(DossierEventModel):
    type: Literal["assigned"]
    officer: Annotated[str, Field(max_length=200)] | None = None
    department: Annotated[str, Field(max_length=200)] | None = None


class WithReason(DossierEventModel):
    type: Literal["supplement_requested", "rejected"]
    reason: Text | None = None


class Plain(DossierEventModel):
    type: Literal[
        "supplement_received",
        "payment_requested",
        "payment_received",
        "completed",
        "returned",
        "withdrawn",
    ]


class Extended(DossierEventModel):
    type: Literal["extended"]
    new_due_at: str
    reason: Text | None = None

    _due = field_validator("new_due_at")(_check_ts)


class ApologyIssued(DossierEventModel):
    type: Literal["apology_issued"]
    new_due_at: str | None = None

    _due = field_validator("new_due_at")(_check_ts)


class Transferred(DossierEventModel):
    type: Literal["transferred"]
    to_commune_code: Code5


Ticket = Annotated[str, Field(min_length=1, max_length=32)]
Counter = Annotated[str, Field(min_length=1, max_length=32)]


class TicketIssued(_Base):
    type: Literal["ticket_issued"]
    ticket_no: Ticket
    channel: Literal["kiosk", "zalo", "web", "counter"] | None = None
    service: Annotated[str, Field(max_length=200)] | None = None
    priority: Literal["normal", "priority", "elderly"] | None = None


class TicketAtCounter(_Base):
    type: Literal["ticket_called", "service_started", "ticket_completed"]
    ticket_no: Ticket
    counter: Counter | None = None


class TicketCancelled(_Base):
    type: Literal["ticket_cancelled"]
    ticket_no: Ticket
    reason: Annotated[str, Field(max_length=64)] | None = None


class CounterEvent(_Base):
    type: Literal["counter_opened", "counter_closed"]
    counter: Counter
    ticket_no: Ticket | None = None


class Status(BaseModel):
    """Heartbeat. Not an event (not stored in an event table), so event_id/type are optional;
    a Last Will set at connect time cannot know the time it fires, so occurred_at may be
    omitted and the arrival time is used instead."""

    model_config = ConfigDict(strict=True, extra="allow")

    state: Literal["online", "offline"]
    occurred_at: datetime | None = None
    event_id: Id64 | None = None
    type: Literal["status", "heartbeat"] | None = None
    commune_code: Code5 | None = None
    software: Annotated[str, Field(max_length=120)] | None = None
    queue_waiting: Annotated[int, Field(ge=0)] | None = None

    _ts = field_validator("occurred_at", mode="before")(_to_instant)


DOSSIER_MODELS: dict[str, type[_Base]] = {
    "received": Received,
    "assigned": Assigned,
    "supplement_requested": WithReason,
    "rejected": WithReason,
    "supplement_received": Plain,
    "payment_requested": Plain,
    "payment_received": Plain,
    "completed": Plain,
    "returned": Plain,
    "withdrawn": Plain,
    "extended": Extended,
    "apology_issued": ApologyIssued,
    "transferred": Transferred,
}
QUEUE_MODELS: dict[str, type[_Base]] = {
    "ticket_issued": TicketIssued,
    "ticket_called": TicketAtCounter,
    "service_started": TicketAtCounter,
    "ticket_completed": TicketAtCounter,
    "ticket_cancelled": TicketCancelled,
    "counter_opened": CounterEvent,
    "counter_closed": CounterEvent,
}
MODELS_BY_KIND = {DOSSIER: DOSSIER_MODELS, QUEUE: QUEUE_MODELS}


# --- results ------------------------------------------------------------------------------


# Not frozen: every message makes one, and a frozen dataclass's __init__ (object.__setattr__
# per field) cost three times as much; nothing changes one after validation.
@dataclass(slots=True)
class ValidEvent:
    kind: str  # dossier / queue / status
    commune_code: str
    type: str
    occurred_at: datetime  # aware; for a status without occurred_at, the arrival time
    payload: dict[str, Any]  # the JSON object as sent (stored as is)
    event_id: str | None = None  # None only for a status without event_id
    dossier_code: str | None = None
    ticket_no: str | None = None
    text: str | None = None  # the payload's JSON text as received (stored without re-encoding)


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str
    commune_code: str | None = None  # from the topic when it parses
    event_id: str | None = None


def validate_message(
    topic: str,
    payload: bytes,
    arrived_at: datetime,
    *,
    province: str | None,
    known_communes: Container[str],
    max_payload_bytes: int = 64 * 1024,
    max_future_skew_s: float = 600,
) -> ValidEvent | Rejection:
    """Check one message against the contract (CONTRACT.md); never raises."""
    parts = parse_topic(topic)
    if parts is None:
        return Rejection(BAD_TOPIC, f"topic {topic[:200]!r} does not match the topic tree")
    commune = parts.commune_code
    if province is not None and parts.province != province:  # None: national, any province
        return Rejection(
            WRONG_PROVINCE, f"province {parts.province} is not {province}", commune_code=commune
        )
    if len(payload) > max_payload_bytes:
        return Rejection(
            PAYLOAD_TOO_LARGE,
            f"{len(payload)} bytes > {max_payload_bytes}",
            commune_code=commune,
        )
    if commune not in known_communes:
        return Rejection(
            UNKNOWN_COMMUNE, f"commune {commune} is not in the reference data", commune_code=commune
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(NOT_UTF8, str(exc), commune_code=commune)
    try:
        data = json.loads(text)
    except ValueError as exc:
        return Rejection(NOT_JSON, str(exc)[:300], commune_code=commune)
    if not isinstance(data, dict):
        return Rejection(NOT_OBJECT, f"JSON {type(data).__name__} instead of an object", commune)
    if "\\u0000" in text and _has_nul(data):
        # PostgreSQL cannot store NUL in text or jsonb; no centre software sends it on purpose.
        return Rejection(INVALID_FIELD, "payload contains a NUL character (\\u0000)", commune)

    raw_id = data.get("event_id")
    event_id = raw_id[:64] if isinstance(raw_id, str) and raw_id else None

    def reject(reason: str, detail: str) -> Rejection:
        return Rejection(reason, detail, commune_code=commune, event_id=event_id)

    if parts.kind == STATUS:
        model_cls: type[BaseModel] = Status
    else:
        if "type" not in data:
            return reject(MISSING_FIELD, "field 'type' is missing")
        models = MODELS_BY_KIND[parts.kind]
        etype = data["type"]
        if not isinstance(etype, str) or etype not in models:
            return reject(
                UNKNOWN_TYPE, f"type {str(etype)[:64]!r} is not a {parts.kind} event type"
            )
        model_cls = models[etype]
    try:
        model = model_cls.model_validate(data)
    except ValidationError as exc:
        return reject(*_explain(exc))

    # Declared fields only (a plain dict): pydantic's attribute fallback for undeclared names
    # was a measurable share of the collector's time.
    fields = model.__dict__
    payload_commune = fields.get("commune_code")
    if payload_commune is not None and payload_commune != commune:
        return reject(
            COMMUNE_MISMATCH, f"payload commune_code {payload_commune} != topic commune {commune}"
        )
    occurred_at = fields.get("occurred_at") or arrived_at
    if occurred_at > arrived_at + _seconds(max_future_skew_s):
        return reject(
            FUTURE_TIMESTAMP,
            f"occurred_at {data.get('occurred_at')} is {(occurred_at - arrived_at).total_seconds():.0f} s "
            "after arrival",
        )
    return ValidEvent(
        kind=parts.kind,
        commune_code=commune,
        type=fields.get("type") or STATUS,
        occurred_at=occurred_at,
        payload=data,
        event_id=fields.get("event_id"),
        dossier_code=fields.get("dossier_code"),
        ticket_no=fields.get("ticket_no"),
        text=text,
    )


@functools.lru_cache(maxsize=16)
def _seconds(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(x) for k, x in value.items())
    if isinstance(value, list):
        return any(_has_nul(x) for x in value)
    return False


def _explain(exc: ValidationError) -> tuple[str, str]:
    errors = exc.errors(include_url=False, include_input=False)
    missing = [e for e in errors if e["type"] == "missing"]
    if missing:
        names = ", ".join(repr(".".join(map(str, e["loc"]))) for e in missing)
        return MISSING_FIELD, f"field {names} is missing"
    first = errors[0]
    loc = ".".join(map(str, first["loc"])) or "payload"
    msg = str(first["msg"]).removeprefix("Value error, ")
    return INVALID_FIELD, f"field {loc!r}: {msg}"[:500]
