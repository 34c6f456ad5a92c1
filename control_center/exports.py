"""Lists to Excel (.xlsx) and CSV for leaders who take the figures into their own reports.

- xlsx: Vietnamese headers, real dates (local time, what the officer reads on the slip) and
  number formats, a frozen header row, auto-filter. XlsxWriter's constant-memory mode streams
  rows to a temporary file, so a 50,000-row export does not build a workbook in memory (and
  writes it faster than openpyxl's write-only mode did: docs/performance.md).
  Strings stay strings: a field starting with "=" is never turned into a formula.
- CSV: UTF-8 with a byte-order mark, which is how Excel recognises UTF-8 and shows
  "Đăng ký khai sinh" rather than mojibake; dates as ``dd/mm/yyyy HH:MM`` local time.

Both write to a file object; :func:`spooled` gives one that spills to disk past a few MB.
No Dash, no Flask: the API and the review page's download buttons call the same functions.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import IO, Any

import xlsxwriter
from sqlalchemy.orm import Session
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from control_center import queries
from control_center.domain.calendar import LOCAL_TZ, WorkingCalendar
from control_center.security.roles import UNRESTRICTED, Scope
from control_center.settings import Settings

XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MIME = "text/csv; charset=utf-8"
DATETIME_FORMAT = "dd/mm/yyyy hh:mm"
DATE_FORMAT = "dd/mm/yyyy"
# Excel's limit is 1,048,576 rows; a list that long is not reviewed by a person anyway.
EXPORT_MAX_ROWS = 200_000
_SPOOL_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Column:
    key: str
    header: str  # Vietnamese: the exports go to Vietnamese offices
    kind: str = "text"  # text / int / number / percent / datetime / date / bool / channel
    width: float = 16


CHANNEL_LABELS = {"online": "Trực tuyến", "counter": "Trực tiếp", "post": "Bưu chính"}
OUTCOME_LABELS = {
    "early": "Trước hạn",
    "on_time": "Đúng hạn",
    "overdue": "Quá hạn",
    "in_time": "Đang giải quyết trong hạn",
    "overdue_open": "Đang giải quyết quá hạn",
    "no_due": "Chưa có hạn trả",
}

REVIEW_COLUMNS: tuple[Column, ...] = (
    Column("dossier_code", "Mã hồ sơ", width=28),
    Column("commune_code", "Mã xã", width=8),
    Column("commune_name", "Xã, phường", width=22),
    Column("sector", "Lĩnh vực", width=18),
    Column("procedure_code", "Mã thủ tục", width=12),
    Column("procedure_name", "Thủ tục", width=40),
    Column("channel", "Kênh nộp", "channel", width=12),
    Column("received_at", "Ngày tiếp nhận", "datetime", width=17),
    Column("due_at", "Ngày hẹn trả", "datetime", width=17),
    Column("working_days_overdue", "Số ngày làm việc quá hạn", "number", width=14),
    Column("outcome", "Tình trạng", "outcome", width=24),
    Column("apology_issued", "Đã có phiếu xin lỗi", "bool", width=12),
    Column("extended", "Đã gia hạn", "bool", width=10),
    Column("escalation_level", "Cấp cảnh báo", "int", width=10),
    Column("officer", "Cán bộ xử lý", width=22),
    # Masked (N*** V*** A***) unless the exporting role is one of CC_PERSONAL_DATA_ROLES.
    Column("applicant_name", "Người nộp hồ sơ", width=22),
)

PERIOD_COLUMNS: tuple[Column, ...] = (
    Column("key", "Mã", width=12),
    Column("name", "Đơn vị", width=26),
    Column("received", "Tiếp nhận", "int", width=11),
    Column("received_online", "Tiếp nhận trực tuyến", "int", width=12),
    Column("finished_early", "Giải quyết trước hạn", "int", width=12),
    Column("finished_on_time", "Giải quyết đúng hạn", "int", width=12),
    Column("finished_late", "Giải quyết quá hạn", "int", width=12),
    Column("in_progress_in_time", "Đang giải quyết trong hạn", "int", width=13),
    Column("in_progress_overdue", "Đang giải quyết quá hạn", "int", width=13),
    Column("on_time_rate", "Tỉ lệ đúng hạn", "percent", width=11),
    Column("online_rate", "Tỉ lệ trực tuyến", "percent", width=11),
    Column("progress_score", "Điểm tiến độ (QĐ 766, /20)", "number", width=12),
    Column("avg_processing_working_days", "Thời gian giải quyết TB (ngày làm việc)", "number"),
    Column("late_without_apology", "Trễ hạn chưa có phiếu xin lỗi", "int", width=13),
    Column("apology_rate", "Tỉ lệ có phiếu xin lỗi", "percent", width=11),
)


def _local_naive(value: datetime) -> datetime:
    # Excel has no time zones: write the local wall time the officers work in.
    return value.astimezone(LOCAL_TZ).replace(tzinfo=None)


def _as_local(value: Any) -> Any:
    return _local_naive(value) if isinstance(value, datetime) else value


def _yes_no(value: Any) -> str:
    return "Có" if value else "Không"


def _channel(value: Any) -> Any:
    return CHANNEL_LABELS.get(value, value)


def _outcome(value: Any) -> Any:
    return OUTCOME_LABELS.get(value, value)


# How a column's (not None) value becomes a cell's: one function per kind, looked up once per
# column rather than tested for every cell.
_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "datetime": _as_local,
    "bool": _yes_no,
    "channel": _channel,
    "outcome": _outcome,
}


def cell_value(column: Column, value: Any) -> Any:
    """The value as it goes into a spreadsheet cell (typed: numbers stay numbers)."""
    if value is None:
        return None
    convert = _CONVERTERS.get(column.kind)
    return value if convert is None else convert(value)


def csv_value(column: Column, value: Any) -> str:
    value = cell_value(column, value)
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%d/%m/%Y %H:%M")
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


_NUMBER_FORMATS = {
    "datetime": DATETIME_FORMAT,
    "date": DATE_FORMAT,
    "int": "0",
    "number": "0.00",
    "percent": "0.0%",
}
_HEADER_FORMAT = {
    "bold": True,
    "font_color": "#FFFFFF",
    "bg_color": "#1F4E78",
    "pattern": 1,  # solid fill
    "text_wrap": True,
    "valign": "vcenter",
}
# XlsxWriter takes the width Excel shows and stores it plus 5 pixels (of 7 per character):
# passing ``width - 5/7`` stores ``width``, as the openpyxl writer did.
_WIDTH_PADDING = 5 / 7 - 1e-9
_INVALID_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")  # not allowed in a sheet's name


def _cell_writer(ws: Worksheet, fmt: Format | None) -> Callable[[int, int, Any], object]:
    """A cell writer by the value's type. Strings are always text: a field that starts with
    "=" or looks like a link is written as it reads, never as a formula or a hyperlink."""
    write_string, write_number = ws.write_string, ws.write_number

    def write(row: int, col: int, value: Any) -> object:
        if isinstance(value, str):
            return write_string(row, col, value, fmt)
        if isinstance(value, bool):
            return ws.write_boolean(row, col, value, fmt)
        if isinstance(value, int | float | Decimal):
            return write_number(row, col, value, fmt)
        if isinstance(value, datetime) and value.tzinfo is not None:
            value = _local_naive(value)
        if isinstance(value, datetime | date | time | timedelta):
            return ws.write_datetime(row, col, value, fmt)
        return write_string(row, col, str(value), fmt)

    return write


def write_xlsx(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[Column],
    out: IO[bytes],
    *,
    sheet_title: str = "Danh sách",
) -> int:
    """Write ``rows`` to ``out`` as one sheet; returns the number of data rows written.

    XlsxWriter in constant-memory mode writes each row to a temporary file once the next one
    starts (strings inline), so memory does not grow with the number of rows.
    """
    wb = xlsxwriter.Workbook(
        out,
        {
            "constant_memory": True,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
            # A NaN or infinite figure becomes #NUM! / #DIV/0! rather than an exception.
            "nan_inf_to_errors": True,
        },
    )
    try:
        ws = wb.add_worksheet(_INVALID_SHEET_CHARS.sub("-", sheet_title)[:31])
        header_format = wb.add_format(_HEADER_FORMAT)
        formats = {kind: wb.add_format({"num_format": nf}) for kind, nf in _NUMBER_FORMATS.items()}
        plan: list[tuple[str, int, Callable[[Any], Any] | None, Callable[[int, int, Any], object]]]
        plan = []
        for i, column in enumerate(columns):
            ws.set_column(i, i, column.width - _WIDTH_PADDING)
            ws.write_string(0, i, column.header, header_format)
            writer = _cell_writer(ws, formats.get(column.kind))
            plan.append((column.key, i, _CONVERTERS.get(column.kind), writer))
        ws.freeze_panes(1, 0)
        count = 0
        for row in rows:
            count += 1
            for key, col, convert, write in plan:
                value = row.get(key)
                if value is None:
                    continue
                if convert is not None:
                    value = convert(value)
                write(count, col, value)
        if count:
            ws.autofilter(0, 0, count, len(columns) - 1)
    finally:
        wb.close()
    return count


def write_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[Column], out: IO[bytes]) -> int:
    """UTF-8 with BOM, comma-separated, one header row; returns the number of data rows."""
    text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="", write_through=True)
    try:
        writer = csv.writer(text)
        writer.writerow([c.header for c in columns])
        count = 0
        for row in rows:
            writer.writerow([csv_value(c, row.get(c.key)) for c in columns])
            count += 1
        text.flush()
    finally:
        text.detach()  # leave ``out`` open for the caller
    return count


def spooled() -> tempfile.SpooledTemporaryFile[bytes]:
    """A file kept in memory up to a few MB, then on disk: exports never hold 50k rows in RAM."""
    return tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, mode="w+b")


def export_filename(stem: str, now: datetime, fmt: str) -> str:
    return f"{stem}-{now.astimezone(LOCAL_TZ):%Y%m%d-%H%M}.{fmt}"


def write_export(
    fmt: str, rows: Iterable[Mapping[str, Any]], columns: Sequence[Column], out: IO[bytes]
) -> int:
    if fmt == "xlsx":
        return write_xlsx(rows, columns, out)
    if fmt == "csv":
        return write_csv(rows, columns, out)
    raise ValueError("format must be xlsx or csv")


@dataclass
class Export:
    file: IO[bytes]  # positioned at the start
    filename: str
    mimetype: str
    total: int  # rows matching the filters (more than written when truncated)
    written: int

    @property
    def truncated(self) -> bool:
        return self.total > self.written


def export_review(
    session: Session,
    settings: Settings,
    calendar: WorkingCalendar,
    now: datetime,
    filters: queries.ReviewFilters,
    fmt: str,
    *,
    scope: Scope = UNRESTRICTED,
) -> Export:
    """The overdue review's list, filtered and sorted as on screen, as xlsx or CSV.

    Rows are those of ``scope``; applicants' names are masked unless ``scope`` shows them.
    """
    if fmt not in ("xlsx", "csv"):
        raise ValueError("format must be xlsx or csv")
    total = queries.review_rows(session, settings, calendar, now, filters, limit=1, scope=scope)[
        "total"
    ]
    rows = queries.iter_review_rows(
        session, settings, calendar, now, filters, max_rows=EXPORT_MAX_ROWS, scope=scope
    )
    out = spooled()
    written = write_export(fmt, rows, REVIEW_COLUMNS, out)
    out.seek(0)
    return Export(
        file=out,
        filename=export_filename("ho-so-can-xu-ly", now, fmt),
        mimetype=XLSX_MIME if fmt == "xlsx" else CSV_MIME,
        total=total,
        written=written,
    )


__all__ = [
    "CSV_MIME",
    "EXPORT_MAX_ROWS",
    "REVIEW_COLUMNS",
    "XLSX_MIME",
    "Column",
    "Export",
    "export_filename",
    "export_review",
    "spooled",
    "write_csv",
    "write_export",
    "write_xlsx",
]
