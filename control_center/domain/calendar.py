"""Working-day calendar (pure domain code: no I/O except reading an override file on request).

Working time is measured on one monotone "working clock": ``W(t)`` = working seconds from a
fixed origin to the instant ``t``. Then ``working_seconds_between(a, b) = W(b) - W(a)`` and
``add_working_seconds`` is the inverse of ``W``. ``W`` is computed from per-year tables (rank of
every day among working days, built once per year and cached on the calendar), so both
operations cost O(1) per call plus O(years spanned), never O(days): the collector computes due
dates for thousands of events per second and the alert engine working time for whole backlogs.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
DEFAULT_SESSIONS: tuple[tuple[time, time], ...] = (
    (time(7, 0), time(11, 30)),
    (time(13, 30), time(17, 0)),
)
DEFAULT_COUNTER_CUTOFF = time(15, 0)

# Ranks are counted from 1 January of this year; earlier years get negative ranks, so any date
# works, but years near the origin are the cheap ones to reach.
_ORIGIN_YEAR = 2020


def _seconds_of_day(t: time) -> float:
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


@dataclass(frozen=True)
class _Year:
    """One year's working days: ``rank_before[i]`` = working days before day-of-year index i."""

    first_ordinal: int  # date.toordinal() of 1 January
    rank_before: tuple[int, ...]  # len = days in year + 1; last item = working days in the year
    workday_ordinals: tuple[int, ...]

    @property
    def total(self) -> int:
        return self.rank_before[-1]


