"""One commune's page (``/commune/<code>``): its figures, daily flow, overdue list, queue, feed."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import plotly.graph_objects as go
from dash import Dash, Input, Output, State, dcc, html, no_update
from sqlalchemy.exc import SQLAlchemyError

from layouts import ids
from layouts.common import header, panel, province_name
from layouts.context import WallContext
from layouts.format import (
    fmt_clock,
    fmt_datetime,
    fmt_int,
    fmt_lag,
    fmt_minutes,
    fmt_number,
    fmt_pct,
)
from layouts.i18n import lang_from_search, t, with_lang
from layouts.scope import commune_province
from layouts.wall import kpi_tile, level_badge

log = logging.getLogger(__name__)

_DARK_AXES = {"gridcolor": "#1f2937", "zerolinecolor": "#374151", "tickfont": {"size": 16}}
# Okabe-Ito: received blue, returned bluish green, late vermillion.
_COLOURS = {
    "received": "#0072B2",
    "returned": "#009E73",
    "on_time": "#56B4E9",
    "overdue": "#D55E00",
}


def _dark_layout(fig: go.Figure, y_title: str) -> go.Figure:
    fig.update_layout(
        paper_bgcolor="#111827",
        plot_bgcolor="#111827",
        font={"color": "#e5e7eb", "size": 16},
        margin={"l": 60, "r": 20, "t": 10, "b": 50},
        legend={"orientation": "h", "y": 1.08, "x": 0, "font": {"size": 16}},
        uirevision="commune",
        bargap=0.15,
    )
    fig.update_xaxes(**_DARK_AXES)
    fig.update_yaxes(title={"text": y_title}, rangemode="tozero", **_DARK_AXES)
    return fig


def empty_figure() -> go.Figure:
    """Dark and blank until the first refresh: plotly's default blank figure is white."""
    return _dark_layout(go.Figure(), "")


def daily_figure(daily: Sequence[Mapping[str, Any]], lang: str) -> go.Figure:
    """Received vs returned per day, with finished outcomes, last 30 days."""
    days = [d["day"] for d in daily]
    fig = go.Figure(
        [
            go.Bar(
                x=days,
                y=[d.get("received", 0) for d in daily],
                name=t("series_received", lang),
                marker_color=_COLOURS["received"],
            ),
            go.Bar(
                x=days,
                y=[d.get("returned", 0) for d in daily],
                name=t("series_returned", lang),
                marker_color=_COLOURS["returned"],
            ),
            go.Scatter(
                x=days,
                y=[d.get("finished_overdue", 0) for d in daily],
                name=t("series_overdue", lang),
                mode="lines+markers",
                line={"color": _COLOURS["overdue"], "width": 3},
            ),
        ]
    )
    fig.update_layout(barmode="group")
    fig.update_xaxes(nticks=16, tickangle=-45)
    return _dark_layout(fig, t("axis_dossiers", lang))


def queue_figure(queue_by_hour: Sequence[Mapping[str, Any]], lang: str) -> go.Figure:
    """Today's average wait per hour of the day."""
    hours = [q["hour"] for q in queue_by_hour]
    fig = go.Figure(
        go.Bar(
            x=hours,
            y=[q.get("avg_wait_minutes") for q in queue_by_hour],
            marker_color="#E69F00",
            name=t("axis_minutes", lang),
            hovertemplate="%{x}h: %{y:.0f} " + t("minutes_short", lang) + "<extra></extra>",
        )
    )
    # Fixed to the working day so one early ticket does not become a bar as wide as the panel.
    fig.update_xaxes(title={"text": t("axis_hour", lang)}, dtick=1, range=[6.5, 17.5])
    return _dark_layout(fig, t("axis_minutes", lang))


