"""The queue view (``/queue``): citizens waiting at the counters of every centre, today.

Per centre: tickets waiting, the longest wait, the average wait today and the counters open;
the centres where people wait longest come first, the province's totals on top. It reads the
same per-commune rows as the wall (``queries.commune_rows``: today's ``queue_tickets`` and
``queue_counters``, a few GROUP BY queries, or the alert engine's stored reading of them,
``control_center.liveview``), never the event tables.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dash import Dash, Input, Output, State, dcc, html, no_update
from sqlalchemy.exc import SQLAlchemyError

from control_center.liveview import province_reading
from layouts import ids
from layouts.common import header, scope_name
from layouts.context import WallContext
from layouts.format import fmt_clock, fmt_int, fmt_minutes
from layouts.i18n import lang_from_search, t, with_lang
from layouts.wall import data_as_of_text, kpi_tile, stale_banner

log = logging.getLogger(__name__)

QUEUE_ROWS_SHOWN = 15
# A wait this long is what the escalation policy calls a queue problem (queue_wait, 60 min).
LONG_WAIT_MINUTES = 60.0
WARN_WAIT_MINUTES = 30.0


def has_queue_today(row: Mapping[str, Any]) -> bool:
    return bool(
        row.get("queue_waiting")
        or row.get("counters_open")
        or row.get("avg_wait_minutes") is not None
    )


def worst_waits(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Centres with any queue today, the longest current wait first, then the most waiting,
    then the worst average wait (a centre whose queue is empty now sorts by its day)."""
    active = [r for r in rows if has_queue_today(r)]
    active.sort(
        key=lambda r: (
            -(r.get("longest_wait_minutes") or 0.0),
            -(r.get("queue_waiting") or 0),
            -(r.get("avg_wait_minutes") or 0.0),
            r["name"],
        )
    )
    return active


