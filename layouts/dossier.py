"""One dossier (``/dossier/<code>``): its clock, apology and extension, transfers, alerts, timeline.

Rendered once per visit (a leader reads it, nothing ticks): one session reads the dossier with
its events (``queries.dossier_detail``) and its alerts (``queries.dossier_alerts``). The clock is
computed by :func:`dossier_clock` from the events and the working-day calendar, in plain Python.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

from dash import dcc, html
from sqlalchemy.exc import SQLAlchemyError

from control_center.domain.calendar import WorkingCalendar
from layouts import ids
from layouts.common import header, panel
from layouts.context import WallContext
from layouts.format import MISSING, fmt_clock, fmt_datetime, fmt_number
from layouts.i18n import t, with_lang

log = logging.getLogger(__name__)

PATH_PREFIX = "/dossier/"
PAUSE_STARTS = {"supplement_requested": "supplement", "payment_requested": "payment"}
PAUSE_ENDS = frozenset({"supplement_received", "payment_received"})
CLOSING = frozenset({"completed", "returned", "rejected", "withdrawn"})
# Details worth a line in the timeline (the rest is in the API's event payload).
DETAIL_KEYS = (
    "officer",
    "department",
    "reason",
    "new_due_at",
    "to_commune_code",
    "procedure_code",
    "channel",
)


def dossier_path(code: str) -> str:
    return PATH_PREFIX + quote(code, safe="")


def code_from_path(path: str) -> str | None:
    if not path.startswith(PATH_PREFIX):
        return None
    code = unquote(path[len(PATH_PREFIX) :].rstrip("/"))
    return code if 0 < len(code) <= 64 else None


# --- the clock (plain functions) -------------------------------------------------------------


@dataclass(frozen=True)
class PausedSpan:
    kind: str  # supplement / payment
    start: datetime
    end: datetime | None  # None: still waiting
    working_seconds: float


@dataclass(frozen=True)
class Clock:
    start: datetime | None
    used_s: float | None  # working time the handling body has used, pauses excluded
    paused_s: float  # working time the clock stood still
    remaining_s: float | None  # working time to the due date; negative = overdue
    spans: tuple[PausedSpan, ...]


def paused_spans(
    timeline: Sequence[Mapping[str, Any]], calendar: WorkingCalendar, now: datetime
) -> tuple[PausedSpan, ...]:
    """Waits for the applicant, in the state machine's terms: a wait begins at the first
    request while the clock runs and ends at the first answer (either answer); closing the
    dossier ends a wait too."""
    spans: list[PausedSpan] = []
    current: tuple[str, datetime] | None = None
    for event in timeline:
        kind, at = event["type"], event["occurred_at"]
        if kind in PAUSE_STARTS and current is None:
            current = (PAUSE_STARTS[kind], at)
        elif (kind in PAUSE_ENDS or kind in CLOSING) and current is not None:
            seconds = max(0.0, calendar.working_seconds_between(current[1], at))
            spans.append(PausedSpan(current[0], current[1], at, seconds))
            current = None
    if current is not None:
        seconds = max(0.0, calendar.working_seconds_between(current[1], now))
        spans.append(PausedSpan(current[0], current[1], None, seconds))
    return tuple(spans)


def dossier_clock(detail: Mapping[str, Any], calendar: WorkingCalendar, now: datetime) -> Clock:
    """Working time used, paused and left (or overdue) for the dossier, as of ``now`` or its
    finish. The due date already includes closed pauses and the one allowed re-date."""
    start = detail.get("clock_start_at") or detail.get("received_at")
    spans = paused_spans(detail.get("timeline") or (), calendar, now)
    paused = sum(s.working_seconds for s in spans)
    end = now if detail.get("is_open", True) else (detail.get("finished_at") or now)
    used = None
    if start is not None:
        used = max(0.0, calendar.working_seconds_between(start, end) - paused)
    due = detail.get("due_at")
    remaining = None if due is None else calendar.working_seconds_between(end, due)
    return Clock(start, used, paused, remaining, spans)


def transfers(timeline: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [e for e in timeline if e["type"] == "transferred"]


# --- rendering -------------------------------------------------------------------------------


def _days(seconds: float | None, calendar: WorkingCalendar, lang: str) -> str:
    if seconds is None:
        return MISSING
    return t(
        "dossier_working_days", lang, n=fmt_number(seconds / calendar.seconds_per_day, lang, 2)
    )


def _data(**attributes: str) -> dict[str, Any]:
    """``data-*`` attributes (tests and print CSS find facts by them, not by wording)."""
    return {f"data-{name}": value for name, value in attributes.items() if value}


def _fact(label: str, value: Any, *, key: str = "", tone: str = "") -> html.Div:
    return html.Div(
        [html.Dt(label), html.Dd(value, className=tone)],
        className="dossier-fact",
        **_data(fact=key),
    )


def clock_panel(
    clock: Clock, detail: Mapping[str, Any], calendar: WorkingCalendar, lang: str
) -> html.Section:
    remaining = clock.remaining_s
    if remaining is None:
        verdict = _fact(t("dossier_remaining", lang), t("dossier_no_due", lang), key="remaining")
    elif remaining >= 0:
        verdict = _fact(
            t("dossier_remaining", lang),
            _days(remaining, calendar, lang),
            key="remaining",
            tone="ok-text",
        )
    else:
        verdict = _fact(
            t("dossier_overdue_by", lang),
            _days(-remaining, calendar, lang),
            key="overdue",
            tone="alarm-text",
        )
    span_rows = [
        html.Tr(
            [
                html.Td(t(f"dossier_pause_{s.kind}", lang)),
                html.Td(fmt_datetime(s.start)),
                html.Td(fmt_datetime(s.end) if s.end else t("dossier_still_waiting", lang)),
                html.Td(_days(s.working_seconds, calendar, lang), className="num"),
            ]
        )
        for s in clock.spans
    ]
    return panel(
        t("dossier_clock", lang),
        html.Div(
            [
                html.Dl(
                    [
                        _fact(t("dossier_clock_start", lang), fmt_datetime(clock.start)),
                        _fact(
                            t("dossier_due", lang), fmt_datetime(detail.get("due_at")), key="due"
                        ),
                        _fact(
                            t("dossier_used", lang), _days(clock.used_s, calendar, lang), key="used"
                        ),
                        _fact(
                            t("dossier_paused", lang),
                            _days(clock.paused_s, calendar, lang),
                            key="paused",
                        ),
                        verdict,
                    ],
                    className="dossier-facts",
                ),
                html.Table(
                    [
                        html.Thead(
                            html.Tr(
                                [
                                    html.Th(t("dossier_pause", lang)),
                                    html.Th(t("dossier_from", lang)),
                                    html.Th(t("dossier_to", lang)),
                                    html.Th(t("dossier_duration", lang)),
                                ]
                            )
                        ),
                        html.Tbody(span_rows),
                    ],
                    className="table dossier-pauses",
                )
                if span_rows
                else html.P(t("dossier_no_pause", lang), className="empty-note"),
            ]
        ),
        class_name="dossier-clock",
    )


def apology_panel(detail: Mapping[str, Any], lang: str) -> html.Section:
    apology = detail.get("apology")
    extension = detail.get("extension")
    late = detail.get("outcome") in ("overdue", "overdue_open")
    if apology:
        apology_text, tone = (
            t("dossier_apology_at", lang, at=fmt_datetime(apology["issued_at"])),
            "",
        )
    else:
        apology_text = t("dossier_apology_missing" if late else "dossier_apology_none", lang)
        tone = "alarm-text" if late else ""
    if extension:
        ext_text = t(
            "dossier_extended_from",
            lang,
            before=fmt_datetime(extension.get("original_due_at")),
            after=fmt_datetime(detail.get("due_at")),
        )
    else:
        ext_text = t("dossier_not_extended", lang)
    return panel(
        t("dossier_apology_title", lang),
        html.Dl(
            [
                _fact(t("review_col_apology", lang), apology_text, key="apology", tone=tone),
                _fact(t("review_col_extended", lang), ext_text, key="extension"),
            ],
            className="dossier-facts",
        ),
    )


def transfers_panel(detail: Mapping[str, Any], names: Mapping[str, str], lang: str) -> html.Section:
    moves = transfers(detail.get("timeline") or ())
    if not moves:
        body: Any = html.P(t("dossier_no_transfer", lang), className="empty-note")
    else:
        body = html.Ul(
            [
                html.Li(
                    t(
                        "dossier_transfer_line",
                        lang,
                        at=fmt_datetime(e["occurred_at"]),
                        source=names.get(
                            e.get("commune_code") or "", e.get("commune_code") or MISSING
                        ),
                        target=names.get(
                            str(e["details"].get("to_commune_code")),
                            e["details"].get("to_commune_code") or MISSING,
                        ),
                    )
                )
                for e in moves
            ]
        )
    return panel(t("dossier_transfers", lang), body)


def alerts_panel(alerts: Sequence[Mapping[str, Any]], lang: str) -> html.Section:
    if not alerts:
        body: Any = html.P(t("dossier_no_alert", lang), className="empty-note")
    else:
        body = html.Table(
            [
                html.Thead(
                    html.Tr(
                        [
                            html.Th(t("review_col_level", lang)),
                            html.Th(t("dossier_alert_raised", lang)),
                            html.Th(t("review_state", lang)),
                            html.Th(t("dossier_alert_ack", lang)),
                        ]
                    )
                ),
                html.Tbody(
                    [
                        html.Tr(
                            [
                                html.Td(t(f"review_level_{a['level']}", lang)),
                                html.Td(fmt_datetime(a["raised_at"])),
                                html.Td(t(f"dossier_alert_{a['state']}", lang)),
                                html.Td(
                                    f"{a['acknowledged_by']} · {fmt_datetime(a['acknowledged_at'])}"
                                    if a.get("acknowledged_by")
                                    else MISSING
                                ),
                            ],
                            **_data(level=str(a["level"])),
                        )
                        for a in alerts
                    ]
                ),
            ],
            className="table dossier-alerts",
        )
    return panel(t("dossier_alerts", lang), body)


def _details(details: Mapping[str, Any]) -> str:
    parts = []
    for key in DETAIL_KEYS:
        value = details.get(key)
        if value not in (None, ""):
            parts.append(f"{key}: {value}")
    return " · ".join(parts)


def timeline_panel(timeline: Sequence[Mapping[str, Any]], lang: str) -> html.Section:
    rows = []
    for e in timeline:
        late = (e["arrived_at"] - e["occurred_at"]).total_seconds() > 600
        rows.append(
            html.Tr(
                [
                    html.Td(fmt_datetime(e["occurred_at"]), className="num"),
                    html.Td(t(f"event_{e['type']}", lang)),
                    html.Td(_details(e.get("details") or {}), className="clip"),
                    html.Td(
                        t("dossier_arrived_late", lang, at=fmt_datetime(e["arrived_at"]))
                        if late
                        else "",
                        className="muted",
                    ),
                ],
                **_data(event=e["type"]),
            )
        )
    if not rows:
        return panel(
            t("dossier_timeline", lang),
            html.P(t("dossier_no_events", lang), className="empty-note"),
        )
    return panel(
        t("dossier_timeline", lang),
        html.Table(
            [
                html.Thead(
                    html.Tr(
                        [
                            html.Th(t("dossier_when", lang)),
                            html.Th(t("dossier_event", lang)),
                            html.Th(t("dossier_details", lang)),
                            html.Th(""),
                        ]
                    )
                ),
                html.Tbody(rows),
            ],
            className="table dossier-timeline",
        ),
    )


def summary_panel(detail: Mapping[str, Any], lang: str) -> html.Section:
    channel = detail.get("channel")
    return panel(
        t("dossier_summary", lang),
        html.Dl(
            [
                _fact(
                    t("review_col_commune", lang),
                    detail.get("commune_name") or detail["commune_code"],
                ),
                _fact(
                    t("review_col_procedure", lang),
                    f"{detail.get('procedure_name') or ''} ({detail['procedure_code']})",
                ),
                _fact(t("review_col_sector", lang), detail.get("sector") or MISSING),
                _fact(
                    t("review_col_channel", lang),
                    t(f"review_channel_{channel}", lang) if channel else MISSING,
                ),
                _fact(t("dossier_received", lang), fmt_datetime(detail.get("received_at"))),
                _fact(t("review_col_officer", lang), detail.get("officer") or MISSING),
                # Masked unless the role may see applicants' personal data (docs/security.md).
                _fact(
                    "Người nộp" if lang == "vi" else "Applicant",
                    detail.get("applicant_name") or MISSING,
                    key="applicant",
                ),
                _fact(t("dossier_department", lang), detail.get("department") or MISSING),
                _fact(
                    t("dossier_state", lang),
                    t(f"dossier_state_{detail['state']}", lang),
                    key="state",
                ),
            ],
            className="dossier-facts",
        ),
    )


def layout(
    context: WallContext, code: str, lang: str, pathname: str, search: str | None
) -> html.Div:
    now = context.now()
    calendar = context.working_calendar()
    back = dcc.Link(
        t("dossier_back", lang), href=with_lang("/overdue", lang), className="review-button"
    )
    try:
        with context.db.session() as session:
            q = context.queries
            detail = q.dossier_detail(
                session, context.settings, calendar, code, now, scope=context.scope()
            )
            alerts = q.dossier_alerts(session, code) if detail else []
            names = q.commune_names(session, context.settings) if detail else {}
    except SQLAlchemyError:
        log.exception("dossier page: reading %s failed", code)
        return html.Div(
            [back, html.P(t("review_error", lang, at=fmt_clock(now)), className="review-error")],
            className="page dossier-page",
        )
    title = t("dossier_title", lang, code=code)
    top = header(lang, pathname, search, title=title, clock_id=ids.DOSSIER_CLOCK, extra=[back])
    if detail is None:
        return html.Div(
            [top, html.P(t("dossier_not_found", lang, code=code), className="review-error")],
            className="page dossier-page",
        )
    clock = dossier_clock(detail, calendar, now)
    return html.Div(
        [
            top,
            html.Div(
                [
                    summary_panel(detail, lang),
                    clock_panel(clock, detail, calendar, lang),
                    apology_panel(detail, lang),
                    transfers_panel(detail, names, lang),
                    alerts_panel(sorted(alerts, key=lambda a: a["raised_at"]), lang),
                ],
                className="dossier-grid",
            ),
            timeline_panel(detail.get("timeline") or [], lang),
        ],
        className="page dossier-page",
    )
