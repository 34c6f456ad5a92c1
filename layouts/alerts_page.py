"""The alerts page (``/alerts``): every alert, filtered and paged, with an acknowledge button.

Filters (state, level, commune, kind) start from the address (``/alerts?commune=02269``, so the
commune page and the wall can link here) and the list is newest first, 25 per page, refreshed
by the page's one ``dcc.Interval``. Each open alert carries an acknowledge button with a
pattern-matching id ``{"type": ALERT_ACK, "index": alert_id}``: one callback serves every row.
Who acknowledges is typed once at the top and kept in the browser's local storage (Dash
persistence), so an operator's name survives reloads without any server-side session; the
acknowledgement itself goes through :func:`alerts.acks.acknowledge`, the same conditional
UPDATE the MQTT ``alerts/ack`` path uses, so a centre and an operator racing record only one.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from dash import MATCH, Dash, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate
from flask import has_request_context, request
from sqlalchemy.exc import SQLAlchemyError

from alerts.acks import acknowledge
from alerts.policy import (
    AT_RISK,
    FEED_OFFLINE,
    OVERDUE_JUMP,
    QUEUE_WAIT,
    PolicyError,
    load_policy,
)
from control_center.models import Alert
from control_center.security import accounts
from layouts import ids
from layouts.common import header
from layouts.context import WallContext
from layouts.format import fmt_clock, fmt_datetime
from layouts.i18n import STRINGS, lang_from_search, t, with_lang
from layouts.wall import level_badge

log = logging.getLogger(__name__)

PAGE_SIZE = 25
STATES = ("open", "acknowledged", "resolved")
LEVELS = (1, 2, 3)
ALL_VALUE = "all"  # the "no filter" choice of every dropdown


# --- plain builders (unit-tested) -----------------------------------------------------------


def filters_from_search(search: str | None) -> dict[str, str]:
    """Initial filters from the address; anything unknown is ignored. Default: open alerts."""
    params = {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items()}
    state = params.get("state", "open")
    level = params.get("level", ALL_VALUE)
    commune = params.get("commune", ALL_VALUE)
    return {
        "state": state if state in (*STATES, ALL_VALUE) else "open",
        "level": level if level in ("1", "2", "3") else ALL_VALUE,
        "commune": commune if commune.isdigit() and len(commune) == 5 else ALL_VALUE,
        "kind": params.get("kind", ALL_VALUE)[:32],
    }


def query_filters(
    state: str | None, level: str | None, commune: str | None, kind: str | None
) -> dict[str, Any]:
    """Dropdown values -> keyword arguments of ``queries.alerts_page`` ("all" = no filter)."""

    def chosen(value: str | None) -> str | None:
        return None if value in (None, "", ALL_VALUE) else value

    lvl = chosen(level)
    return {
        "state": chosen(state),
        "level": int(lvl) if lvl and lvl.isdigit() else None,
        "commune": chosen(commune),
        "kind": chosen(kind),
    }


def kind_label(kind: str | None, lang: str) -> str:
    """The kind in words; a kind added in a province's own policy shows its name."""
    key = f"kind_{kind}"
    return t(key, lang) if key in STRINGS else (kind or "")


@functools.lru_cache(maxsize=8)
def policy_kinds(policy_file: str | None) -> tuple[str, ...]:
    """Kinds the configured policy can raise: its dossier rules, then the commune rules."""
    commune_kinds = (OVERDUE_JUMP, FEED_OFFLINE, QUEUE_WAIT, AT_RISK)
    try:
        policy = load_policy(policy_file)
    except PolicyError:
        return commune_kinds
    return (*(r.kind for r in policy.dossier_rules), *commune_kinds)


def pager_text(total: int, offset: int, shown: int, lang: str) -> str:
    if total == 0:
        return ""
    return t("pager", lang, first=offset + 1, last=offset + shown, total=total)


def state_cell(alert: Mapping[str, Any], lang: str, now: datetime) -> list[Any]:
    """The state in words, and who acknowledged it and when."""
    state = alert.get("state") or "open"
    out: list[Any] = [html.Span(t(f"alert_{state}", lang), className=f"alert-state state-{state}")]
    if alert.get("acknowledged_by"):
        at = fmt_datetime(alert.get("acknowledged_at"), now)
        out.append(
            html.Span(t("ack_by_at", lang, by=alert["acknowledged_by"], at=at), className="ack-by")
        )
    return out


def alert_row(
    alert: Mapping[str, Any], names: Mapping[str, str], lang: str, now: datetime
) -> html.Tr:
    alert_id = alert["alert_id"]
    commune = alert.get("commune_code") or ""
    dossier = alert.get("dossier_code")
    state = alert.get("state") or "open"
    return html.Tr(
        [
            html.Td(fmt_datetime(alert.get("raised_at"), now), className="nowrap"),
            html.Td(level_badge(alert.get("level"), lang)),
            html.Td(kind_label(alert.get("kind"), lang)),
            html.Td(
                dcc.Link(names.get(commune, commune), href=with_lang(f"/commune/{commune}", lang))
                if commune
                else t("province", lang)
            ),
            html.Td(
                dcc.Link(dossier, href=with_lang(f"/dossier/{dossier}", lang)) if dossier else "",
                className="mono",
            ),
            html.Td(alert.get("message") or "", className="alert-message"),
            html.Td(
                state_cell(alert, lang, now),
                id={"type": ids.ALERT_STATE, "index": alert_id},
                className="alert-state-cell",
            ),
            html.Td(
                html.Button(
                    t("ack_button", lang),
                    id={"type": ids.ALERT_ACK, "index": alert_id},
                    className="ack-button",
                    n_clicks=0,
                )
                if state == "open"
                else None
            ),
        ],
        className=f"alert-row alert-{state}",
    )


