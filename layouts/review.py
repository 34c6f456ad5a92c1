"""The leaders' overdue review (``/overdue``): every overdue and nearly-due dossier in a grid.

The grid (dash-ag-grid, infinite row model) asks the server for one block of rows at a time,
with its sort; :func:`control_center.queries.review_rows` answers through the open-dossier
indexes, so 100,000 matching dossiers cost one page, never the whole list in the browser.

Filters live in the URL (``/overdue?commune=02269&apology=no``): changing one rewrites the
address, the router renders the page for that address, and the address can be sent to someone
else to see the same list. The same parameters drive ``GET /api/v1/review`` and the exports.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

import dash_ag_grid as dag
from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update
from sqlalchemy.exc import SQLAlchemyError

from control_center import exports
from control_center.queries import (
    REVIEW_SORT_KEYS,
    REVIEW_STATES,
    ReviewFilters,
    review_filters_from_params,
)
from control_center.security import accounts
from layouts import ids
from layouts.common import header
from layouts.context import WallContext
from layouts.dossier import dossier_path
from layouts.format import MISSING, fmt_clock, fmt_datetime, fmt_int, fmt_number
from layouts.i18n import DEFAULT_LANG, lang_from_search, t, with_lang

log = logging.getLogger(__name__)

PATH = "/overdue"
BLOCK_ROWS = 100  # rows per request from the grid
FILTER_PARAMS = (
    "state",
    "commune",
    "sector",
    "procedure",
    "channel",
    "apology",
    "extended",
    "level",
    "officer",
)
CHANNELS = ("online", "counter", "post")

# (field, label key, width): the field is also the server-side sort key.
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("dossier_code", "review_col_dossier", 230),
    ("commune_name", "review_col_commune", 170),
    ("sector", "review_col_sector", 130),
    ("procedure_name", "review_col_procedure", 260),
    ("channel", "review_col_channel", 110),
    ("due_at", "review_col_due", 150),
    ("working_days_overdue", "review_col_days_overdue", 120),
    ("apology_issued", "review_col_apology", 110),
    ("extended", "review_col_extended", 95),
    ("escalation_level", "review_col_level", 110),
    ("officer", "review_col_officer", 170),
)


# --- URL <-> filters (plain functions) -------------------------------------------------------


def params_from_search(search: str | None) -> dict[str, str]:
    """The review's filter parameters in a query string (``lang`` and strangers dropped)."""
    raw = parse_qs((search or "").lstrip("?"))
    return {k: v[0] for k, v in raw.items() if k in FILTER_PARAMS and v and v[0]}


def filters_from_search(search: str | None) -> tuple[ReviewFilters, str | None]:
    """The filters of the address, or the defaults and the reason when the address is bad
    (a hand-edited link must still open the page)."""
    try:
        return review_filters_from_params(params_from_search(search)), None
    except ValueError as exc:
        return ReviewFilters(), str(exc)


def search_for(values: Mapping[str, Any], lang: str) -> str:
    """The query string for the filter controls' values; empty values and defaults left out."""
    params: dict[str, str] = {}
    for name in FILTER_PARAMS:
        value = values.get(name)
        if value is None or value == "":
            continue
        value = str(value).strip()
        if value and not (name == "state" and value == "attention"):
            params[name] = value
    if lang != DEFAULT_LANG:
        params["lang"] = lang
    return f"?{urlencode(params)}" if params else ""


def sort_from_model(sort_model: Sequence[Mapping[str, Any]] | None) -> tuple[tuple[str, str], ...]:
    """AG Grid's sortModel (``[{"colId": ..., "sort": "asc"}]``) as the query's sort keys."""
    out = []
    for entry in sort_model or ():
        key = entry.get("colId")
        direction = entry.get("sort")
        if key in REVIEW_SORT_KEYS and direction in ("asc", "desc"):
            out.append((str(key), str(direction)))
    return tuple(out)


