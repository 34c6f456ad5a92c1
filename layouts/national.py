"""The national wall (``/`` with ``CC_SCOPE=national``): the country's 34 provinces.

The provinces' map coloured by a measure summed from their communes, the country's figures, the
provinces and the communes to watch, and the centres that have gone silent. A click on a
province opens its wall (``/?province=08``: the provincial wall, drawn from the national map's
slice of its communes); a click on a commune in the list opens the commune's page.

Builders are plain functions of the query results; :func:`register` wires one refresh callback
to the page's single ``dcc.Interval``, reading the aggregates once per tick for the country.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dash import Dash, Input, Output, State, dcc, html, no_update
from sqlalchemy.exc import SQLAlchemyError

from control_center.national import cached_national_view
from control_center.reference import national_geojson
from layouts import ids
from layouts.common import header, panel
from layouts.context import WallContext
from layouts.format import fmt_clock, fmt_int
from layouts.i18n import lang_from_search, t
from layouts.map import (
    DEFAULT_MEASURE,
    NATIONAL_MEASURES,
    bounds,
    build_map_figure,
    clicked_commune,
    feature_codes,
    geo_url,
    map_patch,
    map_values,
    province_hover_text,
)
from layouts.scope import province_href
from layouts.wall import (
    data_as_of_text,
    feed_strip,
    kpi_tiles,
    register_fit_to_panel,
    stale_banner,
    worst_communes,
    worst_table,
)

log = logging.getLogger(__name__)

WORST_PROVINCES = 8
UIREVISION = "national-map"


def country_geojson(ctx_: WallContext) -> dict[str, Any]:
    geojson = national_geojson(ctx_.settings.config_dir / "geo")
    if geojson is None:
        raise FileNotFoundError(f"no province map in {ctx_.settings.config_dir / 'geo'}")
    return geojson


# --- builders (plain Python) ----------------------------------------------------------------


def silent_centres(row: Mapping[str, Any]) -> int:
    return int(row.get("centres_stale") or 0) + int(row.get("centres_offline") or 0)


def worst_provinces(
    rows: Iterable[Mapping[str, Any]], n: int = WORST_PROVINCES
) -> list[Mapping[str, Any]]:
    """Provinces with overdue or soon-due dossiers, worst first (overdue, then due soon)."""
    return worst_communes(rows, n)  # the same order, one level up


def provinces_table(rows: Sequence[Mapping[str, Any]], lang: str, search: str | None) -> Any:
    if not rows:
        return html.Div(t("worst_none", lang), className="empty-note")
    head = html.Thead(
        html.Tr(
            [
                html.Th(t("col_province", lang)),
                html.Th(t("col_overdue", lang), className="num"),
                html.Th(t("col_due_soon", lang), className="num"),
                html.Th(t("col_open", lang), className="num"),
                html.Th(t("col_queue", lang), className="num"),
                html.Th(t("col_centres_silent", lang), className="num"),
            ]
        )
    )
    body = html.Tbody(
        [
            html.Tr(
                [
                    html.Td(dcc.Link(r["name"], href=province_href(r["code"], lang, search))),
                    html.Td(fmt_int(r.get("overdue"), lang), className="num alarm-text"),
                    html.Td(fmt_int(r.get("due_soon"), lang), className="num warn-text"),
                    html.Td(fmt_int(r.get("open"), lang), className="num"),
                    html.Td(fmt_int(r.get("queue_waiting"), lang), className="num"),
                    html.Td(
                        fmt_int(silent_centres(r), lang),
                        className="num warn-text" if silent_centres(r) else "num",
                    ),
                ],
                **{"data-province": r["code"]},
            )
            for r in rows
        ]
    )
    return html.Table([head, body], className="wall-table")


def with_province_names(
    communes: Iterable[Mapping[str, Any]], provinces: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Commune names are not unique in the country: "Xã Tân Phú · Đồng Nai"."""
    names = {p["code"]: p["name"] for p in provinces}
    return [
        {**c, "name": f"{c['name']} · {names.get(c.get('province_code') or '', '')}".rstrip(" ·")}
        for c in communes
    ]


def national_map_update(
    geojson: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    measure: str,
    lang: str,
    built: Any,
    tiles: str | None = None,
    source: str | None = None,
) -> tuple[Any, Any]:
    """Like the province map: the whole figure only when the browser has none in this
    language, else a Patch of colours and hover text (34 values, a few KB)."""
    if not built or built[1] != lang:
        figure = build_map_figure(
            geojson,
            rows,
            measure,
            lang,
            tiles,
            source=source,
            hover=province_hover_text,
            uirevision=UIREVISION,
        )
        return figure, [measure, lang]
    values = map_values(feature_codes(geojson), rows, measure, lang, hover=province_hover_text)
    if built[0] != measure:
        return map_patch(values, measure=measure, lang=lang), [measure, lang]
    return map_patch(values), no_update


def clicked_province(click_data: Mapping[str, Any] | None) -> str | None:
    code = clicked_commune(click_data)  # the feature's code under the click, whatever its level
    return code if code and len(code) == 2 else None


# --- layout ---------------------------------------------------------------------------------