def alerts_table(
    items: Iterable[Mapping[str, Any]], names: Mapping[str, str], lang: str, now: datetime
) -> Any:
    rows = list(items)
    if not rows:
        return html.Div(t("alerts_page_none", lang), className="empty-note")
    columns = (
        "col_raised_at",
        "col_level",
        "col_kind",
        "col_commune",
        "col_dossier",
        "col_message",
        "col_state",
    )
    head = html.Thead(html.Tr([html.Th(t(key, lang)) for key in columns] + [html.Th("")]))
    return html.Table(
        [head, html.Tbody([alert_row(a, names, lang, now) for a in rows])],
        className="wall-table alerts-table",
    )


def acknowledge_from_wall(
    wall: WallContext, alert_id: str, by: str | None, now: datetime
) -> tuple[dict[str, Any], bool] | None:
    """Record ``by`` acknowledging ``alert_id`` at ``now``; the alert as stored afterwards.

    Returns ``(alert, needs_name)``: ``needs_name`` when nobody is named (nothing recorded).
    None for an unknown alert, or one outside the principal's scope (another commune's).
    Acknowledging an alert that is no longer open changes nothing (the first acknowledgement is
    kept; a resolved alert stays resolved). A signed-in user acknowledges in its own name when
    the name field is empty; every acknowledgement is written to the audit log.
    """
    try:
        key = uuid.UUID(alert_id)
    except ValueError:
        return None
    principal = wall.principal()
    who = (by or "").strip()[:200] or (principal.name if principal.kind == "user" else "")
    with wall.db.session() as session, session.begin():
        alert = session.get(Alert, key)
        if alert is None or not principal.scope.allows(alert.commune_code):
            return None
        if who and acknowledge(session, key, who, now):
            remote = request.remote_addr if has_request_context() else None
            accounts.audit(
                session,
                "alert_ack",
                accounts.Actor(principal.name, principal.role, remote),
                str(key),
                by=who,
                commune_code=alert.commune_code,
                via="wall",
            )
        return wall.queries.alert_payload(alert), not who


# --- page -----------------------------------------------------------------------------------


def _options(pairs: Iterable[tuple[str, str]], lang: str) -> list[dict[str, str]]:
    return [{"label": t("filter_all", lang), "value": ALL_VALUE}] + [
        {"label": label, "value": value} for value, label in pairs
    ]


def _dropdown(id_: str, label: str, options: list[dict[str, str]], value: str) -> html.Label:
    return html.Label(
        [
            html.Span(label, className="filter-label"),
            dcc.Dropdown(
                id=id_, options=options, value=value, clearable=False, className="filter-dropdown"
            ),
        ],
        className="filter",
    )


def layout(context: WallContext, lang: str, pathname: str, search: str | None) -> html.Div:
    chosen = filters_from_search(search)
    try:
        with context.db.session() as session:
            names = context.queries.commune_names(session, context.settings)
    except SQLAlchemyError as exc:
        # The list callback reports the outage; the page still renders.
        log.warning("alerts page: database unavailable: %s", type(exc).__name__)
        names = {}
    communes = sorted(names.items(), key=lambda kv: kv[1])
    kinds = [(k, kind_label(k, lang)) for k in policy_kinds(context.settings.policy_file)]
    states = [(s, t(f"alert_{s}", lang)) for s in STATES]
    levels = [(str(n), t(f"level_{n}", lang)) for n in LEVELS]
    filters = html.Div(
        [
            _dropdown(
                ids.ALERTS_STATE, t("filter_state", lang), _options(states, lang), chosen["state"]
            ),
            _dropdown(
                ids.ALERTS_LEVEL, t("filter_level", lang), _options(levels, lang), chosen["level"]
            ),
            _dropdown(
                ids.ALERTS_COMMUNE,
                t("filter_commune", lang),
                _options(communes, lang),
                chosen["commune"],
            ),
            _dropdown(
                ids.ALERTS_KIND, t("filter_kind", lang), _options(kinds, lang), chosen["kind"]
            ),
            html.Label(
                [
                    html.Span(t("ack_by_label", lang), className="filter-label"),
                    dcc.Input(
                        id=ids.ALERTS_ACK_BY,
                        type="text",
                        placeholder=t("ack_by_placeholder", lang),
                        maxLength=200,
                        # The operator's name stays in this browser (local storage) only.
                        persistence=True,
                        persistence_type="local",
                        className="ack-by-input",
                    ),
                ],
                className="filter ack-by-field",
            ),
        ],
        className="alerts-filters",
    )
    pager = html.Div(
        [
            html.Button(t("pager_prev", lang), id=ids.ALERTS_PREV, n_clicks=0, disabled=True),
            html.Span(id=ids.ALERTS_PAGER, className="pager-text"),
            html.Button(t("pager_next", lang), id=ids.ALERTS_NEXT, n_clicks=0, disabled=True),
        ],
        className="alerts-pager",
    )
    back = dcc.Link(t("back_to_wall", lang), href=with_lang("/", lang), className="back-link")
    return html.Div(
        [
            header(
                lang,
                pathname,
                search,
                title=t("alerts_page_title", lang),
                clock_id=ids.ALERTS_CLOCK,
                extra=[back],
            ),
            filters,
            dcc.Store(id=ids.ALERTS_PAGE, data=0),
            html.Div(id=ids.ALERTS_LIST, className="panel alerts-list"),
            pager,
            dcc.Interval(id=ids.ALERTS_INTERVAL, interval=context.settings.wall_refresh_s * 1000),
        ],
        className="page alerts-page",
    )


