"""The province wall (``/``): map, KPI tiles, worst communes, escalations, feed health.

Builders here are plain functions of the query results (unit-tested without a browser);
:func:`register` wires one refresh callback to the page's single ``dcc.Interval``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from dash import ClientsideFunction, Dash, Input, Output, State, dcc, html, no_update
from dash.development.base_component import Component
from sqlalchemy.exc import SQLAlchemyError

from control_center.liveview import province_reading
from control_center.national import cached_province_view
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
    trend,
)
from layouts.i18n import lang_from_search, t, with_lang
from layouts.map import (
    DEFAULT_MEASURE,
    MEASURES,
    bounds,
    build_map_figure,
    clicked_commune,
    feature_codes,
    map_patch,
    map_values,
    province_geo_url,
    province_geojson,
)
from layouts.scope import country_href, page_settings

log = logging.getLogger(__name__)

WORST_COUNT = 10
FEED_STRIP_MAX = 5
TICKER_MAX = 12

# --- builders (plain Python) ----------------------------------------------------------------


def _share(part: float | None, whole: float | None) -> float | None:
    if part is None or not whole:
        return None
    return part / whole


def kpi_tile(
    key: str,
    label: str,
    value: str | Component,
    *,
    sub: str | None = None,
    note: str | None = None,
    change: tuple[str, str] | None = None,
    tone: str = "",
) -> html.Div:
    """One tile; ``data-kpi`` names it for tests and for anyone styling a single tile.

    ``note`` is a neutral second line (yesterday's figure); ``change`` an arrow with a tone.
    """
    children: list[Any] = [
        html.Div(label, className="kpi-label"),
        html.Div(value, className="kpi-value"),
    ]
    if sub:
        children.append(html.Div(sub, className="kpi-sub"))
    if note:
        children.append(html.Div(note, className="kpi-trend trend-flat"))
    if change:
        text, direction = change
        children.append(html.Div(text, className=f"kpi-trend trend-{direction}"))
    data_kpi: dict[str, Any] = {"data-kpi": key}  # data-* props are only reachable as kwargs
    return html.Div(children, className=f"kpi {tone}".strip(), **data_kpi)


def yesterday_note(summary: Mapping[str, Any], key: str, lang: str) -> str | None:
    """Yesterday's whole-day count: the aggregates are per day, so "same time yesterday" is
    not known and an arrow against a full day would always point down in the morning."""
    previous = (summary.get("trend") or {}).get(key)
    return None if previous is None else t("yesterday_value", lang, value=fmt_int(previous, lang))


def same_time_change(
    summary: Mapping[str, Any],
    key: str,
    lang: str,
    *,
    higher_is_better: bool | None,
    fmt: Callable[[float], str] | None = None,
) -> tuple[str, str] | None:
    """The figure now against the same time yesterday: "▲ 12 so với cùng giờ hôm qua".

    Day counters are compared with yesterday's count up to the same time; states (open,
    overdue, queue, centres, score) with the summary snapshot nearest to 24 hours ago. None
    (no line) without a figure from yesterday. ``higher_is_better=None`` keeps the arrow
    neutral (more dossiers received is neither good nor bad news)."""
    previous = ((summary.get("trend") or {}).get("same_time_yesterday") or {}).get(key)
    change = trend(
        summary.get(key),
        previous,
        higher_is_better=bool(higher_is_better),
        fmt=fmt or (lambda v: fmt_int(v, lang)),
    )
    if change is None:
        return None
    text, tone = change
    return (
        f"{text} {t('trend_vs_same_time', lang)}",
        tone if higher_is_better is not None else "flat",
    )


def rate_change(summary: Mapping[str, Any], key: str, lang: str) -> tuple[str, str] | None:
    """Change of a 30-day rate against the window ending yesterday, in percentage points."""
    now_rate = summary.get(key)
    before = (summary.get("trend") or {}).get(key)
    change = trend(
        None if now_rate is None else now_rate * 100,
        None if before is None else before * 100,
        fmt=lambda v: f"{fmt_number(v, lang)} {t('percentage_points', lang)}",
    )
    if change is None:
        return None
    return f"{change[0]} {t('trend_vs_yesterday', lang)}", change[1]


def _day_trend(
    summary: Mapping[str, Any], key: str, lang: str, *, higher_is_better: bool | None
) -> dict[str, Any]:
    """The tile's trend line: the same-time arrow, or yesterday's whole-day figure from a
    summary without the same-time counters. One line either way, so tiles keep their height."""
    change = same_time_change(summary, key, lang, higher_is_better=higher_is_better)
    if change is not None:
        return {"change": change}
    return {"note": yesterday_note(summary, key, lang)}


def kpi_tiles(summary: Mapping[str, Any], lang: str) -> list[html.Div]:
    s = summary
    online_share = _share(s.get("received_online_today"), s.get("received_today"))
    return [
        kpi_tile(
            "open",
            t("kpi_open", lang),
            fmt_int(s.get("open"), lang),
            change=same_time_change(s, "open", lang, higher_is_better=False),
        ),
        kpi_tile(
            "overdue",
            t("kpi_overdue", lang),
            fmt_int(s.get("overdue"), lang),
            change=same_time_change(s, "overdue", lang, higher_is_better=False),
            tone="alarm" if s.get("overdue") else "",
        ),
        kpi_tile(
            "due_soon",
            t("kpi_due_soon", lang),
            fmt_int(s.get("due_soon"), lang),
            change=same_time_change(s, "due_soon", lang, higher_is_better=False),
            tone="warn" if s.get("due_soon") else "",
        ),
        kpi_tile(
            "received_today",
            t("kpi_received_today", lang),
            fmt_int(s.get("received_today"), lang),
            sub=f"{fmt_pct(online_share, lang, 0)} {t('kpi_online_share', lang)}",
            **_day_trend(s, "received_today", lang, higher_is_better=None),
        ),
        kpi_tile(
            "returned_today",
            t("kpi_returned_today", lang),
            fmt_int(s.get("returned_today"), lang),
            **_day_trend(s, "returned_today", lang, higher_is_better=True),
        ),
        kpi_tile(
            "on_time_rate",
            t("kpi_on_time_rate", lang),
            fmt_pct(s.get("on_time_rate"), lang),
            sub=f"{t('online_rate', lang)}: {fmt_pct(s.get('online_rate'), lang, 0)}",
            change=rate_change(s, "on_time_rate", lang),
        ),
        kpi_tile(
            "queue_waiting",
            t("kpi_queue_waiting", lang),
            fmt_int(s.get("queue_waiting"), lang),
            sub=f"{t('kpi_avg_wait', lang)} {fmt_minutes(s.get('avg_wait_minutes'), lang)}",
            change=same_time_change(s, "queue_waiting", lang, higher_is_better=False),
        ),
        kpi_tile(
            "centres",
            t("kpi_centres", lang),
            html.Span(
                [
                    fmt_int(s.get("centres_online"), lang),
                    html.Span(f"/{fmt_int(s.get('centres_total'), lang)}", className="kpi-of"),
                ]
            ),
            sub=t(
                "kpi_centres_detail",
                lang,
                stale=fmt_int(s.get("centres_stale"), lang),
                offline=fmt_int(s.get("centres_offline"), lang),
                total=fmt_int(s.get("centres_total"), lang),
            ),
            change=same_time_change(s, "centres_online", lang, higher_is_better=True),
            # Edge only: the number counts live centres, so it must not itself look alarming.
            tone="warn-edge" if s.get("centres_offline") or s.get("centres_stale") else "",
        ),
        kpi_tile(
            "progress_score",
            t("kpi_progress", lang),
            fmt_number(s.get("progress_score"), lang, 2),
            sub=t("kpi_progress_unit", lang),
            change=same_time_change(
                s,
                "progress_score",
                lang,
                higher_is_better=True,
                fmt=lambda v: fmt_number(v, lang, 2),
            ),
        ),
    ]


def worst_communes(
    rows: Iterable[Mapping[str, Any]], n: int = WORST_COUNT
) -> list[Mapping[str, Any]]:
    """Communes with overdue or soon-due dossiers, worst first (overdue, then due soon)."""
    troubled = [r for r in rows if (r.get("overdue") or 0) > 0 or (r.get("due_soon") or 0) > 0]
    troubled.sort(key=lambda r: (-(r.get("overdue") or 0), -(r.get("due_soon") or 0), r["name"]))
    return troubled[:n]


def worst_table(rows: Sequence[Mapping[str, Any]], lang: str, search: str | None) -> Any:
    if not rows:
        return html.Div(t("worst_none", lang), className="empty-note")
    head = html.Thead(
        html.Tr(
            [
                html.Th(t("col_commune", lang)),
                html.Th(t("col_overdue", lang), className="num"),
                html.Th(t("col_due_soon", lang), className="num"),
                html.Th(t("col_open", lang), className="num"),
                html.Th(t("col_queue", lang), className="num"),
                html.Th(t("col_feed", lang)),
            ]
        )
    )
    body = html.Tbody(
        [
            html.Tr(
                [
                    html.Td(
                        dcc.Link(r["name"], href=with_lang(f"/commune/{r['code']}", lang, search))
                    ),
                    html.Td(fmt_int(r.get("overdue"), lang), className="num alarm-text"),
                    html.Td(fmt_int(r.get("due_soon"), lang), className="num warn-text"),
                    html.Td(fmt_int(r.get("open"), lang), className="num"),
                    html.Td(fmt_int(r.get("queue_waiting"), lang), className="num"),
                    html.Td(
                        t("feed_" + (r.get("feed_state") or "unknown"), lang),
                        className=f"feed-{r.get('feed_state') or 'unknown'}",
                    ),
                ],
                **{"data-commune": r["code"]},
            )
            for r in rows
        ]
    )
    return html.Table([head, body], className="wall-table")


def _ts(alert: Mapping[str, Any]) -> float:
    raised = alert.get("raised_at")
    return raised.timestamp() if isinstance(raised, datetime) else 0.0


def level_badge(level: Any, lang: str) -> html.Span:
    """Escalation level as a labelled badge: the words carry the meaning, colour only helps."""
    level = min(max(int(level or 1), 1), 3)
    return html.Span(t(f"level_{level}", lang), className=f"level level-{level}")


def ticker_items(
    alerts: Iterable[Mapping[str, Any]],
    names: Mapping[str, str],
    lang: str,
    now: datetime,
    n: int = TICKER_MAX,
) -> list[html.Li]:
    newest_first = sorted(alerts, key=_ts, reverse=True)[:n]
    if not newest_first:
        return [html.Li(t("ticker_empty", lang), className="empty-note")]
    items = []
    for a in newest_first:
        commune = names.get(a.get("commune_code") or "", a.get("commune_code") or "")
        items.append(
            html.Li(
                [
                    level_badge(a.get("level"), lang),
                    html.Span(fmt_datetime(a.get("raised_at"), now), className="ticker-time"),
                    html.Span(commune, className="ticker-commune"),
                    html.Span(a.get("message") or "", className="ticker-message"),
                ],
                className="ticker-item",
            )
        )
    return items


_FEED_ORDER = {"offline": 0, "stale": 1}
_NEVER = datetime.min.replace(tzinfo=UTC)


def feed_problems(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Centres whose data is not current: offline first, then the longest silent."""
    bad = [r for r in rows if r.get("feed_state") in _FEED_ORDER]
    bad.sort(
        key=lambda r: (_FEED_ORDER[r["feed_state"]], r.get("last_seen_at") or _NEVER, r["name"])
    )
    return bad


