"""Queue tickets (số thứ tự) and counters (pure domain code).

A ticket goes waiting -> called -> serving -> completed | cancelled. Like a dossier, its state is
a pure function of its set of events: sorted by (occurred_at, TYPE_ORDER[type], event_id), folded,
duplicates (same event_id) ignored, so a kiosk that resends a backlog out of order changes
nothing. A step that arrives without the steps before it (the kiosk's ``ticket_issued`` lost or
still on its way) still moves the ticket forward; the missing times stay None.

Ticket numbers restart every day, so a ticket is identified by (commune, service day, ticket_no),
the service day being the local date of its events (:func:`service_day`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from control_center.domain.calendar import LOCAL_TZ
from control_center.domain.dossier import Event, unique_in_order

WAITING, CALLED, SERVING, COMPLETED, CANCELLED = (
    "waiting",
    "called",
    "serving",
    "completed",
    "cancelled",
)
TICKET_STATES = (WAITING, CALLED, SERVING, COMPLETED, CANCELLED)
CLOSED_STATES = frozenset({COMPLETED, CANCELLED})
TICKET_EVENT_TYPES = (
    "ticket_issued",
    "ticket_called",
    "service_started",
    "ticket_completed",
    "ticket_cancelled",
)
COUNTER_EVENT_TYPES = ("counter_opened", "counter_closed")
PRIORITIES = ("normal", "priority", "elderly")
CANCEL_REASONS = ("no_show", "document_missing")  # others are kept as sent

# How far along each state is: an event never moves a ticket backwards.
_PROGRESS = {WAITING: 0, CALLED: 1, SERVING: 2, COMPLETED: 3, CANCELLED: 3}


@dataclass(frozen=True)
class TicketState:
    commune_code: str
    ticket_no: str
    state: str  # waiting / called / serving / completed / cancelled
    issued_at: datetime | None
    called_at: datetime | None  # first call: the wait ends when the counter first calls
    started_at: datetime | None
    finished_at: datetime | None  # completed or cancelled
    counter: str | None  # the counter that called / served it, latest wins
    channel: str | None  # kiosk / zalo / web / counter
    service: str | None
    priority: str | None  # normal / priority / elderly
    cancel_reason: str | None
    call_count: int  # repeated calls before a no-show
    event_count: int
    last_event_at: datetime

    @property
    def is_waiting(self) -> bool:
        return self.state == WAITING

    @property
    def is_closed(self) -> bool:
        return self.state in CLOSED_STATES


def service_day(instant: datetime) -> date:
    """The local day a ticket event belongs to (ticket numbers restart daily)."""
    return instant.astimezone(LOCAL_TZ).date()


def derive_ticket(events: Iterable[Event]) -> TicketState | None:
    """Fold one ticket's events (same commune, day and ticket_no); None when there are none.

    Events of other types (counter events, anything unknown) are skipped."""
    ordered = [e for e in unique_in_order(events) if e.type in TICKET_EVENT_TYPES]
    if not ordered:
        return None
    first = ordered[0]
    state: str = WAITING
    issued_at = called_at = started_at = finished_at = None
    counter = channel = service = priority = cancel_reason = None
    call_count = 0
    for event in ordered:
        kind, at, payload = event.type, event.occurred_at, event.payload
        closed = state in CLOSED_STATES
        if kind == "ticket_issued":
            if issued_at is None:
                issued_at = at
                channel = payload.get("channel") or channel
                service = payload.get("service") or service
                priority = payload.get("priority") or priority
            continue
        if closed:
            continue  # the first close in time order is the ticket's end
        counter = payload.get("counter") or counter
        if kind == "ticket_called":
            call_count += 1
            if called_at is None:
                called_at = at
            if _PROGRESS[state] < _PROGRESS[CALLED]:
                state = CALLED
        elif kind == "service_started":
            if started_at is None:
                started_at = at
            state = SERVING
        elif kind == "ticket_completed":
            state, finished_at = COMPLETED, at
        elif kind == "ticket_cancelled":
            state, finished_at = CANCELLED, at
            cancel_reason = payload.get("reason") or "other"
    ticket_no = first.payload.get("ticket_no")
    return TicketState(
        commune_code=first.commune_code,
        ticket_no=str(ticket_no) if ticket_no is not None else "",
        state=state,
        issued_at=issued_at,
        called_at=called_at,
        started_at=started_at,
        finished_at=finished_at,
        counter=counter,
        channel=channel,
        service=service,
        priority=priority,
        cancel_reason=cancel_reason,
        call_count=call_count,
        event_count=len(ordered),
        last_event_at=max(e.occurred_at for e in ordered),
    )


def wait_seconds(ticket: TicketState, now: datetime) -> float | None:
    """How long the applicant waited: issue to first call (to service start when the counter
    served it without a call event, to the close when it was cancelled uncalled); to now while
    still waiting. None without an issue time."""
    if ticket.issued_at is None:
        return None
    end = (
        ticket.called_at
        or ticket.started_at
        or ticket.finished_at
        or (now if ticket.is_waiting else None)
    )
    if end is None:
        return None
    return max(0.0, (end - ticket.issued_at).total_seconds())


def handling_seconds(ticket: TicketState, now: datetime) -> float | None:
    """Time at the counter: service start to completion, or to now while serving."""
    if ticket.started_at is None:
        return None
    end = ticket.finished_at or (now if ticket.state == SERVING else None)
    if end is None:
        return None
    return max(0.0, (end - ticket.started_at).total_seconds())


@dataclass(frozen=True)
class CounterStatus:
    counter: str
    is_open: bool
    last_event_at: datetime


def apply_counter_event(current: CounterStatus | None, event: Event) -> CounterStatus:
    """The counter's status after ``event``: the newest occurred_at wins, so a late
    ``counter_opened`` from before a close cannot reopen it. On a tie a close wins (a wall
    that shows a shut counter as open sends people to an empty desk)."""
    if event.type not in COUNTER_EVENT_TYPES:
        raise ValueError(f"not a counter event: {event.type!r}")
    is_open = event.type == "counter_opened"
    counter = str(event.payload.get("counter") or (current.counter if current else ""))
    if current is None or event.occurred_at > current.last_event_at:
        return CounterStatus(counter, is_open, event.occurred_at)
    if event.occurred_at == current.last_event_at and current.is_open and not is_open:
        return CounterStatus(current.counter, False, current.last_event_at)
    return current


def counter_states(events: Iterable[Event]) -> dict[str, CounterStatus]:
    """Status per counter from a commune's counter events (other event types are skipped)."""
    out: dict[str, CounterStatus] = {}
    for event in events:
        if event.type in COUNTER_EVENT_TYPES:
            counter = str(event.payload.get("counter") or "")
            out[counter] = apply_counter_event(out.get(counter), event)
    return out