def with_sort(filters: ReviewFilters, request: Mapping[str, Any] | None) -> ReviewFilters:
    sort = sort_from_model((request or {}).get("sortModel"))
    if not sort:
        return filters
    return ReviewFilters(**{**filters.__dict__, "sort": sort})


def block_bounds(request: Mapping[str, Any]) -> tuple[int, int]:
    """(offset, limit) of the block the grid asks for, bounded to what the API allows."""
    start = max(0, int(request.get("startRow") or 0))
    end_row = request.get("endRow")
    end = start + BLOCK_ROWS if end_row is None else int(end_row)
    return start, max(1, min(end - start, 500))


def grid_row(item: Mapping[str, Any], lang: str, now: datetime) -> dict[str, Any]:
    """One dossier as the grid shows it: labels in the page's language, times in local time."""
    days = item.get("working_days_overdue")
    level = int(item.get("escalation_level") or 0)
    channel = item.get("channel")
    return {
        # Markdown link to the dossier page (the grid's markdown renderer makes it an <a>).
        "dossier_code": f"[{item['dossier_code']}]({with_lang(dossier_path(item['dossier_code']), lang)})",
        "commune_name": item.get("commune_name") or item.get("commune_code"),
        "sector": item.get("sector") or MISSING,
        "procedure_name": item.get("procedure_name") or item.get("procedure_code"),
        "channel": t(f"review_channel_{channel}", lang) if channel in CHANNELS else MISSING,
        "due_at": fmt_datetime(item.get("due_at")),
        "working_days_overdue": fmt_number(days, lang, 1)
        if days
        else ("0" if days == 0 else MISSING),
        "late": bool(days),
        "apology_issued": t("review_yes" if item.get("apology_issued") else "review_no", lang),
        "extended": t("review_yes" if item.get("extended") else "review_no", lang),
        "escalation_level": str(level) if level else MISSING,
        "level": level,
        "officer": item.get("officer") or MISSING,
    }


# --- layout ----------------------------------------------------------------------------------


def _options(pairs: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"value": value, "label": label} for value, label in pairs]


def _filter(label: str, control: Any) -> html.Label:
    return html.Label([html.Span(label, className="review-filter-label"), control])


def _dropdown(name: str, value: Any, options: list[dict[str, str]], lang: str) -> dcc.Dropdown:
    return dcc.Dropdown(
        id={"type": ids.REVIEW_FILTER, "name": name},
        options=options,
        value=value,
        placeholder=t("review_any", lang),
        clearable=name != "state",
        className="review-dropdown",
    )


def filter_bar(
    filters: ReviewFilters, choices: Mapping[str, Sequence[tuple[str, str]]], lang: str
) -> html.Div:
    params = filters.to_params()
    yes_no = _options([("yes", t("review_yes", lang)), ("no", t("review_no", lang))])
    return html.Div(
        [
            _filter(
                t("review_state", lang),
                _dropdown(
                    "state",
                    filters.state,
                    _options([(s, t(f"review_state_{s}", lang)) for s in REVIEW_STATES]),
                    lang,
                ),
            ),
            _filter(
                t("review_col_commune", lang),
                _dropdown("commune", params.get("commune"), _options(choices["communes"]), lang),
            ),
            _filter(
                t("review_col_sector", lang),
                _dropdown("sector", params.get("sector"), _options(choices["sectors"]), lang),
            ),
            _filter(
                t("review_col_procedure", lang),
                _dropdown(
                    "procedure", params.get("procedure"), _options(choices["procedures"]), lang
                ),
            ),
            _filter(
                t("review_col_channel", lang),
                _dropdown(
                    "channel",
                    params.get("channel"),
                    _options([(c, t(f"review_channel_{c}", lang)) for c in CHANNELS]),
                    lang,
                ),
            ),
            _filter(
                t("review_col_apology", lang),
                _dropdown("apology", params.get("apology"), yes_no, lang),
            ),
            _filter(
                t("review_col_extended", lang),
                _dropdown("extended", params.get("extended"), yes_no, lang),
            ),
            _filter(
                t("review_col_level", lang),
                _dropdown(
                    "level",
                    params.get("level"),
                    _options([(str(n), t(f"review_level_{n}", lang)) for n in range(4)]),
                    lang,
                ),
            ),
            _filter(
                t("review_col_officer", lang),
                dcc.Input(
                    id={"type": ids.REVIEW_FILTER, "name": "officer"},
                    value=params.get("officer", ""),
                    type="search",
                    debounce=True,  # filter on Enter or leaving the field, not every keystroke
                    placeholder=t("review_officer_hint", lang),
                    className="review-input",
                ),
            ),
        ],
        className="review-filters",
    )


