"""Applicants' personal data (names, phone numbers, ...) masked for roles that must not see it.

Dossiers carry citizens' personal data (``applicant_name`` in the contract; centres may send
more, such as a phone number). The read side shows it in full only to the roles named by
``CC_PERSONAL_DATA_ROLES``; everyone else sees ``N*** V*** A***``, and logs never carry it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

# Payload keys that hold an applicant's personal data. A centre may send any of them.
PERSONAL_FIELDS = frozenset(
    {
        "applicant_name",
        "applicant_phone",
        "applicant_email",
        "applicant_address",
        "applicant_id_number",
        "phone",
        "phone_number",
        "email",
        "address",
        "citizen_id",
        "id_number",
    }
)
MASK = "***"

# '"applicant_name": "Trần Thị B"' in JSON text, and applicant_name=Trần in key=value logs.
_FIELD_IN_TEXT = re.compile(
    r'(?P<key>"?(?:' + "|".join(sorted(PERSONAL_FIELDS)) + r')"?\s*[:=]\s*)'
    r'(?P<value>"(?:[^"\\]|\\.)*"?|[^\s,}]+)',
)
# Vietnamese phone numbers: 0xxxxxxxxx or +84xxxxxxxxx (9-10 digits after the prefix).
_PHONE = re.compile(r"(?<![\w.])(?:\+84|0)(?:[\s.-]?\d){8,10}(?![\w.])")


def mask_name(name: str | None) -> str | None:
    """``"Trần Thị B"`` -> ``"T*** T*** B***"``: rows stay tellable apart, nobody is named."""
    if not name:
        return name
    return " ".join(word[0] + MASK for word in name.split())


def mask_phone(phone: str | None) -> str | None:
    """Every digit but the last two hidden: ``0912345678`` -> ``********78``."""
    if not phone:
        return phone
    digits = [c for c in phone if c.isdigit()]
    return "*" * max(len(digits) - 2, 0) + "".join(digits[-2:])


def mask_value(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return MASK if value is not None else None
    if "phone" in key:
        return mask_phone(value)
    if "name" in key:
        return mask_name(value)
    return MASK


def mask_text(text: str) -> str:
    """Personal fields and phone numbers hidden in free text (a raw payload, a log line)."""

    def field(match: re.Match[str]) -> str:
        quoted = match.group("value").startswith('"')
        return match.group("key") + (f'"{MASK}"' if quoted else MASK)

    return _PHONE.sub(lambda m: mask_phone(m.group(0)) or "", _FIELD_IN_TEXT.sub(field, text))


class PersonalDataFilter(logging.Filter):
    """Masks personal data in every log record, whatever logged it (messages and ``extra``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            try:
                record.msg = record.getMessage()
            except (TypeError, ValueError):
                return True
            record.args = None
        if isinstance(record.msg, str):
            record.msg = mask_text(record.msg)
        for key, value in list(record.__dict__.items()):
            if key in PERSONAL_FIELDS and value is not None:
                setattr(record, key, mask_value(key, value))
            elif key not in _RECORD_FIELDS and isinstance(value, str):
                setattr(record, key, mask_text(value))
        return True


_RECORD_FIELDS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