def layout(
    ctx_: WallContext, lang: str, pathname: str, search: str | None, *, kiosk: bool = False
) -> html.Div:
    geojson = country_geojson(ctx_)
    measure_picker = dcc.RadioItems(
        id=ids.NATIONAL_MEASURE,
        options=[{"label": t("measure_" + m, lang), "value": m} for m in NATIONAL_MEASURES],
        value=DEFAULT_MEASURE,
        inline=True,
        className="measure-picker",
    )
    map_panel = html.Section(
        [
            html.Div(
                [
                    html.H2(
                        t("national_map_title", lang, n=len(geojson["features"])),
                        className="panel-title",
                    ),
                    measure_picker,
                ],
                className="map-head",
            ),
            dcc.Graph(
                id=ids.NATIONAL_MAP,
                figure=build_map_figure(
                    geojson,
                    [],
                    DEFAULT_MEASURE,
                    lang,
                    ctx_.settings.map_tiles,
                    source=geo_url("country", ctx_.settings.config_dir),
                    hover=province_hover_text,
                    uirevision=UIREVISION,
                ),
                className="wall-map",
                config={"displayModeBar": False, "scrollZoom": True},
                style={"height": "100%"},
            ),
            dcc.Store(id=ids.NATIONAL_MAP_BUILT, data=[DEFAULT_MEASURE, lang]),
            dcc.Store(id=ids.NATIONAL_MAP_BOX, data=list(bounds(geojson))),
        ],
        className="panel map-panel",
    )
    side = html.Div(
        [
            panel(
                t("worst_provinces_title", lang),
                html.Div(id=ids.NATIONAL_WORST_PROVINCES),
                class_name="worst-panel",
            ),
            panel(
                t("worst_communes_national_title", lang),
                html.Div(id=ids.NATIONAL_WORST_COMMUNES),
                class_name="ticker-panel",
            ),
        ],
        className="side-column",
    )
    return html.Div(
        [
            header(
                lang,
                pathname,
                search,
                title=t("national_title", lang),
                clock_id=ids.NATIONAL_CLOCK,
                extra=[html.Div(id=ids.NATIONAL_DATA_AS_OF, className="data-as-of")],
                show_nav=not kiosk,
            ),
            html.Div(id=ids.NATIONAL_STALE_BANNER, className="stale-banner hidden", role="alert"),
            html.Div(id=ids.NATIONAL_KPIS, className="kpi-row"),
            html.Div([map_panel, side], className="wall-main"),
            html.Footer(id=ids.NATIONAL_FEEDS, className="feed-strip"),
            dcc.Interval(id=ids.NATIONAL_INTERVAL, interval=ctx_.settings.wall_refresh_s * 1000),
        ],
        className="page wall-page national-page" + (" kiosk" if kiosk else ""),
    )


# --- callbacks ------------------------------------------------------------------------------


def register(app: Dash, wall: WallContext) -> None:
    @app.callback(
        Output(ids.NATIONAL_MAP, "figure"),
        Output(ids.NATIONAL_MAP_BUILT, "data"),
        Output(ids.NATIONAL_KPIS, "children"),
        Output(ids.NATIONAL_WORST_PROVINCES, "children"),
        Output(ids.NATIONAL_WORST_COMMUNES, "children"),
        Output(ids.NATIONAL_FEEDS, "children"),
        Output(ids.NATIONAL_CLOCK, "children"),
        Output(ids.NATIONAL_DATA_AS_OF, "children"),
        Output(ids.NATIONAL_STALE_BANNER, "children"),
        Output(ids.NATIONAL_STALE_BANNER, "className"),
        Input(ids.NATIONAL_INTERVAL, "n_intervals"),
        Input(ids.NATIONAL_MEASURE, "value"),
        State(ids.URL, "search"),
        State(ids.NATIONAL_MAP_BUILT, "data"),
    )
    def refresh_national(
        _tick: int | None, measure: str | None, search: str | None, built: Any
    ) -> tuple:
        lang = lang_from_search(search)
        measure = measure if measure in NATIONAL_MEASURES else DEFAULT_MEASURE
        now = wall.now()
        calendar = wall.working_calendar()
        settings = wall.settings
        try:
            # One reading of the country per period, shared by every viewer and worker.
            with wall.db.session() as session:
                view = cached_national_view(session, settings, calendar, now)
        except SQLAlchemyError as exc:
            log.warning("national wall refresh: database unavailable: %s", type(exc).__name__)
            unchanged = (no_update,) * 6
            return (
                *unchanged,
                fmt_clock(now),
                no_update,
                t("database_down", lang, at=fmt_clock(now)),
                "stale-banner",
            )
        summary, provinces = view["summary"], view["provinces"]
        figure, built_out = national_map_update(
            country_geojson(wall),
            provinces,
            measure,
            lang,
            built,
            settings.map_tiles,
            geo_url("country", settings.config_dir),
        )
        banner_text, banner_class = stale_banner(summary, lang, now)
        return (
            figure,
            built_out,
            kpi_tiles(summary, lang),
            provinces_table(worst_provinces(provinces), lang, search),
            worst_table(with_province_names(view["communes_to_watch"], provinces), lang, search),
            feed_strip(with_province_names(view["silent_centres"], provinces), lang, now),
            fmt_clock(now),
            data_as_of_text(summary, lang, now),
            banner_text,
            banner_class,
        )

    @app.callback(
        Output(ids.URL, "search", allow_duplicate=True),
        Input(ids.NATIONAL_MAP, "clickData"),
        State(ids.URL, "search"),
        prevent_initial_call=True,
    )
    def open_province(click_data: Any, search: str | None) -> Any:
        code = clicked_province(click_data)
        if code is None:
            return no_update
        return province_href(code, lang_from_search(search), search).removeprefix("/")

    register_fit_to_panel(app, ids.NATIONAL_MAP, ids.NATIONAL_MAP_BOX, ids.NATIONAL_KPIS)