# --- callbacks ------------------------------------------------------------------------------

FILTER_INPUTS = [
    Input(ids.ALERTS_STATE, "value"),
    Input(ids.ALERTS_LEVEL, "value"),
    Input(ids.ALERTS_COMMUNE, "value"),
    Input(ids.ALERTS_KIND, "value"),
]


def register(app: Dash, wall: WallContext) -> None:
    @app.callback(
        Output(ids.ALERTS_PAGE, "data"),
        Input(ids.ALERTS_PREV, "n_clicks"),
        Input(ids.ALERTS_NEXT, "n_clicks"),
        *FILTER_INPUTS,
        State(ids.ALERTS_PAGE, "data"),
        prevent_initial_call=True,
    )
    def turn_page(*args: Any) -> int:
        page = int(args[-1] or 0)
        if ctx.triggered_id == ids.ALERTS_NEXT:
            return page + 1
        if ctx.triggered_id == ids.ALERTS_PREV:
            return max(page - 1, 0)
        return 0  # a filter changed: back to the newest

    @app.callback(
        Output(ids.ALERTS_LIST, "children"),
        Output(ids.ALERTS_PAGER, "children"),
        Output(ids.ALERTS_PREV, "disabled"),
        Output(ids.ALERTS_NEXT, "disabled"),
        Output(ids.ALERTS_CLOCK, "children"),
        Input(ids.ALERTS_INTERVAL, "n_intervals"),
        *FILTER_INPUTS,
        Input(ids.ALERTS_PAGE, "data"),
        State(ids.URL, "search"),
    )
    def refresh_alerts(
        _tick: int | None,
        state: str | None,
        level: str | None,
        commune: str | None,
        kind: str | None,
        page: int | None,
        search: str | None,
    ) -> tuple:
        lang = lang_from_search(search)
        now = wall.now()
        offset = max(int(page or 0), 0) * PAGE_SIZE
        try:
            with wall.db.session() as session:
                result = wall.queries.alerts_page(
                    session,
                    **query_filters(state, level, commune, kind),
                    limit=PAGE_SIZE,
                    offset=offset,
                    scope=wall.scope(),
                )
                names = wall.queries.commune_names(session, wall.settings)
        except SQLAlchemyError as exc:
            log.warning("alerts page: database unavailable: %s", type(exc).__name__)
            banner = html.Div(
                t("database_down", lang, at=fmt_clock(now)), className="stale-banner", role="alert"
            )
            return banner, no_update, no_update, no_update, fmt_clock(now)
        items, total = result["items"], result["total"]
        return (
            alerts_table(items, names, lang, now),
            pager_text(total, offset, len(items), lang),
            offset == 0,
            offset + len(items) >= total,
            fmt_clock(now),
        )

    @app.callback(
        Output({"type": ids.ALERT_STATE, "index": MATCH}, "children"),
        Output({"type": ids.ALERT_ACK, "index": MATCH}, "disabled"),
        Input({"type": ids.ALERT_ACK, "index": MATCH}, "n_clicks"),
        State(ids.ALERTS_ACK_BY, "value"),
        State(ids.URL, "search"),
        prevent_initial_call=True,
    )
    def acknowledge_alert(clicks: int | None, by: str | None, search: str | None) -> tuple:
        triggered = ctx.triggered_id
        if not clicks or not isinstance(triggered, Mapping):
            raise PreventUpdate
        lang = lang_from_search(search)
        now = wall.now()
        try:
            result = acknowledge_from_wall(wall, str(triggered["index"]), by, now)
        except SQLAlchemyError as exc:
            log.warning("alert acknowledgement: database unavailable: %s", type(exc).__name__)
            return [
                html.Span(t("database_down", lang, at=fmt_clock(now)), className="warn-text")
            ], False
        if result is None:
            raise PreventUpdate
        alert, needs_name = result
        cell = state_cell(alert, lang, now)
        if needs_name:
            cell.append(html.Span(t("ack_needs_name", lang), className="warn-text ack-hint"))
            return cell, False
        return cell, alert.get("state") != "open"
