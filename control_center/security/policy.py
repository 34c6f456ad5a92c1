"""Which permission every API view, Dash callback and page needs: one table to review.

Default deny: an API view without an entry refuses to register, a callback whose outputs have
no entry answers 403, a page without an entry is refused. Scope (a commune user's own commune)
and masking are not decided here but in the queries, which take the principal's
:class:`~control_center.security.roles.Scope`, so a crafted request cannot widen them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from control_center.security.roles import Permission

P = Permission

# control_center/api.py: view function name -> permission.
API_PERMISSIONS: dict[str, Permission] = {
    "summary": P.WALL,
    "communes": P.WALL,
    "provinces": P.WALL,  # the country's provinces (national drill-down): figures only
    "commune": P.WALL,  # a commune user: its own commune only (the query's scope)
    "ranking_view": P.WALL,
    "period_view": P.WALL,
    "openapi": P.WALL,
    "dossiers": P.DETAILS,
    "dossier": P.DETAILS,
    "alerts": P.DETAILS,
    "dead_letters": P.DETAILS,
    "review": P.DETAILS,
    "acknowledge_alert": P.ACKNOWLEDGE,
    "review_xlsx": P.EXPORT,
    "review_csv": P.EXPORT,
    "periods_xlsx": P.EXPORT,
    "periods_csv": P.EXPORT,
    "audit_log": P.ADMIN,
}


def api_permission(view_name: str) -> Permission:
    try:
        return API_PERMISSIONS[view_name]
    except KeyError:
        raise LookupError(
            f"API view {view_name!r} has no permission: add it to "
            "control_center.security.policy.API_PERMISSIONS"
        ) from None


# Dash callbacks, by the id of an output (a pattern-matching id by its "type"). A request
# needs the permission of every output it names. Ids are those of layouts/ids.py.
CALLBACK_PERMISSIONS: dict[str, Permission] = {
    # the router: any signed-in principal; the page itself is checked by PAGE_PERMISSIONS
    "page": P.WALL,
    "url": P.WALL,  # navigation written by callbacks (map click, review filters)
    # province wall, kiosk playlist, queue view, overdue board, commune page
    **dict.fromkeys(
        [
            "wall-map",
            "wall-map-built",
            "wall-kpis",
            "wall-worst",
            "wall-ticker",
            "wall-feeds",
            "wall-clock",
            "wall-data-as-of",
            "wall-stale-banner",
            "national-map",
            "national-map-built",
            "national-kpis",
            "national-worst-provinces",
            "national-worst-communes",
            "national-feeds",
            "national-clock",
            "national-data-as-of",
            "national-stale-banner",
            "kiosk-body",
            "kiosk-step",
            "queue-totals",
            "queue-table",
            "queue-clock",
            "queue-data-as-of",
            "queue-stale-banner",
            "overdue-wall-totals",
            "overdue-wall-list",
            "overdue-wall-due-soon",
            "overdue-wall-clock",
            "commune-title",
            "commune-kpis",
            "commune-daily",
            "commune-queue",
            "commune-overdue",
            "commune-feed",
            "commune-alerts",
            "commune-clock",
            "commune-banner",
            "report-printed",
        ],
        P.WALL,
    ),
    # alerts page and leaders' review
    **dict.fromkeys(
        [
            "alerts-page",
            "alerts-list",
            "alerts-pager",
            "alerts-prev",
            "alerts-next",
            "alerts-clock",
            "review-grid",
            "review-total",
            "review-error",
            "review-clock",
        ],
        P.DETAILS,
    ),
    "alert-state": P.ACKNOWLEDGE,
    "alert-ack": P.ACKNOWLEDGE,
    "review-download": P.EXPORT,
}


def output_keys(body: Mapping[str, Any]) -> list[str]:
    """The output ids a ``/_dash-update-component`` request names (dict ids by their type)."""
    outputs = body.get("outputs")
    if isinstance(outputs, dict):
        outputs = [outputs]
    keys: list[str] = []
    if isinstance(outputs, list):
        for output in outputs:
            ident = output.get("id") if isinstance(output, dict) else None
            if isinstance(ident, dict):
                keys.append(str(ident.get("type", "")))
            elif isinstance(ident, str):
                keys.append(ident)
            else:
                keys.append("")
    return keys


def callback_permissions(body: Mapping[str, Any]) -> list[Permission] | None:
    """What a callback request needs; None when it names an output with no entry (refused)."""
    keys = output_keys(body)
    if not keys:
        return None
    needed = []
    for key in keys:
        permission = CALLBACK_PERMISSIONS.get(key)
        if permission is None:
            return None
        needed.append(permission)
    return needed


# Pages (the router), by path. A commune user's commune page and dossier pages are further
# limited to its commune by the queries.
_PAGE_PATTERNS: tuple[tuple[re.Pattern[str], Permission], ...] = (
    (re.compile(r"^/?$"), P.WALL),
    (re.compile(r"^/kiosk/?$"), P.WALL),
    (re.compile(r"^/queue/?$"), P.WALL),
    (re.compile(r"^/wall/overdue/?$"), P.WALL),
    (re.compile(r"^/commune/\d{5}/?$"), P.WALL),
    (re.compile(r"^/ranking/?$"), P.WALL),
    (re.compile(r"^/report/daily/?$"), P.WALL),
    (re.compile(r"^/alerts/?$"), P.DETAILS),
    (re.compile(r"^/overdue/?$"), P.DETAILS),
    (re.compile(r"^/dossier/.+$"), P.DETAILS),
)


def page_permission(path: str) -> Permission | None:
    """The permission a page needs; None for a path that is no page (the router's 404)."""
    for pattern, permission in _PAGE_PATTERNS:
        if pattern.match(path):
            return permission
    return None
