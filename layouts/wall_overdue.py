"""The overdue view for the wall and the kiosk (``/wall/overdue``): large type, read-only.

The province's overdue dossiers, the longest late first, and those due within one working day,
the soonest first. It reads one page of each list through the indexed open-due scan
(``queries.list_dossiers``), never the whole table. The leaders' full review with filters is a
separate page; this one is for reading from across the room.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from dash import Dash, Input, Output, State, dcc, html, no_update
from sqlalchemy.exc import SQLAlchemyError

from layouts import ids
from layouts.common import header, scope_name
from layouts.context import WallContext
from layouts.format import fmt_clock, fmt_datetime, fmt_int, fmt_number
from layouts.i18n import lang_from_search, t
from layouts.wall import kpi_tile

log = logging.getLogger(__name__)

OVERDUE_SHOWN = 12
DUE_SOON_SHOWN = 12


def dossier_rows(
    items: Sequence[Mapping[str, Any]], lang: str, now: datetime, *, overdue: bool
) -> list[html.Tr]:
    rows = []
    for d in items:
        if overdue:
            late = d.get("working_days_overdue")
            urgency = html.Td(
                fmt_number(late, lang, 1) if late is not None else "—",
                className="num alarm-text",
            )
        else:
            urgency = html.Td(fmt_datetime(d.get("due_at"), now), className="num warn-text")
        cells = [
            html.Td(d.get("commune_name") or d.get("commune_code") or "", className="nowrap"),
            html.Td(d["dossier_code"], className="mono"),
            html.Td(d.get("procedure_name") or d.get("procedure_code") or "", className="clip"),
            urgency,
        ]
        if overdue:
            cells.append(
                html.Td(
                    t("yes" if d.get("apology_issued") else "no", lang),
                    className="" if d.get("apology_issued") else "alarm-text",
                )
            )
        rows.append(html.Tr(cells, **{"data-dossier": d["dossier_code"]}))
    return rows


def dossier_table(
    items: Sequence[Mapping[str, Any]], total: int, lang: str, now: datetime, *, overdue: bool
) -> Any:
    if not items:
        return html.Div(
            t("overdue_none" if overdue else "due_soon_none", lang), className="empty-note"
        )
    head = [
        html.Th(t("col_commune", lang)),
        html.Th(t("col_dossier", lang)),
        html.Th(t("col_procedure", lang)),
        html.Th(t("col_days_overdue" if overdue else "col_due_at", lang), className="num"),
    ]
    if overdue:
        head.append(html.Th(t("col_apology", lang)))
    children: list[Any] = [
        html.Table(
            [
                html.Thead(html.Tr(head)),
                html.Tbody(dossier_rows(items, lang, now, overdue=overdue)),
            ],
            className="wall-table big-table",
        )
    ]
    if total > len(items):
        children.append(
            html.Div(
                t("dossiers_more", lang, n=fmt_int(total - len(items), lang)),
                className="table-more",
            )
        )
    return html.Div(children)


def total_tiles(overdue_total: int, due_soon_total: int, lang: str) -> list[html.Div]:
    return [
        kpi_tile(
            "overdue",
            t("kpi_overdue", lang),
            fmt_int(overdue_total, lang),
            tone="alarm" if overdue_total else "",
        ),
        kpi_tile(
            "due_soon",
            t("kpi_due_soon", lang),
            fmt_int(due_soon_total, lang),
            tone="warn" if due_soon_total else "",
        ),
    ]


def layout(
    ctx_: WallContext, lang: str, pathname: str, search: str | None, *, kiosk: bool = False
) -> html.Div:
    return html.Div(
        [
            header(
                lang,
                pathname,
                search,
                title=f"{t('overdue_page_title', lang)} · {scope_name(ctx_.settings, lang)}",
                clock_id=ids.OVERDUE_WALL_CLOCK,
                show_nav=not kiosk,
            ),
            html.Div(
                [
                    html.Section(
                        [
                            html.Div(id=ids.OVERDUE_WALL_TOTALS, className="kpi-row kpi-row-2"),
                            html.H2(t("overdue_title", lang), className="panel-title"),
                            html.Div(id=ids.OVERDUE_WALL_LIST, className="table-body"),
                        ],
                        className="panel",
                    ),
                    html.Section(
                        [
                            html.H2(t("due_soon_title", lang), className="panel-title"),
                            html.Div(id=ids.OVERDUE_WALL_DUE_SOON, className="table-body"),
                        ],
                        className="panel",
                    ),
                ],
                className="overdue-main",
            ),
            dcc.Interval(
                id=ids.OVERDUE_WALL_INTERVAL, interval=ctx_.settings.wall_refresh_s * 1000
            ),
        ],
        className="page wall-page overdue-page" + (" kiosk" if kiosk else ""),
    )


def register(app: Dash, wall: WallContext) -> None:
    @app.callback(
        Output(ids.OVERDUE_WALL_TOTALS, "children"),
        Output(ids.OVERDUE_WALL_LIST, "children"),
        Output(ids.OVERDUE_WALL_DUE_SOON, "children"),
        Output(ids.OVERDUE_WALL_CLOCK, "children"),
        Input(ids.OVERDUE_WALL_INTERVAL, "n_intervals"),
        State(ids.URL, "search"),
    )
    def refresh_overdue(_tick: int | None, search: str | None) -> tuple:
        lang = lang_from_search(search)
        now = wall.now()
        calendar = wall.working_calendar()
        q = wall.queries
        scope = wall.scope()
        try:
            with wall.db.session() as session:
                overdue = q.list_dossiers(
                    session,
                    wall.settings,
                    calendar,
                    now,
                    state="overdue",
                    limit=OVERDUE_SHOWN,
                    scope=scope,
                )
                due_soon = q.list_dossiers(
                    session,
                    wall.settings,
                    calendar,
                    now,
                    state="due_soon",
                    limit=DUE_SOON_SHOWN,
                    scope=scope,
                )
        except SQLAlchemyError as exc:
            log.warning("overdue view refresh: database unavailable: %s", type(exc).__name__)
            return no_update, no_update, no_update, fmt_clock(now)
        return (
            total_tiles(overdue["total"], due_soon["total"], lang),
            dossier_table(overdue["items"], overdue["total"], lang, now, overdue=True),
            dossier_table(due_soon["items"], due_soon["total"], lang, now, overdue=False),
            fmt_clock(now),
        )