def silence(row: Mapping[str, Any], now: datetime) -> float | None:
    seen = row.get("last_seen_at")
    return None if seen is None else max(0.0, (now - seen).total_seconds())


def feed_strip(rows: Iterable[Mapping[str, Any]], lang: str, now: datetime) -> list[Any]:
    """One line naming the silent centres; a province-wide outage is said in numbers instead,
    so the strip never grows over the map."""
    problems = feed_problems(rows)
    if not problems:
        return [html.Span(t("feeds_all_live", lang), className="feed-ok")]
    chips: list[Any] = [html.Span(t("feeds_title", lang) + ":", className="feed-strip-title")]
    for r in problems[:FEED_STRIP_MAX]:
        state = r["feed_state"]
        chips.append(
            html.Span(
                f"{r['name']} · {t('feed_' + state, lang)} · {fmt_lag(silence(r, now), lang)}",
                className=f"feed-chip feed-{state}",
            )
        )
    if len(problems) > FEED_STRIP_MAX:
        chips.append(
            html.Span(
                t("feeds_more", lang, n=len(problems) - FEED_STRIP_MAX), className="feed-more"
            )
        )
    return chips


def stale_banner(summary: Mapping[str, Any], lang: str, now: datetime) -> tuple[Any, str]:
    """Banner text and class: shown whenever the collector or the newest data is too old."""
    if not summary.get("data_stale"):
        return "", "stale-banner hidden"
    since = summary.get("data_as_of")
    shown = fmt_datetime(since, now) if since else t("stale_never", lang)
    return t("stale_banner", lang, since=shown), "stale-banner"