@dataclass(frozen=True)
class WorkingCalendar:
    """Vietnamese public-service working time.

    - working days: Mon-Fri minus ``holidays.VN`` (incl. its substituted days off), plus
      ``holidays.VN().weekend_workdays`` (make-up Saturdays), plus/minus the local overrides
      (an override holiday wins over everything, then an override workday);
    - working hours: ``sessions`` (default 07:00-11:30, 13:30-17:00 = 8 h = one working day);
    - ``counter_cutoff``: an in-person ("counter") dossier received after it counts from the
      start of the next working day (Decree 61/2018 art. 18; None disables the rule).
    All public functions take and return timezone-aware datetimes (any offset; results in LOCAL_TZ).
    """

    sessions: tuple[tuple[time, time], ...] = DEFAULT_SESSIONS
    counter_cutoff: time | None = DEFAULT_COUNTER_CUTOFF
    extra_holidays: frozenset[date] = field(default_factory=frozenset)
    extra_workdays: frozenset[date] = field(default_factory=frozenset)
    # Per-instance memos (session table, year tables, rank bases); not part of identity.
    _memo: dict[str, Any] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    _years: dict[int, _Year] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    _bases: dict[int, int] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if not self.sessions:
            raise ValueError("a working calendar needs at least one working session")
        flat = [t for s in self.sessions for t in s]
        if flat != sorted(flat) or len(set(flat)) != len(flat):
            raise ValueError("working sessions must be increasing and non-overlapping")
        starts = tuple(_seconds_of_day(s) for s, _ in self.sessions)
        ends = tuple(_seconds_of_day(e) for _, e in self.sessions)
        done_before: list[float] = []  # working seconds of the day before each session starts
        acc = 0.0
        for s, e in zip(starts, ends, strict=True):
            done_before.append(acc)
            acc += e - s
        self._memo["sessions"] = (starts, ends, tuple(done_before), acc)

    # --- days -------------------------------------------------------------------------------

    @property
    def seconds_per_day(self) -> float:
        """Working seconds in one working day (8 h by default)."""
        return float(self._memo["sessions"][3])

    def is_working_day(self, day: date) -> bool:
        year = self._year(day.year)
        i = day.toordinal() - year.first_ordinal
        return year.rank_before[i + 1] > year.rank_before[i]

    def _compute_is_working_day(self, day: date, vn_holidays: Any) -> bool:
        if day in self.extra_holidays:
            return False
        if day in self.extra_workdays:
            return True
        if day in vn_holidays:
            return False
        if day in vn_holidays.weekend_workdays:
            return True
        return day.weekday() < 5

    def _year(self, year: int) -> _Year:
        cached = self._years.get(year)
        if cached is not None:
            return cached
        import holidays  # imported lazily: building its tables is not free

        vn = holidays.country_holidays("VN", years=year)
        first = date(year, 1, 1)
        n_days = (date(year + 1, 1, 1) - first).days
        rank_before = [0]
        workdays: list[int] = []
        for i in range(n_days):
            day = first + timedelta(days=i)
            if self._compute_is_working_day(day, vn):
                workdays.append(day.toordinal())
            rank_before.append(len(workdays))
        built = _Year(first.toordinal(), tuple(rank_before), tuple(workdays))
        self._years[year] = built
        return built

    def _rank_base(self, year: int) -> int:
        """Working days from 1 January of the origin year to 1 January of ``year``."""
        cached = self._bases.get(year)
        if cached is not None:
            return cached
        if year == _ORIGIN_YEAR:
            base = 0
        elif year > _ORIGIN_YEAR:
            base = self._rank_base(year - 1) + self._year(year - 1).total
        else:
            base = self._rank_base(year + 1) - self._year(year).total
        self._bases[year] = base
        return base

    def _rank(self, day: date) -> int:
        """Working days from the origin to ``day`` (``day`` itself not counted)."""
        year = self._year(day.year)
        return self._rank_base(day.year) + year.rank_before[day.toordinal() - year.first_ordinal]

    def _day_of_rank(self, rank: int, hint_year: int) -> date:
        """The working day with the given rank (the rank-th working day from the origin)."""
        y = hint_year
        while rank < self._rank_base(y):
            y -= 1
        while rank >= self._rank_base(y) + self._year(y).total:
            y += 1
        return date.fromordinal(self._year(y).workday_ordinals[rank - self._rank_base(y)])

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after ``day``."""
        rank = self._rank(day) + (1 if self.is_working_day(day) else 0)
        return self._day_of_rank(rank, day.year)

    def add_working_days(self, day: date, n: int) -> date:
        """The working day ``n`` working days after ``day`` (before it when n < 0); ``day``
        itself is moved to the next working day first when it is not one."""
        rank = self._rank(day) + n
        return self._day_of_rank(rank, day.year)

    def day_start(self, day: date) -> datetime:
        return datetime.combine(day, self.sessions[0][0], LOCAL_TZ)

    def day_end(self, day: date) -> datetime:
        return datetime.combine(day, self.sessions[-1][1], LOCAL_TZ)

    # --- the working clock --------------------------------------------------------------------

    def _within_day(self, tod: float) -> float:
        starts, ends, _, _ = self._memo["sessions"]
        done = 0.0
        for s, e in zip(starts, ends, strict=True):
            if tod <= s:
                break
            done += min(tod, e) - s
        return done

    def _clock(self, instant: datetime) -> tuple[float, datetime]:
        """W(instant) in working seconds from the origin, and the instant in local time."""
        if instant.tzinfo is None:
            raise ValueError("working time needs timezone-aware datetimes")
        local = instant.astimezone(LOCAL_TZ)
        day = local.date()
        rank = self._rank(day)
        if not self.is_working_day(day):
            return rank * self.seconds_per_day, local
        tod = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        return rank * self.seconds_per_day + self._within_day(tod), local

    def _instant_of(self, clock: float, hint_year: int, *, earliest: bool) -> datetime:
        """Inverse of W. Where W is flat (nights, weekends, lunch), ``earliest`` picks the end of
        the working time before the flat stretch, otherwise the start of the one after it."""
        spd = self.seconds_per_day
        starts, _, done_before, _ = self._memo["sessions"]
        # Microsecond rounding keeps float noise from turning an exact session end into the
        # next day's start.
        rank, within = divmod(round(clock, 6), spd)
        rank = int(rank)
        if earliest and within <= 0:
            rank, within = rank - 1, spd
        day = self._day_of_rank(rank, hint_year)
        if earliest:
            i = bisect.bisect_left(done_before, within) - 1
        else:
            i = bisect.bisect_right(done_before, within) - 1
        tod = starts[i] + (within - done_before[i])
        return datetime.combine(day, time(0), LOCAL_TZ) + timedelta(seconds=tod)

    def is_working_time(self, instant: datetime) -> bool:
        local = instant.astimezone(LOCAL_TZ)
        if not self.is_working_day(local.date()):
            return False
        tod = _seconds_of_day(local.time())
        starts, ends, _, _ = self._memo["sessions"]
        return any(s <= tod < e for s, e in zip(starts, ends, strict=True))

    def clock_start(self, received_at: datetime, channel: str | None = None) -> datetime:
        """The instant the legal clock starts: the receipt instant moved forward to working time
        (after closing -> next working day's start; lunch break -> afternoon start; weekend or
        holiday -> next working day's start; channel 'counter' after counter_cutoff -> next day)."""
        # Memoised: deriving a dossier asks twice (its clock start, then its due date), and the
        # collector derives thousands a second. Bounded: cleared when it grows large.
        memo = self._memo.setdefault("clock_start", {})
        key = (received_at, channel)
        start = memo.get(key)
        if start is None:
            if len(memo) >= 4096:
                memo.clear()
            start = memo[key] = self._clock_start(received_at, channel)
        return start

    def _clock_start(self, received_at: datetime, channel: str | None) -> datetime:
        clock, local = self._clock(received_at)
        day = local.date()
        if (
            channel == "counter"
            and self.counter_cutoff is not None
            and local.time() > self.counter_cutoff
            and self.is_working_day(day)
        ):
            return self.day_start(self.next_working_day(day))
        if self.is_working_time(local):
            return local
        # The first instant of working time after a flat stretch of the working clock.
        return self._instant_of(clock, day.year, earliest=False)

    def add_working_seconds(self, start: datetime, seconds: float) -> datetime:
        """The instant ``seconds`` of working time after ``start`` (start need not be in working time).
        Lands at the end of a session rather than the start of the next one when exact.
        Negative ``seconds`` go back in time (landing at a session start when exact)."""
        clock, local = self._clock(start)
        if seconds == 0:
            return local
        return self._instant_of(clock + seconds, local.year, earliest=seconds > 0)

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        return self.add_working_seconds(start, hours * 3600)

    def due_at(
        self,
        received_at: datetime,
        *,
        processing_days: float | None = None,
        processing_hours: float | None = None,
        channel: str | None = None,
    ) -> datetime | None:
        """Return date: clock_start + days x seconds_per_day (or hours x 3600) of working time.
        None when neither is given. Both given: their sum. ``processing_days == 0`` means
        "within the day" (trong ngày): the end of the clock start's working day."""
        if processing_days is None and processing_hours is None:
            return None
        start = self.clock_start(received_at, channel)
        if processing_days == 0 and not processing_hours:
            return self.day_end(start.date())
        seconds = (processing_days or 0) * self.seconds_per_day + (processing_hours or 0) * 3600
        return self.add_working_seconds(start, seconds)

    def working_seconds_between(self, start: datetime, end: datetime) -> float:
        """Working seconds in [start, end); negative when end < start."""
        return self._clock(end)[0] - self._clock(start)[0]

    def working_days_between(self, start: datetime, end: datetime) -> float:
        return self.working_seconds_between(start, end) / self.seconds_per_day

    def shift_due(self, due_at: datetime, paused_working_seconds: float) -> datetime:
        """Due date pushed back by paused working time (supplement / payment / stop)."""
        return self.add_working_seconds(due_at, paused_working_seconds)


def _parse_days(raw: Any, what: str, source: str) -> frozenset[date]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        raise ValueError(f"{source}: {what!r} must be a list of YYYY-MM-DD dates")
    days: set[date] = set()
    for item in raw:
        # An entry may carry a note: {date: 2026-01-02, note: "Decision ..."}
        value = item.get("date") if isinstance(item, dict) else item
        if isinstance(value, datetime):
            value = value.date()
        if isinstance(value, str):
            try:
                value = date.fromisoformat(value.strip())
            except ValueError:
                value = None
        if not isinstance(value, date):
            raise ValueError(f"{source}: {what!r} entry {item!r} is not a YYYY-MM-DD date")
        days.add(value)
    return frozenset(days)


def read_overrides(path: str | Path) -> tuple[frozenset[date], frozenset[date]]:
    """(extra holidays, extra workdays) from a YAML override file; a clear ValueError if bad."""
    import yaml

    source = str(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ValueError(
            f"calendar override file {source!r} cannot be read: {exc.strerror}"
        ) from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"calendar override file {source!r} is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping with 'holidays' and 'workdays'")
    unknown = set(data) - {"holidays", "workdays"}
    if unknown:
        raise ValueError(f"{source}: unknown keys {sorted(unknown)} (use holidays, workdays)")
    return (
        _parse_days(data.get("holidays"), "holidays", source),
        _parse_days(data.get("workdays"), "workdays", source),
    )


def load_calendar(
    sessions: tuple[tuple[time, time], ...] = DEFAULT_SESSIONS,
    counter_cutoff: time | None = DEFAULT_COUNTER_CUTOFF,
    override_file: str | None = None,
) -> WorkingCalendar:
    """Build a calendar, reading the YAML override file (``config/calendar_overrides.yaml``
    format: ``holidays: [YYYY-MM-DD, ...]``, ``workdays: [YYYY-MM-DD, ...]``) when given."""
    extra_holidays: frozenset[date] = frozenset()
    extra_workdays: frozenset[date] = frozenset()
    if override_file:
        extra_holidays, extra_workdays = read_overrides(override_file)
    return WorkingCalendar(
        sessions=tuple(sessions),
        counter_cutoff=counter_cutoff,
        extra_holidays=extra_holidays,
        extra_workdays=extra_workdays,
    )


def working_days(calendar: WorkingCalendar, start: date, end: date) -> Iterable[date]:
    """Working days in [start, end) (for reports; O(days), not for the hot path)."""
    day = start
    while day < end:
        if calendar.is_working_day(day):
            yield day
        day += timedelta(days=1)
