"""A paused dossier's clock is stopped (DOMAIN.md: waiting for the citizen's supplement or fee):
the wall, the API and the leaders' review count it in the open backlog, not as overdue or due soon, and count it
again once it resumes and passes its shifted due date. Events go through the collector, so
the due buckets the wall reads are the ones it maintains."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine

from collectors.ingest import Ingestor
from control_center import queries
from control_center.db import session_factory
from control_center.domain.calendar import LOCAL_TZ
from control_center.runtime import calendar_from_settings
from control_center.settings import Settings
from tests.test_ingest import (
    BASE,
    A,
    assert_aggregates_consistent,
    dossier_event,
    make_settings,
    msg,
    prepare_database,
)

DUE = "2025-11-05T16:00:00+07:00"  # Wednesday afternoon; BASE is Monday 08:00


def hours_after_base(when: datetime) -> float:
    return (when - BASE).total_seconds() / 3600


def local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 11, day, hour, minute, tzinfo=LOCAL_TZ)


@pytest.fixture
def world(db_url: str) -> Iterator[tuple[Engine, Ingestor, Settings]]:
    engine = prepare_database(db_url)
    settings = make_settings(db_url)
    yield engine, Ingestor(engine, settings), settings
    engine.dispose()


def event(
    event_id: str, etype: str, dossier: str, when: datetime, **extra: object
) -> dict[str, object]:
    return dossier_event(event_id, etype, dossier, hours_after_base(when), **extra)


def figures(engine: Engine, settings: Settings, now: datetime) -> dict[str, object]:
    """What the API's /summary, /communes and /dossiers?state= say at ``now``."""
    calendar = calendar_from_settings(settings)
    with session_factory(engine)() as session:
        summary = queries.province_summary(session, settings, calendar, now)
        row = next(
            r for r in queries.commune_rows(session, settings, calendar, now) if r["code"] == A
        )
        listed = {
            state: sorted(
                d["dossier_code"]
                for d in queries.list_dossiers(
                    session, settings, calendar, now, state=state, limit=100
                )["items"]
            )
            for state in ("overdue", "due_soon")
        }
        # The leaders' review grid (and its exports) filter the same way.
        reviewed = {
            state: sorted(
                d["dossier_code"]
                for d in queries.review_rows(
                    session, settings, calendar, now, queries.ReviewFilters(state=state)
                )["items"]
            )
            for state in ("overdue", "due_soon", "attention")
        }
    assert reviewed["overdue"] == listed["overdue"]
    assert reviewed["due_soon"] == listed["due_soon"]
    assert reviewed["attention"] == sorted(listed["overdue"] + listed["due_soon"])
    return {
        "summary": {k: summary[k] for k in ("open", "overdue", "due_soon")},
        "commune": {k: row[k] for k in ("open", "overdue", "due_soon")},
        "listed": listed,
    }


def test_a_paused_dossier_is_not_overdue_until_it_resumes_past_its_shifted_due_date(
    world: tuple[Engine, Ingestor, Settings],
) -> None:
    engine, ingestor, settings = world
    received = {"procedure_code": "1.001193", "channel": "online", "due_at": DUE}
    ingestor.process(
        [
            msg(event("p1", "received", "PAUSED", BASE, **received)),
            # Tuesday 08:00, in time: the clock stops.
            msg(event("p2", "supplement_requested", "PAUSED", local(4, 8))),
            msg(event("r1", "received", "RUNNING", BASE, **received)),
        ]
    )
    assert_aggregates_consistent(engine)

    # Friday: past the original due date. The running dossier is overdue, the paused one
    # only open.
    friday = local(7, 10)
    assert figures(engine, settings, friday) == {
        "summary": {"open": 2, "overdue": 1, "due_soon": 0},
        "commune": {"open": 2, "overdue": 1, "due_soon": 0},
        "listed": {"overdue": ["RUNNING"], "due_soon": []},
    }

    # The citizen brings the supplement on Monday 08:00: four working days of pause (Tuesday
    # 08:00-17:00 less lunch, Wednesday to Friday, Monday 07:00-08:00) move the due date from
    # Wednesday 16:00 to the next Tuesday 16:00, due soon from Monday 16:00 on.
    ingestor.process([msg(event("p3", "supplement_received", "PAUSED", local(10, 8)))])
    assert_aggregates_consistent(engine)
    assert figures(engine, settings, local(10, 16, 30)) == {
        "summary": {"open": 2, "overdue": 1, "due_soon": 1},
        "commune": {"open": 2, "overdue": 1, "due_soon": 1},
        "listed": {"overdue": ["RUNNING"], "due_soon": ["PAUSED"]},
    }
    later = local(11, 16) + timedelta(hours=1)  # Tuesday 17:00, past the shifted due date
    assert figures(engine, settings, later) == {
        "summary": {"open": 2, "overdue": 2, "due_soon": 0},
        "commune": {"open": 2, "overdue": 2, "due_soon": 0},
        "listed": {"overdue": ["PAUSED", "RUNNING"], "due_soon": []},
    }


def test_a_dossier_paused_after_its_due_date_stays_overdue(
    world: tuple[Engine, Ingestor, Settings],
) -> None:
    """Pausing does not undo lateness: the pause froze a dossier that was already late."""
    engine, ingestor, settings = world
    received = {"procedure_code": "1.001193", "channel": "online", "due_at": DUE}
    ingestor.process(
        [
            msg(event("l1", "received", "LATE", BASE, **received)),
            msg(event("l2", "supplement_requested", "LATE", local(6, 9))),  # Thursday
        ]
    )
    assert_aggregates_consistent(engine)
    assert figures(engine, settings, local(7, 10)) == {
        "summary": {"open": 1, "overdue": 1, "due_soon": 0},
        "commune": {"open": 1, "overdue": 1, "due_soon": 0},
        "listed": {"overdue": ["LATE"], "due_soon": []},
    }