def data_as_of_text(summary: Mapping[str, Any], lang: str, now: datetime) -> str:
    return f"{t('data_as_of', lang)} {fmt_datetime(summary.get('data_as_of'), now)}"


def map_update(
    geojson: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    measure: str,
    lang: str,
    built: Any,
    tiles: str | None = None,
    source: str | None = None,
) -> tuple[Any, Any]:
    """The map output of one refresh and the new ``(measure, lang)`` of the browser's figure.

    The whole figure (naming its polygons by their address ``source``) goes out only when the
    browser has none in this language; a tick or a new measure is a Patch.
    """
    if not built or built[1] != lang:
        figure = build_map_figure(geojson, rows, measure, lang, tiles, source=source)
        return figure, [measure, lang]
    values = map_values(feature_codes(geojson), rows, measure, lang)
    if built[0] != measure:
        return map_patch(values, measure=measure, lang=lang), [measure, lang]
    return map_patch(values), no_update


def measure_options(lang: str) -> list[dict[str, str]]:
    return [{"label": t("measure_" + m, lang), "value": m} for m in MEASURES]


# --- layout ---------------------------------------------------------------------------------


def layout(
    ctx_: WallContext, lang: str, pathname: str, search: str | None, *, kiosk: bool = False
) -> html.Div:
    settings = page_settings(ctx_.settings, search)
    if settings.national:
        from layouts import national  # the country's wall builds on this module's pieces

        return national.layout(ctx_, lang, pathname, search, kiosk=kiosk)
    geojson = province_geojson(settings.province, settings.config_dir)
    extra: list[Any] = [html.Div(id=ids.WALL_DATA_AS_OF, className="data-as-of")]
    if ctx_.settings.national:
        extra.insert(0, dcc.Link(t("back_to_country", lang), href=country_href(lang, search)))
    return html.Div(
        [
            header(
                lang,
                pathname,
                search,
                title=province_name(settings.province, lang),
                clock_id=ids.WALL_CLOCK,
                extra=extra,
                show_nav=not kiosk,
            ),
            html.Div(id=ids.WALL_STALE_BANNER, className="stale-banner hidden", role="alert"),
            html.Div(id=ids.WALL_KPIS, className="kpi-row"),
            html.Div(
                [
                    html.Section(
                        [
                            html.Div(
                                [
                                    html.H2(
                                        t("map_title", lang, n=len(geojson["features"])),
                                        className="panel-title",
                                    ),
                                    dcc.RadioItems(
                                        id=ids.WALL_MEASURE,
                                        options=measure_options(lang),
                                        value=DEFAULT_MEASURE,
                                        inline=True,
                                        className="measure-picker",
                                    ),
                                ],
                                className="map-head",
                            ),
                            # The polygons ship with the page, grey until the first refresh
                            # colours them; refreshes are Patches from then on. A Graph that
                            # mounted empty (cartesian) and then turned into a map raced in
                            # plotly.js on page switches ("_rangeSliderData" errors).
                            dcc.Graph(
                                id=ids.WALL_MAP,
                                figure=build_map_figure(
                                    geojson,
                                    [],
                                    DEFAULT_MEASURE,
                                    lang,
                                    settings.map_tiles,
                                    source=province_geo_url(settings.province, settings.config_dir),
                                ),
                                className="wall-map",
                                config={"displayModeBar": False, "scrollZoom": True},
                                style={"height": "100%"},
                            ),
                            dcc.Store(id=ids.WALL_MAP_BUILT, data=[DEFAULT_MEASURE, lang]),
                            dcc.Store(id=ids.WALL_MAP_BOX, data=list(bounds(geojson))),
                        ],
                        className="panel map-panel",
                    ),
                    html.Div(
                        [
                            panel(
                                t("worst_title", lang),
                                html.Div(id=ids.WALL_WORST),
                                class_name="worst-panel",
                            ),
                            panel(
                                t("ticker_title", lang),
                                html.Ul(id=ids.WALL_TICKER, className="ticker"),
                                class_name="ticker-panel",
                            ),
                        ],
                        className="side-column",
                    ),
                ],
                className="wall-main",
            ),
            html.Footer(id=ids.WALL_FEEDS, className="feed-strip"),
            dcc.Interval(id=ids.WALL_INTERVAL, interval=ctx_.settings.wall_refresh_s * 1000),
        ],
        className="page wall-page" + (" kiosk" if kiosk else ""),
    )


