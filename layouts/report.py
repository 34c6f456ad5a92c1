"""The printable daily report (``/report/daily``): one A4 page for the province's leaders.

The province's figures now and for today, and the ten communes with the most overdue dossiers.
Black on white on screen and on paper; the print style sheet (assets/review.css) hides the
navigation and keeps the page to one sheet. "Print" calls the browser's own print dialog, so
"Save as PDF" gives the PDF.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from dash import Dash, Input, Output, html
from sqlalchemy.exc import SQLAlchemyError

from control_center import periods
from control_center.national import cached_national_view, cached_province_view
from layouts import ids
from layouts.common import scope_name
from layouts.context import WallContext
from layouts.format import MISSING, fmt_datetime, fmt_int, fmt_number, fmt_pct
from layouts.i18n import t, with_lang
from layouts.scope import page_settings

log = logging.getLogger(__name__)

PATH = "/report/daily"
WORST_SHOWN = 10


def worst_communes(
    rows: Sequence[Mapping[str, Any]], n: int = WORST_SHOWN
) -> list[Mapping[str, Any]]:
    """Most overdue first; then due soon, then the open backlog; communes with none left out."""
    late = [r for r in rows if r.get("overdue") or r.get("due_soon")]
    late.sort(
        key=lambda r: (
            -(r.get("overdue") or 0),
            -(r.get("due_soon") or 0),
            -(r.get("open") or 0),
            r["name"],
        )
    )
    return late[:n]


def _data(name: str, value: str) -> dict[str, Any]:
    return {f"data-{name}": value}


def _figure(key: str, label: str, value: str, note: str = "") -> html.Div:
    return html.Div(
        [
            html.Div(label, className="report-label"),
            html.Div(value, className="report-value"),
            html.Div(note, className="report-note"),
        ],
        className="report-figure",
        **_data("figure", key),
    )


def summary_figures(summary: Mapping[str, Any], today: Mapping[str, Any], lang: str) -> html.Div:
    received = summary.get("received_today") or 0
    online = summary.get("received_online_today") or 0
    return html.Div(
        [
            _figure("open", t("kpi_open", lang), fmt_int(summary.get("open"), lang)),
            _figure("overdue", t("kpi_overdue", lang), fmt_int(summary.get("overdue"), lang)),
            _figure("due_soon", t("kpi_due_soon", lang), fmt_int(summary.get("due_soon"), lang)),
            _figure(
                "received_today",
                t("kpi_received_today", lang),
                fmt_int(received, lang),
                f"{fmt_pct(online / received if received else None, lang)} "
                f"{t('kpi_online_share', lang)}",
            ),
            _figure(
                "returned_today",
                t("kpi_returned_today", lang),
                fmt_int(summary.get("returned_today"), lang),
            ),
            _figure(
                "on_time_rate",
                t("kpi_on_time_rate", lang),
                fmt_pct(summary.get("on_time_rate"), lang),
            ),
            _figure(
                "progress_score",
                t("kpi_progress", lang),
                fmt_number(summary.get("progress_score"), lang, 2),
                t("kpi_progress_unit", lang),
            ),
            _figure(
                "finished_today",
                t("report_finished_today", lang),
                f"{fmt_int(today['finished_early'] + today['finished_on_time'], lang)}"
                f" / {fmt_int(today['finished_late'], lang)}",
                t("report_on_time_late", lang),
            ),
            _figure(
                "avg_processing",
                t("report_avg_processing", lang),
                fmt_number(today["avg_processing_working_days"], lang, 1)
                if today["avg_processing_working_days"] is not None
                else MISSING,
                t("report_working_days", lang),
            ),
            _figure(
                "centres",
                t("kpi_centres", lang),
                f"{summary.get('centres_online', 0)}/{summary.get('centres_total', 0)}",
                t(
                    "kpi_centres_detail",
                    lang,
                    stale=summary.get("centres_stale", 0),
                    offline=summary.get("centres_offline", 0),
                    total=summary.get("centres_total", 0),
                ),
            ),
        ],
        className="report-figures",
    )


def worst_table(rows: Sequence[Mapping[str, Any]], lang: str) -> Any:
    if not rows:
        return html.P(t("report_no_overdue", lang), className="empty-note")
    return html.Table(
        [
            html.Thead(
                html.Tr(
                    [html.Th("#")]
                    + [
                        html.Th(t(k, lang))
                        for k in (
                            "review_col_commune",
                            "kpi_overdue",
                            "measure_due_soon",
                            "measure_open",
                            "kpi_on_time_rate",
                            "feed_state",
                        )
                    ]
                )
            ),
            html.Tbody(
                [
                    html.Tr(
                        [
                            html.Td(str(i), className="num"),
                            html.Td(r["name"]),
                            html.Td(fmt_int(r.get("overdue"), lang), className="num strong"),
                            html.Td(fmt_int(r.get("due_soon"), lang), className="num"),
                            html.Td(fmt_int(r.get("open"), lang), className="num"),
                            html.Td(fmt_pct(r.get("on_time_rate"), lang), className="num"),
                            html.Td(t(f"feed_{r.get('feed_state', 'unknown')}", lang)),
                        ],
                        **_data("commune", r["code"]),
                    )
                    for i, r in enumerate(rows, start=1)
                ]
            ),
        ],
        className="table report-table",
    )


def layout(context: WallContext, lang: str, pathname: str, search: str | None) -> html.Div:
    now = context.now()
    calendar = context.working_calendar()
    today = periods.local_day(now)
    settings = page_settings(context.settings, search)  # national: ?province=, else the country
    try:
        with context.db.session() as session:
            if settings.national:  # the country's shared reading, as on its wall
                view = cached_national_view(session, settings, calendar, now)
                summary, communes = view["summary"], view["communes_to_watch"]
            elif context.settings.national:
                view = cached_province_view(session, settings, calendar, now)
                summary, communes = view["summary"], view["communes"]
            else:
                q = context.queries
                summary = q.province_summary(session, settings, calendar, now)
                communes = q.commune_rows(session, settings, calendar, now)
            day = periods.period_figures(session, settings, calendar, now, today, today)
    except SQLAlchemyError:
        log.exception("daily report: reading the figures failed")
        return html.Div(
            html.P(t("review_error", lang, at=fmt_datetime(now)), className="review-error"),
            className="report-page",
        )
    province = scope_name(settings, lang)
    stale = summary.get("data_stale")
    return html.Div(
        [
            html.Div(
                [
                    html.Button(
                        t("report_print", lang), id=ids.REPORT_PRINT, className="review-button"
                    ),
                    html.A(
                        t("switch_lang", lang),
                        href=with_lang(PATH, "en" if lang == "vi" else "vi", search),
                        className="review-button",
                    ),
                    html.Span(id=ids.REPORT_PRINTED, hidden=True),
                ],
                className="report-actions no-print",
            ),
            html.Header(
                [
                    html.Div(t("app_title", lang), className="report-kicker"),
                    html.H1(
                        t("report_title", lang, province=province, day=today.strftime("%d/%m/%Y"))
                    ),
                    html.Div(
                        t(
                            "report_as_of",
                            lang,
                            at=fmt_datetime(now),
                            data=fmt_datetime(summary.get("data_as_of")),
                        ),
                        className="report-meta",
                    ),
                    html.Div(t("report_stale", lang), className="report-stale") if stale else None,
                ]
            ),
            html.H2(t("report_summary", lang)),
            summary_figures(summary, day["total"], lang),
            html.H2(t("report_worst", lang, n=WORST_SHOWN)),
            worst_table(worst_communes(communes), lang),
            html.Footer(t("report_footer", lang), className="report-footer"),
        ],
        className="report-page",
    )


def register(app: Dash, context: WallContext) -> None:
    # The browser's print dialog (and its "Save as PDF"): nothing to do on the server.
    app.clientside_callback(
        "function(n) { if (n) { window.print(); } return ''; }",
        Output(ids.REPORT_PRINTED, "children"),
        Input(ids.REPORT_PRINT, "n_clicks"),
        prevent_initial_call=True,
    )
