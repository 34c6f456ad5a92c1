"""The dossier page: its clock across a weekend, a holiday and a wait for documents; apology,
transfer, alerts and timeline as a leader reads them (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy.orm import Session

from control_center.app import render_page
from control_center.db import Database, make_engine, session_factory
from control_center.domain.calendar import WorkingCalendar, load_calendar
from control_center.migrate import upgrade_schema
from control_center.models import DossierEvent
from control_center.settings import Settings, load_settings
from layouts import dossier
from layouts.context import WallContext
from tests.test_api import NOW
from tests.test_queries import HA_GIANG_2, THUONG_LAM, World, seed_communes, vn

CODE = "000.00.22.H56-261116-0007"
HOUR = 3600.0
DAY = 8 * HOUR

# Received Mon 16/11 08:00 with 5 working days: due Mon 23/11 08:00. Waiting for documents
# Wed 18/11 08:00 -> Fri 20/11 08:00 is 16 working hours (Wed 7 h + Thu 8 h + Fri 1 h), so
# the due date moves 16 working hours: Mon 23 08:00 -> 17:00 (7 h), Tue 24/11 is a public
# holiday, Wed 25 (8 h), Thu 26 07:00 -> 08:00 (1 h) = Thu 26/11 08:00.
TIMELINE = [
    ("received", vn(11, 16, 8), {"procedure_code": "1.001193", "channel": "online",
                                 "applicant_name": "Trần Thị B"}),
    ("assigned", vn(11, 16, 9), {"officer": "Lê Văn C", "department": "Tư pháp - Hộ tịch"}),
    ("supplement_requested", vn(11, 18, 8), {"reason": "Thiếu giấy chứng sinh"}),
    ("supplement_received", vn(11, 20, 8), {}),
    ("transferred", vn(11, 23, 9), {"to_commune_code": HA_GIANG_2}),
    ("apology_issued", vn(11, 25, 15), {"new_due_at": "2026-11-30T17:00:00+07:00"}),
]  # fmt: skip


@pytest.fixture
def settings(db_url: str) -> Settings:
    return load_settings(database_url=db_url, province="08")


@pytest.fixture
def calendar() -> WorkingCalendar:
    return load_calendar()


@pytest.fixture
def context(db_url: str, settings: Settings, calendar: WorkingCalendar) -> Iterator[WallContext]:
    engine = make_engine(db_url)
    upgrade_schema(engine)
    with session_factory(engine)() as s:
        seed_communes(s)
        seed_dossier(s)
    engine.dispose()
    yield WallContext(settings=settings, db=Database(db_url), clock=lambda: NOW, calendar=calendar)


def seed_dossier(session: Session) -> None:
    w = World(session)
    w.dossier(
        HA_GIANG_2,
        code=CODE,
        received_at=vn(11, 16, 8),
        due_at=vn(11, 26, 8),
        officer="Lê Văn C",
        department="Tư pháp - Hộ tịch",
        apology_issued_at=vn(11, 25, 15),
        paused_seconds=16 * HOUR,
    ).received_commune_code = THUONG_LAM
    for i, (kind, at, payload) in enumerate(TIMELINE):
        session.add(
            DossierEvent(
                event_id=f"dp-{i}",
                dossier_code=CODE,
                commune_code=THUONG_LAM if kind != "apology_issued" else HA_GIANG_2,
                type=kind,
                occurred_at=at,
                # The apology reached us two hours late (the centre was offline).
                arrived_at=at + (timedelta(hours=2) if kind == "apology_issued" else timedelta()),
                payload=payload,
            )
        )
    w.alert(HA_GIANG_2, raised_at=vn(11, 26, 8, 5), dossier_code=CODE, level=1,
            state="acknowledged", acknowledged_by="Nguyễn Văn A",
            acknowledged_at=vn(11, 26, 9))  # fmt: skip
    w.alert(HA_GIANG_2, raised_at=vn(11, 27, 8, 5), dossier_code=CODE, level=2)
    w.commit()


def events(extra: list[tuple[str, Any]] | None = None) -> list[dict[str, Any]]:
    rows = [{"type": k, "occurred_at": at, "details": p} for k, at, p in TIMELINE]
    return rows + [{"type": k, "occurred_at": at, "details": {}} for k, at in extra or []]


# --- the clock (plain functions) ------------------------------------------------------------


def test_a_wait_for_documents_is_a_paused_span_in_working_time(calendar: WorkingCalendar) -> None:
    (span,) = dossier.paused_spans(events(), calendar, NOW)
    assert (span.kind, span.start, span.end) == ("supplement", vn(11, 18, 8), vn(11, 20, 8))
    assert span.working_seconds == 16 * HOUR


def test_a_wait_still_open_runs_until_now_and_closing_ends_it(calendar: WorkingCalendar) -> None:
    waiting = events([("payment_requested", vn(11, 26, 13, 30))])
    *_, last = dossier.paused_spans(waiting, calendar, NOW)
    # Thu 26 13:30 -> 17:00 (3.5 h) + Fri 27 07:00 -> 10:00 (3 h).
    assert (last.kind, last.end, last.working_seconds) == ("payment", None, 6.5 * HOUR)
    closed = events([("payment_requested", vn(11, 26, 13, 30)), ("withdrawn", vn(11, 26, 15))])
    assert dossier.paused_spans(closed, calendar, NOW)[-1].working_seconds == 1.5 * HOUR
    # A second request while already waiting does not start a second span.
    twice = events([("supplement_requested", vn(11, 26, 8)), ("payment_requested", vn(11, 26, 9))])
    assert [s.start for s in dossier.paused_spans(twice, calendar, NOW)][-1] == vn(11, 26, 8)


def test_clock_used_paused_and_overdue_across_weekend_and_holiday(
    calendar: WorkingCalendar,
) -> None:
    detail = {
        "clock_start_at": vn(11, 16, 8),
        "is_open": True,
        "due_at": vn(11, 26, 8),
        "timeline": events(),
    }
    clock = dossier.dossier_clock(detail, calendar, NOW)
    # Mon 16/11 08:00 -> Fri 27/11 10:00: 7 h on the 16th, 17-20 (4 days), 23, 25, 26
    # (Sat-Sun and the holiday on Tue 24 skipped), 3 h on the 27th = 66 h; minus 16 h paused.
    assert clock.paused_s == 16 * HOUR
    assert clock.used_s == 50 * HOUR
    # Due Thu 26/11 08:00: Thu 08:00 -> 17:00 (7 h) + Fri 07:00 -> 10:00 (3 h) = 10 h late.
    assert clock.remaining_s == -10 * HOUR


def test_a_finished_dossier_stops_its_clock_at_the_finish(calendar: WorkingCalendar) -> None:
    detail = {
        "clock_start_at": vn(11, 16, 8),
        "is_open": False,
        "finished_at": vn(11, 20, 17),
        "due_at": vn(11, 26, 8),
        "timeline": events()[:4],
    }
    clock = dossier.dossier_clock(detail, calendar, NOW)
    assert clock.used_s == 5 * DAY - HOUR - 16 * HOUR  # 16/11 08:00 -> 20/11 17:00, less pause
    # Mon 23 (8 h), Tue 24 a holiday, Wed 25 (8 h), Thu 26 07:00 -> 08:00 (1 h) still to spare.
    assert clock.remaining_s == 17 * HOUR


def test_dossier_paths_round_trip() -> None:
    path = dossier.dossier_path(CODE)
    assert path == "/dossier/000.00.22.H56-261116-0007"
    assert dossier.code_from_path(path) == CODE
    assert dossier.code_from_path("/dossier/a%2Fb/") == "a/b"
    assert dossier.code_from_path("/dossier/") is None
    assert dossier.code_from_path("/commune/02269") is None


# --- the page -------------------------------------------------------------------------------


def walk(component: Any) -> Iterator[Any]:
    yield component
    children = getattr(component, "children", None)
    if isinstance(children, list | tuple):
        for child in children:
            yield from walk(child)
    elif children is not None:
        yield from walk(children)


def text_of(component: Any) -> str:
    return " ".join(str(c) for c in walk(component) if isinstance(c, str | int | float))


def by_data(page: Any, name: str, value: str) -> Any:
    found = [c for c in walk(page) if getattr(c, f"data-{name}", None) == value]
    assert found, f"no data-{name}={value!r} on the page"
    return found[0]


def test_dossier_page_shows_clock_apology_transfer_alerts_and_timeline(
    context: WallContext,
) -> None:
    page = render_page(context, f"/dossier/{quote(CODE)}", None)
    text = text_of(page)
    assert f"Hồ sơ {CODE}" in text
    assert text_of(by_data(page, "fact", "used")).endswith("6,25 ngày làm việc")
    assert text_of(by_data(page, "fact", "paused")).endswith("2,00 ngày làm việc")
    overdue = by_data(page, "fact", "overdue")
    assert text_of(overdue).endswith("1,25 ngày làm việc")
    assert "Chờ bổ sung" in text and "18/11/2026 08:00" in text and "20/11/2026 08:00" in text
    assert text_of(by_data(page, "fact", "apology")).endswith("Đã có phiếu lúc 25/11/2026 15:00")
    assert "từ Xã Thượng Lâm sang Phường Hà Giang 2" in text
    assert text_of(by_data(page, "level", "1")).count("Nguyễn Văn A") == 1
    assert "Cấp 2 - Lãnh đạo xã" in text_of(by_data(page, "level", "2"))
    timeline = [getattr(c, "data-event") for c in walk(page) if getattr(c, "data-event", None)]
    assert timeline == [kind for kind, _, _ in TIMELINE]
    assert "nhận muộn lúc 25/11/2026 17:00" in text_of(by_data(page, "event", "apology_issued"))
    assert "Trần Thị B" not in text, "applicant names are personal data"


def test_dossier_page_in_english(context: WallContext) -> None:
    page = render_page(context, dossier.dossier_path(CODE), "?lang=en")
    assert text_of(by_data(page, "fact", "overdue")).endswith("1.25 working days")
    assert "Documents requested" in text_of(page)


def test_a_late_dossier_without_apology_says_so(context: WallContext, db_url: str) -> None:
    with Database(db_url).session() as s:
        w = World(s)
        w.dossier(THUONG_LAM, code="late-no-apology", received_at=vn(11, 2, 8),
                  due_at=vn(11, 9, 17))  # fmt: skip
        w.commit()
    page = render_page(context, "/dossier/late-no-apology", None)
    apology = by_data(page, "fact", "apology")
    assert "CHƯA CÓ phiếu xin lỗi" in text_of(apology)
    assert "Không chuyển" in text_of(page) and "Chưa có cảnh báo" in text_of(page)


def test_an_unknown_dossier_says_so(context: WallContext) -> None:
    assert "Không có hồ sơ nope" in text_of(render_page(context, "/dossier/nope", None))