def commune_tiles(row: Mapping[str, Any], lang: str) -> list[html.Div]:
    return [
        kpi_tile("open", t("kpi_open", lang), fmt_int(row.get("open"), lang)),
        kpi_tile(
            "overdue",
            t("kpi_overdue", lang),
            fmt_int(row.get("overdue"), lang),
            tone="alarm" if row.get("overdue") else "",
        ),
        kpi_tile("due_soon", t("kpi_due_soon", lang), fmt_int(row.get("due_soon"), lang)),
        kpi_tile(
            "received_today",
            t("kpi_received_today", lang),
            fmt_int(row.get("received_today"), lang),
        ),
        kpi_tile(
            "returned_today",
            t("kpi_returned_today", lang),
            fmt_int(row.get("returned_today"), lang),
        ),
        kpi_tile(
            "on_time_rate",
            t("kpi_on_time_rate", lang),
            fmt_pct(row.get("on_time_rate"), lang),
            sub=f"{t('online_rate', lang)}: {fmt_pct(row.get('online_rate'), lang, 0)}",
        ),
        kpi_tile(
            "queue_waiting",
            t("kpi_queue_waiting", lang),
            fmt_int(row.get("queue_waiting"), lang),
            sub=(
                f"{t('kpi_avg_wait', lang)} {fmt_minutes(row.get('avg_wait_minutes'), lang)} · "
                f"{t('longest_wait', lang)} {fmt_minutes(row.get('longest_wait_minutes'), lang)}"
            ),
        ),
        kpi_tile(
            "counters_open", t("counters_open", lang), fmt_int(row.get("counters_open"), lang)
        ),
    ]


def overdue_table(dossiers: Iterable[Mapping[str, Any]], lang: str) -> Any:
    rows = list(dossiers)
    if not rows:
        return html.Div(t("overdue_none", lang), className="empty-note")
    return html.Table(
        [
            html.Thead(
                html.Tr(
                    [
                        html.Th(t("col_dossier", lang)),
                        html.Th(t("col_procedure", lang)),
                        html.Th(t("col_due_at", lang)),
                        html.Th(t("col_days_overdue", lang), className="num"),
                        html.Th(t("col_apology", lang)),
                    ]
                )
            ),
            html.Tbody(
                [
                    html.Tr(
                        [
                            html.Td(d.get("dossier_code"), className="mono"),
                            html.Td(d.get("procedure_name") or d.get("procedure_code")),
                            html.Td(fmt_datetime(d.get("due_at"))),
                            html.Td(
                                fmt_number(d.get("working_days_overdue"), lang, 1),
                                className="num alarm-text",
                            ),
                            html.Td(
                                t("yes", lang) if d.get("apology_issued") else t("no", lang),
                                className="" if d.get("apology_issued") else "warn-text",
                            ),
                        ]
                    )
                    for d in rows
                ]
            ),
        ],
        className="wall-table",
    )


def feed_box(
    row: Mapping[str, Any], feed: Mapping[str, Any] | None, lang: str, now: datetime
) -> Any:
    state = row.get("feed_state") or "unknown"
    feed = feed or {}
    items: list[tuple[str, Any]] = [
        (t("feed_state", lang), html.Span(t("feed_" + state, lang), className=f"feed-{state}")),
        (t("feed_last_seen", lang), fmt_datetime(row.get("last_seen_at"), now)),
        (t("feed_last_event", lang), fmt_datetime(feed.get("last_event_at"), now)),
        (t("feed_lag", lang), fmt_lag(row.get("lag_seconds"), lang)),
        (t("feed_software", lang), feed.get("software") or "—"),
    ]
    return html.Dl(
        [part for k, v in items for part in (html.Dt(k), html.Dd(v))], className="feed-box"
    )


def alert_list(alerts: Iterable[Mapping[str, Any]], lang: str, now: datetime) -> Any:
    items = list(alerts)
    if not items:
        return html.Div(t("alerts_none", lang), className="empty-note")
    return html.Ul(
        [
            html.Li(
                [
                    level_badge(a.get("level"), lang),
                    html.Span(fmt_datetime(a.get("raised_at"), now), className="ticker-time"),
                    html.Span(t(f"alert_{a.get('state', 'open')}", lang), className="alert-state"),
                    html.Span(a.get("message") or "", className="ticker-message"),
                ],
                className="ticker-item",
            )
            for a in items
        ],
        className="ticker",
    )


