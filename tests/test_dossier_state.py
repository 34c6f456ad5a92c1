"""Dossier state machine: what a dossier's events imply, whatever order they arrive in."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from control_center.domain.calendar import LOCAL_TZ, WorkingCalendar, load_calendar
from control_center.domain.dossier import (
    DAILY_METRICS,
    EARLY,
    IN_TIME,
    NO_DUE,
    NOT_ACCEPTED,
    ON_TIME,
    OVERDUE,
    OVERDUE_OPEN,
    PROCESSING,
    RECEIVED,
    RESULT_READY,
    RETURNED,
    WAITING_PAYMENT,
    WAITING_SUPPLEMENT,
    WITHDRAWN,
    DossierState,
    Event,
    ProcedureTerms,
    daily_contributions,
    derive_state,
    due_bucket_key,
    effective_due_at,
    finished_outcome,
    fold_onto,
    local_day,
    open_outcome,
    sort_key,
)

HOUR = 3600.0
DAY = 8 * HOUR
COMMUNE = "02269"
OTHER_COMMUNE = "02272"
CATALOGUE = {
    "1.001193": ProcedureTerms(processing_days=5, name="Đăng ký khai sinh", sector="Hộ tịch"),
    "1.000656": ProcedureTerms(processing_hours=4, name="Chứng thực bản sao", sector="Chứng thực"),
    "1.004227": ProcedureTerms(name="Hòa giải tranh chấp đất đai", sector="Đất đai"),
}
CAL = load_calendar()
_ids = itertools.count()


def terms(code: str) -> ProcedureTerms | None:
    return CATALOGUE.get(code)


def at(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=LOCAL_TZ)


def ev(kind: str, when: datetime, commune: str = COMMUNE, **payload: object) -> Event:
    return Event(f"ev-{next(_ids)}", kind, when, commune, dict(payload))


def received(when: datetime, procedure: str = "1.001193", **payload: object) -> Event:
    payload.setdefault("channel", "online")
    return ev("received", when, procedure_code=procedure, **payload)


def derive(*events: Event, calendar: WorkingCalendar = CAL) -> DossierState:
    state = derive_state("000.00.22.H56-261123-0001", events, calendar, terms)
    assert state is not None
    return state


# --- receipt and due date -------------------------------------------------------------------


def test_no_state_until_the_dossier_is_received() -> None:
    assert derive_state("X", [], CAL, terms) is None
    assert derive_state("X", [ev("assigned", at(2026, 11, 25, 9), officer="A")], CAL, terms) is None


def test_received_dossier_is_due_after_the_catalogued_working_days() -> None:
    state = derive(received(at(2026, 11, 23, 9, 0)))  # Monday; Tuesday 24/11 is a holiday
    assert state.status == RECEIVED and state.is_open and not state.is_paused
    assert state.clock_start_at == at(2026, 11, 23, 9, 0)
    assert state.due_at == state.original_due_at == at(2026, 12, 1, 9, 0)
    assert state.procedure_name == "Đăng ký khai sinh" and state.sector == "Hộ tịch"
    assert state.flags == ()


def test_procedure_in_working_hours() -> None:
    state = derive(received(at(2026, 11, 25, 10, 0), "1.000656"))
    assert state.due_at == at(2026, 11, 25, 16, 0)


def test_payload_due_date_wins_over_processing_days_and_catalogue() -> None:
    state = derive(
        received(at(2026, 11, 25, 9, 0), due_at="2026-12-10T17:00:00+07:00", processing_days=1)
    )
    assert state.due_at == at(2026, 12, 10, 17, 0)


def test_payload_processing_days_win_over_catalogue() -> None:
    state = derive(received(at(2026, 11, 25, 9, 0), processing_days=1))
    assert state.due_at == at(2026, 11, 26, 9, 0)


def test_unreadable_due_date_falls_back_to_the_catalogue_and_is_flagged() -> None:
    state = derive(received(at(2026, 11, 23, 9, 0), due_at="next Tuesday"))
    assert state.due_at == at(2026, 12, 1, 9, 0)
    assert "invalid_due_at" in state.flags


def test_unknown_procedure_is_kept_and_flagged() -> None:
    with_days = derive(received(at(2026, 11, 25, 9, 0), "9.999999", processing_days=2))
    assert with_days.flags == ("uncatalogued",)
    assert with_days.due_at == at(2026, 11, 27, 9, 0)
    without = derive(received(at(2026, 11, 25, 9, 0), "9.999999"))
    assert set(without.flags) == {"uncatalogued", "no_due_date"}
    assert without.due_at is None and without.is_open


def test_catalogued_procedure_without_processing_time_has_no_due_date() -> None:
    state = derive(received(at(2026, 11, 25, 9, 0), "1.004227"))
    assert state.flags == ("no_due_date",)
    assert state.due_at is None


def test_counter_dossier_after_three_pm_counts_from_the_next_day() -> None:
    counter = derive(received(at(2026, 11, 25, 15, 30), processing_days=1, channel="counter"))
    online = derive(received(at(2026, 11, 25, 15, 30), processing_days=1, channel="online"))
    assert counter.clock_start_at == at(2026, 11, 26, 7, 0)
    assert counter.due_at == at(2026, 11, 26, 17, 0)
    assert online.due_at == at(2026, 11, 26, 15, 30)


def test_portal_channel_codes_are_understood() -> None:
    state = derive(received(at(2026, 11, 25, 15, 30), processing_days=1, channel="1"))
    assert state.channel == "counter"
    assert state.clock_start_at == at(2026, 11, 26, 7, 0)


# --- handling, pauses -----------------------------------------------------------------------


def test_assignment_starts_processing() -> None:
    state = derive(
        received(at(2026, 11, 25, 9, 0)),
        ev("assigned", at(2026, 11, 25, 9, 30), officer="Nguyễn Văn A", department="Tư pháp"),
    )
    assert state.status == PROCESSING
    assert (state.officer, state.department) == ("Nguyễn Văn A", "Tư pháp")


def test_supplement_wait_pauses_the_clock_and_moves_the_due_date() -> None:
    r = received(at(2026, 11, 25, 9, 0), processing_days=2)  # due Fri 27/11 9:00
    ask = ev("supplement_requested", at(2026, 11, 25, 10, 0), reason="thiếu giấy tờ")
    waiting = derive(r, ask)
    assert waiting.status == WAITING_SUPPLEMENT and waiting.is_paused and waiting.is_open
    assert waiting.paused_since == at(2026, 11, 25, 10, 0)
    assert waiting.due_at == at(2026, 11, 27, 9, 0)  # stored due moves when the wait ends

    back = derive(r, ask, ev("supplement_received", at(2026, 11, 26, 10, 0)))
    assert back.status == PROCESSING and not back.is_paused and back.paused_since is None
    assert back.paused_seconds == DAY
    assert back.due_at == at(2026, 11, 30, 9, 0)  # one working day later, over the weekend
    assert back.original_due_at == at(2026, 11, 27, 9, 0)


def test_payment_wait_pauses_too() -> None:
    state = derive(
        received(at(2026, 11, 25, 9, 0), processing_days=2),
        ev("payment_requested", at(2026, 11, 25, 14, 0)),
    )
    assert state.status == WAITING_PAYMENT
    resumed = derive(
        received(at(2026, 11, 25, 9, 0), processing_days=2),
        ev("payment_requested", at(2026, 11, 25, 14, 0)),
        ev("payment_received", at(2026, 11, 25, 16, 0)),
    )
    assert resumed.paused_seconds == 2 * HOUR
    assert resumed.due_at == at(2026, 11, 27, 11, 0)


def test_overlapping_waits_are_not_counted_twice() -> None:
    state = derive(
        received(at(2026, 11, 25, 9, 0), processing_days=2),
        ev("supplement_requested", at(2026, 11, 25, 10, 0)),
        ev("payment_requested", at(2026, 11, 25, 11, 0)),
        ev("supplement_received", at(2026, 11, 25, 14, 30)),
        ev("payment_received", at(2026, 11, 25, 15, 0)),
    )
    assert state.paused_seconds == 2.5 * HOUR  # 10:00-11:30 and 13:30-14:30
    assert state.status == PROCESSING


def test_a_wait_over_tet_pauses_one_working_day() -> None:
    state = derive(
        received(at(2026, 2, 11, 9, 0), processing_days=3),  # due Mon 23/2 9:00
        ev("supplement_requested", at(2026, 2, 13, 9, 0)),
        ev("supplement_received", at(2026, 2, 23, 9, 0)),
    )
    assert state.original_due_at == at(2026, 2, 23, 9, 0)
    assert state.paused_seconds == DAY
    assert state.due_at == at(2026, 2, 24, 9, 0)


def test_running_pause_moves_the_effective_due_date() -> None:
    state = derive(
        received(at(2026, 11, 25, 9, 0), processing_days=2),
        ev("supplement_requested", at(2026, 11, 25, 10, 0)),
    )
    assert effective_due_at(state, at(2026, 11, 25, 12, 0), CAL) == at(2026, 11, 27, 10, 30)
    assert effective_due_at(state, at(2026, 11, 30, 10, 0), CAL) == at(2026, 12, 2, 9, 0)


# --- re-dating ------------------------------------------------------------------------------


def test_extension_is_allowed_once() -> None:
    r = received(at(2026, 11, 25, 9, 0), processing_days=2)
    first = ev("extended", at(2026, 11, 26, 9, 0), new_due_at="2026-12-03T17:00:00+07:00")
    second = ev("extended", at(2026, 11, 27, 9, 0), new_due_at="2026-12-10T17:00:00+07:00")
    once = derive(r, first)
    assert once.due_at == at(2026, 12, 3, 17, 0) and once.extension_count == 1
    twice = derive(r, first, second)
    assert twice.due_at == at(2026, 12, 3, 17, 0) and twice.extension_count == 1
    assert "second_extension_ignored" in twice.flags


def test_apology_records_the_slip_and_can_be_the_one_re_date() -> None:
    r = received(at(2026, 11, 25, 9, 0), processing_days=2)
    plain = derive(r, ev("apology_issued", at(2026, 11, 26, 9, 0)))
    assert plain.apology_issued_at == at(2026, 11, 26, 9, 0)
    assert plain.due_at == at(2026, 11, 27, 9, 0) and plain.extension_count == 0

    redated = derive(
        r, ev("apology_issued", at(2026, 11, 26, 9, 0), new_due_at="2026-12-04T17:00:00+07:00")
    )
    assert redated.due_at == at(2026, 12, 4, 17, 0) and redated.extension_count == 1


def test_apology_after_an_extension_cannot_re_date_again() -> None:
    state = derive(
        received(at(2026, 11, 25, 9, 0), processing_days=2),
        ev("extended", at(2026, 11, 26, 9, 0), new_due_at="2026-12-03T17:00:00+07:00"),
        ev("apology_issued", at(2026, 11, 26, 9, 5), new_due_at="2026-12-20T17:00:00+07:00"),
    )
    assert state.due_at == at(2026, 12, 3, 17, 0)
    assert state.apology_issued_at == at(2026, 11, 26, 9, 5)
    assert "second_extension_ignored" in state.flags


def test_extension_and_apology_with_the_same_date_are_one_re_date() -> None:
    state = derive(
        received(at(2026, 11, 25, 9, 0), processing_days=2),
        ev("extended", at(2026, 11, 26, 9, 0), new_due_at="2026-12-03T17:00:00+07:00"),
        ev("apology_issued", at(2026, 11, 26, 9, 5), new_due_at="2026-12-03T10:00:00Z"),
    )
    assert state.due_at == at(2026, 12, 3, 17, 0)
    assert state.flags == ()


def test_a_wait_after_the_re_date_moves_the_new_date() -> None:
    state = derive(
        received(at(2026, 11, 25, 9, 0), processing_days=2),
        ev("supplement_requested", at(2026, 11, 25, 10, 0)),
        ev("supplement_received", at(2026, 11, 25, 11, 0)),
        ev("extended", at(2026, 11, 26, 9, 0), new_due_at="2026-12-03T16:00:00+07:00"),
        ev("supplement_requested", at(2026, 11, 30, 9, 0)),
        ev("supplement_received", at(2026, 11, 30, 11, 0)),
    )
    assert state.paused_seconds == 3 * HOUR
    assert state.due_at == at(2026, 12, 4, 8, 0)  # new date + the 2 h of the later wait


# --- finishing ------------------------------------------------------------------------------


def test_completed_then_returned_keeps_the_result_ready_time() -> None:
    state = derive(
        received(at(2026, 11, 23, 9, 0)),
        ev("completed", at(2026, 11, 27, 10, 0)),
        ev("returned", at(2026, 12, 2, 8, 0)),
    )
    assert state.status == RETURNED and not state.is_open
    assert state.finished_at == at(2026, 11, 27, 10, 0)
    assert state.returned_at == at(2026, 12, 2, 8, 0)
    assert finished_outcome(state) == EARLY


def test_returned_without_completed_finishes_at_return() -> None:
    state = derive(received(at(2026, 11, 23, 9, 0)), ev("returned", at(2026, 12, 1, 16, 0)))
    assert state.status == RETURNED
    assert state.finished_at == at(2026, 12, 1, 16, 0)
    assert finished_outcome(state) == ON_TIME  # due 1/12 9:00: same date is on time


def test_finishing_a_day_late_is_overdue_even_near_midnight() -> None:
    # due 1/12 9:00 local; finished 2/12 00:30 local (still 1/12 in UTC)
    finished = datetime(2026, 12, 1, 17, 30, tzinfo=UTC)
    state = derive(received(at(2026, 11, 23, 9, 0)), ev("completed", finished))
    assert state.status == RESULT_READY
    assert finished_outcome(state) == OVERDUE


def test_rejected_dossier_is_closed_without_an_outcome() -> None:
    state = derive(
        received(at(2026, 11, 25, 9, 0)),
        ev("rejected", at(2026, 11, 25, 10, 0), reason="không thuộc thẩm quyền"),
        ev("completed", at(2026, 11, 26, 10, 0)),
    )
    assert state.status == NOT_ACCEPTED and not state.is_open
    assert state.finished_at is None and state.closed_at == at(2026, 11, 25, 10, 0)
    assert finished_outcome(state) is None and open_outcome(state, at(2026, 12, 25)) is None
    assert "event_after_close_ignored" in state.flags


def test_withdrawn_dossier_is_finished_without_an_outcome() -> None:
    state = derive(
        received(at(2026, 11, 25, 9, 0)),
        ev("supplement_requested", at(2026, 11, 25, 10, 0)),
        ev("withdrawn", at(2026, 11, 27, 10, 0)),
    )
    assert state.status == WITHDRAWN and not state.is_open and not state.is_paused
    assert finished_outcome(state) is None


def test_completion_while_paused_ends_the_pause() -> None:
    state = derive(
        received(at(2026, 11, 25, 9, 0), processing_days=1),
        ev("payment_requested", at(2026, 11, 25, 10, 0)),
        ev("completed", at(2026, 11, 25, 11, 0)),
    )
    assert state.status == RESULT_READY and state.paused_since is None
    assert state.paused_seconds == HOUR


def test_transfer_moves_the_dossier_to_the_other_commune() -> None:
    state = derive(
        received(at(2026, 11, 25, 9, 0)),
        ev("transferred", at(2026, 11, 25, 10, 0), to_commune_code=OTHER_COMMUNE),
    )
    assert state.commune_code == OTHER_COMMUNE
    assert state.received_commune_code == COMMUNE
    key = due_bucket_key(state)
    assert key is not None and key[0] == OTHER_COMMUNE


# --- order, duplicates, clock skew ----------------------------------------------------------


def test_events_stamped_before_receipt_still_apply() -> None:
    # the handler's clock is 5 minutes behind the desk's
    state = derive(
        ev("assigned", at(2026, 11, 25, 8, 57), officer="B"),
        received(at(2026, 11, 25, 9, 0), processing_days=1),
        ev("supplement_requested", at(2026, 11, 25, 8, 58)),
        ev("supplement_received", at(2026, 11, 25, 10, 0)),
    )
    assert state.status == PROCESSING and state.officer == "B"
    assert state.paused_seconds == HOUR  # counted from the clock start, not before it
    assert state.received_at == at(2026, 11, 25, 9, 0)


def test_duplicates_and_arrival_order_change_nothing() -> None:
    events = [
        received(at(2026, 11, 23, 9, 0)),
        ev("assigned", at(2026, 11, 23, 9, 30), officer="C"),
        ev("supplement_requested", at(2026, 11, 25, 9, 0)),
        ev("supplement_received", at(2026, 11, 26, 9, 0)),
        ev("completed", at(2026, 12, 1, 10, 0)),
        ev("returned", at(2026, 12, 1, 10, 0)),
    ]
    expected = derive(*events)
    assert expected.event_count == len(events)
    rng = random.Random(7)
    for _ in range(20):
        arrival = events + rng.sample(events, 3)
        rng.shuffle(arrival)
        assert derive(*arrival) == expected


def test_a_second_received_event_does_not_restart_the_clock() -> None:
    state = derive(
        received(at(2026, 11, 23, 9, 0)),
        received(at(2026, 11, 24, 9, 0), processing_days=30),
    )
    assert state.received_at == at(2026, 11, 23, 9, 0)
    assert state.due_at == at(2026, 12, 1, 9, 0)
    assert "duplicate_received_ignored" in state.flags


# --- outcome buckets, aggregates ------------------------------------------------------------


def test_open_outcome_compares_dates() -> None:
    state = derive(received(at(2026, 11, 23, 9, 0)))  # due 1/12 9:00
    assert open_outcome(state, at(2026, 11, 30, 20, 0)) == IN_TIME
    assert open_outcome(state, at(2026, 12, 1, 16, 0)) == IN_TIME  # due day: still in time
    assert open_outcome(state, at(2026, 12, 2, 7, 0)) == OVERDUE_OPEN


def test_open_outcome_without_due_date() -> None:
    state = derive(received(at(2026, 11, 25, 9, 0), "1.004227"))
    assert open_outcome(state, at(2027, 1, 1)) == NO_DUE
    assert finished_outcome(state) is None


def test_paused_dossier_does_not_become_overdue_while_it_waits() -> None:
    state = derive(
        received(at(2026, 11, 23, 9, 0)),  # due 1/12 9:00
        ev("supplement_requested", at(2026, 11, 30, 9, 0)),
    )
    assert open_outcome(state, at(2026, 12, 15, 9, 0)) == IN_TIME
    late = derive(
        received(at(2026, 11, 23, 9, 0)),
        ev("supplement_requested", at(2026, 12, 2, 9, 0)),  # asked after the due day
    )
    assert open_outcome(late, at(2026, 12, 15, 9, 0)) == OVERDUE_OPEN


def test_due_bucket_key_is_the_due_minute_in_utc_while_open() -> None:
    r = received(at(2026, 11, 25, 9, 0), due_at="2026-12-01T16:45:37+07:00")
    key = due_bucket_key(derive(r))
    assert key == (COMMUNE, datetime(2026, 12, 1, 9, 45, tzinfo=UTC), False)
    undated = derive(received(at(2026, 11, 25, 9, 0), "1.004227"))
    assert due_bucket_key(undated) == (COMMUNE, None, False)
    assert due_bucket_key(derive(r, ev("completed", at(2026, 11, 26, 9, 0)))) is None
    assert due_bucket_key(None) is None


def test_daily_contributions_of_a_returned_online_dossier() -> None:
    state = derive(
        received(at(2026, 11, 23, 9, 0), channel="online"),
        ev("transferred", at(2026, 11, 23, 10, 0), to_commune_code=OTHER_COMMUNE),
        ev("completed", at(2026, 12, 2, 10, 0)),
        ev("returned", at(2026, 12, 3, 8, 0)),
    )
    assert daily_contributions(state) == {
        (COMMUNE, at(2026, 11, 23).date(), "received"): 1,
        (COMMUNE, at(2026, 11, 23).date(), "received_online"): 1,
        (OTHER_COMMUNE, at(2026, 12, 2).date(), "finished"): 1,
        (OTHER_COMMUNE, at(2026, 12, 2).date(), "finished_overdue"): 1,
        (OTHER_COMMUNE, at(2026, 12, 3).date(), "returned"): 1,
    }


def test_daily_contributions_of_rejected_and_withdrawn_dossiers() -> None:
    rejected = derive(
        received(at(2026, 11, 25, 9, 0), channel="counter"),
        ev("rejected", at(2026, 11, 25, 9, 20)),
    )
    assert daily_contributions(rejected) == {
        (COMMUNE, at(2026, 11, 25).date(), "received"): 1,
        (COMMUNE, at(2026, 11, 25).date(), "rejected"): 1,
    }
    withdrawn = derive(received(at(2026, 11, 25, 9, 0)), ev("withdrawn", at(2026, 11, 27, 9, 0)))
    assert withdrawn.finished_at == at(2026, 11, 27, 9, 0)
    assert (COMMUNE, at(2026, 11, 27).date(), "withdrawn") in daily_contributions(withdrawn)
    assert not any(m.startswith("finished") for _, _, m in daily_contributions(withdrawn))
    assert daily_contributions(None) == {}


def test_local_day_is_the_date_in_vietnam() -> None:
    assert local_day(datetime(2026, 11, 25, 17, 30, tzinfo=UTC)) == at(2026, 11, 26).date()


# --- property-based: random plausible lifecycles --------------------------------------------

gaps = st.integers(min_value=0, max_value=60 * 24 * 6).map(lambda m: timedelta(minutes=m))


@st.composite
def lifecycles(draw: st.DrawFn) -> list[Event]:
    """A plausible history: receipt, maybe an assignment, a few waits, maybe a re-date or an
    apology or a transfer, then an end (or none). Equal timestamps happen (zero gaps), and
    clocks are off by up to 15 minutes, so events may be stamped before the receipt."""
    ids = itertools.count()
    skew = st.integers(min_value=-15, max_value=15).map(lambda m: timedelta(minutes=m))

    def make(kind: str, when: datetime, **payload: object) -> Event:
        if kind != "received":
            when += draw(skew)
        return Event(f"e{next(ids)}", kind, when, COMMUNE, dict(payload))

    t = draw(
        st.datetimes(
            min_value=datetime(2025, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
        )
    )
    procedure = draw(st.sampled_from([*CATALOGUE, "9.000000"]))
    extra: dict[str, object] = {}
    if draw(st.booleans()):
        extra["processing_days"] = draw(st.integers(min_value=0, max_value=30))
    events = [
        make(
            "received",
            t,
            procedure_code=procedure,
            channel=draw(st.sampled_from(["online", "counter", "post"])),
            **extra,
        )
    ]
    if draw(st.booleans()):
        t += draw(gaps)
        events.append(make("assigned", t, officer="O", department="D"))
    steps = draw(
        st.lists(
            st.sampled_from(["supplement", "payment", "extended", "apology", "transferred"]),
            max_size=5,
        )
    )
    for step in steps:
        t += draw(gaps)
        if step in ("supplement", "payment"):
            events.append(make(f"{step}_requested", t))
            if draw(st.booleans()):
                t += draw(gaps)
                events.append(make(f"{step}_received", t))
        elif step in ("extended", "apology"):
            new_due = (t + draw(gaps) + timedelta(days=1)).isoformat()
            kind = "extended" if step == "extended" else "apology_issued"
            events.append(make(kind, t, new_due_at=new_due))
        else:
            events.append(make("transferred", t, to_commune_code=OTHER_COMMUNE))
    ending = draw(
        st.sampled_from(["open", "completed", "returned", "both", "rejected", "withdrawn"])
    )
    if ending == "both":
        t += draw(gaps)
        events.append(make("completed", t))
        t += draw(gaps)
        events.append(make("returned", t))
    elif ending != "open":
        t += draw(gaps)
        events.append(make(ending, t))
    return events


@settings(max_examples=300, deadline=None)
@given(events=lifecycles(), data=st.data())
def test_any_arrival_order_with_duplicates_gives_the_in_order_state(
    events: list[Event], data: st.DataObject
) -> None:
    in_order = derive_state("D", events, CAL, terms)
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    arrival = data.draw(st.permutations(events + duplicates))
    assert derive_state("D", arrival, CAL, terms) == in_order


@settings(max_examples=300, deadline=None)
@given(events=lifecycles(), now=st.datetimes(timezones=st.just(UTC)))
def test_states_and_their_contributions_are_consistent(events: list[Event], now: datetime) -> None:
    state = derive_state("D", events, CAL, terms)
    assert state is not None
    metrics = Counter()
    for (_, _, metric), value in daily_contributions(state).items():
        metrics[metric] += value
    assert set(metrics) <= set(DAILY_METRICS)  # each has its column in commune_days
    assert metrics["received"] == 1
    assert metrics["received_online"] == (1 if state.channel == "online" else 0)
    finished_split = sum(metrics[f"finished_{o}"] for o in (EARLY, ON_TIME, OVERDUE, NO_DUE))
    assert finished_split == metrics["finished"] == (1 if state.status in (9, 10) else 0)
    assert metrics["returned"] == (1 if state.status == RETURNED else 0)
    # a dossier ends at most one way
    assert metrics["finished"] + metrics["rejected"] + metrics["withdrawn"] <= 1
    # open <=> it has a due bucket <=> it has an open outcome
    assert (due_bucket_key(state) is not None) == state.is_open
    assert (open_outcome(state, now) is not None) == state.is_open
    assert state.is_paused == (state.paused_since is not None)
    assert state.paused_seconds >= 0
    assert state.extension_count <= 1
    if state.extension_count == 0 and state.due_at is not None:
        # only waits moved the date, and they only push it back
        assert state.original_due_at is not None and state.due_at >= state.original_due_at
    if ("no_due_date" in state.flags) != (state.due_at is None):
        # a re-date can give a dossier received without a due date one
        assert state.extension_count == 1


@settings(max_examples=300, deadline=None)
@given(events=lifecycles(), data=st.data())
def test_folding_later_events_onto_the_stored_state_equals_deriving_from_all(
    events: list[Event], data: st.DataObject
) -> None:
    """The collector's fast path (fold_onto) either gives exactly derive_state's result over
    all the events or declines, and it declines only when it cannot be sure."""
    ordered = sorted(events, key=sort_key)
    cut = data.draw(st.integers(min_value=1, max_value=len(ordered)))
    stored = derive_state("D", ordered[:cut], CAL, terms)
    assume(stored is not None)
    assert stored is not None
    later = ordered[cut:]
    # A batch's events arrive in any order.
    folded = fold_onto(stored, data.draw(st.permutations(later)), CAL)
    if folded is not None:
        assert folded == derive_state("D", ordered, CAL, terms)
    else:
        assert not later or later[0].occurred_at <= stored.last_event_at or stored.extension_count


def test_fold_onto_declines_an_event_at_or_before_the_last_one() -> None:
    r = received(at(2026, 11, 23, 9, 0))
    assigned = ev("assigned", at(2026, 11, 24, 9, 0))
    stored = derive(r, assigned)
    assert fold_onto(stored, [ev("supplement_requested", at(2026, 11, 23, 10, 0))], CAL) is None
    assert fold_onto(stored, [ev("completed", at(2026, 11, 24, 9, 0))], CAL) is None  # a tie
    assert fold_onto(stored, [], CAL) is None
    pause = ev("supplement_requested", at(2026, 11, 24, 10, 0))
    resume = ev("supplement_received", at(2026, 11, 26, 10, 0))
    paused = fold_onto(stored, [pause], CAL)
    assert paused == derive(r, assigned, pause)
    assert paused is not None and fold_onto(paused, [resume], CAL) == derive(
        r, assigned, pause, resume
    )


def test_fold_onto_declines_a_re_dated_dossier() -> None:
    """After a re-date the stored state no longer says what the due date counts from."""
    r = received(at(2026, 11, 23, 9, 0))
    stored = derive(
        r, ev("extended", at(2026, 11, 24, 9, 0), new_due_at="2026-12-10T17:00:00+07:00")
    )
    assert stored.extension_count == 1
    assert fold_onto(stored, [ev("completed", at(2026, 11, 25, 9, 0))], CAL) is None


def test_a_dossier_paused_in_time_has_a_paused_due_bucket_one_paused_late_does_not() -> None:
    r = received(at(2026, 11, 23, 9, 0), due_at="2026-11-27T17:00:00+07:00")
    in_time = derive(r, ev("supplement_requested", at(2026, 11, 24, 9, 0)))
    late = derive(r, ev("supplement_requested", at(2026, 11, 30, 9, 0)))
    resumed = derive(
        r,
        ev("supplement_requested", at(2026, 11, 24, 9, 0)),
        ev("supplement_received", at(2026, 12, 1, 9, 0)),
    )
    due = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert due_bucket_key(in_time) == (COMMUNE, due, True)
    assert due_bucket_key(late) == (COMMUNE, due, False)
    key = due_bucket_key(resumed)
    assert key is not None and key[1] is not None and key[1] > due and key[2] is False
