"""The xlsx / CSV writers on their own: what a leader sees when the file opens (read back with
openpyxl, as the API's tests do), on rows built here rather than read from a database."""

from __future__ import annotations

import csv
import io
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from control_center.exports import PERIOD_COLUMNS, REVIEW_COLUMNS, write_csv, write_xlsx

RECEIVED = datetime(2026, 11, 20, 1, 30, tzinfo=UTC)  # 08:30 in the province


def review_row(i: int) -> dict[str, Any]:
    return {
        "dossier_code": f"000.00.22.H56-261120-{i:04d}",
        "commune_code": "02269",
        "commune_name": "Xã Thượng Lâm",
        "sector": "Hộ tịch",
        "procedure_code": "1.001193",
        "procedure_name": "Đăng ký khai sinh",
        "channel": ("online", "counter", "post")[i % 3],
        "received_at": RECEIVED + timedelta(minutes=i),
        "due_at": RECEIVED + timedelta(days=5) if i % 4 else None,
        "working_days_overdue": 1.5 + i,
        "outcome": "overdue_open",
        "apology_issued": i % 2 == 0,
        "extended": False,
        "escalation_level": i % 4,
        "officer": "Lê Văn C",
        "applicant_name": "T*** T*** B***",
    }


def read_back(data: bytes) -> Any:
    ws = openpyxl.load_workbook(io.BytesIO(data)).active
    assert ws is not None
    return ws


def test_xlsx_has_the_header_real_dates_and_number_formats() -> None:
    out = io.BytesIO()
    assert write_xlsx([review_row(i) for i in range(3)], REVIEW_COLUMNS, out) == 3
    ws = read_back(out.getvalue())
    col = {c.header: i + 1 for i, c in enumerate(REVIEW_COLUMNS)}

    header = [cell.value for cell in ws[1]]
    assert header == [c.header for c in REVIEW_COLUMNS]
    first = ws.cell(row=1, column=1)
    assert first.font.b and first.fill.fill_type == "solid"
    assert first.fill.fgColor.rgb.endswith("1F4E78") and first.alignment.wrap_text
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == "A1:P4"
    assert ws.max_row == 4

    received = ws.cell(row=2, column=col["Ngày tiếp nhận"])
    # A real date in local time (UTC+7), not text: Excel sorts and filters it.
    assert received.is_date and received.value == datetime(2026, 11, 20, 8, 30)
    assert received.number_format == "dd/mm/yyyy hh:mm"
    assert ws.cell(row=3, column=col["Ngày tiếp nhận"]).value == datetime(2026, 11, 20, 8, 31)
    assert ws.cell(row=2, column=col["Ngày hẹn trả"]).value is None  # no due date: empty
    days = ws.cell(row=3, column=col["Số ngày làm việc quá hạn"])
    assert days.value == 2.5 and days.number_format == "0.00"
    level = ws.cell(row=3, column=col["Cấp cảnh báo"])
    assert level.value == 1 and level.number_format == "0"
    assert ws.cell(row=2, column=col["Đã có phiếu xin lỗi"]).value == "Có"
    assert ws.cell(row=3, column=col["Đã có phiếu xin lỗi"]).value == "Không"
    assert [ws.cell(row=r, column=col["Kênh nộp"]).value for r in (2, 3, 4)] == [
        "Trực tuyến",
        "Trực tiếp",
        "Bưu chính",
    ]
    assert ws.cell(row=2, column=col["Tình trạng"]).value == "Đang giải quyết quá hạn"
    assert ws.cell(row=2, column=col["Thủ tục"]).value == "Đăng ký khai sinh"


def test_xlsx_column_widths() -> None:
    out = io.BytesIO()
    write_xlsx([review_row(0)], REVIEW_COLUMNS, out)
    ws = read_back(out.getvalue())
    widths: dict[int, float] = {}
    for dim in ws.column_dimensions.values():  # adjacent equal widths come as one range
        for i in range(dim.min, dim.max + 1):
            widths[i] = dim.width
    assert [widths.get(i + 1) for i in range(len(REVIEW_COLUMNS))] == [
        c.width for c in REVIEW_COLUMNS
    ]


