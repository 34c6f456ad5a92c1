"""The JSON read API (``/api/v1/...``), ``/healthz`` and ``/metrics`` on the wall's Flask server.

Views are thin: validate the query string, open a session, call :mod:`control_center.queries`,
serialise with :mod:`control_center.jsonutil` (instants in +07:00). Errors under ``/api/`` are
JSON ``{"error": {"status": N, "message": "..."}}`` and never a stack trace; other paths (the
Dash pages) keep Flask's and Dash's own handling.
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import flask
from flask import Blueprint, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from control_center import exports, periods, queries, ranking
from control_center.db import Database
from control_center.domain.calendar import WorkingCalendar
from control_center.jsonutil import dumps
from control_center.liveview import province_reading
from control_center.models import Alert
from control_center.national import cached_national_view, cached_province_view
from control_center.security import accounts, policy
from control_center.security.roles import Principal, current_principal
from control_center.settings import Settings

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
COMMUNE_CODE = re.compile(r"^\d{5}$")
PROVINCE_CODE = re.compile(r"^\d{2}$")
MAX_LIMIT = 500
MAX_ACK_BY = 200


class ApiError(Exception):
    """An error the client can act on; its message is safe to show."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    resp = Response(dumps(data), status=status, mimetype="application/json")
    # Live figures: a proxy or browser cache would show yesterday's backlog as current.
    resp.headers["Cache-Control"] = "no-store"
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": {"status": status, "message": message}}, status, headers)


# --- query-string validation ----------------------------------------------------------------


def _int_arg(name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError(400, f"{name} must be {bound}")
    return value


def _enum_arg(name: str, allowed: tuple[str, ...]) -> str | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if raw not in allowed:
        raise ApiError(400, f"{name} must be one of {', '.join(allowed)}")
    return raw


def _commune_arg() -> str | None:
    raw = request.args.get("commune")
    if raw is None or raw == "":
        return None
    if not COMMUNE_CODE.match(raw):
        raise ApiError(400, "commune must be a 5-digit commune code, e.g. 02269")
    return raw


def _is_db_outage(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


# --- metrics ----------------------------------------------------------------------------------


class _DatabaseGauges(Collector):
    """Figures read from the database at scrape time, so every gunicorn worker reports the same."""

    def __init__(self, db: Database, settings: Settings, calendar: WorkingCalendar, clock: Any):
        self.db, self.settings, self.calendar, self.clock = db, settings, calendar, clock

    def describe(self) -> list[Metric]:
        # Registering must not query the database (the app is built before any worker forks).
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("cc_database_up", "1 when the database answered this scrape")
        try:
            with self.db.session() as session:
                snap = queries.metrics_snapshot(session, self.settings, self.calendar, self.clock())
        except Exception as exc:
            log.warning("metrics: database unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, key, help_text in (
            ("cc_dossiers_open", "open", "Open dossiers in the province"),
            ("cc_dossiers_overdue", "overdue", "Open dossiers past their due date"),
            ("cc_dossiers_due_soon", "due_soon", "Open dossiers due within one working day"),
        ):
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], snap[key])
            yield gauge
        centres = GaugeMetricFamily("cc_centres", "Commune centres by feed state", labels=["state"])
        for state, n in snap["feed_states"].items():
            centres.add_metric([state], n)
        yield centres
        dead = GaugeMetricFamily(
            "cc_dead_letters", "Dead-lettered messages (all time) by reason", labels=["reason"]
        )
        for reason, n in snap["dead_letters"].items():
            dead.add_metric([reason], n)
        yield dead
        alerts = GaugeMetricFamily(
            "cc_alerts", "Alerts by state and level", labels=["state", "level"]
        )
        for (state, level), n in snap["alerts"].items():
            alerts.add_metric([state, str(level)], n)
        yield alerts
        if snap["collector_beat_age_s"] is not None:
            age = GaugeMetricFamily(
                "cc_collector_heartbeat_age_seconds", "Seconds since the collector's last beat"
            )
            age.add_metric([], snap["collector_beat_age_s"])
            yield age


