"""Dossier state machine (pure domain code).

INTERFACE STUB - to be implemented. Signatures below are the contract other modules code against.

A dossier's state is a pure function of its set of events: events are sorted by
(occurred_at, TYPE_ORDER[type], event_id) and folded; duplicates (same event_id) are ignored.
So any arrival order, with duplicates, gives the same state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from control_center.domain.calendar import WorkingCalendar

# Status codes (DOMAIN.md)
NEW, RECEIVED, NOT_ACCEPTED, PROCESSING, WAITING_SUPPLEMENT, WAITING_PAYMENT = 1, 2, 3, 4, 5, 6
WITHDRAWN, STOPPED, RESULT_READY, RETURNED = 7, 8, 9, 10
IN_PROGRESS = frozenset({RECEIVED, PROCESSING})
PAUSED = frozenset({WAITING_SUPPLEMENT, WAITING_PAYMENT, STOPPED})
FINISHED = frozenset({WITHDRAWN, RESULT_READY, RETURNED})

DOSSIER_EVENT_TYPES = (
    "received",
    "assigned",
    "supplement_requested",
    "supplement_received",
    "payment_requested",
    "payment_received",
    "extended",
    "apology_issued",
    "completed",
    "returned",
    "rejected",
    "withdrawn",
    "transferred",
)

# Outcome buckets (DOMAIN.md; dates compared as local dates)
EARLY, ON_TIME, OVERDUE = "early", "on_time", "overdue"  # finished
IN_TIME, OVERDUE_OPEN = "in_time", "overdue_open"  # still in progress
NO_DUE = "no_due"  # kept without a due date, flagged for operators


@dataclass(frozen=True)
class Event:
    event_id: str
    type: str
    occurred_at: datetime  # aware
    commune_code: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProcedureTerms:
    processing_days: float | None = None
    processing_hours: float | None = None
    name: str | None = None
    sector: str | None = None


@dataclass(frozen=True)
class DossierState:
    dossier_code: str
    commune_code: str  # current handler after transfers
    received_commune_code: str
    procedure_code: str
    procedure_name: str | None
    sector: str | None
    channel: str | None  # online / counter / post
    status: int
    received_at: datetime
    clock_start_at: datetime | None
    due_at: datetime | None  # current due date (after pauses, extension, apology re-date)
    original_due_at: datetime | None
    paused_seconds: float  # working seconds paused so far (closed spans)
    paused_since: datetime | None  # set while paused
    extension_count: int
    apology_issued_at: datetime | None
    finished_at: datetime | None
    officer: str | None
    department: str | None
    applicant_name: str | None
    flags: tuple[str, ...]  # e.g. "no_due_date", "uncatalogued", "second_extension_ignored"
    event_count: int
    last_event_at: datetime

    @property
    def is_open(self) -> bool:
        return self.status not in FINISHED and self.status != NOT_ACCEPTED

    @property
    def is_paused(self) -> bool:
        return self.status in PAUSED


def derive_state(
    dossier_code: str,
    events: Iterable[Event],
    calendar: WorkingCalendar,
    terms: Callable[[str], ProcedureTerms | None],
) -> DossierState | None:
    """Fold the events in occurred_at order; None when there is no ``received`` event yet."""
    raise NotImplementedError


def finished_outcome(state: DossierState) -> str | None:
    """early / on_time / overdue for a finished dossier (RESULT_READY or RETURNED), by local date;
    None when open, withdrawn, rejected or without due date."""
    raise NotImplementedError


def open_outcome(state: DossierState, now: datetime) -> str | None:
    """in_time / overdue_open for an open dossier at ``now``; no_due without due date."""
    raise NotImplementedError


def local_day(instant: datetime) -> date:
    """The local (Asia/Ho_Chi_Minh) date of an instant."""
    raise NotImplementedError


def due_bucket_key(state: DossierState | None) -> tuple[str, datetime | None] | None:
    """(commune_code, due_at truncated to the minute) while the dossier is open, else None.
    The collector keeps commune_due_buckets.open_count = number of open dossiers per key."""
    raise NotImplementedError


def daily_contributions(state: DossierState | None) -> dict[tuple[str, date, str], int]:
    """Counters this dossier contributes to commune_daily: keys (commune_code, local day, metric).
    Metrics: received (day of receipt, receiving commune), received_online, finished
    (day of finish, current commune), finished_early, finished_on_time, finished_overdue,
    returned, rejected, withdrawn. The collector applies new - old on every state change."""
    raise NotImplementedError