def test_text_that_looks_like_a_formula_or_a_link_stays_text() -> None:
    row = review_row(0) | {
        "procedure_name": '=HYPERLINK("http://example.invalid","x")',
        "officer": "http://example.invalid",
        "dossier_code": "0012",
    }
    out = io.BytesIO()
    write_xlsx([row], REVIEW_COLUMNS, out)
    ws = read_back(out.getvalue())
    values = {c.header: cell for c, cell in zip(REVIEW_COLUMNS, ws[2], strict=True)}
    assert values["Thủ tục"].data_type == "s"
    assert values["Thủ tục"].value == '=HYPERLINK("http://example.invalid","x")'
    assert values["Cán bộ xử lý"].value == "http://example.invalid"
    assert values["Cán bộ xử lý"].hyperlink is None
    assert values["Mã hồ sơ"].value == "0012", "codes keep their leading zeros"


def test_empty_xlsx_has_only_the_header() -> None:
    out = io.BytesIO()
    assert write_xlsx([], REVIEW_COLUMNS, out) == 0
    ws = read_back(out.getvalue())
    assert [list(r) for r in ws.iter_rows(values_only=True)] == [[c.header for c in REVIEW_COLUMNS]]


def test_period_figures_keep_percentages_and_missing_values() -> None:
    row = {"key": "08", "name": "Toàn tỉnh", "received": 12, "on_time_rate": 0.875,
           "online_rate": None, "progress_score": 17.5}  # fmt: skip
    out = io.BytesIO()
    write_xlsx([row], PERIOD_COLUMNS, out, sheet_title="Số liệu theo kỳ, từ 20/11 đến 25/11/2026")
    wb = openpyxl.load_workbook(io.BytesIO(out.getvalue()))
    ws = wb.active
    assert ws is not None and ws.title == "Số liệu theo kỳ, từ 20-11 đến 2"  # 31 at most
    col = {c.header: i + 1 for i, c in enumerate(PERIOD_COLUMNS)}
    rate = ws.cell(row=2, column=col["Tỉ lệ đúng hạn"])
    assert rate.value == 0.875 and rate.number_format == "0.0%"
    assert ws.cell(row=2, column=col["Tỉ lệ trực tuyến"]).value is None
    assert ws.cell(row=2, column=col["Tiếp nhận"]).value == 12


def rows(n: int) -> Iterator[dict[str, Any]]:
    return (review_row(i) for i in range(n))


def peak_bytes(n: int, out: Path) -> int:
    with out.open("wb") as f:
        tracemalloc.start()
        try:
            assert write_xlsx(rows(n), REVIEW_COLUMNS, f) == n
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


def test_xlsx_memory_does_not_grow_with_the_rows(tmp_path: Path) -> None:
    """Rows stream through a temporary file: ten times the rows, about the same peak."""
    small = peak_bytes(500, tmp_path / "small.xlsx")
    large = peak_bytes(5_000, tmp_path / "large.xlsx")
    assert large < small * 2, (small, large)
    ws = openpyxl.load_workbook(tmp_path / "large.xlsx", read_only=True).active
    assert ws is not None
    last = list(ws.iter_rows(min_row=5_001, values_only=True))
    assert last and last[0][0] == review_row(4_999)["dossier_code"]


@pytest.mark.parametrize("columns", [REVIEW_COLUMNS, PERIOD_COLUMNS])
def test_csv_has_the_bom_and_the_same_header(columns: Any) -> None:
    out = io.BytesIO()
    write_csv([review_row(0)], columns, out)
    assert out.getvalue().startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(out.getvalue().decode("utf-8-sig"))))
    assert lines[0] == [c.header for c in columns]
    if columns is REVIEW_COLUMNS:
        assert lines[1][7] == "20/11/2026 08:30" and lines[1][6] == "Trực tuyến"
