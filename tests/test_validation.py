"""Message validation: every rejection reason, and what valid messages become."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collectors import validation as v

ARRIVED = datetime(2025, 11, 24, 2, 0, tzinfo=UTC)  # 09:00 in Tuyên Quang
COMMUNE = "02269"
TOPIC = f"dvc/v1/08/{COMMUNE}/dossier"


def received(**changes: Any) -> dict[str, Any]:
    payload = {
        "event_id": "evt-1",
        "type": "received",
        "occurred_at": "2025-11-24T08:55:00+07:00",
        "commune_code": COMMUNE,
        "dossier_code": "000.00.22.H56-251124-0001",
        "procedure_code": "1.001193",
        "channel": "online",
        "processing_days": 5,
    }
    payload.update(changes)
    return {k: val for k, val in payload.items() if val is not ...}


def check(payload: Any, topic: str = TOPIC, raw: bytes | None = None) -> v.ValidEvent | v.Rejection:
    body = raw if raw is not None else json.dumps(payload).encode()
    return v.validate_message(topic, body, ARRIVED, province="08", known_communes={COMMUNE})


def reason(result: v.ValidEvent | v.Rejection) -> str:
    assert isinstance(result, v.Rejection), result
    return result.reason


def test_valid_received_event_keeps_payload_and_parses_time() -> None:
    result = check(received())
    assert isinstance(result, v.ValidEvent)
    assert result.kind == "dossier" and result.type == "received"
    assert result.dossier_code == "000.00.22.H56-251124-0001"
    assert result.occurred_at == datetime(2025, 11, 24, 1, 55, tzinfo=UTC)
    assert result.payload["processing_days"] == 5


def test_unknown_procedure_code_is_accepted() -> None:
    assert isinstance(check(received(procedure_code="9.999999")), v.ValidEvent)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("dvc/v1/08/02269", v.BAD_TOPIC),
        ("dvc/v1/08/2269/dossier", v.BAD_TOPIC),
        ("dvc/v1/8/02269/dossier", v.BAD_TOPIC),
        ("dvc/v1/08/02269/alerts", v.BAD_TOPIC),
        ("dvc/v2/08/02269/dossier", v.BAD_TOPIC),
        ("dvc/v1/01/00004/dossier", v.WRONG_PROVINCE),
        ("dvc/v1/08/02272/dossier", v.UNKNOWN_COMMUNE),
    ],
)
def test_topic_rejections(topic: str, expected: str) -> None:
    result = check(received(), topic=topic)
    assert reason(result) == expected


def test_commune_of_the_topic_is_kept_on_rejections() -> None:
    result = check(None, raw=b"{not json")
    assert isinstance(result, v.Rejection) and result.commune_code == COMMUNE


def test_payload_over_64_kib_is_rejected_before_parsing() -> None:
    big = received(procedure_name="x" * (64 * 1024))
    assert reason(check(big)) == v.PAYLOAD_TOO_LARGE


def test_payload_of_exactly_64_kib_is_not_too_large() -> None:
    body = json.dumps(received(sector="")).encode()
    padded = body[:-1] + b" " * (64 * 1024 - len(body)) + b"}"
    assert len(padded) == 64 * 1024
    assert isinstance(check(None, raw=padded), v.ValidEvent)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\xff\xfe{}", v.NOT_UTF8),
        (b'{"event_id": ', v.NOT_JSON),
        (b"", v.NOT_JSON),
        (b"[1, 2]", v.NOT_OBJECT),
        (b'"received"', v.NOT_OBJECT),
    ],
)
def test_encoding_and_shape_rejections(raw: bytes, expected: str) -> None:
    assert reason(check(None, raw=raw)) == expected


@pytest.mark.parametrize(
    "name", ["event_id", "type", "occurred_at", "commune_code", "dossier_code", "procedure_code"]
)
def test_missing_required_field(name: str) -> None:
    result = check(received(**{name: ...}))
    assert reason(result) == v.MISSING_FIELD
    assert isinstance(result, v.Rejection) and name in result.detail


def test_extended_requires_new_due_at() -> None:
    payload = received(type="extended", event_id="evt-2", procedure_code=...)
    assert reason(check(payload)) == v.MISSING_FIELD


@pytest.mark.parametrize(
    "changes",
    [
        {"event_id": ""},
        {"event_id": "e" * 65},
        {"event_id": 42},
        {"occurred_at": "2025-11-24T08:55:00"},  # no offset
        {"occurred_at": "24/11/2025 08:55"},
        {"occurred_at": "2025-13-24T08:55:00+07:00"},
        {"occurred_at": 1732413300},
        {"channel": "fax"},
        {"processing_days": "5"},
        {"processing_days": -1},
        {"due_at": "next week"},
        {"commune_code": "2269"},
        {"dossier_code": ""},
        {"dossier_code": "d" * 65},
    ],
)
def test_invalid_fields(changes: dict[str, Any]) -> None:
    assert reason(check(received(**changes))) == v.INVALID_FIELD


def test_nul_characters_are_invalid() -> None:
    assert reason(check(received(applicant_name="A\u0000B"))) == v.INVALID_FIELD
    assert isinstance(check(received(applicant_name="A\\u0000B")), v.ValidEvent)


def test_queue_enums_are_checked() -> None:
    topic = f"dvc/v1/08/{COMMUNE}/queue"
    base = {
        "event_id": "q-1",
        "type": "ticket_issued",
        "occurred_at": "2025-11-24T08:55:00+07:00",
        "commune_code": COMMUNE,
        "ticket_no": "A001",
        "channel": "kiosk",
        "priority": "elderly",
    }
    assert isinstance(check(base, topic=topic), v.ValidEvent)
    assert reason(check({**base, "priority": "vip"}, topic=topic)) == v.INVALID_FIELD
    assert reason(check({**base, "channel": "sms"}, topic=topic)) == v.INVALID_FIELD
    counter = {**base, "type": "counter_opened"}
    del counter["ticket_no"]
    assert reason(check(counter, topic=topic)) == v.MISSING_FIELD  # counter is required
    assert isinstance(check({**counter, "counter": "Q1"}, topic=topic), v.ValidEvent)


@pytest.mark.parametrize("etype", ["", "created", "ticket_issued", 7])
def test_unknown_type_for_the_topic(etype: Any) -> None:
    assert reason(check(received(type=etype))) == v.UNKNOWN_TYPE


def test_commune_mismatch() -> None:
    result = check(received(commune_code="02272"))
    assert reason(result) == v.COMMUNE_MISMATCH
    assert isinstance(result, v.Rejection) and result.event_id == "evt-1"


def test_future_timestamp_beyond_ten_minutes() -> None:
    local = ARRIVED.astimezone(v.parse_rfc3339("2025-01-01T00:00:00+07:00").tzinfo)
    soon = (local + timedelta(minutes=9)).isoformat()
    late = (local + timedelta(minutes=11)).isoformat()
    assert isinstance(check(received(occurred_at=soon)), v.ValidEvent)
    assert reason(check(received(occurred_at=late))) == v.FUTURE_TIMESTAMP


def test_old_timestamps_are_fine() -> None:
    # A centre back from days offline sends its backlog: late is normal, not an error.
    assert isinstance(check(received(occurred_at="2025-11-01T08:00:00+07:00")), v.ValidEvent)


def test_status_heartbeat_and_last_will() -> None:
    topic = f"dvc/v1/08/{COMMUNE}/status"
    beat = {
        "state": "online",
        "occurred_at": "2025-11-24T08:59:30+07:00",
        "software": "iGate 3.2",
        "queue_waiting": 4,
    }
    result = check(beat, topic=topic)
    assert isinstance(result, v.ValidEvent) and result.kind == "status"
    will = check({"state": "offline"}, topic=topic)
    assert isinstance(will, v.ValidEvent) and will.occurred_at == ARRIVED
    assert reason(check({**beat, "state": "sleeping"}, topic=topic)) == v.INVALID_FIELD
    assert reason(check({**beat, "queue_waiting": "4"}, topic=topic)) == v.INVALID_FIELD
    assert reason(check({"occurred_at": beat["occurred_at"]}, topic=topic)) == v.MISSING_FIELD


def test_every_reason_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "collector.md").read_text("utf-8")
    missing = [code for code in v.REASONS if f"`{code}`" not in doc]
    assert not missing
