"""Queue tickets and counters: state from events, in any arrival order."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_center.domain.calendar import LOCAL_TZ
from control_center.domain.dossier import Event
from control_center.domain.queue import (
    CALLED,
    CANCELLED,
    COMPLETED,
    SERVING,
    WAITING,
    apply_counter_event,
    counter_states,
    derive_ticket,
    handling_seconds,
    service_day,
    wait_seconds,
)

COMMUNE = "02269"
_ids = itertools.count()


def at(hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(2026, 11, 26, hh, mm, ss, tzinfo=LOCAL_TZ)


def ev(kind: str, when: datetime, **payload: object) -> Event:
    payload.setdefault("ticket_no", "A012")
    return Event(f"q-{next(_ids)}", kind, when, COMMUNE, dict(payload))


def issued(when: datetime, **payload: object) -> Event:
    payload = {"channel": "kiosk", "service": "Hộ tịch", "priority": "normal", **payload}
    return ev("ticket_issued", when, **payload)


def test_no_events_no_ticket() -> None:
    assert derive_ticket([]) is None
    assert derive_ticket([ev("counter_opened", at(7), counter="1")]) is None


def test_a_ticket_goes_from_waiting_to_completed() -> None:
    events = [issued(at(8, 0), priority="elderly")]
    waiting = derive_ticket(events)
    assert waiting is not None and waiting.state == WAITING and waiting.is_waiting
    assert (waiting.ticket_no, waiting.commune_code) == ("A012", COMMUNE)
    assert (waiting.channel, waiting.service, waiting.priority) == ("kiosk", "Hộ tịch", "elderly")

    events.append(ev("ticket_called", at(8, 12), counter="3"))
    called = derive_ticket(events)
    assert called is not None and called.state == CALLED and called.counter == "3"

    events.append(ev("service_started", at(8, 13), counter="3"))
    serving = derive_ticket(events)
    assert serving is not None and serving.state == SERVING

    events.append(ev("ticket_completed", at(8, 25), counter="3"))
    done = derive_ticket(events)
    assert done is not None and done.state == COMPLETED and done.is_closed
    assert (done.issued_at, done.called_at, done.started_at, done.finished_at) == (
        at(8, 0),
        at(8, 12),
        at(8, 13),
        at(8, 25),
    )
    assert wait_seconds(done, at(12)) == 12 * 60
    assert handling_seconds(done, at(12)) == 12 * 60


def test_waiting_time_runs_until_the_first_call() -> None:
    waiting = derive_ticket([issued(at(8, 0))])
    assert waiting is not None
    assert wait_seconds(waiting, at(8, 40)) == 40 * 60
    recalled = derive_ticket(
        [
            issued(at(8, 0)),
            ev("ticket_called", at(8, 10), counter="2"),
            ev("ticket_called", at(8, 12), counter="2"),
        ]
    )
    assert recalled is not None and recalled.call_count == 2
    assert recalled.called_at == at(8, 10)
    assert wait_seconds(recalled, at(9)) == 10 * 60


def test_no_show_after_repeated_calls_is_cancelled() -> None:
    ticket = derive_ticket(
        [
            issued(at(8, 0)),
            ev("ticket_called", at(8, 10), counter="2"),
            ev("ticket_called", at(8, 12), counter="2"),
            ev("ticket_called", at(8, 14), counter="2"),
            ev("ticket_cancelled", at(8, 15), reason="no_show"),
        ]
    )
    assert ticket is not None and ticket.state == CANCELLED
    assert ticket.cancel_reason == "no_show" and ticket.call_count == 3
    assert ticket.finished_at == at(8, 15)
    assert handling_seconds(ticket, at(9)) is None


def test_cancelled_before_a_call_waited_until_cancelled() -> None:
    ticket = derive_ticket([issued(at(8, 0)), ev("ticket_cancelled", at(8, 30))])
    assert ticket is not None and ticket.cancel_reason == "other"
    assert wait_seconds(ticket, at(11)) == 30 * 60


def test_the_first_close_is_final() -> None:
    ticket = derive_ticket(
        [
            issued(at(8, 0)),
            ev("service_started", at(8, 5), counter="1"),
            ev("ticket_completed", at(8, 20), counter="1"),
            ev("ticket_cancelled", at(8, 21), reason="document_missing"),
            ev("ticket_called", at(8, 22), counter="4"),
        ]
    )
    assert ticket is not None and ticket.state == COMPLETED
    assert ticket.finished_at == at(8, 20) and ticket.counter == "1"
    assert ticket.cancel_reason is None


def test_served_without_a_call_waited_until_service_started() -> None:
    ticket = derive_ticket([issued(at(8, 0)), ev("service_started", at(8, 7), counter="2")])
    assert ticket is not None and ticket.state == SERVING and ticket.called_at is None
    assert wait_seconds(ticket, at(11)) == 7 * 60


def test_missing_issue_event_still_tracks_the_ticket() -> None:
    ticket = derive_ticket([ev("service_started", at(9, 0), counter="5")])
    assert ticket is not None and ticket.state == SERVING
    assert ticket.issued_at is None
    assert wait_seconds(ticket, at(10)) is None
    assert handling_seconds(ticket, at(9, 30)) == 30 * 60


def test_a_call_stamped_after_service_start_does_not_move_the_ticket_back() -> None:
    # the calling display's clock is a minute ahead of the counter's
    ticket = derive_ticket(
        [
            issued(at(8, 0)),
            ev("service_started", at(8, 10), counter="1"),
            ev("ticket_called", at(8, 11), counter="1"),
        ]
    )
    assert ticket is not None and ticket.state == SERVING
    assert ticket.called_at == at(8, 11)


def test_service_day_is_the_local_date() -> None:
    assert service_day(datetime(2026, 11, 25, 23, 30, tzinfo=UTC)) == at(0).date()


# --- counters -------------------------------------------------------------------------------


def counter_ev(kind: str, when: datetime, counter: str = "1") -> Event:
    return Event(f"c-{next(_ids)}", kind, when, COMMUNE, {"counter": counter})


def test_newest_counter_event_wins_whatever_the_arrival_order() -> None:
    opened = counter_ev("counter_opened", at(7, 0))
    closed = counter_ev("counter_closed", at(11, 30))
    reopened = counter_ev("counter_opened", at(13, 30))
    assert counter_states([opened, closed, reopened])["1"].is_open
    assert counter_states([reopened, closed, opened])["1"].is_open
    late_open = apply_counter_event(apply_counter_event(None, closed), opened)
    assert not late_open.is_open and late_open.last_event_at == at(11, 30)


def test_counter_close_wins_a_tie() -> None:
    opened = counter_ev("counter_opened", at(7, 0))
    closed = counter_ev("counter_closed", at(7, 0))
    assert not apply_counter_event(apply_counter_event(None, opened), closed).is_open
    assert not apply_counter_event(apply_counter_event(None, closed), opened).is_open


def test_counters_are_tracked_separately() -> None:
    states = counter_states(
        [
            counter_ev("counter_opened", at(7, 0), "1"),
            counter_ev("counter_opened", at(7, 0), "2"),
            counter_ev("counter_closed", at(10, 0), "2"),
            issued(at(8, 0)),
        ]
    )
    assert {c: s.is_open for c, s in states.items()} == {"1": True, "2": False}


def test_ticket_event_is_not_a_counter_event() -> None:
    with pytest.raises(ValueError):
        apply_counter_event(None, issued(at(8, 0)))


# --- property: any order, any duplicates ----------------------------------------------------


@st.composite
def ticket_histories(draw: st.DrawFn) -> list[Event]:
    t = at(7) + timedelta(minutes=draw(st.integers(0, 600)))
    gap = st.integers(min_value=0, max_value=45).map(lambda m: timedelta(minutes=m))
    ids = itertools.count()

    def make(kind: str, when: datetime, **payload: object) -> Event:
        return Event(f"t{next(ids)}", kind, when, COMMUNE, {"ticket_no": "B007", **payload})

    events = [make("ticket_issued", t, channel="zalo", service="Cư trú", priority="priority")]
    for _ in range(draw(st.integers(0, 3))):
        t += draw(gap)
        events.append(make("ticket_called", t, counter=draw(st.sampled_from("123"))))
    if draw(st.booleans()):
        t += draw(gap)
        events.append(make("service_started", t, counter="1"))
    end = draw(st.sampled_from([None, "ticket_completed", "ticket_cancelled"]))
    if end:
        t += draw(gap)
        events.append(make(end, t, counter="1", reason="no_show"))
    return events


@settings(max_examples=200, deadline=None)
@given(events=ticket_histories(), data=st.data())
def test_ticket_state_does_not_depend_on_arrival(events: list[Event], data: st.DataObject) -> None:
    expected = derive_ticket(events)
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=4))
    assert derive_ticket(data.draw(st.permutations(events + duplicates))) == expected
    assert expected is not None and expected.event_count == len(events)
    waited = wait_seconds(expected, at(23))
    assert waited is not None and waited >= 0
