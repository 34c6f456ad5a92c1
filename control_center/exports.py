"""Lists to Excel (.xlsx) and CSV for leaders who take the figures into their own reports.

- xlsx: Vietnamese headers, real dates (local time, what the officer reads on the slip) and
  number formats, a frozen header row, auto-filter. openpyxl's write-only mode streams rows to
  the file, so a 50,000-row export does not build a workbook in memory.
- CSV: UTF-8 with a byte-order mark, which is how Excel recognises UTF-8 and shows
  "Đăng ký khai sinh" rather than mojibake; dates as ``dd/mm/yyyy HH:MM`` local time.

Both write to a file object; :func:`spooled` gives one that spills to disk past a few MB.
No Dash, no Flask: the API and the review page's download buttons call the same functions.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import IO, Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from sqlalchemy.orm import Session

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


def cell_value(column: Column, value: Any) -> Any:
    """The value as it goes into a spreadsheet cell (typed: numbers stay numbers)."""
    if value is None:
        return None
    if column.kind == "datetime" and isinstance(value, datetime):
        return _local_naive(value)
    if column.kind == "bool":
        return "Có" if value else "Không"
    if column.kind == "channel":
        return CHANNEL_LABELS.get(value, value)
    if column.kind == "outcome":
        return OUTCOME_LABELS.get(value, value)
    return value


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


def write_xlsx(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[Column],
    out: IO[bytes],
    *,
    sheet_title: str = "Danh sách",
) -> int:
    """Write ``rows`` to ``out`` as one sheet; returns the number of data rows written."""
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title=sheet_title[:31])
    ws.freeze_panes = "A2"
    for i, column in enumerate(columns, start=1):
        ws.column_dimensions[get_column_letter(i)].width = column.width
    header_font = Font(bold=True, color="FFFFFF")
    header_fill = PatternFill("solid", fgColor="1F4E78")
    header: list[WriteOnlyCell] = []
    for column in columns:
        cell = WriteOnlyCell(ws, value=column.header)
        cell.font = header_font
        cell.fill = header_fill
        cell.alignment = Alignment(wrap_text=True, vertical="center")
        header.append(cell)
    ws.append(header)
    # One styled cell per formatted column, reused for every row: write-only mode serialises
    # the row on append, and setting a number format per new cell is the slow part.
    styled: dict[str, WriteOnlyCell] = {}
    for column in columns:
        number_format = _NUMBER_FORMATS.get(column.kind)
        if number_format:
            styled[column.key] = WriteOnlyCell(ws)
            styled[column.key].number_format = number_format
    count = 0
    for row in rows:
        cells: list[Any] = []
        for column in columns:
            value = cell_value(column, row.get(column.key))
            cell = styled.get(column.key)
            if cell is not None and value is not None:
                cell.value = value
                cells.append(cell)
            else:
                cells.append(value)
        ws.append(cells)
        count += 1
    if count:
        ws.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{count + 1}"
    wb.save(out)
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
