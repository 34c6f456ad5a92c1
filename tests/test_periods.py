"""Period figures against hand-computed expectations, across a weekend and a public holiday.

The period is Fri 20/11/2026 to Wed 25/11/2026: Sat 21 and Sun 22 are the weekend and Tue 24/11
is a public holiday from 2026. Now is Fri 27/11 10:00, so the period ended at midnight 25->26.
Working hours are 07:00-11:30 and 13:30-17:00 (8 h = one working day).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date

import openpyxl
import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from control_center.db import make_engine, session_factory
from control_center.domain.calendar import WorkingCalendar, load_calendar
from control_center.domain.dossier import RETURNED, WAITING_SUPPLEMENT, WITHDRAWN
from control_center.migrate import upgrade_schema
from control_center.periods import (
    FIGURES,
    Tally,
    open_outcome_at,
    period_figures,
    period_range,
    processing_working_days,
)
from control_center.settings import Settings, load_settings
from tests.test_api import NOW, assert_error, make_client
from tests.test_queries import HA_GIANG_2, THUONG_LAM, World, seed_communes, vn

FROM, TO = date(2026, 11, 20), date(2026, 11, 25)
HOUR = 3600.0


@pytest.fixture
def calendar() -> WorkingCalendar:
    return load_calendar()


@pytest.fixture
def settings(db_url: str) -> Settings:
    return load_settings(database_url=db_url, province="08")


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    engine = make_engine(db_url)
    upgrade_schema(engine)
    with session_factory(engine)() as s:
        seed_communes(s)
        seed(s)
        yield s
    engine.dispose()


def seed(session: Session) -> None:
    w = World(session)
    # 1. Thượng Lâm, online, Fri 20 09:00 -> returned Mon 23 16:00, due Mon 23 09:00: on time
    #    (same date). Fri 09:00-17:00 = 6 h, Mon 07:00-16:00 = 7 h: 13 h = 1.625 working days.
    w.dossier(
        THUONG_LAM,
        received_at=vn(11, 20, 9),
        due_at=vn(11, 23, 9),
        status=RETURNED,
        finished_at=vn(11, 23, 16),
        outcome="on_time",
        closed_at=vn(11, 23, 16),
    )
    # 2. Thượng Lâm, at the desk, land sector, Fri 20 15:00 -> Wed 25 10:00, due Thu 26: early.
    #    Fri 2 h + Mon 8 h + (Tue holiday) + Wed 3 h = 13 h, less 4 h paused = 9 h = 1.125 days.
    land = w.dossier(
        THUONG_LAM,
        received_at=vn(11, 20, 15),
        due_at=vn(11, 26, 17),
        status=RETURNED,
        finished_at=vn(11, 25, 10),
        outcome="early",
        channel="counter",
        closed_at=vn(11, 25, 10),
        paused_seconds=4 * HOUR,
    )
    land.sector = "Đất đai"
    # 3. Hà Giang 2, online, Mon 23 08:00 -> Wed 25 09:00, due Mon 23 17:00: late.
    #    Mon 7 h + Wed 2 h = 9 h = 1.125 days.
    w.dossier(
        HA_GIANG_2,
        received_at=vn(11, 23, 8),
        due_at=vn(11, 23, 17),
        status=RETURNED,
        finished_at=vn(11, 25, 9),
        outcome="overdue",
        closed_at=vn(11, 25, 9),
    )
    # 4. Hà Giang 2, Wed 25, due Thu 26 17:00, still open: in time on the period's last day
    #    (overdue today, which is not in the period).
    w.dossier(HA_GIANG_2, received_at=vn(11, 25, 8), due_at=vn(11, 26, 17))
    # 5. Thượng Lâm, received before the period, due Mon 23, open: overdue at the period's end.
    w.dossier(THUONG_LAM, received_at=vn(11, 19, 8), due_at=vn(11, 23, 17), channel="counter")
    # 6. Thượng Lâm, waiting for documents since Mon 23 10:00, due Mon 23 17:00: the pause began
    #    on the due day, the clock stands still, so it stays in time.
    w.dossier(
        THUONG_LAM,
        received_at=vn(11, 20, 10),
        due_at=vn(11, 23, 17),
        status=WAITING_SUPPLEMENT,
        paused_since=vn(11, 23, 10),
    )
    # 7. Thượng Lâm, Fri 20, finished Thu 26 (after the period): open and in time at its end.
    w.dossier(
        THUONG_LAM,
        received_at=vn(11, 20, 11),
        due_at=vn(11, 27, 17),
        status=RETURNED,
        finished_at=vn(11, 26, 9),
        outcome="early",
        closed_at=vn(11, 26, 9),
    )
    # 8. Hà Giang 2, online on Saturday 21, withdrawn Tue 24: received, no outcome, not open.
    w.dossier(
        HA_GIANG_2,
        received_at=vn(11, 21, 20),
        due_at=vn(11, 27, 17),
        status=WITHDRAWN,
        finished_at=vn(11, 24, 9),
        closed_at=vn(11, 24, 9),
    )
    # 9. Received after the period: not in it at all.
    w.dossier(HA_GIANG_2, received_at=vn(11, 26, 8), due_at=vn(12, 2, 17))
    w.commit()  # fmt: skip


# --- plain functions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        ("today", (date(2026, 11, 27), date(2026, 11, 27))),
        ("week", (date(2026, 11, 23), date(2026, 11, 27))),  # from Monday
        ("month", (date(2026, 11, 1), date(2026, 11, 27))),
        ("quarter", (date(2026, 10, 1), date(2026, 11, 27))),
    ],
)
def test_named_periods_run_from_their_first_day_to_today(
    period: str, expected: tuple[date, date]
) -> None:
    assert period_range(period, date(2026, 11, 27)) == expected


def test_custom_periods_are_checked() -> None:
    assert period_range("custom", date(2026, 11, 27), FROM, TO) == (FROM, TO)
    for bad in [(None, TO), (TO, FROM), (date(2025, 1, 1), date(2026, 11, 27))]:
        with pytest.raises(ValueError):
            period_range("custom", date(2026, 11, 27), *bad)
    with pytest.raises(ValueError, match="period"):
        period_range("year", date(2026, 11, 27))


def test_open_outcome_compares_dates_and_freezes_during_a_pause() -> None:
    due = vn(11, 23, 17)
    assert open_outcome_at(due, None, vn(11, 23, 23)) == "in_time"  # same date, after hours
    assert open_outcome_at(due, None, vn(11, 24, 0, 1)) == "overdue"
    assert open_outcome_at(due, vn(11, 23, 10), vn(11, 27, 10)) == "in_time"
    assert open_outcome_at(due, vn(11, 24, 8), vn(11, 27, 10)) == "overdue"
    assert open_outcome_at(None, None, vn(11, 27, 10)) == "no_due"


def test_processing_time_skips_weekend_holiday_and_pauses(calendar: WorkingCalendar) -> None:
    assert processing_working_days(calendar, vn(11, 20, 9), vn(11, 23, 16), 0) == 1.625
    assert processing_working_days(calendar, vn(11, 20, 15), vn(11, 25, 10), 4 * HOUR) == 1.125


def test_tally_rates() -> None:
    tally = Tally(received=7, received_online=6, in_progress_in_time=3, in_progress_overdue=1)
    for outcome, days in [("early", 1.0), ("on_time", 2.0), ("overdue", 3.0)]:
        tally.add_finished(outcome, days)
    figures = tally.figures()
    assert set(figures) == set(FIGURES)
    assert figures["on_time_rate"] == 0.6667
    assert figures["online_rate"] == 0.8571
    assert figures["progress_score"] == 14.29  # 20 x (2 + 3) / (3 + 4)
    assert figures["avg_processing_working_days"] == 2.0
    assert Tally().figures()["on_time_rate"] is None


# --- figures from the database --------------------------------------------------------------


def test_province_figures_for_a_period_across_a_weekend_and_a_holiday(
    session: Session, settings: Settings, calendar: WorkingCalendar
) -> None:
    result = period_figures(session, settings, calendar, NOW, FROM, TO)
    assert result["rows"] == []
    assert result["total"] == {
        "received": 7,  # 1, 2, 3, 4, 6, 7, 8 (5 came earlier, 9 later)
        "received_online": 6,
        "finished_early": 1,
        "finished_on_time": 1,
        "finished_late": 1,
        "in_progress_in_time": 3,  # 4, 6 (paused on its due day), 7 (finished after)
        "in_progress_overdue": 1,  # 5
        "in_progress_no_due": 0,
        "on_time_rate": 0.6667,
        "online_rate": 0.8571,
        "progress_score": 14.29,
        "avg_processing_working_days": 1.29,  # (1.625 + 1.125 + 1.125) / 3
        "late": 2,  # 3 (finished late) and 5 (open, overdue)
        "late_without_apology": 2,
        "apology_rate": 0.0,
    }


def test_figures_per_commune_and_per_sector(
    session: Session, settings: Settings, calendar: WorkingCalendar
) -> None:
    by_commune = period_figures(session, settings, calendar, NOW, FROM, TO, "commune")
    rows = {r["key"]: r for r in by_commune["rows"]}
    assert len(rows) == 124, "every commune of the province has a row"
    thuong_lam, ha_giang = rows[THUONG_LAM], rows[HA_GIANG_2]
    assert thuong_lam["name"] == "Xã Thượng Lâm"
    assert (thuong_lam["received"], thuong_lam["received_online"]) == (4, 3)
    assert (thuong_lam["finished_early"], thuong_lam["finished_on_time"]) == (1, 1)
    assert (thuong_lam["in_progress_in_time"], thuong_lam["in_progress_overdue"]) == (2, 1)
    assert thuong_lam["avg_processing_working_days"] == 1.38  # (1.625 + 1.125) / 2
    assert (ha_giang["received"], ha_giang["finished_late"], ha_giang["on_time_rate"]) == (
        3,
        1,
        0.0,
    )
    assert rows["00700"]["received"] == 0 and rows["00700"]["on_time_rate"] is None
    assert (
        by_commune["total"] == period_figures(session, settings, calendar, NOW, FROM, TO)["total"]
    )

    by_sector = {r["key"]: r for r in period_figures(
        session, settings, calendar, NOW, FROM, TO, "sector")["rows"]}  # fmt: skip
    assert set(by_sector) == {"Hộ tịch", "Đất đai"}
    land = by_sector["Đất đai"]
    assert (land["received"], land["online_rate"], land["finished_early"]) == (1, 0.0, 1)
    assert by_sector["Hộ tịch"]["received"] == 6


def test_today_ends_now(session: Session, settings: Settings, calendar: WorkingCalendar) -> None:
    today = period_figures(session, settings, calendar, NOW, NOW.date(), NOW.date())
    # Open now: 4 (due yesterday: overdue), 5 (overdue), 6 (paused in time), 9 (in time).
    assert today["total"]["in_progress_overdue"] == 2
    assert today["total"]["in_progress_in_time"] == 2
    assert today["total"]["received"] == 0
    assert today["end"] == NOW


# --- HTTP -----------------------------------------------------------------------------------


@pytest.fixture
def client(settings: Settings, session: Session) -> FlaskClient:
    return make_client(settings)


def test_periods_endpoint(client: FlaskClient) -> None:
    resp = client.get("/api/v1/periods?from=2026-11-20&to=2026-11-25&group=commune")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["period"] == "custom" and body["group"] == "commune"
    assert (body["from"], body["to"]) == ("2026-11-20", "2026-11-25")
    assert body["end"] == "2026-11-26T00:00:00+07:00"
    assert body["total"]["received"] == 7
    row = next(r for r in body["rows"] if r["key"] == THUONG_LAM)
    assert set(row) == {"key", "name", *FIGURES}
    week = client.get("/api/v1/periods?period=week&group=sector").get_json()
    assert (week["from"], week["to"]) == ("2026-11-23", "2026-11-27")
    assert client.get("/api/v1/periods").get_json()["period"] == "today"


@pytest.mark.parametrize(
    "query",
    [
        "?period=year",
        "?group=officer",
        "?from=2026-11-20",
        "?from=20/11/2026&to=2026-11-25",
        "?from=2026-11-25&to=2026-11-20",
        "?from=2024-01-01&to=2026-11-25",
    ],
)
def test_periods_endpoint_rejects_bad_parameters(client: FlaskClient, query: str) -> None:
    assert_error(client.get(f"/api/v1/periods{query}"), 400)


def test_period_figures_to_excel_and_csv_match_the_api(client: FlaskClient) -> None:
    query = "?from=2026-11-20&to=2026-11-25&group=sector"
    api = client.get(f"/api/v1/periods{query}").get_json()
    resp = client.get(f"/api/v1/periods.xlsx{query}")
    assert resp.status_code == 200 and resp.mimetype.endswith("spreadsheetml.sheet")
    ws = openpyxl.load_workbook(io.BytesIO(resp.data)).active
    assert ws is not None and ws.freeze_panes == "A2"
    rows = list(ws.iter_rows(values_only=True))
    header = list(rows[0])
    assert header[:3] == ["Mã", "Đơn vị", "Tiếp nhận"]
    col = {h: i for i, h in enumerate(header)}
    total, *per_sector = rows[1:]
    assert str(total[col["Đơn vị"]]).startswith("Toàn tỉnh 20/11/2026-25/11/2026")
    assert total[col["Tiếp nhận"]] == api["total"]["received"]
    assert total[col["Tỉ lệ đúng hạn"]] == api["total"]["on_time_rate"]
    assert ws.cell(row=2, column=col["Tỉ lệ đúng hạn"] + 1).number_format == "0.0%"
    assert [r[col["Mã"]] for r in per_sector] == [r["key"] for r in api["rows"]]
    assert [r[col["Giải quyết trước hạn"]] for r in per_sector] == [
        r["finished_early"] for r in api["rows"]
    ]
    csv_resp = client.get(f"/api/v1/periods.csv{query}")
    assert csv_resp.data.startswith(b"\xef\xbb\xbf")
    lines = csv_resp.data.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("Mã,Đơn vị,Tiếp nhận") and len(lines) == 2 + len(api["rows"])
    assert_error(client.get("/api/v1/periods.xlsx?group=officer"), 400)
