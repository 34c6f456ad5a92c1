"""HTTP contract of the read API, /healthz and /metrics (Flask test client, SQLite and PostgreSQL)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dash
import flask
import pytest
from dash import html
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from control_center import queries
from control_center.api import openapi_document, register_api
from control_center.db import Database, make_engine, session_factory
from control_center.domain.calendar import load_calendar
from control_center.domain.dossier import RETURNED
from control_center.migrate import upgrade_schema
from control_center.models import Alert, DeadLetter, DeadLetterCount, DossierEvent
from control_center.settings import Settings, load_settings
from tests.test_queries import HA_GIANG_2, THUONG_LAM, World, seed_communes, vn

NOW = vn(11, 27, 10)
OFFSET = re.compile(r"\+07:00$")
UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/nowhere"


@pytest.fixture
def settings(db_url: str) -> Settings:
    return load_settings(database_url=db_url, province="08")


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    engine = make_engine(db_url)
    upgrade_schema(engine)
    with session_factory(engine)() as s:
        seed_communes(s)
        yield s
    engine.dispose()


def make_client(settings: Settings, server: flask.Flask | None = None) -> FlaskClient:
    server = server or flask.Flask("test_api")
    register_api(
        server, Database(settings.database_url), settings, load_calendar(), clock=lambda: NOW
    )
    return server.test_client()


@pytest.fixture
def data(session: Session) -> dict[str, Any]:
    """Two overdue dossiers in Thượng Lâm, one in time in Hà Giang 2, one returned, alerts,
    dead letters, a live feed and a ticket queue."""
    w = World(session)
    late = w.dossier(THUONG_LAM, received_at=vn(11, 10, 8), due_at=vn(11, 17, 17))
    later = w.dossier(THUONG_LAM, received_at=vn(11, 12, 8), due_at=vn(11, 19, 17))
    w.dossier(HA_GIANG_2, received_at=vn(11, 27, 8), due_at=vn(12, 4, 17), channel="counter")
    w.dossier(
        THUONG_LAM,
        received_at=vn(11, 20, 8),
        due_at=vn(11, 27, 17),
        status=RETURNED,
        finished_at=vn(11, 27, 9),
        outcome="early",
    )
    w.feed(THUONG_LAM, arrived_at=NOW - timedelta(seconds=10))
    w.ticket(
        THUONG_LAM, "A001", issued_at=vn(11, 27, 8), called_at=vn(11, 27, 8, 12), state="completed"
    )
    w.ticket(THUONG_LAM, "A002", issued_at=vn(11, 27, 9, 30))
    alert = w.alert(THUONG_LAM, raised_at=NOW - timedelta(hours=1), dossier_code=late.dossier_code)
    resolved = w.alert(THUONG_LAM, raised_at=NOW - timedelta(hours=5), state="resolved")
    w.commit()
    session.add(
        DossierEvent(
            event_id="ev-1",
            dossier_code=late.dossier_code,
            commune_code=THUONG_LAM,
            type="received",
            occurred_at=vn(11, 10, 8),
            arrived_at=vn(11, 10, 8, 1),
            payload={"procedure_code": "1.001193", "applicant_name": "Trần Thị B"},
        )
    )
    for i in range(3):
        session.add(
            DeadLetter(
                arrived_at=NOW - timedelta(minutes=i),
                topic=f"dvc/v1/08/{THUONG_LAM}/dossier",
                commune_code=THUONG_LAM,
                reason="invalid_json",
                detail="Expecting value",
                payload_excerpt="{not json",
                payload_size=9,
            )
        )
    session.add(DeadLetterCount(commune_code=THUONG_LAM, reason="invalid_json", count=3))
    session.commit()
    return {
        "late": late.dossier_code,
        "later": later.dossier_code,
        "alert": str(alert.alert_id),
        "resolved": str(resolved.alert_id),
    }


@pytest.fixture
def client(settings: Settings, data: dict[str, Any]) -> FlaskClient:
    return make_client(settings)


def assert_error(resp: Any, status: int) -> str:
    assert resp.status_code == status
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert set(body) == {"error"}
    assert body["error"]["status"] == status
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    assert "Traceback" not in resp.get_data(as_text=True)
    return message


# --- read endpoints -------------------------------------------------------------------------


def test_summary(client: FlaskClient) -> None:
    resp = client.get("/api/v1/summary")
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.get_json()
    for key in (
        "open", "overdue", "due_soon", "received_today", "completed_today", "on_time_rate",
        "online_rate", "queue_waiting", "centres_online", "centres_stale", "last_event_at",
    ):  # fmt: skip
        assert key in body, key
    assert (body["open"], body["overdue"], body["received_today"], body["completed_today"]) == (
        3,
        2,
        1,
        1,
    )
    assert body["centres_online"] == 1 and body["centres_total"] == 124
    assert body["queue_waiting"] == 1 and body["avg_wait_minutes"] == 12.0
    assert OFFSET.search(body["last_event_at"])
    assert body["last_event_at"] == "2026-11-27T09:59:49+07:00"


def test_communes(client: FlaskClient) -> None:
    rows = client.get("/api/v1/communes").get_json()
    assert len(rows) == 124
    tl = next(r for r in rows if r["code"] == THUONG_LAM)
    for key in (
        "code", "name", "open", "overdue", "due_soon", "queue_waiting", "avg_wait_minutes",
        "on_time_rate", "online_rate", "last_seen_at", "feed_state",
    ):  # fmt: skip
        assert key in tl, key
    assert (tl["name"], tl["overdue"], tl["feed_state"]) == ("Xã Thượng Lâm", 2, "live")
    assert tl["last_seen_at"] == "2026-11-27T09:59:50+07:00"


def test_one_commune(client: FlaskClient, data: dict[str, Any]) -> None:
    body = client.get(f"/api/v1/communes/{THUONG_LAM}").get_json()
    assert body["code"] == THUONG_LAM and body["overdue"] == 2
    assert [d["dossier_code"] for d in body["overdue_dossiers"]] == [data["late"], data["later"]]
    assert len(body["daily"]) == 30 and body["daily"][-1]["day"] == "2026-11-27"
    assert body["feed"]["state"] == "live"
    assert_error(client.get("/api/v1/communes/99999"), 404)
    assert_error(client.get("/api/v1/communes/abc"), 404)


def test_dossiers_paging_and_filters(client: FlaskClient, data: dict[str, Any]) -> None:
    body = client.get(f"/api/v1/dossiers?commune={THUONG_LAM}&state=overdue&limit=1").get_json()
    assert body["total"] == 2 and body["limit"] == 1 and body["offset"] == 0
    assert [d["dossier_code"] for d in body["items"]] == [data["late"]]
    page2 = client.get(
        f"/api/v1/dossiers?commune={THUONG_LAM}&state=overdue&limit=1&offset=1"
    ).get_json()
    assert [d["dossier_code"] for d in page2["items"]] == [data["later"]]
    item = page2["items"][0]
    assert OFFSET.search(item["received_at"]) and OFFSET.search(item["due_at"])
    assert item["due_at"] == "2026-11-19T17:00:00+07:00"
    assert client.get("/api/v1/dossiers").get_json()["total"] == 4
    assert client.get("/api/v1/dossiers?state=finished").get_json()["total"] == 1
    assert client.get(f"/api/v1/dossiers?commune={HA_GIANG_2}&state=open").get_json()["total"] == 1
    assert client.get("/api/v1/dossiers?limit=500").status_code == 200


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("state=late", "state"),
        ("commune=123", "commune"),
        ("commune=02269%27%20or%201=1", "commune"),
    ],
)
def test_dossiers_bad_parameters_are_400(client: FlaskClient, query: str, mentions: str) -> None:
    message = assert_error(client.get(f"/api/v1/dossiers?{query}"), 400)
    assert mentions in message


def test_one_dossier(client: FlaskClient, data: dict[str, Any]) -> None:
    body = client.get(f"/api/v1/dossiers/{data['late']}").get_json()
    assert body["state"] == "overdue"
    assert body["due_at"] == "2026-11-17T17:00:00+07:00"
    assert [e["type"] for e in body["timeline"]] == ["received"]
    assert "applicant_name" not in body["timeline"][0]["details"]
    assert_error(client.get("/api/v1/dossiers/000.00.22.H56-000000-9999"), 404)


def test_alerts(client: FlaskClient, data: dict[str, Any]) -> None:
    everything = client.get("/api/v1/alerts").get_json()
    assert len(everything) == 2
    open_ = client.get("/api/v1/alerts?state=open").get_json()
    assert [a["alert_id"] for a in open_] == [data["alert"]]
    assert open_[0]["dossier_code"] == data["late"] and OFFSET.search(open_[0]["raised_at"])
    assert client.get(f"/api/v1/alerts?commune={HA_GIANG_2}").get_json() == []
    assert "state" in assert_error(client.get("/api/v1/alerts?state=closed"), 400)


def test_dead_letters(client: FlaskClient) -> None:
    body = client.get(f"/api/v1/dead-letters?commune={THUONG_LAM}&limit=2").get_json()
    assert body["total"] == 3 and len(body["items"]) == 2
    assert body["counts"] == {"invalid_json": 3}
    assert body["items"][0]["reason"] == "invalid_json" and OFFSET.search(
        body["items"][0]["arrived_at"]
    )
    assert client.get("/api/v1/dead-letters?reason=too_large").get_json()["total"] == 0
    assert_error(client.get("/api/v1/dead-letters?offset=x"), 400)


# --- acknowledging alerts -------------------------------------------------------------------


def test_ack_records_who_and_when_once(
    client: FlaskClient, data: dict[str, Any], session: Session
) -> None:
    resp = client.post(f"/api/v1/alerts/{data['alert']}/ack", json={"by": "Nguyễn Văn A"})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["state"] == "acknowledged" and body["acknowledged_by"] == "Nguyễn Văn A"
    assert body["acknowledged_at"] == "2026-11-27T10:00:00+07:00"
    again = client.post(f"/api/v1/alerts/{data['alert']}/ack", json={"by": "Someone else"})
    assert again.status_code == 200 and again.get_json()["acknowledged_by"] == "Nguyễn Văn A"
    session.expire_all()
    assert session.get(Alert, uuid.UUID(data["alert"])).state == "acknowledged"
    assert [a["alert_id"] for a in client.get("/api/v1/alerts?state=open").get_json()] == []


def test_ack_errors(client: FlaskClient, data: dict[str, Any]) -> None:
    url = f"/api/v1/alerts/{data['alert']}/ack"
    assert_error(client.post(url, json={}), 400)
    assert_error(client.post(url, json={"by": "  "}), 400)
    assert_error(client.post(url, data="by=me"), 400)
    assert_error(client.post(url, json={"by": "x" * 201}), 400)
    assert_error(
        client.post("/api/v1/alerts/3f2b8c1e-0000-4000-8000-000000000000/ack", json={"by": "a"}),
        404,
    )
    assert_error(client.post("/api/v1/alerts/not-a-uuid/ack", json={"by": "a"}), 404)
    assert_error(client.post(f"/api/v1/alerts/{data['resolved']}/ack", json={"by": "a"}), 409)
    resp = client.get(url)
    assert_error(resp, 405)
    assert "POST" in resp.headers["Allow"]


def test_ack_needs_the_token_when_one_is_set(db_url: str, data: dict[str, Any]) -> None:
    settings = load_settings(database_url=db_url, province="08", api_token="s3cret")
    client = make_client(settings)
    url = f"/api/v1/alerts/{data['alert']}/ack"
    assert_error(client.post(url, json={"by": "a"}), 401)
    assert_error(client.post(url, json={"by": "a"}, headers={"Authorization": "Bearer nope"}), 403)
    ok = client.post(url, json={"by": "a"}, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert client.get("/api/v1/summary").status_code == 200  # reads stay open to the wall


# --- errors, health, metrics, OpenAPI -------------------------------------------------------


def test_unknown_api_path_is_json_404(client: FlaskClient) -> None:
    assert_error(client.get("/api/v1/nothing-here"), 404)
    assert_error(client.delete("/api/v1/summary"), 405)


def test_internal_error_is_json_without_stack_trace(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("secret internals /home/app/control_center/queries.py line 42")

    monkeypatch.setattr(queries, "province_summary", broken)
    resp = client.get("/api/v1/summary")
    assert assert_error(resp, 500) == "internal error"
    assert "secret internals" not in resp.get_data(as_text=True)


def test_healthz(client: FlaskClient) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200
    body = resp.get_json()
    assert (body["status"], body["database"], body["feed"]) == ("ok", "ok", "ok")
    assert body["checks"]["feed"]["age_s"] == 10.0  # more in tests/test_health.py


def test_database_down_gives_503_json() -> None:
    settings = load_settings(database_url=UNREACHABLE_PG, province="08")
    client = make_client(settings)
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["status"] == "unavailable"
    assert "5432" not in health.get_data(as_text=True) and "postgres@" not in health.get_data(
        as_text=True
    )
    assert_error(client.get("/api/v1/summary"), 503)
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "cc_database_up 0.0" in metrics.get_data(as_text=True)


def test_building_the_api_does_not_connect() -> None:
    # The app is built in gunicorn's master before forking: no connection may be opened there.
    settings = load_settings(database_url=UNREACHABLE_PG, province="08")
    db = Database(settings.database_url)
    register_api(flask.Flask("no_connect"), db, settings, load_calendar())
    assert db._engine is None


def test_metrics(client: FlaskClient) -> None:
    client.get("/api/v1/summary")
    client.get("/api/v1/dossiers?limit=0")
    text = client.get("/metrics").get_data(as_text=True)
    assert "cc_database_up 1.0" in text
    assert "cc_dossiers_open 3.0" in text
    assert "cc_dossiers_overdue 2.0" in text
    assert 'cc_dead_letters{reason="invalid_json"} 3.0' in text
    assert 'cc_centres{state="live"} 1.0' in text
    assert 'cc_centres{state="unknown"} 123.0' in text
    assert 'cc_alerts{level="1",state="open"} 1.0' in text
    assert (
        'cc_http_requests_total{endpoint="/api/v1/summary",method="GET",status="200"} 1.0' in text
    )
    assert (
        'cc_http_requests_total{endpoint="/api/v1/dossiers",method="GET",status="400"} 1.0' in text
    )


def test_openapi_describes_every_endpoint(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) >= {
        "/api/v1/summary", "/api/v1/communes", "/api/v1/communes/{code}", "/api/v1/dossiers",
        "/api/v1/dossiers/{dossier_code}", "/api/v1/alerts", "/api/v1/alerts/{alert_id}/ack",
        "/api/v1/dead-letters", "/healthz", "/metrics",
    }  # fmt: skip
    # Every field the summary returns is documented.
    summary = client.get("/api/v1/summary").get_json()
    assert set(summary) == set(doc["components"]["schemas"]["Summary"]["properties"])
    row = client.get("/api/v1/communes").get_json()[0]
    assert set(row) == set(doc["components"]["schemas"]["CommuneRow"]["properties"])
    assert openapi_document() == doc


def test_dash_pages_keep_their_own_handling(settings: Settings, data: dict[str, Any]) -> None:
    app = dash.Dash(__name__)
    app.layout = html.Div("wall")
    client = make_client(settings, app.server)
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert client.get("/api/v1/summary").status_code == 200
    # Dash answers every unknown path with its page; the API's paths still answer as an API.
    assert_error(client.get("/api/v1/nothing-here"), 404)
    assert_error(client.get("/api/v1/alerts/3f2b8c1e-0000-4000-8000-000000000000/ack"), 405)
    deep_link = client.get("/commune/02269")
    assert deep_link.status_code == 200 and deep_link.mimetype == "text/html"
    # Dash's own failures outside /api/ are not rewritten into the API's JSON errors.
    missing = client.get("/_dash-component-suites/nothing/here.js")
    assert missing.status_code >= 400 and missing.mimetype != "application/json"