# --- callbacks ------------------------------------------------------------------------------


# What one refresh of the wall writes (also what the tests and bench/wall.py ask for).
REFRESH_OUTPUTS = (
    (ids.WALL_MAP, "figure"),
    (ids.WALL_MAP_BUILT, "data"),
    (ids.WALL_KPIS, "children"),
    (ids.WALL_WORST, "children"),
    (ids.WALL_TICKER, "children"),
    (ids.WALL_FEEDS, "children"),
    (ids.WALL_CLOCK, "children"),
    (ids.WALL_DATA_AS_OF, "children"),
    (ids.WALL_STALE_BANNER, "children"),
    (ids.WALL_STALE_BANNER, "className"),
)


def register(app: Dash, wall: WallContext) -> None:
    @app.callback(
        *(Output(i, p) for i, p in REFRESH_OUTPUTS),
        Input(ids.WALL_INTERVAL, "n_intervals"),
        Input(ids.WALL_MEASURE, "value"),
        State(ids.URL, "search"),
        State(ids.WALL_MAP_BUILT, "data"),
    )
    def refresh_wall(
        _tick: int | None, measure: str | None, search: str | None, built: Any
    ) -> tuple:
        lang = lang_from_search(search)
        measure = measure if measure in MEASURES else DEFAULT_MEASURE
        now = wall.now()
        q = wall.queries
        calendar = wall.working_calendar()
        settings = page_settings(wall.settings, search)
        try:
            with wall.db.session() as session, q.shared_reads(session):
                if wall.settings.national:
                    # A province of the country: one reading per period for all its viewers.
                    view = cached_province_view(session, settings, calendar, now)
                else:  # the alert engine's reading of the moment, when it is current
                    view = province_reading(session, settings, calendar, now)
                summary, rows = view["summary"], view["communes"]
                # A provincial database holds this province only: no commune filter needed.
                communes = [r["code"] for r in rows] if wall.settings.national else None
                alerts = q.list_alerts(session, state="open", communes=communes, limit=TICKER_MAX)
        except SQLAlchemyError as exc:
            # Keep the last figures on screen but say loudly that they are no longer current.
            log.warning("wall refresh: database unavailable: %s", type(exc).__name__)
            unchanged = (no_update,) * 6
            return (
                *unchanged,
                fmt_clock(now),
                no_update,
                t("database_down", lang, at=fmt_clock(now)),
                "stale-banner",
            )
        geojson = province_geojson(settings.province, settings.config_dir)
        source = province_geo_url(settings.province, settings.config_dir)
        figure, built_out = map_update(
            geojson, rows, measure, lang, built, settings.map_tiles, source
        )
        names = {r["code"]: r["name"] for r in rows}
        banner_text, banner_class = stale_banner(summary, lang, now)
        return (
            figure,
            built_out,
            kpi_tiles(summary, lang),
            worst_table(worst_communes(rows), lang, search),
            ticker_items(alerts, names, lang, now),
            feed_strip(rows, lang, now),
            fmt_clock(now),
            data_as_of_text(summary, lang, now),
            banner_text,
            banner_class,
        )

    @app.callback(
        Output(ids.URL, "pathname", allow_duplicate=True),
        Input(ids.WALL_MAP, "clickData"),
        prevent_initial_call=True,
    )
    def open_commune(click_data: Any) -> Any:
        code = clicked_commune(click_data)
        return f"/commune/{code}" if code else no_update

    register_fit_to_panel(app, ids.WALL_MAP, ids.WALL_MAP_BOX, ids.WALL_KPIS)


def register_fit_to_panel(app: Dash, graph_id: str, box_id: str, refreshed_id: str) -> None:
    """Refit the map to its panel's pixel size (any screen, 4K too) once the page's first
    refresh has filled ``refreshed_id`` and the panel has its final size."""
    app.clientside_callback(
        ClientsideFunction(namespace="cc_map", function_name="fitToPanel"),
        Output(graph_id, "figure", allow_duplicate=True),
        Input(refreshed_id, "children"),
        State(box_id, "data"),
        State(graph_id, "id"),
        prevent_initial_call=True,
    )