def queue_totals(rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> dict[str, Any]:
    """The province line: waiting and counters summed, the longest wait anywhere, and the
    average wait of all tickets called today (from the summary: an average of averages would
    weigh a centre with two tickets like one with two hundred)."""
    longest = [r["longest_wait_minutes"] for r in rows if r.get("longest_wait_minutes") is not None]
    return {
        "waiting": sum(r.get("queue_waiting") or 0 for r in rows),
        "longest_wait_minutes": max(longest) if longest else None,
        "avg_wait_minutes": summary.get("avg_wait_minutes"),
        "counters_open": sum(r.get("counters_open") or 0 for r in rows),
        "centres_waiting": sum(1 for r in rows if r.get("queue_waiting")),
        "centres_total": len(rows),
    }


def wait_tone(minutes: float | None) -> str:
    if minutes is None:
        return ""
    if minutes >= LONG_WAIT_MINUTES:
        return "alarm-text"
    return "warn-text" if minutes >= WARN_WAIT_MINUTES else ""


def total_tiles(totals: Mapping[str, Any], lang: str) -> list[html.Div]:
    longest = totals.get("longest_wait_minutes")
    return [
        kpi_tile(
            "queue_waiting",
            t("kpi_queue_waiting", lang),
            fmt_int(totals["waiting"], lang),
            sub=t(
                "queue_centres_waiting",
                lang,
                n=fmt_int(totals["centres_waiting"], lang),
                total=fmt_int(totals["centres_total"], lang),
            ),
        ),
        kpi_tile(
            "longest_wait",
            t("queue_longest_wait", lang),
            fmt_minutes(longest, lang),
            tone="alarm" if (longest or 0) >= LONG_WAIT_MINUTES else "",
        ),
        kpi_tile(
            "avg_wait",
            t("queue_avg_wait_today", lang),
            fmt_minutes(totals.get("avg_wait_minutes"), lang),
        ),
        kpi_tile("counters_open", t("counters_open", lang), fmt_int(totals["counters_open"], lang)),
    ]


def queue_table(
    rows: Sequence[Mapping[str, Any]], lang: str, search: str | None, *, kiosk: bool = False
) -> Any:
    if not rows:
        return html.Div(t("queue_none", lang), className="empty-note")
    shown = rows[:QUEUE_ROWS_SHOWN]
    head = html.Thead(
        html.Tr(
            [
                html.Th("#", className="num"),
                html.Th(t("col_commune", lang)),
                html.Th(t("col_waiting", lang), className="num"),
                html.Th(t("col_longest_wait", lang), className="num"),
                html.Th(t("col_avg_wait", lang), className="num"),
                html.Th(t("col_counters_open", lang), className="num"),
                html.Th(t("col_feed", lang)),
            ]
        )
    )

    def name_cell(r: Mapping[str, Any]) -> Any:
        if kiosk:  # an unattended screen: nothing to click
            return r["name"]
        return dcc.Link(r["name"], href=with_lang(f"/commune/{r['code']}", lang, search))

    body = html.Tbody(
        [
            html.Tr(
                [
                    html.Td(str(rank), className="num rank"),
                    html.Td(name_cell(r)),
                    html.Td(fmt_int(r.get("queue_waiting"), lang), className="num"),
                    html.Td(
                        fmt_minutes(r.get("longest_wait_minutes"), lang),
                        className=f"num {wait_tone(r.get('longest_wait_minutes'))}",
                    ),
                    html.Td(
                        fmt_minutes(r.get("avg_wait_minutes"), lang),
                        className=f"num {wait_tone(r.get('avg_wait_minutes'))}",
                    ),
                    html.Td(fmt_int(r.get("counters_open"), lang), className="num"),
                    html.Td(
                        t("feed_" + (r.get("feed_state") or "unknown"), lang),
                        className=f"feed-{r.get('feed_state') or 'unknown'}",
                    ),
                ],
                **{"data-commune": r["code"]},
            )
            for rank, r in enumerate(shown, start=1)
        ]
    )
    children: list[Any] = [html.Table([head, body], className="wall-table big-table")]
    if len(rows) > len(shown):
        children.append(
            html.Div(t("queue_more", lang, n=len(rows) - len(shown)), className="table-more")
        )
    return html.Div(children)


# --- layout and callback --------------------------------------------------------------------


def layout(
    ctx_: WallContext, lang: str, pathname: str, search: str | None, *, kiosk: bool = False
) -> html.Div:
    return html.Div(
        [
            header(
                lang,
                pathname,
                search,
                title=f"{t('queue_page_title', lang)} · {scope_name(ctx_.settings, lang)}",
                clock_id=ids.QUEUE_CLOCK,
                extra=[html.Div(id=ids.QUEUE_DATA_AS_OF, className="data-as-of")],
                show_nav=not kiosk,
            ),
            html.Div(id=ids.QUEUE_STALE_BANNER, className="stale-banner hidden", role="alert"),
            html.Div(id=ids.QUEUE_TOTALS, className="kpi-row kpi-row-4"),
            html.Section(
                [
                    html.H2(t("queue_worst_title", lang), className="panel-title"),
                    html.Div(id=ids.QUEUE_TABLE, className="table-body"),
                ],
                className="panel grow-panel",
            ),
            dcc.Store(id=ids.QUEUE_KIOSK, data=kiosk),
            dcc.Interval(id=ids.QUEUE_INTERVAL, interval=ctx_.settings.wall_refresh_s * 1000),
        ],
        className="page wall-page queue-page" + (" kiosk" if kiosk else ""),
    )


# What one refresh of the view writes (also what the tests and bench/wall.py ask for).
REFRESH_OUTPUTS = (
    (ids.QUEUE_TOTALS, "children"),
    (ids.QUEUE_TABLE, "children"),
    (ids.QUEUE_CLOCK, "children"),
    (ids.QUEUE_DATA_AS_OF, "children"),
    (ids.QUEUE_STALE_BANNER, "children"),
    (ids.QUEUE_STALE_BANNER, "className"),
)


def register(app: Dash, wall: WallContext) -> None:
    @app.callback(
        *(Output(i, p) for i, p in REFRESH_OUTPUTS),
        Input(ids.QUEUE_INTERVAL, "n_intervals"),
        State(ids.URL, "search"),
        State(ids.QUEUE_KIOSK, "data"),
    )
    def refresh_queue(_tick: int | None, search: str | None, kiosk: bool | None) -> tuple:
        lang = lang_from_search(search)
        now = wall.now()
        calendar = wall.working_calendar()
        try:
            with wall.db.session() as session:
                view = province_reading(session, wall.settings, calendar, now)
            summary, rows = view["summary"], view["communes"]
        except SQLAlchemyError as exc:
            log.warning("queue refresh: database unavailable: %s", type(exc).__name__)
            return (
                no_update,
                no_update,
                fmt_clock(now),
                no_update,
                t("database_down", lang, at=fmt_clock(now)),
                "stale-banner",
            )
        banner_text, banner_class = stale_banner(summary, lang, now)
        return (
            total_tiles(queue_totals(rows, summary), lang),
            queue_table(worst_waits(rows), lang, search, kiosk=bool(kiosk)),
            fmt_clock(now),
            data_as_of_text(summary, lang, now),
            banner_text,
            banner_class,
        )