def grid(filters: ReviewFilters, lang: str) -> dag.AgGrid:
    sort = dict(filters.sort)
    column_defs = [
        {
            "field": field,
            "headerName": t(label, lang),
            "width": width,
            "sortable": True,
            **({"sort": sort[field]} if field in sort else {}),
        }
        for field, label, width in COLUMNS
    ]
    column_defs[0].update(pinned="left", cellRenderer="markdown")
    return dag.AgGrid(
        id=ids.REVIEW_GRID,
        columnDefs=column_defs,
        defaultColDef={
            "resizable": True,
            "filter": False,  # filters are the bar above: one filter model, kept in the URL
            "suppressHeaderMenuButton": True,
            "wrapHeaderText": True,
            "autoHeaderHeight": True,
        },
        rowModelType="infinite",
        dashGridOptions={
            "cacheBlockSize": BLOCK_ROWS,
            "maxBlocksInCache": 20,
            "infiniteInitialRowCount": 1,
            "rowBuffer": 0,
            "rowHeight": 36,
            "rowClassRules": {
                "review-row-escalated": "params.data && params.data.level >= 2",
                "review-row-late": "params.data && params.data.late",
            },
            "theme": {
                "function": (
                    "themeQuartz.withParams({backgroundColor: '#111827', "
                    "foregroundColor: '#e5e7eb', headerBackgroundColor: '#1f2937', "
                    "oddRowBackgroundColor: '#0f172a', fontSize: 15, headerFontSize: 15})"
                )
            },
        },
        style={"height": "calc(100vh - 15rem)", "width": "100%"},
        className="review-grid",
    )


def layout(context: WallContext, lang: str, pathname: str, search: str | None) -> html.Div:
    filters, problem = filters_from_search(search)
    now = context.now()
    try:
        with context.db.session() as session:
            choices = context.queries.review_choices(
                session, context.settings, scope=context.scope()
            )
    except SQLAlchemyError:
        log.exception("review: reading the filter lists failed")
        choices = {"communes": [], "sectors": [], "procedures": []}
        problem = t("review_error", lang, at=fmt_clock(now))
    return html.Div(
        [
            header(
                lang,
                pathname,
                search,
                title=t("review_title", lang),
                clock_id=ids.REVIEW_CLOCK,
            ),
            filter_bar(filters, choices, lang),
            html.Div(
                [
                    html.Div(id=ids.REVIEW_TOTAL, className="review-total"),
                    html.Div(problem or "", id=ids.REVIEW_ERROR, className="review-error"),
                    html.Span(t("review_share", lang), className="review-share"),
                    dcc.Link(
                        t("review_clear", lang),
                        href=search_for({}, lang) or PATH,
                        id=ids.REVIEW_CLEAR,
                        className="review-button",
                    ),
                    html.Button(
                        t("review_xlsx", lang), id=ids.REVIEW_XLSX, className="review-button"
                    ),
                    html.Button(
                        t("review_csv", lang), id=ids.REVIEW_CSV, className="review-button"
                    ),
                    dcc.Download(id=ids.REVIEW_DOWNLOAD),
                ],
                className="review-toolbar",
            ),
            grid(filters, lang),
            dcc.Store(id=ids.REVIEW_FILTERS, data=filters.to_params()),
        ],
        className="page review-page",
    )


