"""Kiosk mode (``/kiosk?rotate=30``): a playlist for an unattended screen, no navigation.

Like a Grafana playlist, it shows the province wall, the overdue view and the queue view in
turn, one every ``rotate`` seconds (at least 5). ``?pages=wall,queue`` picks and orders the
pages; ``?lang=en`` pins the language. The position in the playlist is derived from the
interval's tick count in the browser, so any gunicorn worker can answer any tick.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from dash import Dash, Input, Output, State, dcc, html

from layouts import ids, queue, wall, wall_overdue
from layouts.context import WallContext
from layouts.i18n import lang_from_search, t

DEFAULT_ROTATE_S = 30
MIN_ROTATE_S = 5

PageBuilder = Callable[[WallContext, str, str, "str | None"], Any]
PLAYLIST: dict[str, PageBuilder] = {
    "wall": lambda c, lang, path, search: wall.layout(c, lang, path, search, kiosk=True),
    "overdue": lambda c, lang, path, search: wall_overdue.layout(c, lang, path, search, kiosk=True),
    "queue": lambda c, lang, path, search: queue.layout(c, lang, path, search, kiosk=True),
}
DEFAULT_PAGES = tuple(PLAYLIST)


def _param(search: str | None, name: str) -> str | None:
    values = parse_qs((search or "").lstrip("?")).get(name)
    return values[0] if values else None


def rotate_seconds(search: str | None) -> int:
    raw = _param(search, "rotate")
    if raw is None:
        return DEFAULT_ROTATE_S
    try:
        return max(MIN_ROTATE_S, int(raw))
    except ValueError:
        return DEFAULT_ROTATE_S


def kiosk_pages(search: str | None) -> list[str]:
    """The playlist named by ``?pages=`` (unknown names ignored), else all three pages."""
    raw = _param(search, "pages")
    if raw is None:
        return list(DEFAULT_PAGES)
    chosen = [p.strip() for p in raw.split(",") if p.strip() in PLAYLIST]
    return chosen or list(DEFAULT_PAGES)


def page_at(search: str | None, tick: int | None) -> tuple[int, str]:
    pages = kiosk_pages(search)
    index = (tick or 0) % len(pages)
    return index, pages[index]


def step_label(search: str | None, index: int, lang: str) -> str:
    return t("kiosk_step", lang, i=index + 1, n=len(kiosk_pages(search)))


def layout(ctx_: WallContext, lang: str, search: str | None) -> html.Div:
    index, page = page_at(search, 0)
    return html.Div(
        [
            dcc.Interval(id=ids.KIOSK_INTERVAL, interval=rotate_seconds(search) * 1000),
            html.Div(PLAYLIST[page](ctx_, lang, "/kiosk", search), id=ids.KIOSK_BODY),
            html.Div(step_label(search, index, lang), id=ids.KIOSK_STEP, className="kiosk-step"),
        ],
        className="kiosk-root",
    )


def register(app: Dash, ctx_: WallContext) -> None:
    @app.callback(
        Output(ids.KIOSK_BODY, "children"),
        Output(ids.KIOSK_STEP, "children"),
        Input(ids.KIOSK_INTERVAL, "n_intervals"),
        State(ids.URL, "search"),
        prevent_initial_call=True,
    )
    def rotate(tick: int | None, search: str | None) -> tuple[Any, str]:
        lang = lang_from_search(search)
        index, page = page_at(search, tick)
        return PLAYLIST[page](ctx_, lang, "/kiosk", search), step_label(search, index, lang)