def daily_with_days(daily: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Days as dd/mm labels in order (the axis is read from across the room)."""
    out = []
    for d in sorted(daily, key=lambda d: d["day"]):
        day = d["day"]
        out.append({**d, "day": day.strftime("%d/%m") if hasattr(day, "strftime") else str(day)})
    return out


def layout(
    ctx_: WallContext,
    code: str,
    lang: str,
    pathname: str,
    search: str | None,
    *,
    kiosk: bool = False,
) -> html.Div:
    return html.Div(
        [
            header(
                lang,
                pathname,
                search,
                title=province_name(commune_province(ctx_.settings, code), lang),
                clock_id=ids.COMMUNE_CLOCK,
                show_nav=not kiosk,
            ),
            dcc.Store(id=ids.COMMUNE_CODE, data=code),
            html.Div(id=ids.COMMUNE_BANNER, className="stale-banner hidden", role="alert"),
            html.Div(
                [
                    dcc.Link(
                        t("back_to_wall", lang),
                        href=with_lang("/", lang, search),
                        className="back-link",
                    )
                    if not kiosk
                    else None,
                    html.H1(id=ids.COMMUNE_TITLE, className="commune-title"),
                ],
                className="commune-head",
            ),
            html.Div(id=ids.COMMUNE_KPIS, className="kpi-row"),
            html.Div(
                [
                    panel(
                        t("daily_title", lang),
                        dcc.Graph(
                            id=ids.COMMUNE_DAILY,
                            figure=empty_figure(),
                            config={"displayModeBar": False},
                        ),
                        class_name="chart-panel",
                    ),
                    panel(
                        t("queue_title", lang),
                        dcc.Graph(
                            id=ids.COMMUNE_QUEUE,
                            figure=empty_figure(),
                            config={"displayModeBar": False},
                        ),
                        class_name="chart-panel",
                    ),
                    panel(
                        t("overdue_title", lang),
                        html.Div(id=ids.COMMUNE_OVERDUE),
                        class_name="list-panel",
                    ),
                    html.Div(
                        [
                            panel(t("feed_title", lang), html.Div(id=ids.COMMUNE_FEED)),
                            panel(t("alerts_title", lang), html.Div(id=ids.COMMUNE_ALERTS)),
                        ],
                        className="side-column",
                    ),
                ],
                className="commune-grid",
            ),
            dcc.Interval(id=ids.COMMUNE_INTERVAL, interval=ctx_.settings.wall_refresh_s * 1000),
        ],
        className="page commune-page" + (" kiosk" if kiosk else ""),
    )


def register(app: Dash, wall: WallContext) -> None:
    @app.callback(
        Output(ids.COMMUNE_TITLE, "children"),
        Output(ids.COMMUNE_KPIS, "children"),
        Output(ids.COMMUNE_DAILY, "figure"),
        Output(ids.COMMUNE_QUEUE, "figure"),
        Output(ids.COMMUNE_OVERDUE, "children"),
        Output(ids.COMMUNE_FEED, "children"),
        Output(ids.COMMUNE_ALERTS, "children"),
        Output(ids.COMMUNE_CLOCK, "children"),
        Output(ids.COMMUNE_BANNER, "children"),
        Output(ids.COMMUNE_BANNER, "className"),
        Input(ids.COMMUNE_INTERVAL, "n_intervals"),
        State(ids.COMMUNE_CODE, "data"),
        State(ids.URL, "search"),
    )
    def refresh_commune(_tick: int | None, code: str, search: str | None) -> tuple:
        lang = lang_from_search(search)
        now = wall.now()
        try:
            with wall.db.session() as session:
                detail = wall.queries.commune_detail(
                    session, wall.settings, wall.working_calendar(), code, now, scope=wall.scope()
                )
        except SQLAlchemyError as exc:
            # The last figures stay on screen; the banner says they are no longer current.
            log.warning("commune refresh: database unavailable: %s", type(exc).__name__)
            banner = t("database_down", lang, at=fmt_clock(now))
            return (*(no_update,) * 7, fmt_clock(now), banner, "stale-banner")
        hidden = ("", "stale-banner hidden")
        if detail is None:
            empty = empty_figure()
            missing = t("commune_not_found", lang, code=code)
            return missing, [], empty, empty, "", "", "", fmt_clock(now), *hidden
        title = f"{detail['name']} ({detail['code']})"
        return (
            title,
            commune_tiles(detail, lang),
            daily_figure(daily_with_days(detail.get("daily") or []), lang),
            queue_figure(detail.get("queue_by_hour") or [], lang),
            overdue_table(detail.get("overdue_dossiers") or [], lang),
            feed_box(detail, detail.get("feed"), lang, now),
            alert_list(detail.get("alerts") or [], lang, now),
            fmt_clock(now),
            *hidden,
        )
