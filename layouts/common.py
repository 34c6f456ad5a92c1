"""Pieces every page shares: the header with clock, data time and language switch."""

from __future__ import annotations

from dash import dcc, html
from dash.development.base_component import Component
from flask import current_app, has_app_context

from control_center.security.roles import signed_in_user
from control_center.settings import Settings
from layouts import ids
from layouts.i18n import other_lang, t, with_lang

NATIONAL_CONFIG = "CC_NATIONAL"  # app.server.config: the deployment is national (CC_SCOPE)


def header(
    lang: str,
    pathname: str,
    search: str | None,
    *,
    title: str,
    clock_id: str,
    extra: list | None = None,
    show_nav: bool = True,
) -> html.Header:
    target = other_lang(lang)
    right: list = [*(extra or []), html.Div(id=clock_id, className="clock")]
    if show_nav:
        right.insert(0, nav(lang, pathname, search))
        right.append(
            dcc.Link(
                t("switch_lang", lang),
                href=with_lang(pathname, target, search),
                className="lang-switch",
                id=ids.LANG_SWITCH,
            )
        )
        user = signed_in_user()
        if user is not None:  # a plain link: signing out leaves the app for its own page
            right.append(
                html.A(
                    t("sign_out", lang),
                    href="/logout",
                    title=user,
                    className="sign-out",
                    id=ids.SIGN_OUT,
                )
            )
    return html.Header(
        [
            html.Div(
                [html.Div(t("app_title", lang), className="app-title"), html.H1(title)],
                className="header-left",
            ),
            html.Div(right, className="header-right"),
        ],
        className="page-header",
    )


NAV_PAGES = (
    ("/", "nav_wall"),
    ("/wall/overdue", "nav_overdue"),
    ("/queue", "nav_queue"),
    ("/alerts", "nav_alerts"),
    ("/overdue", "nav_review"),
    ("/ranking", "nav_ranking"),
    ("/report/daily", "nav_report"),
)


def nav(lang: str, pathname: str, search: str | None) -> html.Nav:
    """The wall's own pages; the current one is marked, not linked to itself. In a national
    deployment "/" is the country's wall."""
    national = has_app_context() and bool(current_app.config.get(NATIONAL_CONFIG))
    return html.Nav(
        [
            dcc.Link(
                t("nav_country" if national and key == "nav_wall" else key, lang),
                href=with_lang(path, lang, search),
                className="nav-link current" if path == pathname else "nav-link",
            )
            for path, key in NAV_PAGES
        ],
        id=ids.NAV,
        className="nav",
    )


def panel(title: str, body: Component, *, class_name: str = "") -> html.Section:
    return html.Section(
        [html.H2(title, className="panel-title"), body],
        className=f"panel {class_name}".strip(),
    )


def scope_name(settings: Settings, lang: str) -> str:
    """What a page covers: the province's name, or the country in national scope."""
    return (
        t("national_title", lang) if settings.national else province_name(settings.province, lang)
    )


def province_name(code: str, lang: str) -> str:
    from vietnam_provinces import Province

    for province in Province.iter_all():
        if f"{int(province.code):02d}" == code:
            city = "THANH_PHO" in str(province.division_type)
            kind = (
                ("Thành phố" if city else "Tỉnh")
                if lang == "vi"
                else ("City" if city else "Province")
            )
            # The package names cities "Thành phố Hà Nội" but provinces "Tuyên Quang".
            return f"{kind} {province.name.removeprefix('Thành phố ')}"
    return code
