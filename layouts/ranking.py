"""Communes ranked by the computable parts of the Decision 766 index (``/ranking``).

Each score is shown with its formula and inputs, so a leader can check it by hand; the index
groups this product cannot score are named on the page. The period travels in the URL
(``?period=quarter``), like every other view, so a ranking can be shared.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode

from dash import dcc, html
from sqlalchemy.exc import SQLAlchemyError

from control_center import periods, ranking
from layouts import ids
from layouts.common import header, panel, scope_name
from layouts.context import WallContext
from layouts.format import MISSING, fmt_clock, fmt_int, fmt_number, fmt_pct
from layouts.i18n import t, with_lang
from layouts.scope import page_settings

log = logging.getLogger(__name__)

PATH = "/ranking"
PERIOD_CHOICES = ("week", "month", "quarter")
DEFAULT_PERIOD = "month"


def period_from_search(search: str | None) -> str:
    value = parse_qs((search or "").lstrip("?")).get("period", [DEFAULT_PERIOD])[0]
    return value if value in PERIOD_CHOICES else DEFAULT_PERIOD


def _score(value: float | None, lang: str) -> str:
    return MISSING if value is None else fmt_number(value, lang, 2)


def ranking_row(row: Mapping[str, Any], lang: str) -> html.Tr:
    progress, online, apology = row["progress"], row["online"], row["apology"]
    missing = apology["without_apology"]
    review_link = with_lang(
        "/overdue?" + urlencode({"state": "overdue", "apology": "no", "commune": row["code"]}), lang
    )
    return html.Tr(
        [
            html.Td(MISSING if row["rank"] is None else str(row["rank"]), className="num"),
            html.Td(dcc.Link(row["name"], href=with_lang(f"/commune/{row['code']}", lang))),
            html.Td(_score(row["score"], lang), className="num strong"),
            html.Td(
                [
                    html.Span(_score(progress["score"], lang), className="strong"),
                    html.Span(
                        f" = 20 × {fmt_int(progress['numerator'], lang)}"
                        f" / {fmt_int(progress['denominator'], lang)}",
                        className="muted",
                    ),
                ],
                className="num",
            ),
            html.Td(
                [
                    html.Span(_score(online["score"], lang), className="strong"),
                    html.Span(
                        f" = 12 × {fmt_int(online['online'], lang)}"
                        f" / {fmt_int(online['eligible'], lang)}",
                        className="muted",
                    ),
                ],
                className="num",
            ),
            html.Td(fmt_pct(apology["rate"], lang), className="num"),
            html.Td(
                dcc.Link(fmt_int(missing, lang), href=review_link) if missing else "0",
                className="num alarm-text" if missing else "num",
            ),
        ],
        **{"data-commune": row["code"]},
    )


def layout(context: WallContext, lang: str, pathname: str, search: str | None) -> html.Div:
    period = period_from_search(search)
    now = context.now()
    today = periods.local_day(now)
    date_from, date_to = periods.period_range(period, today)
    settings = page_settings(context.settings, search)  # national: ?province=, else the country
    title = t("ranking_title", lang)
    if context.settings.national:  # which part of the country, first: long titles are cut
        title = f"{scope_name(settings, lang)} · {title}"
    top = header(lang, pathname, search, title=title, clock_id=ids.RANKING_CLOCK)
    try:
        with context.db.session() as session:
            result = ranking.commune_ranking(
                session, settings, context.working_calendar(), now, date_from, date_to
            )
    except SQLAlchemyError:
        log.exception("ranking: reading the period figures failed")
        return html.Div(
            [top, html.P(t("review_error", lang, at=fmt_clock(now)), className="review-error")],
            className="page ranking-page",
        )
    choices = html.Nav(
        [
            dcc.Link(
                t(f"ranking_period_{p}", lang),
                href=with_lang(
                    f"{PATH}?period={p}"
                    + (
                        f"&province={settings.province}"
                        if context.settings.national and not settings.national
                        else ""
                    ),
                    lang,
                ),
                className="review-button current" if p == period else "review-button",
            )
            for p in PERIOD_CHOICES
        ]
        + [
            html.Span(
                t(
                    "ranking_range",
                    lang,
                    start=date_from.strftime("%d/%m/%Y"),
                    end=date_to.strftime("%d/%m/%Y"),
                ),
                className="muted",
            )
        ],
        className="review-toolbar",
    )
    formulas = panel(
        t("ranking_how", lang),
        html.Ul(
            [
                html.Li(t("ranking_formula_progress", lang)),
                html.Li(t("ranking_formula_online", lang)),
                html.Li(t("ranking_formula_apology", lang)),
                html.Li(
                    t(
                        "ranking_not_computed",
                        lang,
                        groups=", ".join(
                            f"{t(f'ranking_group_{g}', lang)} ({p})"
                            for g, p in ranking.NOT_COMPUTED
                        ),
                    ),
                    className="muted",
                ),
            ]
        ),
        class_name="ranking-formulas",
    )
    table = html.Table(
        [
            html.Thead(
                html.Tr(
                    [
                        html.Th(t(key, lang))
                        for key in (
                            "ranking_col_rank",
                            "review_col_commune",
                            "ranking_col_score",
                            "ranking_col_progress",
                            "ranking_col_online",
                            "ranking_col_apology_rate",
                            "ranking_col_without_apology",
                        )
                    ]
                )
            ),
            html.Tbody([ranking_row(r, lang) for r in result["rows"]]),
        ],
        className="table ranking-table",
    )
    return html.Div([top, choices, formulas, table], className="page ranking-page dossier-page")
