"""Working-day calendar (pure domain code: no I/O except reading an override file on request).

INTERFACE STUB - to be implemented. Signatures below are the contract other modules code against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
DEFAULT_SESSIONS: tuple[tuple[time, time], ...] = (
    (time(7, 0), time(11, 30)),
    (time(13, 30), time(17, 0)),
)


@dataclass(frozen=True)
class WorkingCalendar:
    """Vietnamese public-service working time.

    - working days: Mon-Fri minus ``holidays.VN`` (incl. its substituted days off), plus
      ``holidays.VN().weekend_workdays`` (make-up Saturdays), plus/minus the local overrides;
    - working hours: ``sessions`` (default 07:00-11:30, 13:30-17:00 = 8 h = one working day);
    - ``counter_cutoff``: an in-person ("counter") dossier received after it counts from the
      start of the next working day (Decree 61/2018 art. 18; None disables the rule).
    All public functions take and return timezone-aware datetimes (any offset; results in LOCAL_TZ).
    """

    sessions: tuple[tuple[time, time], ...] = DEFAULT_SESSIONS
    counter_cutoff: time | None = time(15, 0)
    extra_holidays: frozenset[date] = field(default_factory=frozenset)
    extra_workdays: frozenset[date] = field(default_factory=frozenset)

    @property
    def seconds_per_day(self) -> float:
        """Working seconds in one working day (8 h by default)."""
        raise NotImplementedError

    def is_working_day(self, day: date) -> bool:
        raise NotImplementedError

    def clock_start(self, received_at: datetime, channel: str | None = None) -> datetime:
        """The instant the legal clock starts: the receipt instant moved forward to working time
        (after closing -> next working day's start; lunch break -> afternoon start; weekend or
        holiday -> next working day's start; channel 'counter' after counter_cutoff -> next day)."""
        raise NotImplementedError

    def add_working_seconds(self, start: datetime, seconds: float) -> datetime:
        """The instant ``seconds`` of working time after ``start`` (start need not be in working time).
        Lands at the end of a session rather than the start of the next one when exact."""
        raise NotImplementedError

    def due_at(
        self,
        received_at: datetime,
        *,
        processing_days: float | None = None,
        processing_hours: float | None = None,
        channel: str | None = None,
    ) -> datetime | None:
        """Return date: clock_start + days x seconds_per_day (or hours x 3600) of working time.
        None when neither is given."""
        raise NotImplementedError

    def working_seconds_between(self, start: datetime, end: datetime) -> float:
        """Working seconds in [start, end); negative when end < start."""
        raise NotImplementedError

    def working_days_between(self, start: datetime, end: datetime) -> float:
        return self.working_seconds_between(start, end) / self.seconds_per_day

    def shift_due(self, due_at: datetime, paused_working_seconds: float) -> datetime:
        """Due date pushed back by paused working time (supplement / payment / stop)."""
        return self.add_working_seconds(due_at, paused_working_seconds)


def load_calendar(
    sessions: tuple[tuple[time, time], ...] = DEFAULT_SESSIONS,
    counter_cutoff: time | None = time(15, 0),
    override_file: str | None = None,
) -> WorkingCalendar:
    """Build a calendar, reading the YAML override file (``config/calendar_overrides.yaml``
    format: ``holidays: [YYYY-MM-DD, ...]``, ``workdays: [YYYY-MM-DD, ...]``) when given."""
    raise NotImplementedError
