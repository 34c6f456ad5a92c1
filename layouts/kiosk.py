"""Kiosk mode (``/kiosk?rotate=30``): no navigation, rotates between the province wall and the
communes that most need attention, one page every ``rotate`` seconds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs

from dash import Dash, Input, Output, State, dcc, html

from layouts import commune, ids, wall
from layouts.context import WallContext
from layouts.i18n import lang_from_search

DEFAULT_ROTATE_S = 30
MIN_ROTATE_S = 5
KIOSK_COMMUNES = 5


def rotate_seconds(search: str | None) -> int:
    raw = parse_qs((search or "").lstrip("?")).get("rotate", [str(DEFAULT_ROTATE_S)])[0]
    try:
        return max(MIN_ROTATE_S, int(raw))
    except ValueError:
        return DEFAULT_ROTATE_S


def kiosk_pages(rows: Sequence[Mapping[str, Any]]) -> list[str | None]:
    """The rotation: None for the province wall, then the worst communes' codes."""
    return [None, *(r["code"] for r in wall.worst_communes(rows, KIOSK_COMMUNES))]


def layout(ctx_: WallContext, lang: str, search: str | None) -> html.Div:
    return html.Div(
        [
            dcc.Interval(id=ids.KIOSK_INTERVAL, interval=rotate_seconds(search) * 1000),
            html.Div(wall.layout(ctx_, lang, "/kiosk", search, kiosk=True), id=ids.KIOSK_BODY),
        ],
        className="kiosk-root",
    )


def register(app: Dash, ctx_: WallContext) -> None:
    @app.callback(
        Output(ids.KIOSK_BODY, "children"),
        Input(ids.KIOSK_INTERVAL, "n_intervals"),
        State(ids.URL, "search"),
        prevent_initial_call=True,
    )
    def rotate(tick: int | None, search: str | None) -> Any:
        lang = lang_from_search(search)
        with ctx_.db.session() as session:
            rows = ctx_.queries.commune_rows(
                session, ctx_.settings, ctx_.working_calendar(), ctx_.now()
            )
        pages = kiosk_pages(rows)
        code = pages[(tick or 0) % len(pages)]
        if code is None:
            return wall.layout(ctx_, lang, "/kiosk", search, kiosk=True)
        return commune.layout(ctx_, code, lang, "/kiosk", search, kiosk=True)
