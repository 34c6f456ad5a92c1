"""Working-day calendar on real Vietnamese dates (holidays.VN plus the local override file)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_center.domain.calendar import (
    LOCAL_TZ,
    WorkingCalendar,
    load_calendar,
    read_overrides,
)
from control_center.runtime import calendar_from_settings
from control_center.settings import CONFIG_DIR, load_settings

HOUR = 3600.0
DAY = 8 * HOUR


def at(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=LOCAL_TZ)


@pytest.fixture(scope="module")
def cal() -> WorkingCalendar:
    return load_calendar()


# --- which days are working days ------------------------------------------------------------


@pytest.mark.parametrize(
    "day",
    [
        # Tết 2026 (Mon 16 - Fri 20 Feb)
        *(date(2026, 2, d) for d in range(16, 21)),
        date(2025, 4, 30),
        date(2025, 5, 1),
        date(2025, 5, 2),  # Friday off, swapped with Saturday 26/4/2025
        date(2026, 4, 30),
        date(2026, 5, 1),
        date(2025, 9, 1),
        date(2025, 9, 2),
        date(2026, 8, 31),  # Monday off, swapped with Saturday 22/8/2026
        date(2026, 9, 1),
        date(2026, 9, 2),
        date(2026, 11, 24),  # Vietnam Culture Day, a holiday from 2026
        date(2026, 11, 29),  # an ordinary Sunday
    ],
)
def test_holidays_and_weekends_are_not_working_days(cal: WorkingCalendar, day: date) -> None:
    assert not cal.is_working_day(day)


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 2, 13),  # Friday before Tết
        date(2026, 2, 23),  # Monday after Tết
        date(2025, 4, 26),  # make-up Saturday
        date(2026, 8, 22),  # make-up Saturday
        date(2025, 11, 24),  # 24/11 was not yet a holiday in 2025
        date(2026, 11, 26),
    ],
)
def test_working_days_include_make_up_saturdays(cal: WorkingCalendar, day: date) -> None:
    assert cal.is_working_day(day)


# --- when the clock starts ------------------------------------------------------------------


def test_receipt_in_working_time_starts_the_clock_at_once(cal: WorkingCalendar) -> None:
    assert cal.clock_start(at(2026, 11, 26, 9, 15)) == at(2026, 11, 26, 9, 15)


def test_receipt_after_closing_counts_from_next_working_day(cal: WorkingCalendar) -> None:
    assert cal.clock_start(at(2026, 11, 26, 17, 30)) == at(2026, 11, 27, 7, 0)
    # 17:00 sharp is already closed
    assert cal.clock_start(at(2026, 11, 26, 17, 0)) == at(2026, 11, 27, 7, 0)
    # Friday evening -> Monday morning
    assert cal.clock_start(at(2026, 11, 27, 20, 0)) == at(2026, 11, 30, 7, 0)


def test_receipt_before_opening_counts_from_the_morning(cal: WorkingCalendar) -> None:
    assert cal.clock_start(at(2026, 11, 26, 6, 10)) == at(2026, 11, 26, 7, 0)


def test_receipt_in_lunch_break_counts_from_afternoon(cal: WorkingCalendar) -> None:
    assert cal.clock_start(at(2026, 11, 26, 12, 15)) == at(2026, 11, 26, 13, 30)
    assert cal.clock_start(at(2026, 11, 26, 11, 30)) == at(2026, 11, 26, 13, 30)


def test_receipt_on_sunday_counts_from_monday(cal: WorkingCalendar) -> None:
    assert cal.clock_start(at(2026, 11, 29, 10, 0)) == at(2026, 11, 30, 7, 0)


def test_receipt_on_a_holiday_counts_from_the_next_working_day(cal: WorkingCalendar) -> None:
    # Monday 23/11/2026 evening -> Tuesday 24/11 is Culture Day -> Wednesday
    assert cal.clock_start(at(2026, 11, 23, 18, 0)) == at(2026, 11, 25, 7, 0)
    # Online receipt during Tết -> Monday 23/2/2026
    assert cal.clock_start(at(2026, 2, 17, 10, 0), "online") == at(2026, 2, 23, 7, 0)


def test_counter_after_cutoff_moves_but_online_does_not(cal: WorkingCalendar) -> None:
    received = at(2026, 11, 25, 15, 30)
    assert cal.clock_start(received, "counter") == at(2026, 11, 26, 7, 0)
    assert cal.clock_start(received, "online") == received
    assert cal.clock_start(received, "post") == received
    # 15:00 sharp is not "after 15:00"
    assert cal.clock_start(at(2026, 11, 25, 15, 0), "counter") == at(2026, 11, 25, 15, 0)


def test_counter_cutoff_can_be_disabled() -> None:
    cal = load_calendar(counter_cutoff=None)
    received = at(2026, 11, 25, 15, 30)
    assert cal.clock_start(received, "counter") == received


def test_any_offset_in_local_time_out(cal: WorkingCalendar) -> None:
    received_utc = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)  # 15:30 in Hanoi
    start = cal.clock_start(received_utc, "counter")
    assert start == at(2026, 11, 26, 7, 0)
    assert start.utcoffset() == timedelta(hours=7)


def test_naive_datetimes_are_refused(cal: WorkingCalendar) -> None:
    with pytest.raises(ValueError):
        cal.clock_start(datetime(2026, 11, 25, 9, 0))


# --- due dates ------------------------------------------------------------------------------


def test_due_date_skips_tet_2026(cal: WorkingCalendar) -> None:
    assert cal.due_at(at(2026, 2, 13, 10, 0), processing_days=1) == at(2026, 2, 23, 10, 0)
    assert cal.due_at(at(2026, 2, 12, 9, 0), processing_days=3) == at(2026, 2, 24, 9, 0)


def test_due_date_uses_the_make_up_saturday_of_april_2025(cal: WorkingCalendar) -> None:
    # Fri 25/4 -> Sat 26/4 (worked), Mon 28/4, Tue 29/4; 30/4, 1/5 and 2/5 are off
    assert cal.due_at(at(2025, 4, 25, 9, 0), processing_days=3) == at(2025, 4, 29, 9, 0)
    assert cal.due_at(at(2025, 4, 25, 9, 0), processing_days=4) == at(2025, 5, 5, 9, 0)


def test_due_date_around_national_day(cal: WorkingCalendar) -> None:
    # 2025: Mon 1/9 and Tue 2/9 off
    assert cal.due_at(at(2025, 8, 29, 10, 0), processing_days=1) == at(2025, 9, 3, 10, 0)
    # 2026: Sat 22/8 worked, Mon 31/8, Tue 1/9, Wed 2/9 off
    assert cal.due_at(at(2026, 8, 21, 10, 0), processing_days=1) == at(2026, 8, 22, 10, 0)
    assert cal.due_at(at(2026, 8, 28, 10, 0), processing_days=1) == at(2026, 9, 3, 10, 0)


def test_due_date_skips_culture_day_2026(cal: WorkingCalendar) -> None:
    assert cal.due_at(at(2026, 11, 23, 9, 0), processing_days=1) == at(2026, 11, 25, 9, 0)


def test_counter_dossier_after_cutoff_is_due_a_day_later_than_online(
    cal: WorkingCalendar,
) -> None:
    received = at(2026, 11, 25, 15, 30)
    assert cal.due_at(received, processing_days=2, channel="online") == at(2026, 11, 27, 15, 30)
    assert cal.due_at(received, processing_days=2, channel="counter") == at(2026, 11, 27, 17, 0)


def test_due_in_working_hours_skips_lunch_and_night(cal: WorkingCalendar) -> None:
    assert cal.due_at(at(2026, 11, 25, 10, 0), processing_hours=4) == at(2026, 11, 25, 16, 0)
    assert cal.due_at(at(2026, 11, 25, 16, 0), processing_hours=2) == at(2026, 11, 26, 8, 0)
    # 8 working hours are one working day
    assert cal.due_at(at(2026, 2, 13, 10, 0), processing_hours=8) == at(2026, 2, 23, 10, 0)


def test_exact_amounts_land_at_session_end_not_next_start(cal: WorkingCalendar) -> None:
    assert cal.due_at(at(2026, 11, 25, 7, 0), processing_hours=4.5) == at(2026, 11, 25, 11, 30)
    assert cal.due_at(at(2026, 11, 25, 7, 0), processing_days=1) == at(2026, 11, 25, 17, 0)
    # received Friday 7:00 with one day: Friday 17:00, not Monday 7:00
    assert cal.due_at(at(2026, 11, 27, 7, 0), processing_days=1) == at(2026, 11, 27, 17, 0)


def test_half_days_and_within_the_day(cal: WorkingCalendar) -> None:
    assert cal.due_at(at(2026, 11, 25, 9, 0), processing_days=0.5) == at(2026, 11, 25, 15, 0)
    # "trong ngày": the end of the working day the clock started on
    assert cal.due_at(at(2026, 11, 25, 9, 0), processing_days=0) == at(2026, 11, 25, 17, 0)
    assert cal.due_at(at(2026, 11, 25, 18, 0), processing_days=0) == at(2026, 11, 26, 17, 0)


def test_no_processing_time_means_no_due_date(cal: WorkingCalendar) -> None:
    assert cal.due_at(at(2026, 11, 25, 9, 0)) is None


def test_province_specific_working_hours() -> None:
    cal = load_calendar(sessions=((time(7, 30), time(11, 30)), (time(13, 0), time(16, 0))))
    assert cal.seconds_per_day == 7 * HOUR
    assert cal.clock_start(at(2026, 11, 25, 12, 0)) == at(2026, 11, 25, 13, 0)
    assert cal.due_at(at(2026, 11, 25, 15, 0), processing_days=1) == at(2026, 11, 26, 15, 0)


def test_long_processing_time_over_years(cal: WorkingCalendar) -> None:
    due = cal.due_at(at(2025, 12, 31, 9, 0), processing_days=250)
    assert due is not None
    # 1/1/2026 is off, so 250 working days counted by hand end on a later day
    days = [d for d in _days(date(2026, 1, 1), date(2027, 6, 1)) if cal.is_working_day(d)]
    assert due == at(days[249].year, days[249].month, days[249].day, 9, 0)


# --- working time between instants, pauses --------------------------------------------------


def test_working_time_across_a_weekend(cal: WorkingCalendar) -> None:
    assert cal.working_seconds_between(at(2026, 11, 27, 16, 0), at(2026, 11, 30, 8, 0)) == 2 * HOUR
    assert cal.working_seconds_between(at(2026, 11, 30, 8, 0), at(2026, 11, 27, 16, 0)) == -2 * HOUR


def test_working_time_across_tet(cal: WorkingCalendar) -> None:
    assert cal.working_seconds_between(at(2026, 2, 13, 9, 0), at(2026, 2, 23, 9, 0)) == DAY
    assert cal.working_days_between(at(2026, 2, 9, 7, 0), at(2026, 2, 28, 7, 0)) == 10


def test_nights_lunch_and_holidays_count_nothing(cal: WorkingCalendar) -> None:
    assert cal.working_seconds_between(at(2026, 11, 25, 11, 30), at(2026, 11, 25, 13, 30)) == 0
    assert cal.working_seconds_between(at(2026, 11, 25, 17, 0), at(2026, 11, 26, 7, 0)) == 0
    assert cal.working_seconds_between(at(2026, 2, 16, 0, 0), at(2026, 2, 21, 0, 0)) == 0


def test_shift_due_by_paused_time(cal: WorkingCalendar) -> None:
    # 3 h paused from Friday 28/8/2026 16:00: 1 h that Friday, then 31/8-2/9 are off
    assert cal.shift_due(at(2026, 8, 28, 16, 0), 3 * HOUR) == at(2026, 9, 3, 9, 0)
    assert cal.shift_due(at(2026, 8, 28, 16, 0), 0) == at(2026, 8, 28, 16, 0)


def test_going_back_in_working_time(cal: WorkingCalendar) -> None:
    # one working day before Monday 23/2/2026 9:00 is Friday 13/2 9:00 (before Tết)
    assert cal.add_working_seconds(at(2026, 2, 23, 9, 0), -DAY) == at(2026, 2, 13, 9, 0)
    assert cal.add_working_seconds(at(2026, 11, 26, 7, 0), -DAY) == at(2026, 11, 25, 7, 0)


# --- override file --------------------------------------------------------------------------


def test_override_file_adds_a_holiday_and_a_make_up_day(tmp_path) -> None:
    path = tmp_path / "overrides.yaml"
    path.write_text(
        "holidays:\n  - 2026-12-31\nworkdays:\n  - {date: 2026-12-26, note: make-up for 31/12}\n"
    )
    cal = load_calendar(override_file=str(path))
    assert not cal.is_working_day(date(2026, 12, 31))
    assert cal.is_working_day(date(2026, 12, 26))
    # Wed 30/12 + 1 day: Thu 31/12 off, Fri 1/1 holiday -> Mon 4/1/2027
    assert cal.due_at(at(2026, 12, 30, 9, 0), processing_days=1) == at(2027, 1, 4, 9, 0)
    # Fri 25/12 + 1 day: the make-up Saturday 26/12
    assert cal.due_at(at(2026, 12, 25, 9, 0), processing_days=1) == at(2026, 12, 26, 9, 0)
    # the same dates without the overrides
    plain = load_calendar()
    assert plain.due_at(at(2026, 12, 30, 9, 0), processing_days=1) == at(2026, 12, 31, 9, 0)


def test_shipped_override_file_loads(cal: WorkingCalendar) -> None:
    holidays, workdays = read_overrides(CONFIG_DIR / "calendar_overrides.yaml")
    assert isinstance(holidays, frozenset) and isinstance(workdays, frozenset)
    shipped = calendar_from_settings(load_settings())
    assert shipped.due_at(at(2026, 2, 13, 10, 0), processing_days=1) == at(2026, 2, 23, 10, 0)


@pytest.mark.parametrize(
    "text",
    ["holidays: 2026-12-31\n", "holidays: [31/12/2026]\n", "holiday: [2026-12-31]\n", "- a\n"],
)
def test_bad_override_file_is_a_clear_error(tmp_path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"bad\.yaml"):
        load_calendar(override_file=str(path))


def test_missing_override_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="cannot be read"):
        load_calendar(override_file=str(tmp_path / "nope.yaml"))


# --- against a slow, obviously right reference ------------------------------------------------


def _days(start: date, end: date):
    day = start
    while day < end:
        yield day
        day += timedelta(days=1)


def _reference_working_seconds(cal: WorkingCalendar, a: datetime, b: datetime) -> float:
    """Day by day, session by session: the definition, without any precomputed tables."""
    a, b = a.astimezone(LOCAL_TZ), b.astimezone(LOCAL_TZ)
    total = 0.0
    for day in _days(a.date(), b.date() + timedelta(days=1)):
        if not cal.is_working_day(day):
            continue
        for s, e in cal.sessions:
            lo = max(a, datetime.combine(day, s, LOCAL_TZ))
            hi = min(b, datetime.combine(day, e, LOCAL_TZ))
            total += max(0.0, (hi - lo).total_seconds())
    return total


instants = st.datetimes(
    min_value=datetime(2024, 12, 1), max_value=datetime(2027, 1, 31), timezones=st.just(LOCAL_TZ)
).map(lambda d: d.replace(second=0, microsecond=0))


@settings(max_examples=200, deadline=None)
@given(a=instants, span=st.integers(min_value=0, max_value=60 * 24 * 40))
def test_working_seconds_match_the_day_by_day_definition(a: datetime, span: int) -> None:
    cal = load_calendar()
    b = a + timedelta(minutes=span)
    assert cal.working_seconds_between(a, b) == pytest.approx(_reference_working_seconds(cal, a, b))


@settings(max_examples=200, deadline=None)
@given(start=instants, minutes=st.integers(min_value=1, max_value=60 * 8 * 30))
def test_adding_working_time_is_the_inverse_of_measuring_it(start: datetime, minutes: int) -> None:
    cal = load_calendar()
    end = cal.add_working_seconds(start, minutes * 60)
    assert end > start
    assert cal.working_seconds_between(start, end) == pytest.approx(minutes * 60)
    # it lands in working time or exactly at a session end, never in the middle of a break
    local = end.astimezone(LOCAL_TZ)
    assert cal.is_working_day(local.date())
    assert any(s < local.time() <= e for s, e in cal.sessions)