class _Metrics:
    def __init__(self, db_gauges: _DatabaseGauges) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # Own registry per app: tests build several apps in one process.
        self.registry = CollectorRegistry()
        self.db_gauges = db_gauges
        self.requests = Counter(
            "cc_http_requests",
            "HTTP requests served",
            ["method", "endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cc_http_request_duration_seconds",
            "HTTP request latency",
            ["endpoint"],
            registry=self.registry,
        )
        self.registry.register(db_gauges)

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        # gunicorn workers each count their own requests; sum them from the shared directory.
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(self.db_gauges)
        return generate_latest(registry)


# --- OpenAPI ----------------------------------------------------------------------------------

_DT = {"type": "string", "format": "date-time", "example": "2026-11-26T09:30:00+07:00"}
_DT_NULL = {**_DT, "nullable": True}


def _obj(props: dict[str, Any], required: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(props)
    return out


def _num(nullable: bool = False, integer: bool = False, desc: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "integer" if integer else "number"}
    if nullable:
        out["nullable"] = True
    if desc:
        out["description"] = desc
    return out


def _str(nullable: bool = False, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "string", **extra}
    if nullable:
        out["nullable"] = True
    return out


_INT = _num(integer=True)
_RATE = _num(nullable=True, desc="fraction 0..1 over the last 30 days; null without data")


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3 description of the read API (served at /api/v1/openapi.json)."""
    ref = lambda name: {"$ref": f"#/components/schemas/{name}"}  # noqa: E731
    feed_states = ["live", "catching_up", "stale", "offline", "unknown"]
    summary_props = {
        "open": _INT,
        "overdue": _INT,
        "due_soon": _INT,
        "received_today": _INT,
        "received_online_today": _INT,
        "completed_today": _INT,
        "returned_today": _INT,
        "on_time_rate": _RATE,
        "online_rate": _RATE,
        "progress_score": _num(True, desc="Decision 766 settlement progress, 0..20"),
        "queue_waiting": _INT,
        "avg_wait_minutes": _num(True),
        "centres_online": _INT,
        "centres_stale": _INT,
        "centres_offline": _INT,
        "centres_total": _INT,
        "last_event_at": _DT_NULL,
        "data_as_of": _DT_NULL,
        "data_stale": {"type": "boolean"},
        "open_alerts": _INT,
        "dead_letters_today": _INT,
    }
    summary = _obj(
        {
            **summary_props,
            "trend": _obj(
                {
                    "received_today": _INT,
                    "received_online_today": _INT,
                    "completed_today": _INT,
                    "returned_today": _INT,
                    "on_time_rate": _RATE,
                    "online_rate": _RATE,
                    "dead_letters_today": _INT,
                    # Same day counters from yesterday's midnight up to now - 24 h, and the
                    # state figures of the summary snapshot nearest to now - 24 h (all null
                    # when there is none within 30 minutes).
                    "same_time_yesterday": _obj(
                        {
                            "received_today": _INT,
                            "received_online_today": _INT,
                            "completed_today": _INT,
                            "returned_today": _INT,
                            "open": _num(True, integer=True),
                            "overdue": _num(True, integer=True),
                            "due_soon": _num(True, integer=True),
                            "queue_waiting": _num(True, integer=True),
                            "centres_online": _num(True, integer=True),
                            "centres_stale": _num(True, integer=True),
                            "centres_offline": _num(True, integer=True),
                            "progress_score": _num(True),
                            "snapshot_at": _DT_NULL,
                        }
                    ),
                }
            ),
        }
    )
    commune_props = {
        "code": _str(example="02269"),
        "name": _str(example="Xã Thượng Lâm"),
        "province_code": _str(example="08"),
        "division_type": _str(),
        "open": _INT,
        "overdue": _INT,
        "due_soon": _INT,
        "queue_waiting": _INT,
        "avg_wait_minutes": _num(True),
        "longest_wait_minutes": _num(True),
        "counters_open": _INT,
        "on_time_rate": _RATE,
        "online_rate": _RATE,
        "received_today": _INT,
        "returned_today": _INT,
        "last_seen_at": _DT_NULL,
        "feed_state": _str(enum=feed_states),
        "lag_seconds": _num(True),
        "open_alerts": _INT,
    }
    province_props = {
        "code": _str(example="08"),
        "name": _str(example="Tuyên Quang"),
        "communes": _INT,
        "open": _INT,
        "overdue": _INT,
        "due_soon": _INT,
        "queue_waiting": _INT,
        "avg_wait_minutes": _num(True),
        "on_time_rate": _RATE,
        "online_rate": _RATE,
        "received_today": _INT,
        "returned_today": _INT,
        "centres_online": _INT,
        "centres_stale": _INT,
        "centres_offline": _INT,
        "centres_total": _INT,
        "open_alerts": _INT,
    }
    dossier_props = {
        "dossier_code": _str(example="000.00.22.H56-251123-0001"),
        "commune_code": _str(),
        "commune_name": _str(True),
        "procedure_code": _str(example="1.001193"),
        "procedure_name": _str(True),
        "sector": _str(True),
        "channel": _str(True, enum=["online", "counter", "post"]),
        "status": _num(integer=True, desc="1..10, National Public Service Portal codes"),
        "received_at": _DT,
        "due_at": _DT_NULL,
        "finished_at": _DT_NULL,
        "outcome": _str(
            True, enum=["early", "on_time", "overdue", "in_time", "overdue_open", "no_due"]
        ),
        "working_days_overdue": _num(True),
        "apology_issued": {"type": "boolean"},
        "extended": {"type": "boolean"},
        "officer": _str(True),
        "applicant_name": _str(
            True, description="masked (T*** T*** B***) unless the role may see personal data"
        ),
    }
    alert_props = {
        "alert_id": _str(format="uuid"),
        "kind": _str(),
        "level": _num(integer=True, desc="1 commune centre, 2 commune leadership, 3 province"),
        "commune_code": _str(True),
        "dossier_code": _str(True),
        "due_at": _DT_NULL,
        "raised_at": _DT,
        "state": _str(enum=list(queries.ALERT_STATES)),
        "message": _str(),
        "acknowledged_at": _DT_NULL,
        "acknowledged_by": _str(True),
        "resolved_at": _DT_NULL,
        "escalated_at": _DT_NULL,
    }
    dead_letter_props = {
        "id": _INT,
        "arrived_at": _DT,
        "topic": _str(),
        "commune_code": _str(True),
        "reason": _str(),
        "detail": _str(True),
        "event_id": _str(True),
        "payload_excerpt": _str(),
        "payload_size": _INT,
        "resolved_at": _DT_NULL,
    }

    def page(item: str) -> dict[str, Any]:
        return _obj(
            {
                "total": _INT,
                "limit": _INT,
                "offset": _INT,
                "items": {"type": "array", "items": ref(item)},
            }
        )

    def ok(schema: dict[str, Any], desc: str = "OK") -> dict[str, Any]:
        return {"description": desc, "content": {"application/json": {"schema": schema}}}

    err = {"$ref": "#/components/responses/Error"}
    province_q = {
        "name": "province",
        "in": "query",
        "description": "2-digit province code: that province only (national mode)",
        "schema": _str(example="08"),
    }
    commune_q = {
        "name": "commune",
        "in": "query",
        "schema": _str(pattern=r"^\d{5}$"),
        "description": "5-digit commune code",
    }
    limit_q = lambda default: {  # noqa: E731
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": default},
    }
    offset_q = {
        "name": "offset",
        "in": "query",
        "schema": {"type": "integer", "minimum": 0, "default": 0},
    }

    return {
        "openapi": "3.0.3",
        "info": {
            "title": "control-center read API",
            "version": "1",
            "description": (
                "Province operations wall for commune Public Administration Service Centres. "
                "Instants are ISO 8601 with the +07:00 offset; rates are fractions 0..1. "
                'Errors are {"error": {"status": N, "message": "..."}}.'
            ),
        },
        "paths": {
            f"{API_PREFIX}/summary": {
                "get": {
                    "summary": "Province totals (the country's with CC_SCOPE=national)",
                    "parameters": [province_q],
                    "responses": {"200": ok(ref("Summary")), "404": err, "500": err},
                }
            },
            f"{API_PREFIX}/communes": {
                "get": {
                    "summary": "One row per commune of the province (of the country when national)",
                    "parameters": [province_q],
                    "responses": {
                        "200": ok({"type": "array", "items": ref("CommuneRow")}),
                        "404": err,
                    },
                }
            },
            f"{API_PREFIX}/provinces": {
                "get": {
                    "summary": "One row per province (the 34 with CC_SCOPE=national), summed "
                    "from its communes",
                    "responses": {"200": ok({"type": "array", "items": ref("ProvinceRow")})},
                }
            },
            f"{API_PREFIX}/communes/{{code}}": {
                "get": {
                    "summary": "One commune with its last 30 days, overdue dossiers, queue and feed",
                    "parameters": [
                        {"name": "code", "in": "path", "required": True, "schema": _str()}
                    ],
                    "responses": {"200": ok(ref("CommuneDetail")), "404": err},
                }
            },
            f"{API_PREFIX}/dossiers": {
                "get": {
                    "summary": "Dossiers, paged, most urgent first",
                    "parameters": [
                        commune_q,
                        {
                            "name": "state",
                            "in": "query",
                            "schema": _str(enum=list(queries.DOSSIER_STATES)),
                        },
                        limit_q(50),
                        offset_q,
                    ],
                    "responses": {"200": ok(page("Dossier")), "400": err},
                }
            },
            f"{API_PREFIX}/dossiers/{{dossier_code}}": {
                "get": {
                    "summary": "One dossier with its clock and event timeline",
                    "parameters": [
                        {"name": "dossier_code", "in": "path", "required": True, "schema": _str()}
                    ],
                    "responses": {"200": ok(ref("DossierDetail")), "404": err},
                }
            },
            f"{API_PREFIX}/alerts": {
                "get": {
                    "summary": "Alerts, newest first",
                    "parameters": [
                        {
                            "name": "state",
                            "in": "query",
                            "schema": _str(enum=list(queries.ALERT_STATES)),
                        },
                        commune_q,
                        limit_q(100),
                    ],
                    "responses": {"200": ok({"type": "array", "items": ref("Alert")}), "400": err},
                }
            },
            f"{API_PREFIX}/alerts/{{alert_id}}/ack": {
                "post": {
                    "summary": "Acknowledge an alert (idempotent)",
                    "parameters": [
                        {
                            "name": "alert_id",
                            "in": "path",
                            "required": True,
                            "schema": _str(format="uuid"),
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": _obj(
                                    {"by": _str(maxLength=MAX_ACK_BY, example="Nguyễn Văn A")}
                                )
                            }
                        },
                    },
                    "responses": {
                        "200": ok(ref("Alert")),
                        "400": err,
                        "401": err,
                        "404": err,
                        "409": err,
                    },
                }
            },
            f"{API_PREFIX}/dead-letters": {
                "get": {
                    "summary": "Rejected messages with reasons, newest first",
                    "parameters": [
                        commune_q,
                        {"name": "reason", "in": "query", "schema": _str()},
                        limit_q(100),
                        offset_q,
                    ],
                    "responses": {
                        "200": ok(
                            {
                                "allOf": [
                                    page("DeadLetter"),
                                    _obj(
                                        {"counts": {"type": "object", "additionalProperties": _INT}}
                                    ),
                                ]
                            }
                        ),
                        "400": err,
                    },
                }
            },
            **_review_paths(commune_q, limit_q(100), offset_q, err, ok, page, ref),
            "/healthz": {
                "get": {
                    "summary": "Database reachable and the centres' feed fresh (docs/operations.md)",
                    "parameters": [
                        {
                            "name": "check",
                            "in": "query",
                            "schema": _str(enum=["database", "feed"]),
                            "description": "database: the database check alone (load balancers)",
                        }
                    ],
                    "responses": {
                        "200": ok(
                            _obj(
                                {
                                    "status": _str(enum=["ok"]),
                                    "database": _str(enum=["ok"]),
                                    "feed": _str(enum=["ok"]),
                                    "checks": {"type": "object"},
                                },
                                required=False,
                            )
                        ),
                        "503": ok(
                            _obj(
                                {
                                    "status": _str(),
                                    "database": _str(enum=["ok", "unreachable", "slow"]),
                                    "feed": _str(enum=["ok", "stale", "no_data"]),
                                    "failed": {"type": "array", "items": _str()},
                                    "checks": {"type": "object"},
                                },
                                required=False,
                            ),
                            "a check failed",
                        ),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text exposition format"}},
                }
            },
        },
        "components": {
            "schemas": {
                "Summary": summary,
                "CommuneRow": _obj(commune_props),
                "ProvinceRow": _obj(province_props),
                "CommuneDetail": {
                    "allOf": [
                        ref("CommuneRow"),
                        _obj(
                            {
                                "daily": {"type": "array", "items": {"type": "object"}},
                                "overdue_dossiers": {"type": "array", "items": ref("Dossier")},
                                "queue_by_hour": {"type": "array", "items": {"type": "object"}},
                                "feed": {"type": "object"},
                                "alerts": {"type": "array", "items": ref("Alert")},
                            }
                        ),
                    ]
                },
                "Dossier": _obj(dossier_props),
                "DossierDetail": {
                    "allOf": [
                        ref("Dossier"),
                        _obj(
                            {
                                "state": _str(
                                    enum=["open", "due_soon", "overdue", "finished", "rejected"]
                                ),
                                "paused_seconds": _num(desc="working seconds the clock was paused"),
                                "apology": {"type": "object", "nullable": True},
                                "extension": {"type": "object", "nullable": True},
                                "flags": {"type": "array", "items": _str()},
                                "timeline": {"type": "array", "items": {"type": "object"}},
                                "alerts": {"type": "array", "items": ref("Alert")},
                            }
                        ),
                    ]
                },
                "Alert": _obj(alert_props),
                "DeadLetter": _obj(dead_letter_props),
                "Error": _obj({"error": _obj({"status": _INT, "message": _str()})}),
            },
            "responses": {
                "Error": {
                    "description": "Error",
                    "content": {"application/json": {"schema": ref("Error")}},
                }
            },
            # docs/security.md: a browser session or an API token (control-center tokens).
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _review_paths(
    commune_q: dict[str, Any],
    limit: dict[str, Any],
    offset: dict[str, Any],
    err: dict[str, Any],
    ok: Callable[..., dict[str, Any]],
    page: Callable[[str], dict[str, Any]],
    ref: Callable[[str], dict[str, Any]],
) -> dict[str, Any]:
    """The leaders' review: the overdue grid's rows (JSON) and the same list as xlsx / CSV."""
    yes_no = _str(enum=sorted(queries.REVIEW_YES_NO))
    filters = [
        {
            "name": "state",
            "in": "query",
            "schema": _str(enum=list(queries.REVIEW_STATES)),
            "description": "attention (default) = overdue + due within one working day",
        },
        commune_q,
        {"name": "sector", "in": "query", "schema": _str()},
        {"name": "procedure", "in": "query", "schema": _str(), "description": "procedure code"},
        {"name": "channel", "in": "query", "schema": _str(enum=["online", "counter", "post"])},
        {"name": "officer", "in": "query", "schema": _str(), "description": "part of the name"},
        {"name": "apology", "in": "query", "schema": yes_no},
        {"name": "extended", "in": "query", "schema": yes_no},
        {
            "name": "level",
            "in": "query",
            "schema": {"type": "integer", "minimum": 0, "maximum": 3},
            "description": "highest unresolved alert level; 0 = none",
        },
        {
            "name": "sort",
            "in": "query",
            "schema": _str(),
            "description": "comma-separated keys, '-' for descending: "
            + ", ".join(queries.REVIEW_SORT_KEYS),
        },
    ]
    day = _str(format="date")
    period_params = [
        {"name": "period", "in": "query", "schema": _str(enum=list(periods.PERIODS))},
        {"name": "from", "in": "query", "schema": day},
        {"name": "to", "in": "query", "schema": day},
        {"name": "group", "in": "query", "schema": _str(enum=list(periods.GROUPS))},
    ]
    review_item = {
        "allOf": [ref("Dossier"), _obj({"escalation_level": _num(integer=True)})],
    }
    paged = page("Dossier")
    paged["properties"]["items"] = {"type": "array", "items": review_item}

    def download(mime: str, what: str) -> dict[str, Any]:
        return {
            "get": {
                "summary": f"The review list as {what} (at most 200,000 rows)",
                "parameters": filters,
                "responses": {
                    "200": {"description": what, "content": {mime: {}}},
                    "400": err,
                },
            }
        }

    return {
        f"{API_PREFIX}/review": {
            "get": {
                "summary": "Overdue and nearly-due dossiers for review, filtered, sorted, paged",
                "parameters": [*filters, limit, offset],
                "responses": {"200": ok(paged), "400": err},
            }
        },
        f"{API_PREFIX}/review.xlsx": download(exports.XLSX_MIME, "Excel workbook"),
        f"{API_PREFIX}/review.csv": download("text/csv", "CSV, UTF-8 with BOM"),
        f"{API_PREFIX}/periods": {
            "get": {
                "summary": "Period figures (received, finished early/on time/late, in progress, "
                "rates, average processing time) for the province and per commune or sector",
                "parameters": period_params,
                "responses": {"200": ok({"type": "object"}), "400": err},
            }
        },
        f"{API_PREFIX}/periods.xlsx": {
            "get": {
                "summary": "Period figures as an Excel workbook",
                "parameters": period_params,
                "responses": {"200": {"description": "xlsx"}, "400": err},
            }
        },
        f"{API_PREFIX}/periods.csv": {
            "get": {
                "summary": "Period figures as CSV (UTF-8 with BOM)",
                "parameters": period_params,
                "responses": {"200": {"description": "csv"}, "400": err},
            }
        },
        f"{API_PREFIX}/ranking": {
            "get": {
                "summary": "Communes ranked by the computable parts of the Decision 766 index",
                "parameters": period_params[:3],
                "responses": {"200": ok({"type": "object"}), "400": err},
            }
        },
        f"{API_PREFIX}/audit": {
            "get": {
                "summary": "Audit log: sign-ins, acknowledgements, exports (admin role)",
                "parameters": [
                    {"name": "action", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    {"name": "offset", "in": "query", "schema": {"type": "integer"}},
                ],
                "responses": {"200": ok({"type": "array", "items": {"type": "object"}})},
            }
        },
    }


# --- registration -----------------------------------------------------------------------------


def _acknowledge(session: Any, alert: Alert, by: str, at: datetime) -> None:
    """Prefer the alert engine's acknowledge (it also notifies); fall back to the state change."""
    acknowledge: Callable[..., Any] | None
    try:
        from alerts.acks import acknowledge
    except ImportError:
        acknowledge = None
    if acknowledge is not None:
        acknowledge(session, alert.alert_id, by, at)
        return
    alert.state = "acknowledged"
    alert.acknowledged_at = at
    alert.acknowledged_by = by


def register_api(
    server: flask.Flask,
    db: Database,
    settings: Settings,
    calendar: WorkingCalendar,
    clock: Callable[[], datetime] | None = None,
) -> None:
    """Add the read API, /healthz and /metrics to ``server`` (the Dash app's Flask server)."""
    now: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
    metrics = _Metrics(_DatabaseGauges(db, settings, calendar, now))
    bp = Blueprint("control_center_api", __name__)

    def principal() -> Principal:
        return current_principal(settings)

    def audit(action: str, target: str | None = None, **detail: Any) -> None:
        accounts.audit_request(db, principal(), action, target, **detail)

    def in_scope(commune_code: str | None) -> str | None:
        """A commune the caller asks for by name must be one it may see (403 otherwise)."""
        if commune_code is not None and not principal().scope.allows(commune_code):
            raise ApiError(403, f"commune {commune_code} is outside what this account may see")
        return commune_code

    def endpoint(view: Callable[..., Any]) -> Callable[..., Response]:
        # Every view names its permission in control_center.security.policy (default deny:
        # a view without one fails here, at start, not in front of a user).
        needed = policy.api_permission(view.__name__)

        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Response:
            who = principal()
            if not who.is_authenticated:
                return error_response(401, "sign in or send a bearer token")
            if not who.can(needed):
                return error_response(403, f"the {who.role} role may not read this")
            try:
                result = view(*args, **kwargs)
            except ApiError as exc:
                return error_response(exc.status, exc.message, exc.headers)
            except HTTPException:
                raise
            except Exception as exc:
                if _is_db_outage(exc):
                    log.error("%s %s: database unavailable: %s", request.method, request.path, exc)
                    return error_response(503, "database unavailable, try again shortly")
                log.exception("%s %s failed", request.method, request.path)
                return error_response(500, "internal error")
            return result if isinstance(result, Response) else json_response(result)

        return wrapped

    def province_settings() -> Settings:
        """``?province=08``: the figures of one province (national mode, or the configured one)."""
        raw = request.args.get("province")
        if raw is None or raw == "":
            return settings
        if not PROVINCE_CODE.match(raw) or not (settings.national or raw == settings.province):
            raise ApiError(404, f"no province {raw!r} here")
        try:
            return settings.for_province(raw)
        except ValueError:
            raise ApiError(404, f"no province {raw!r} here") from None

    @bp.get(f"{API_PREFIX}/summary")
    @endpoint
    def summary() -> Any:
        scoped = province_settings()
        with db.session() as session:
            if scoped.national:  # the country: the figures the national wall shows
                return cached_national_view(session, scoped, calendar, now())["summary"]
            if settings.national:  # a province of the country: its wall's shared reading
                return cached_province_view(session, scoped, calendar, now())["summary"]
            return province_reading(session, scoped, calendar, now())["summary"]

    @bp.get(f"{API_PREFIX}/communes")
    @endpoint
    def communes() -> Any:
        scoped = province_settings()
        with db.session() as session:
            if settings.national and not scoped.national:
                return cached_province_view(session, scoped, calendar, now())["communes"]
            return province_reading(session, scoped, calendar, now())["communes"]

    @bp.get(f"{API_PREFIX}/provinces")
    @endpoint
    def provinces() -> Any:
        with db.session() as session:
            if settings.national:
                return cached_national_view(session, settings, calendar, now())["provinces"]
            return queries.province_rows(session, settings, calendar, now())

    @bp.get(f"{API_PREFIX}/communes/<code>")
    @endpoint
    def commune(code: str) -> Any:
        if not COMMUNE_CODE.match(code):
            raise ApiError(404, f"no commune {code!r} in province {settings.province}")
        in_scope(code)
        with db.session() as session:
            detail = queries.commune_detail(
                session, settings, calendar, code, now(), scope=principal().scope
            )
        if detail is None:
            raise ApiError(404, f"no commune {code!r} in province {settings.province}")
        return detail

    @bp.get(f"{API_PREFIX}/dossiers")
    @endpoint
    def dossiers() -> Any:
        commune_code = in_scope(_commune_arg())
        state = _enum_arg("state", queries.DOSSIER_STATES)
        limit = _int_arg("limit", 50, 1, MAX_LIMIT)
        offset = _int_arg("offset", 0, 0)
        with db.session() as session:
            return queries.list_dossiers(
                session,
                settings,
                calendar,
                now(),
                commune=commune_code,
                state=state,
                limit=limit,
                offset=offset,
                scope=principal().scope,
            )

    @bp.get(f"{API_PREFIX}/dossiers/<dossier_code>")
    @endpoint
    def dossier(dossier_code: str) -> Any:
        with db.session() as session:
            detail = queries.dossier_detail(
                session, settings, calendar, dossier_code, now(), scope=principal().scope
            )
        if detail is None:
            raise ApiError(404, f"no dossier {dossier_code!r}")
        return detail

    @bp.get(f"{API_PREFIX}/alerts")
    @endpoint
    def alerts() -> Any:
        state = _enum_arg("state", queries.ALERT_STATES)
        commune_code = in_scope(_commune_arg())
        limit = _int_arg("limit", 100, 1, MAX_LIMIT)
        with db.session() as session:
            return queries.list_alerts(
                session, state=state, commune=commune_code, limit=limit, scope=principal().scope
            )

    @bp.post(f"{API_PREFIX}/alerts/<alert_id>/ack")
    @endpoint
    def acknowledge_alert(alert_id: str) -> Any:
        who = principal()
        if who.kind == "open":
            _check_token(settings)
        body = request.get_json(silent=True)
        by = body.get("by") if isinstance(body, dict) else None
        if by is None and who.kind != "open":
            by = who.name  # a signed-in user or token acknowledges in its own name
        if not isinstance(by, str) or not by.strip():
            raise ApiError(400, 'body must be JSON {"by": "<who acknowledges>"}')
        if len(by) > MAX_ACK_BY:
            raise ApiError(400, f"by must be at most {MAX_ACK_BY} characters")
        try:
            key = uuid.UUID(alert_id)
        except ValueError:
            raise ApiError(404, f"no alert {alert_id!r}") from None
        with db.session() as session, session.begin():
            alert = session.scalar(select(Alert).where(Alert.alert_id == key).with_for_update())
            if alert is None:
                raise ApiError(404, f"no alert {alert_id!r}")
            if not who.scope.allows(alert.commune_code):
                raise ApiError(403, "this alert belongs to another commune")
            if alert.state == "resolved":
                raise ApiError(409, "the alert is already resolved")
            # Acknowledging twice keeps the first acknowledgement: who saw it first matters.
            if alert.state == "open":
                _acknowledge(session, alert, by.strip(), now())
                accounts.audit(
                    session,
                    "alert_ack",
                    accounts.Actor(who.name, who.role, request.remote_addr),
                    str(alert.alert_id),
                    by=by.strip(),
                    commune_code=alert.commune_code,
                    via="api",
                )
                session.flush()
                session.refresh(alert)
            return queries.alert_payload(alert)

    @bp.get(f"{API_PREFIX}/dead-letters")
    @endpoint
    def dead_letters() -> Any:
        commune_code = in_scope(_commune_arg())
        reason = request.args.get("reason") or None
        if reason is not None and len(reason) > 64:
            raise ApiError(400, "reason must be at most 64 characters")
        limit = _int_arg("limit", 100, 1, MAX_LIMIT)
        offset = _int_arg("offset", 0, 0)
        with db.session() as session:
            return queries.list_dead_letters(
                session,
                commune=commune_code,
                reason=reason,
                limit=limit,
                offset=offset,
                scope=principal().scope,
            )

    # --- leaders' review: the overdue grid's rows and their exports (issue 5) ---

    def review_filters() -> queries.ReviewFilters:
        try:
            filters = queries.review_filters_from_params(request.args)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        in_scope(filters.commune)
        return filters

    @bp.get(f"{API_PREFIX}/review")
    @endpoint
    def review() -> Any:
        filters = review_filters()
        limit = _int_arg("limit", 100, 1, MAX_LIMIT)
        offset = _int_arg("offset", 0, 0)
        with db.session() as session:
            return queries.review_rows(
                session,
                settings,
                calendar,
                now(),
                filters,
                offset=offset,
                limit=limit,
                scope=principal().scope,
            )

    def review_export(fmt: str) -> Response:
        filters = review_filters()
        with db.session() as session:
            export = exports.export_review(
                session, settings, calendar, now(), filters, fmt, scope=principal().scope
            )
        audit("export", "review", format=fmt, rows=export.written, filters=filters.to_params())
        resp = flask.send_file(
            export.file,
            mimetype=export.mimetype,
            as_attachment=True,
            download_name=export.filename,
        )
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Total-Count"] = str(export.total)
        if export.truncated:
            resp.headers["X-Export-Truncated"] = str(export.written)
        return resp

    @bp.get(f"{API_PREFIX}/review.xlsx")
    @endpoint
    def review_xlsx() -> Any:
        return review_export("xlsx")

    @bp.get(f"{API_PREFIX}/review.csv")
    @endpoint
    def review_csv() -> Any:
        return review_export("csv")

    # --- period figures (issue 5) ---

    def _date_arg(name: str) -> date | None:
        raw = request.args.get(name)
        if raw is None or raw == "":
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise ApiError(400, f"{name} must be a date, YYYY-MM-DD") from None

    def period_args() -> tuple[date, date, str, str]:
        date_from, date_to = _date_arg("from"), _date_arg("to")
        default = "custom" if date_from or date_to else "today"
        period = _enum_arg("period", periods.PERIODS) or default
        group = _enum_arg("group", periods.GROUPS) or "province"
        today = queries.local_today(now())
        try:
            start, end = periods.period_range(period, today, date_from, date_to)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return start, end, period, group

    @bp.get(f"{API_PREFIX}/periods")
    @endpoint
    def period_view() -> Any:
        start, end, period, group = period_args()
        scoped = province_settings()
        with db.session() as session:
            figures = periods.period_figures(session, scoped, calendar, now(), start, end, group)
        return {"period": period, **figures}

    def period_export(fmt: str) -> Response:
        start, end, _period, group = period_args()
        scoped = province_settings()
        at = now()
        with db.session() as session:
            figures = periods.period_figures(session, scoped, calendar, at, start, end, group)
        whole = "Toàn quốc" if scoped.national else "Toàn tỉnh"
        total = {"key": "", "name": f"{whole} {start:%d/%m/%Y}-{end:%d/%m/%Y}"}
        rows = [{**total, **figures["total"]}, *figures["rows"]]
        out = exports.spooled()
        exports.write_export(fmt, rows, exports.PERIOD_COLUMNS, out)
        out.seek(0)
        audit("export", "periods", format=fmt, start=start, end=end, group=group)
        resp = flask.send_file(
            out,
            mimetype=exports.XLSX_MIME if fmt == "xlsx" else exports.CSV_MIME,
            as_attachment=True,
            download_name=exports.export_filename(f"so-lieu-{start:%Y%m%d}-{end:%Y%m%d}", at, fmt),
        )
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @bp.get(f"{API_PREFIX}/periods.xlsx")
    @endpoint
    def periods_xlsx() -> Any:
        return period_export("xlsx")

    @bp.get(f"{API_PREFIX}/periods.csv")
    @endpoint
    def periods_csv() -> Any:
        return period_export("csv")

    @bp.get(f"{API_PREFIX}/ranking")
    @endpoint
    def ranking_view() -> Any:
        start, end, period, _group = period_args()
        scoped = province_settings()
        with db.session() as session:
            result = ranking.commune_ranking(session, scoped, calendar, now(), start, end)
        return {"period": period, **result}

    @bp.get(f"{API_PREFIX}/openapi.json")
    @endpoint
    def openapi() -> Any:
        return openapi_document()

    @bp.get(f"{API_PREFIX}/audit")
    @endpoint
    def audit_log() -> Any:
        """Sign-ins, acknowledgements, exports and account changes, newest first (admin)."""
        action = request.args.get("action") or None
        if action is not None and len(action) > 32:
            raise ApiError(400, "action must be at most 32 characters")
        limit = _int_arg("limit", 100, 1, MAX_LIMIT)
        offset = _int_arg("offset", 0, 0)
        with db.session() as session:
            return accounts.audit_rows(session, action=action, limit=limit, offset=offset)

    @bp.get("/healthz")
    def healthz() -> Response:
        from control_center.health import CHECKS, check_health

        only = request.args.get("check") or None
        if only is not None and only not in CHECKS:
            return error_response(400, f"check must be one of {', '.join(CHECKS)}")
        healthy, body = check_health(db, settings, now(), only)
        return json_response(body, 200 if healthy else 503)

    @bp.get("/metrics")
    def metrics_view() -> Response:
        return Response(metrics.render(), mimetype=CONTENT_TYPE_LATEST)

    server.register_blueprint(bp)
    # Dash routes every unknown path ("/<path:path>") to its page: without this an unknown
    # /api/ path, or a wrong method on a real one, would answer 200 with the wall's HTML.
    api_routes = Map(
        [
            Rule(r.rule, endpoint=r.endpoint, methods=r.methods)
            for r in server.url_map.iter_rules()
            if r.endpoint.startswith(f"{bp.name}.") and r.rule.startswith("/api/")
        ]
    ).bind("api")

    @server.before_request
    def _start_timer_and_claim_api_paths() -> Response | None:
        g.cc_request_started = time.perf_counter()
        if not request.path.startswith("/api/") or request.blueprint == bp.name:
            return None
        try:
            api_routes.match(request.path, method=request.method)
        except MethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.valid_methods or ()))
            return error_response(
                405, f"method {request.method} not allowed here", {"Allow": allowed}
            )
        except NotFound:
            return error_response(404, "no such API resource")
        return None

    @server.after_request
    def _count_request(response: Response) -> Response:
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        if rule == DASH_CALLBACK_PATH:
            rule = _callback_endpoint(request.get_json(silent=True))
        metrics.requests.labels(request.method, rule, str(response.status_code)).inc()
        started = g.get("cc_request_started")
        if started is not None:
            metrics.latency.labels(rule).observe(time.perf_counter() - started)
        return response

    def http_error(exc: HTTPException) -> Any:
        if not request.path.startswith("/api/"):
            return exc  # the Dash pages keep Flask's own error pages
        headers = {}
        allowed = getattr(exc, "valid_methods", None)
        if exc.code == 405 and allowed:
            headers["Allow"] = ", ".join(allowed)
        message = {
            404: "no such API resource",
            405: f"method {request.method} not allowed here",
            500: "internal error",
        }.get(exc.code or 500, exc.description or exc.name)
        return error_response(exc.code or 500, message, headers)

    server.register_error_handler(HTTPException, http_error)


DASH_CALLBACK_PATH = "/_dash-update-component"


def _callback_endpoint(body: Any) -> str:
    """``/_dash-update-component#wall-map``: every Dash callback shares one route, and the
    wall's refresh, a page's routing and an export differ by orders of magnitude; the first
    output's component id tells them apart (a few dozen callbacks: bounded label values)."""
    output = body.get("output") if isinstance(body, dict) else None
    if not isinstance(output, str) or not output:
        return DASH_CALLBACK_PATH
    first = output.strip(".").split("...", 1)[0]
    component = first.rsplit(".", 1)[0][:80]
    return f"{DASH_CALLBACK_PATH}#{component}"


def _check_token(settings: Settings) -> None:
    """Writes need the bearer token when CC_API_TOKEN is set (reads stay open to the wall)."""
    token = getattr(settings, "api_token", None)
    if token is None:
        return
    expected = token.get_secret_value() if hasattr(token, "get_secret_value") else str(token)
    if not expected:
        return
    given = request.headers.get("Authorization", "")
    if not given.startswith("Bearer "):
        raise ApiError(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.removeprefix("Bearer ").encode(), expected.encode()):
        raise ApiError(403, "token not accepted")
