"""Dossier state machine (pure domain code).

A dossier's state is a pure function of its set of events: events are sorted by
(occurred_at, TYPE_ORDER[type], event_id) and folded; duplicates (same event_id) are ignored.
So any arrival order, with duplicates, gives the same state.

Decisions the rules in DOMAIN.md leave open:

- The earliest ``received`` event is applied first even when other events carry earlier
  timestamps (a centre's clock minutes off); those are then applied in time order after it.
  Later ``received`` events are ignored (flag ``duplicate_received_ignored``).
- Pauses (status 5, 6) do not nest: a second request while paused changes the status but not
  the pause start, and either resume event ends the pause. The paused working time counts
  from the clock start at the earliest.
- The return date may be re-set once (DOMAIN.md, form 04). ``extended`` and an
  ``apology_issued`` carrying ``new_due_at`` share that one allowance; the same date announced
  by both counts once; a further different date is ignored (``second_extension_ignored``).
  Waits before a re-date do not shift the new date; waits after it do.
- ``finished_at`` is when the result became ready: ``completed``'s time, or ``returned``'s
  when no ``completed`` came first (and the withdrawal time for a withdrawn dossier).
  ``closed_at`` is when the dossier stopped being open (also set for ``rejected``).
- After a close, only what still makes sense applies: result ready -> returned, officer,
  apology time and transfers; pauses, re-dates and other closes are ignored and flagged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from typing import Any

from control_center.domain.calendar import LOCAL_TZ, WorkingCalendar

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
# Tie-break for events with the same occurred_at: the order a desk would do things in.
TYPE_ORDER: dict[str, int] = {
    kind: i
    for i, kind in enumerate(
        (
            "received",
            "assigned",
            "transferred",
            "supplement_requested",
            "payment_requested",
            "supplement_received",
            "payment_received",
            "extended",
            "apology_issued",
            "completed",
            "returned",
            "rejected",
            "withdrawn",
        )
    )
}
# Portal channel codes (KenhThucHien) some centres send instead of the contract's words.
_CHANNEL_CODES = {"1": "counter", "2": "online", "3": "post"}

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
    returned_at: datetime | None = None  # when the result was handed back (status 10)
    closed_at: datetime | None = None  # when it stopped being open (3, 7, 9, 10)

    @property
    def is_open(self) -> bool:
        return self.status not in FINISHED and self.status != NOT_ACCEPTED

    @property
    def is_paused(self) -> bool:
        return self.status in PAUSED


# Fields of the state a fold keeps as plain attributes (due_at is computed, flags a list).
_FOLD_FIELDS = tuple(f.name for f in fields(DossierState) if f.name not in ("due_at", "flags"))


def _parse_instant(value: Any) -> datetime | None:
    """An RFC 3339 timestamp from a payload; naive values are taken as local time."""
    if isinstance(value, datetime):
        instant = value
    elif isinstance(value, str) and value.strip():
        try:
            instant = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=LOCAL_TZ)


def _parse_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 and number == number and number != float("inf") else None


def _channel(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    return _CHANNEL_CODES.get(text, text)


def sort_key(event: Event) -> tuple[datetime, int, str]:
    return (event.occurred_at, TYPE_ORDER.get(event.type, len(TYPE_ORDER)), event.event_id)


def unique_in_order(events: Iterable[Event]) -> list[Event]:
    """Events sorted by ``sort_key`` with duplicates (same event_id) dropped. Of two events
    that share an id the first in sort order wins, so the choice never depends on arrival."""
    seen: set[str] = set()
    out: list[Event] = []
    for event in sorted(events, key=sort_key):
        if event.event_id not in seen:
            seen.add(event.event_id)
            out.append(event)
    return out


class _Fold:
    """Mutable working copy of a dossier while its events are folded."""

    def __init__(
        self,
        dossier_code: str,
        received: Event,
        calendar: WorkingCalendar,
        terms: Callable[[str], ProcedureTerms | None],
    ) -> None:
        self.calendar = calendar
        payload = received.payload
        self.flags: list[str] = []
        procedure_code = str(payload.get("procedure_code") or "")
        procedure = terms(procedure_code)
        if procedure is None:
            self.flag("uncatalogued")
        self.dossier_code = dossier_code
        self.commune_code = received.commune_code
        self.received_commune_code = received.commune_code
        self.procedure_code = procedure_code
        self.procedure_name: str | None = payload.get("procedure_name") or (
            procedure.name if procedure else None
        )
        self.sector: str | None = payload.get("sector") or (procedure.sector if procedure else None)
        self.channel = _channel(payload.get("channel"))
        self.applicant_name = payload.get("applicant_name")
        self.status = RECEIVED
        self.received_at = received.occurred_at
        self.clock_start_at = calendar.clock_start(received.occurred_at, self.channel)

        due = None
        if "due_at" in payload and payload["due_at"] not in (None, ""):
            due = _parse_instant(payload["due_at"])
            if due is None:
                self.flag("invalid_due_at")
        if due is None:
            days = _parse_number(payload.get("processing_days"))
            hours = _parse_number(payload.get("processing_hours"))
            if days is None and hours is None and procedure is not None:
                days, hours = procedure.processing_days, procedure.processing_hours
            due = calendar.due_at(
                received.occurred_at,
                processing_days=days,
                processing_hours=hours,
                channel=self.channel,
            )
        if due is None:
            self.flag("no_due_date")
        self.original_due_at = due
        # The due date is base_due pushed back by the working time paused since base_due was
        # set; a re-date (extension, apology) sets a new base and restarts that count, since
        # whoever re-dated it already took the earlier waits into account.
        self.base_due = due
        self.paused_since_base = 0.0
        self.paused_seconds = 0.0
        self.paused_since: datetime | None = None
        self.extension_count = 0
        self.apology_issued_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.returned_at: datetime | None = None
        self.closed_at: datetime | None = None
        self.officer: str | None = None
        self.department: str | None = None
        self.event_count = 1
        self.last_event_at = received.occurred_at

    @classmethod
    def resume(cls, state: DossierState, calendar: WorkingCalendar) -> _Fold | None:
        """The fold as it stood after the events ``state`` was derived from, or None when the
        state does not hold all of it: after a re-date, the base the due date counts from."""
        if state.extension_count:
            return None
        fold = cls.__new__(cls)
        fold.calendar = calendar
        for name in _FOLD_FIELDS:
            setattr(fold, name, getattr(state, name))
        fold.flags = list(state.flags)
        # No re-date yet: the due date still counts from the original one, pushed back by
        # every closed pause.
        fold.base_due = state.original_due_at
        fold.paused_since_base = state.paused_seconds
        return fold

    def flag(self, name: str) -> None:
        if name not in self.flags:
            self.flags.append(name)

    @property
    def due_at(self) -> datetime | None:
        if self.base_due is None or not self.paused_since_base:
            return self.base_due
        return self.calendar.shift_due(self.base_due, self.paused_since_base)

    @property
    def is_open(self) -> bool:
        return self.status not in FINISHED and self.status != NOT_ACCEPTED

    def end_pause(self, at: datetime) -> None:
        if self.paused_since is None:
            return
        # Time before the clock started was never running, so it cannot be paused either.
        start = max(self.paused_since, self.clock_start_at)
        paused = max(0.0, self.calendar.working_seconds_between(start, at))
        self.paused_seconds += paused
        self.paused_since_base += paused
        self.paused_since = None

    def redate(self, new_due_raw: Any) -> None:
        new_due = _parse_instant(new_due_raw)
        if new_due is None:
            self.flag("invalid_new_due_at")
            return
        if self.base_due is not None and new_due == self.due_at:
            return  # the same date announced twice (extension + apology slip) is one re-date
        if not self.is_open:
            # A finished dossier's outcome is history: a late slip cannot make it on time.
            self.flag("redate_after_finish_ignored")
            return
        if self.extension_count >= 1:
            self.flag("second_extension_ignored")
            return
        self.extension_count += 1
        self.base_due = new_due
        self.paused_since_base = 0.0

    def apply(self, event: Event) -> None:
        kind, at, payload = event.type, event.occurred_at, event.payload
        self.event_count += 1
        self.last_event_at = max(self.last_event_at, at)
        if kind == "assigned":
            self.officer = payload.get("officer") or self.officer
            self.department = payload.get("department") or self.department
            if self.status == RECEIVED:
                self.status = PROCESSING
        elif kind in ("supplement_requested", "payment_requested"):
            if not self.is_open:
                self.flag("event_after_close_ignored")
                return
            if self.paused_since is None:
                self.paused_since = at
            self.status = WAITING_SUPPLEMENT if kind == "supplement_requested" else WAITING_PAYMENT
        elif kind in ("supplement_received", "payment_received"):
            # Either resume ends the wait: a centre that asked for both sends both answers,
            # and the clock cannot run twice.
            if self.status in PAUSED:
                self.end_pause(at)
                self.status = PROCESSING
        elif kind == "extended":
            self.redate(payload.get("new_due_at"))
        elif kind == "apology_issued":
            if self.apology_issued_at is None:
                self.apology_issued_at = at
            if payload.get("new_due_at") not in (None, ""):
                # The apology slip (form 04) is the instrument of the one allowed re-date, so
                # it shares the allowance with `extended`.
                self.redate(payload["new_due_at"])
        elif kind == "completed":
            if self.status in (RESULT_READY, RETURNED):
                return
            if not self.is_open:
                self.flag("event_after_close_ignored")
                return
            self.end_pause(at)
            self.status = RESULT_READY
            self.finished_at = self.closed_at = at
        elif kind == "returned":
            if self.status == RETURNED:
                return
            if self.status in (WITHDRAWN, NOT_ACCEPTED):
                self.flag("event_after_close_ignored")
                return
            self.end_pause(at)
            self.status = RETURNED
            self.returned_at = at
            if self.finished_at is None:
                self.finished_at = self.closed_at = at
        elif kind in ("rejected", "withdrawn"):
            if not self.is_open:
                self.flag("event_after_close_ignored")
                return
            self.end_pause(at)
            self.closed_at = at
            if kind == "withdrawn":
                self.status = WITHDRAWN
                self.finished_at = at
            else:
                self.status = NOT_ACCEPTED
        elif kind == "transferred":
            target = payload.get("to_commune_code")
            if target:
                self.commune_code = str(target)
        elif kind == "received":
            self.flag("duplicate_received_ignored")
        else:
            self.flag("unknown_event_type")

    def freeze(self) -> DossierState:
        return DossierState(
            dossier_code=self.dossier_code,
            commune_code=self.commune_code,
            received_commune_code=self.received_commune_code,
            procedure_code=self.procedure_code,
            procedure_name=self.procedure_name,
            sector=self.sector,
            channel=self.channel,
            status=self.status,
            received_at=self.received_at,
            clock_start_at=self.clock_start_at,
            due_at=self.due_at,
            original_due_at=self.original_due_at,
            paused_seconds=self.paused_seconds,
            paused_since=self.paused_since,
            extension_count=self.extension_count,
            apology_issued_at=self.apology_issued_at,
            finished_at=self.finished_at,
            officer=self.officer,
            department=self.department,
            applicant_name=self.applicant_name,
            flags=tuple(self.flags),
            event_count=self.event_count,
            last_event_at=self.last_event_at,
            returned_at=self.returned_at,
            closed_at=self.closed_at,
        )


def derive_state(
    dossier_code: str,
    events: Iterable[Event],
    calendar: WorkingCalendar,
    terms: Callable[[str], ProcedureTerms | None],
) -> DossierState | None:
    """Fold the events in occurred_at order; None when there is no ``received`` event yet."""
    ordered = unique_in_order(events)
    received = next((e for e in ordered if e.type == "received"), None)
    if received is None:
        return None
    fold = _Fold(dossier_code, received, calendar, terms)
    for event in ordered:
        if event is not received:
            fold.apply(event)
    return fold.freeze()


def fold_onto(
    state: DossierState, events: Iterable[Event], calendar: WorkingCalendar
) -> DossierState | None:
    """``state`` with ``events`` applied, when they all come after every event ``state`` was
    derived from; then the result equals :func:`derive_state` over all the events, without
    reading the older ones. None when that is not certain (an event at or before
    ``state.last_event_at``, or a re-dated dossier): derive from all the events instead."""
    ordered = unique_in_order(events)
    if not ordered or ordered[0].occurred_at <= state.last_event_at:
        return None
    fold = _Fold.resume(state, calendar)
    if fold is None:
        return None
    for event in ordered:
        fold.apply(event)
    return fold.freeze()


def finished_outcome(state: DossierState) -> str | None:
    """early / on_time / overdue for a finished dossier (RESULT_READY or RETURNED), by local date;
    None when open, withdrawn, rejected or without due date."""
    if state.status not in (RESULT_READY, RETURNED) or state.due_at is None:
        return None
    if state.finished_at is None:
        return None
    finished, due = local_day(state.finished_at), local_day(state.due_at)
    if finished < due:
        return EARLY
    return ON_TIME if finished == due else OVERDUE


def open_outcome(state: DossierState, now: datetime) -> str | None:
    """in_time / overdue_open for an open dossier at ``now``; no_due without due date.
    None when the dossier is closed.

    A paused dossier's clock is stopped and its due date moves with the pause, so it keeps the
    outcome it had when the pause started (in time if the pause began on or before the due
    day); use :func:`effective_due_at` for the moving date itself."""
    if not state.is_open:
        return None
    if state.due_at is None:
        return NO_DUE
    at = state.paused_since if state.paused_since is not None else now
    return IN_TIME if local_day(at) <= local_day(state.due_at) else OVERDUE_OPEN


def local_day(instant: datetime) -> date:
    """The local (Asia/Ho_Chi_Minh) date of an instant."""
    return instant.astimezone(LOCAL_TZ).date()


def due_bucket_key(state: DossierState | None) -> tuple[str, datetime | None, bool] | None:
    """(commune_code, due_at truncated to the minute, paused) while the dossier is open, else
    None. The collector keeps commune_due_buckets.open_count = number of open dossiers per key.

    ``(commune_code, None, False)`` for an open dossier without a due date. ``paused`` is
    true while the dossier's clock is stopped and was stopped in time (before its due date):
    its due date moves with the pause, so it is in the open backlog but neither overdue nor
    due soon until it resumes. A dossier paused after its due date stays overdue (its lateness
    is frozen, not undone), so it counts as not paused. Either way the key holds the stored
    due_at (the date before the running pause), so it changes only when an event changes the
    dossier."""
    if state is None or not state.is_open:
        return None
    if state.due_at is None:
        return (state.commune_code, None, False)
    minute = state.due_at.astimezone(UTC).replace(second=0, microsecond=0)
    return (state.commune_code, minute, clock_stopped_in_time(state))


def clock_stopped_in_time(state: DossierState) -> bool:
    """Paused (waiting for the citizen) since before the due date: not late while it lasts."""
    if not state.is_paused or state.due_at is None:
        return False
    return state.paused_since is None or state.paused_since < state.due_at


# What daily_contributions counts: the columns of commune_days, one row per commune and day.
DAILY_METRICS = (
    "received",
    "received_online",
    "finished",
    "finished_early",
    "finished_on_time",
    "finished_overdue",
    "finished_no_due",
    "returned",
    "rejected",
    "withdrawn",
)


def daily_contributions(state: DossierState | None) -> dict[tuple[str, date, str], int]:
    """Counters this dossier contributes to commune_days: keys (commune_code, local day, metric),
    a metric of :data:`DAILY_METRICS`. Metrics: received (day of receipt, receiving commune), received_online, finished
    (day of finish, current commune), finished_early, finished_on_time, finished_overdue,
    returned, rejected, withdrawn. The collector applies new - old on every state change.

    ``finished`` counts results (status 9 or 10) on the day the result became ready, split
    into exactly one of finished_early / finished_on_time / finished_overdue, or
    finished_no_due when the dossier had no due date; withdrawn and rejected dossiers are
    counted under their own metric on the day they closed. ``returned`` is counted on the
    day of handing back."""
    if state is None:
        return {}
    out: dict[tuple[str, date, str], int] = {}

    def count(commune: str, instant: datetime, metric: str) -> None:
        key = (commune, local_day(instant), metric)
        out[key] = out.get(key, 0) + 1

    count(state.received_commune_code, state.received_at, "received")
    if state.channel == "online":
        count(state.received_commune_code, state.received_at, "received_online")
    if state.status in (RESULT_READY, RETURNED) and state.finished_at is not None:
        count(state.commune_code, state.finished_at, "finished")
        outcome = finished_outcome(state)
        count(state.commune_code, state.finished_at, f"finished_{outcome or NO_DUE}")
    if state.status == RETURNED and state.returned_at is not None:
        count(state.commune_code, state.returned_at, "returned")
    if state.status == NOT_ACCEPTED and state.closed_at is not None:
        count(state.commune_code, state.closed_at, "rejected")
    if state.status == WITHDRAWN and state.closed_at is not None:
        count(state.commune_code, state.closed_at, "withdrawn")
    return out


def effective_due_at(
    state: DossierState, now: datetime, calendar: WorkingCalendar
) -> datetime | None:
    """The due date as it stands at ``now``: for a paused dossier, due_at pushed back by the
    working time of the running pause (the pause is not over, so the state cannot include it)."""
    if state.due_at is None or state.paused_since is None:
        return state.due_at
    start = state.paused_since
    if state.clock_start_at is not None:
        start = max(start, state.clock_start_at)
    running = max(0.0, calendar.working_seconds_between(start, now))
    return calendar.shift_due(state.due_at, running) if running else state.due_at