# --- callbacks -------------------------------------------------------------------------------


def register(app: Dash, context: WallContext) -> None:
    @app.callback(
        Output(ids.URL, "search", allow_duplicate=True),
        Input({"type": ids.REVIEW_FILTER, "name": ALL}, "value"),
        State({"type": ids.REVIEW_FILTER, "name": ALL}, "id"),
        State(ids.URL, "search"),
        State(ids.URL, "pathname"),
        prevent_initial_call=True,
    )
    def filters_to_url(
        values: list[Any], idents: list[dict[str, str]], search: str | None, pathname: str | None
    ) -> Any:
        if (pathname or "").rstrip("/") != PATH:
            return no_update
        wanted = search_for(
            {i["name"]: v for i, v in zip(idents, values, strict=True)},
            lang_from_search(search),
        )
        return wanted if wanted != (search or "") else no_update

    @app.callback(
        Output(ids.REVIEW_GRID, "getRowsResponse"),
        Output(ids.REVIEW_TOTAL, "children"),
        Output(ids.REVIEW_ERROR, "children"),
        Output(ids.REVIEW_CLOCK, "children"),
        Input(ids.REVIEW_GRID, "getRowsRequest"),
        State(ids.REVIEW_FILTERS, "data"),
        State(ids.URL, "search"),
        prevent_initial_call=True,
    )
    def rows(
        request: dict[str, Any] | None, params: dict[str, str] | None, search: str | None
    ) -> Any:
        if not request:
            return no_update, no_update, no_update, no_update
        lang = lang_from_search(search)
        filters = with_sort(review_filters_from_params(params or {}), request)
        offset, limit = block_bounds(request)
        now = context.now()
        try:
            with context.db.session() as session:
                page = context.queries.review_rows(
                    session,
                    context.settings,
                    context.working_calendar(),
                    now,
                    filters,
                    offset=offset,
                    limit=limit,
                    scope=context.scope(),
                )
        except SQLAlchemyError:
            log.exception("review: reading rows %s+%s failed", offset, limit)
            return no_update, no_update, t("review_error", lang, at=fmt_clock(now)), no_update
        response = {
            "rowData": [grid_row(item, lang, now) for item in page["items"]],
            "rowCount": page["total"],
        }
        total = t("review_total", lang, n=fmt_int(page["total"], lang))
        return response, total, "", f"{t('data_as_of', lang)} {fmt_clock(now)}"

    @app.callback(
        Output(ids.REVIEW_DOWNLOAD, "data"),
        Input(ids.REVIEW_XLSX, "n_clicks"),
        Input(ids.REVIEW_CSV, "n_clicks"),
        State(ids.REVIEW_FILTERS, "data"),
        State(ids.REVIEW_GRID, "getRowsRequest"),
        prevent_initial_call=True,
    )
    def download(
        _xlsx: int | None,
        _csv: int | None,
        params: dict[str, str] | None,
        request: dict[str, Any] | None,
    ) -> Any:
        fmt = "xlsx" if ctx.triggered_id == ids.REVIEW_XLSX else "csv"
        # The export has the grid's current sort, so the file reads like the screen.
        filters = with_sort(review_filters_from_params(params or {}), request)
        with context.db.session() as session:
            export = exports.export_review(
                session,
                context.settings,
                context.working_calendar(),
                context.now(),
                filters,
                fmt,
                scope=context.scope(),
            )
        accounts.audit_request(
            context.db,
            context.principal(),
            "export",
            "review",
            format=fmt,
            rows=export.written,
            filters=filters.to_params(),
            via="wall",
        )
        return dcc.send_bytes(export.file.read(), export.filename, type=export.mimetype)
