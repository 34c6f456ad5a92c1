"""The Dash app factory: the operations wall and the JSON API on one Flask server.

``create_app`` registers every layout and callback itself, so the module gunicorn imports
(:mod:`control_center.wsgi`) needs nothing else. Nothing connects here: the database engine is
built lazily per worker process by :class:`control_center.db.Database`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import dash
from dash import Input, Output, dcc, html

from control_center.db import Database
from control_center.domain.calendar import WorkingCalendar
from control_center.security import policy
from control_center.security.web import install as install_security
from control_center.settings import Settings
from layouts import (
    alerts_page,
    commune,
    dossier,
    ids,
    kiosk,
    national,
    queue,
    ranking,
    report,
    review,
    wall,
    wall_overdue,
)
from layouts.common import NATIONAL_CONFIG
from layouts.context import WallContext, system_clock
from layouts.i18n import lang_from_search, t
from layouts.map import register_geo_files
from layouts.plotly_js import register_plotly_bundle

ASSETS_DIR = Path(__file__).resolve().parent.parent / "layouts" / "assets"
_COMMUNE_PATH = re.compile(r"^/commune/(\d{5})/?$")


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] | None = None,
    calendar: WorkingCalendar | None = None,
    db: Database | None = None,
) -> dash.Dash:
    """The wall and the API. ``clock`` and ``calendar`` are injectable for tests and replays."""
    app = dash.Dash(
        __name__,
        assets_folder=str(ASSETS_DIR),
        update_title=None,  # type: ignore[arg-type]  # None is documented: no "Updating..." title
        title=t("app_title"),
        # Pages are rendered by the router, so page callbacks name ids not in the first layout.
        suppress_callback_exceptions=True,
        # Everything is served from this server: the wall runs in rooms without internet.
        serve_locally=True,
    )
    context = WallContext(
        settings=settings,
        db=db or Database.from_settings(settings),
        clock=clock or system_clock,
        calendar=calendar,
    )
    app.layout = html.Div(
        [dcc.Location(id=ids.URL, refresh=False), html.Main(id=ids.PAGE)],
        className="app-root",
    )
    install_security(app, settings, context.db)
    app.server.config[NATIONAL_CONFIG] = settings.national
    register_geo_files(app.server, settings.config_dir)
    register_plotly_bundle(app)
    register_router(app, context)
    wall.register(app, context)
    national.register(app, context)
    commune.register(app, context)
    kiosk.register(app, context)
    queue.register(app, context)
    wall_overdue.register(app, context)
    alerts_page.register(app, context)
    review.register(app, context)
    report.register(app, context)
    _register_api(app, context)
    return app


# Pages at a fixed path: path -> layout(context, lang, path, search).
_PAGES: dict[str, Callable[[WallContext, str, str, str | None], Any]] = {
    "/kiosk": lambda context, lang, _path, search: kiosk.layout(context, lang, search),
    "/queue": queue.layout,
    "/wall/overdue": wall_overdue.layout,
    "/alerts": alerts_page.layout,
    review.PATH: review.layout,
    report.PATH: report.layout,
    ranking.PATH: ranking.layout,
}


def render_page(context: WallContext, pathname: str | None, search: str | None) -> Any:
    lang = lang_from_search(search)
    path = pathname or "/"
    builder = _route(context, path, lang, search)
    if builder is None:
        return html.Div(
            [html.H1("404"), dcc.Link(t("back_to_wall", lang), href="/")],
            className="page not-found",
        )
    # The page's permission (security.policy, default deny), then the principal's scope:
    # a commune user sees its own commune's page only.
    principal = context.principal()
    needed = policy.page_permission(path)
    commune_page = _COMMUNE_PATH.match(path)
    if (
        needed is None
        or not principal.can(needed)
        or (commune_page and not principal.scope.allows(commune_page.group(1)))
    ):
        return forbidden_page(lang, signed_in=principal.is_authenticated)
    return builder()


def _route(
    context: WallContext, path: str, lang: str, search: str | None
) -> Callable[[], Any] | None:
    """The page at ``path``, not yet built (None: no such page)."""
    if path in ("/", ""):
        return lambda: wall.layout(context, lang, "/", search)
    match = _COMMUNE_PATH.match(path)
    if match:
        return lambda: commune.layout(context, match.group(1), lang, path, search)
    page = _PAGES.get(path.rstrip("/"))
    if page is not None:
        return lambda: page(context, lang, path.rstrip("/"), search)
    dossier_code = dossier.code_from_path(path)
    if dossier_code is not None:
        return lambda: dossier.layout(context, dossier_code, lang, path, search)
    return None


FORBIDDEN_TEXT = {
    "vi": "Tài khoản này không được xem trang này.",
    "en": "This account may not see this page.",
}


def forbidden_page(lang: str, *, signed_in: bool) -> html.Div:
    return html.Div(
        [
            html.H1("403"),
            html.P(FORBIDDEN_TEXT.get(lang, FORBIDDEN_TEXT["vi"])),
            dcc.Link(t("back_to_wall", lang), href="/")
            if signed_in
            else html.A("Đăng nhập / Sign in", href="/login"),
        ],
        className="page not-found forbidden",
    )


def register_router(app: dash.Dash, context: WallContext) -> None:
    @app.callback(
        Output(ids.PAGE, "children"), Input(ids.URL, "pathname"), Input(ids.URL, "search")
    )
    def route(pathname: str | None, search: str | None) -> Any:
        return render_page(context, pathname, search)


def _register_api(app: dash.Dash, context: WallContext) -> None:
    from control_center.api import register_api

    register_api(
        app.server, context.db, context.settings, context.working_calendar(), clock=context.clock
    )
