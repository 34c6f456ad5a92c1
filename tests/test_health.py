"""``/healthz`` (SQLite and PostgreSQL): which check failed, in the body and the status."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import flask
import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from control_center.api import register_api
from control_center.db import Database, make_engine, session_factory
from control_center.domain.calendar import load_calendar
from control_center.migrate import upgrade_schema
from control_center.settings import load_settings
from tests.test_api import NOW, UNREACHABLE_PG
from tests.test_queries import THUONG_LAM, World, seed_communes


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    engine = make_engine(db_url)
    upgrade_schema(engine)
    with session_factory(engine)() as s:
        seed_communes(s)
        s.commit()
        yield s
    engine.dispose()


def client_for(url: str, **settings: Any) -> FlaskClient:
    server = flask.Flask("test_health")
    config = load_settings(database_url=url, province="08", **settings)
    register_api(server, Database(url), config, load_calendar(), clock=lambda: NOW)
    return server.test_client()


def feed_seen(session: Session, ago: timedelta) -> None:
    World(session).feed(THUONG_LAM, arrived_at=NOW - ago)
    session.commit()


def test_fresh_feed_and_database_answer_200(session: Session, db_url: str) -> None:
    feed_seen(session, timedelta(minutes=14))
    resp = client_for(db_url).get("/healthz")
    assert resp.status_code == 200
    body = resp.get_json()
    assert (body["status"], body["database"], body["feed"]) == ("ok", "ok", "ok")
    assert body["checks"]["feed"]["age_s"] == 14 * 60
    assert body["checks"]["feed"]["last_arrival_at"].endswith("+07:00")
    assert "failed" not in body


def test_a_silent_feed_answers_503_naming_the_feed(session: Session, db_url: str) -> None:
    feed_seen(session, timedelta(minutes=16))  # default threshold 900 s
    resp = client_for(db_url).get("/healthz")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["status"] == "unavailable" and body["database"] == "ok"
    assert body["feed"] == "stale" and body["failed"] == ["feed"]
    assert body["checks"]["feed"]["age_s"] == 16 * 60
    # The threshold is a setting; and a load balancer asks about the database alone.
    assert client_for(db_url, health_feed_max_age_s=3600).get("/healthz").status_code == 200
    database_only = client_for(db_url).get("/healthz?check=database")
    assert database_only.status_code == 200 and "feed" not in database_only.get_json()


def test_no_centre_ever_heard_from_is_not_healthy(session: Session, db_url: str) -> None:
    resp = client_for(db_url).get("/healthz")
    assert resp.status_code == 503
    assert resp.get_json()["feed"] == "no_data"


def test_a_slow_database_fails_the_database_check(session: Session, db_url: str) -> None:
    feed_seen(session, timedelta(minutes=1))
    resp = client_for(db_url, health_db_timeout_s=1e-9).get("/healthz")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["failed"] == ["database"]
    assert body["database"] in {"slow", "unreachable"}  # PostgreSQL cancels it after 1 ms


def test_an_unreachable_database_fails_without_leaking_where_it_is() -> None:
    resp = client_for(UNREACHABLE_PG).get("/healthz")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["database"] == "unreachable" and body["failed"] == ["database"]
    assert "feed" not in body
    assert "127.0.0.1" not in resp.get_data(as_text=True)


def test_an_unknown_check_is_a_400(session: Session, db_url: str) -> None:
    resp = client_for(db_url).get("/healthz?check=everything")
    assert resp.status_code == 400
    assert resp.get_json()["error"]["message"] == "check must be one of database, feed"
