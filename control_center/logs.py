"""Logging set-up for every process: one line per record, key=value fields, UTC timestamps."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from control_center.security.masking import PersonalDataFilter

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    """``2026-11-26T04:05:06Z INFO collector batch stored=120 duplicates=2``.

    Anything passed in ``extra=`` is appended as ``key=value`` so logs stay greppable.
    """

    converter = time.gmtime  # type: ignore[assignment]  # UTC stamps

    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, "%Y-%m-%dT%H:%M:%SZ")
        extras = " ".join(
            f"{k}={_fmt(v)}" for k, v in record.__dict__.items() if k not in _RESERVED
        )
        line = f"{stamp} {record.levelname} {record.name} {record.getMessage()}"
        if extras:
            line = f"{line} {extras}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def _fmt(value: Any) -> str:
    text = str(value)
    return f'"{text}"' if " " in text else text


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    # Applicants' names and phone numbers never reach a log line, whoever logged them.
    handler.addFilter(PersonalDataFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("werkzeug", "amqtt", "transitions", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
