"""The leaders' review over HTTP: ``/api/v1/review`` and its xlsx / CSV exports (SQLite, PostgreSQL).

The exports are opened the way a leader's Excel would (openpyxl, csv with the BOM) and compared
with what the JSON API says for the same filters.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import openpyxl
import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from control_center import queries
from control_center.db import make_engine, session_factory
from control_center.domain.calendar import LOCAL_TZ, load_calendar
from control_center.domain.dossier import RETURNED
from control_center.exports import REVIEW_COLUMNS
from control_center.migrate import upgrade_schema
from control_center.models import Dossier
from control_center.security.roles import Scope
from control_center.settings import Settings, load_settings
from tests.test_api import NOW, assert_error, make_client
from tests.test_queries import HA_GIANG_2, THUONG_LAM, World, seed_communes, vn


@pytest.fixture
def settings(db_url: str) -> Settings:
    return load_settings(database_url=db_url, province="08")


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    engine = make_engine(db_url)
    upgrade_schema(engine)
    with session_factory(engine)() as s:
        seed_communes(s)
        yield s
    engine.dispose()


@pytest.fixture
def codes(session: Session) -> dict[str, str]:
    """Now is Friday 27/11/2026 10:00. Three dossiers need attention: two overdue in Thượng Lâm
    (one apologised and escalated to level 2, one extended, at the counter, land sector), one
    due this afternoon in Hà Giang 2. Three more do not: one in time, one returned, one undated."""
    w = World(session)
    apologised = w.dossier(
        THUONG_LAM,
        received_at=vn(11, 10, 8),
        due_at=vn(11, 17, 17),
        officer="Lê Văn C",
        apology_issued_at=vn(11, 16, 9),
    )
    extended = w.dossier(
        THUONG_LAM,
        received_at=vn(11, 12, 8),
        due_at=vn(11, 19, 17),
        channel="counter",
        officer="Nguyễn Thị D",
        extension_count=1,
    )
    extended.sector = "Đất đai"
    extended.procedure_code = "1.004227"
    extended.procedure_name = "Đăng ký biến động đất đai"
    due_today = w.dossier(HA_GIANG_2, received_at=vn(11, 20, 8), due_at=vn(11, 27, 13))
    in_time = w.dossier(HA_GIANG_2, received_at=vn(11, 27, 8), due_at=vn(12, 4, 17))
    returned = w.dossier(
        THUONG_LAM,
        received_at=vn(11, 20, 8),
        due_at=vn(11, 27, 17),
        status=RETURNED,
        finished_at=vn(11, 26, 9),
        outcome="early",
        officer="Trần Văn E",
    )
    undated = w.dossier(HA_GIANG_2, received_at=vn(11, 25, 8), due_at=None)
    raised = NOW - timedelta(hours=2)
    w.alert(THUONG_LAM, raised_at=raised, dossier_code=apologised.dossier_code, level=1)
    w.alert(THUONG_LAM, raised_at=raised, dossier_code=apologised.dossier_code, level=2)
    # A resolved level-3 alert is history, not the dossier's escalation now.
    w.alert(
        THUONG_LAM, raised_at=raised, dossier_code=extended.dossier_code, level=3, state="resolved"
    )
    w.commit()
    return {
        "apologised": apologised.dossier_code,
        "extended": extended.dossier_code,
        "due_today": due_today.dossier_code,
        "in_time": in_time.dossier_code,
        "returned": returned.dossier_code,
        "undated": undated.dossier_code,
    }


@pytest.fixture
def client(settings: Settings, codes: dict[str, str]) -> FlaskClient:
    return make_client(settings)


def review(client: FlaskClient, query: str = "") -> dict[str, Any]:
    resp = client.get(f"/api/v1/review{query}")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["Cache-Control"] == "no-store"
    return resp.get_json()


def listed(body: dict[str, Any]) -> list[str]:
    return [item["dossier_code"] for item in body["items"]]


# --- JSON ---------------------------------------------------------------------------------


def test_review_lists_overdue_and_due_soon_most_overdue_first(
    client: FlaskClient, codes: dict[str, str]
) -> None:
    body = review(client)
    assert body["total"] == 3
    assert (body["limit"], body["offset"]) == (100, 0)
    assert listed(body) == [codes["apologised"], codes["extended"], codes["due_today"]]
    first, second, third = body["items"]
    assert first["commune_name"] == "Xã Thượng Lâm"
    assert first["escalation_level"] == 2
    assert first["apology_issued"] is True and first["extended"] is False
    assert first["officer"] == "Lê Văn C"
    assert first["due_at"] == "2026-11-17T17:00:00+07:00"
    assert first["working_days_overdue"] > second["working_days_overdue"] > 0
    assert second["escalation_level"] == 0, "a resolved alert is not an escalation"
    assert second["extended"] is True and second["channel"] == "counter"
    assert third["working_days_overdue"] == 0 and third["outcome"] == "in_time"


def test_working_days_overdue_skip_the_weekend_and_the_holiday(
    client: FlaskClient, codes: dict[str, str]
) -> None:
    items = {i["dossier_code"]: i for i in review(client, "?state=overdue")["items"]}
    # Due Thu 19/11 17:00, now Fri 27/11 10:00: Fri 20, Mon 23, Wed 25, Thu 26 are whole
    # working days (Sat 21 and Sun 22 are the weekend, Tue 24/11 a public holiday from 2026),
    # plus Fri 27 from 07:00 to 10:00 = 3 of 8 working hours.
    assert items[codes["extended"]]["working_days_overdue"] == 4.38
    # Due Tue 17/11 17:00: two more working days (Wed 18, Thu 19).
    assert items[codes["apologised"]]["working_days_overdue"] == 6.38


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?commune=02269", ["apologised", "extended"]),
        ("?apology=yes", ["apologised"]),
        ("?apology=no", ["extended", "due_today"]),
        ("?extended=yes", ["extended"]),
        ("?level=2", ["apologised"]),
        ("?level=0", ["extended", "due_today"]),
        ("?channel=counter", ["extended"]),
        ("?sector=%C4%90%E1%BA%A5t%20%C4%91ai", ["extended"]),  # Đất đai
        ("?procedure=1.004227", ["extended"]),
        ("?officer=l%C3%AA%20v%C4%83n", ["apologised"]),  # part of "Lê Văn C"
        ("?officer=NGUY", ["extended"]),  # any case
        ("?officer=%25", []),  # a literal "%", not a wildcard
        ("?officer=tr%E1%BA%A7n", []),  # Trần handles only a returned dossier
        ("?state=finished&officer=tr%E1%BA%A7n", ["returned"]),
        ("?state=all&officer=v%C4%83n&sort=dossier_code", ["apologised", "returned"]),
        ("?state=overdue", ["apologised", "extended"]),
        ("?state=due_soon", ["due_today"]),
        ("?state=finished", ["returned"]),
        ("?state=open&commune=00691", ["due_today", "in_time", "undated"]),
        ("?commune=02269&apology=no&extended=yes", ["extended"]),
        ("?commune=00700", []),
    ],
)
def test_review_filters(
    client: FlaskClient, codes: dict[str, str], query: str, expected: list[str]
) -> None:
    body = review(client, query)
    assert listed(body) == [codes[name] for name in expected]
    assert body["total"] == len(expected)


def test_state_all_lists_every_dossier(client: FlaskClient, codes: dict[str, str]) -> None:
    assert sorted(listed(review(client, "?state=all"))) == sorted(codes.values())


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("working_days_overdue", ["due_today", "extended", "apologised"]),
        ("-escalation_level,due_at", ["apologised", "extended", "due_today"]),
        ("commune_name,-due_at", ["due_today", "extended", "apologised"]),  # Phường < Xã
        ("-officer", ["extended", "apologised", "due_today"]),  # no handler last
    ],
)
def test_review_sorting(
    client: FlaskClient, codes: dict[str, str], sort: str, expected: list[str]
) -> None:
    assert listed(review(client, f"?sort={sort}")) == [codes[name] for name in expected]


def test_review_pages(client: FlaskClient, codes: dict[str, str]) -> None:
    page = review(client, "?limit=1&offset=1")
    assert page["total"] == 3
    assert (page["limit"], page["offset"]) == (1, 1)
    assert listed(page) == [codes["extended"]]
    assert listed(review(client, "?offset=3")) == []


@pytest.mark.parametrize(
    "query",
    [
        "?state=late",
        "?commune=2269",
        "?apology=maybe",
        "?extended=1",
        "?level=4",
        "?level=high",
        "?channel=fax",
        "?sort=applicant_name",
        "?limit=0",
        "?limit=501",
        "?offset=-1",
        "?officer=" + "x" * 121,
    ],
)
def test_review_rejects_bad_parameters(client: FlaskClient, query: str) -> None:
    assert_error(client.get(f"/api/v1/review{query}"), 400)
    if "limit" not in query and "offset" not in query:  # the exports have no paging
        assert_error(client.get(f"/api/v1/review.csv{query}"), 400)


def test_review_is_in_the_openapi_document(client: FlaskClient) -> None:
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for path in (
        "/api/v1/review",
        "/api/v1/review.xlsx",
        "/api/v1/review.csv",
        "/api/v1/periods",
        "/api/v1/periods.xlsx",
        "/api/v1/ranking",
    ):
        assert path in paths
    names = {p["name"] for p in paths["/api/v1/review"]["get"]["parameters"]}
    assert {"state", "commune", "apology", "extended", "level", "sort", "limit"} <= names


# --- exports --------------------------------------------------------------------------------


def _local(iso: str | None) -> datetime | None:
    if iso is None:
        return None
    return datetime.fromisoformat(iso).astimezone(LOCAL_TZ).replace(tzinfo=None)


def test_xlsx_export_matches_the_api(client: FlaskClient) -> None:
    query = "?commune=02269&sort=-due_at"
    api = review(client, query)
    resp = client.get(f"/api/v1/review.xlsx{query}")
    assert resp.status_code == 200
    assert resp.mimetype.endswith("spreadsheetml.sheet")
    assert "attachment" in resp.headers["Content-Disposition"]
    assert ".xlsx" in resp.headers["Content-Disposition"]
    assert resp.headers["X-Total-Count"] == "2"

    wb = openpyxl.load_workbook(io.BytesIO(resp.data))
    ws = wb.active
    assert ws is not None
    assert ws.freeze_panes == "A2", "the header row stays visible while scrolling"
    rows = list(ws.iter_rows(values_only=True))
    header = list(rows[0])
    assert header == [c.header for c in REVIEW_COLUMNS]
    assert "Mã hồ sơ" in header and "Ngày hẹn trả" in header
    assert len(rows) == 1 + api["total"]
    col = {h: i for i, h in enumerate(header)}
    for item, row in zip(api["items"], rows[1:], strict=True):
        assert row[col["Mã hồ sơ"]] == item["dossier_code"]
        assert row[col["Xã, phường"]] == item["commune_name"]
        # Real dates in local time, not text: Excel can sort and filter them.
        assert row[col["Ngày hẹn trả"]] == _local(item["due_at"])
        assert row[col["Ngày tiếp nhận"]] == _local(item["received_at"])
        assert row[col["Số ngày làm việc quá hạn"]] == pytest.approx(item["working_days_overdue"])
        assert row[col["Đã có phiếu xin lỗi"]] == ("Có" if item["apology_issued"] else "Không")
        assert row[col["Cấp cảnh báo"]] == item["escalation_level"]
        assert row[col["Cán bộ xử lý"]] == item["officer"]
    due_cell = ws.cell(row=2, column=col["Ngày hẹn trả"] + 1)
    assert due_cell.is_date and due_cell.number_format == "dd/mm/yyyy hh:mm"
    days_cell = ws.cell(row=2, column=col["Số ngày làm việc quá hạn"] + 1)
    assert days_cell.number_format == "0.00"
    # Sorted by due date, latest first, as asked.
    assert rows[1][col["Mã hồ sơ"]] == api["items"][0]["dossier_code"]


def test_csv_export_is_utf8_with_bom_and_matches_the_api(client: FlaskClient) -> None:
    api = review(client)
    resp = client.get("/api/v1/review.csv")
    assert resp.status_code == 200
    assert resp.mimetype == "text/csv"
    assert resp.data.startswith(b"\xef\xbb\xbf"), "Excel needs the BOM to read UTF-8"
    rows = list(csv.reader(io.StringIO(resp.data.decode("utf-8-sig"))))
    assert rows[0] == [c.header for c in REVIEW_COLUMNS]
    col = {h: i for i, h in enumerate(rows[0])}
    assert [r[col["Mã hồ sơ"]] for r in rows[1:]] == listed(api)
    first = rows[1]
    assert first[col["Xã, phường"]] == "Xã Thượng Lâm"
    assert first[col["Ngày hẹn trả"]] == "17/11/2026 17:00"
    assert first[col["Kênh nộp"]] == "Trực tuyến"
    assert first[col["Tình trạng"]] == "Đang giải quyết quá hạn"
    assert float(first[col["Số ngày làm việc quá hạn"]]) == pytest.approx(
        api["items"][0]["working_days_overdue"]
    )


@pytest.mark.parametrize(
    "filters",
    [
        queries.ReviewFilters(),
        queries.ReviewFilters(state="all"),
        queries.ReviewFilters(state="finished"),
        queries.ReviewFilters(state="all", sort=(("commune_name", "asc"), ("due_at", "desc"))),
    ],
)
@pytest.mark.parametrize("personal_data", [False, True])
def test_exported_rows_are_the_reviews_items(
    session: Session,
    settings: Settings,
    codes: dict[str, str],
    filters: queries.ReviewFilters,
    personal_data: bool,
) -> None:
    """The export reads its own, narrower query (streamed, only the columns a row needs): its
    rows are field for field the review's items, in the same order, masked the same way."""
    dossier = session.get(Dossier, codes["apologised"])
    assert dossier is not None
    dossier.applicant_name = "Trần Thị B"
    session.commit()
    calendar = load_calendar()
    scope = Scope(personal_data=personal_data)
    page = queries.review_rows(session, settings, calendar, NOW, filters, limit=100, scope=scope)
    streamed = list(
        queries.iter_review_rows(
            session, settings, calendar, NOW, filters, max_rows=100, batch=2, scope=scope
        )
    )
    assert streamed and streamed == page["items"]
    for item in streamed:
        if item["dossier_code"] == codes["apologised"]:
            assert item["applicant_name"] == ("Trần Thị B" if personal_data else "T*** T*** B***")
    # The export's limit cuts the same list.
    first = queries.iter_review_rows(
        session, settings, calendar, NOW, filters, max_rows=1, scope=scope
    )
    assert list(first) == page["items"][:1]


def test_an_empty_export_still_has_its_header(client: FlaskClient) -> None:
    resp = client.get("/api/v1/review.xlsx?commune=00700")
    assert resp.status_code == 200
    ws = openpyxl.load_workbook(io.BytesIO(resp.data)).active
    assert ws is not None
    assert [list(r) for r in ws.iter_rows(values_only=True)] == [[c.header for c in REVIEW_COLUMNS]]
