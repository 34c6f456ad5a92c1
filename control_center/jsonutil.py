"""JSON for the outside world: instants in ISO 8601 with the local +07:00 offset.

Operators and commune centres read times in Vietnam time; the database keeps UTC. Converting
here, at the edge, keeps the query functions free to return plain aware datetimes.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from control_center.domain.calendar import LOCAL_TZ


def local_iso(instant: datetime) -> str:
    """``2026-11-26T09:30:00+07:00``; naive datetimes are refused rather than guessed."""
    if instant.tzinfo is None:
        raise ValueError("naive datetime cannot be serialised: its offset is unknown")
    return instant.astimezone(LOCAL_TZ).isoformat()


def to_jsonable(value: Any) -> Any:
    """Recursively turn query results into JSON-ready values."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        # NaN/Infinity are not JSON; a rate with no data is null.
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return local_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), ensure_ascii=False, separators=(",", ":"))
