"""Who sees what, over HTTP: the API, Dash's callback endpoint as a crafted request, sign-in,
kiosk links, CSRF, masking in pages and exports, rate limit, headers and the audit log.

Every test runs the whole app (``create_app``) with sign-in required, on SQLite and PostgreSQL,
and talks to it the way a browser or a machine client does.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from control_center.app import create_app
from control_center.db import make_engine, session_factory
from control_center.migrate import upgrade_schema
from control_center.models import Alert, AuditEvent, DeadLetter, DossierEvent
from control_center.security import accounts, policy
from control_center.security.masking import PersonalDataFilter, mask_text
from control_center.settings import Settings, SettingsError, load_settings
from layouts import ids
from tests.test_api import NOW
from tests.test_queries import HA_GIANG_2, THUONG_LAM, World, seed_communes, vn

SECRET = "test-secret-key-not-for-production"
PASSWORD = "correct horse battery"
APPLICANT = "Trần Thị Bích"
OTHER_APPLICANT = "Nguyễn Văn Dũng"


@dataclass
class Seeded:
    url: str
    settings: Settings
    own_late: str  # overdue dossier of Thượng Lâm (the commune user's)
    other_late: str  # overdue dossier of Hà Giang 2
    own_alert: str
    other_alert: str
    tokens: dict[str, str]


def secure_settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "province": "08",
        "auth_required": True,
        "secret_key": SECRET,
        "cookie_secure": False,
        **overrides,
    }
    return load_settings(**values)


def seed(url: str, **overrides: Any) -> Seeded:
    engine = make_engine(url)
    upgrade_schema(engine)
    with session_factory(engine)() as session:
        seed_communes(session)
        w = World(session)
        own = w.dossier(
            THUONG_LAM,
            received_at=vn(11, 10, 8),
            due_at=vn(11, 17, 17),
            applicant_name=APPLICANT,
            officer="Lê Văn Cường",
        )
        other = w.dossier(
            HA_GIANG_2,
            received_at=vn(11, 11, 8),
            due_at=vn(11, 18, 17),
            applicant_name=OTHER_APPLICANT,
        )
        own_alert = w.alert(THUONG_LAM, raised_at=NOW, dossier_code=own.dossier_code)
        other_alert = w.alert(HA_GIANG_2, raised_at=NOW, dossier_code=other.dossier_code)
        w.commit()
        session.add(
            DossierEvent(
                event_id="ev-own-1",
                dossier_code=own.dossier_code,
                commune_code=THUONG_LAM,
                type="received",
                occurred_at=vn(11, 10, 8),
                arrived_at=vn(11, 10, 8, 1),
                payload={"procedure_code": "1.001193", "applicant_name": APPLICANT,
                         "applicant_phone": "0912345678"},
            )
        )  # fmt: skip
        session.add(
            DeadLetter(
                arrived_at=NOW,
                topic=f"dvc/v1/08/{THUONG_LAM}/dossier",
                commune_code=THUONG_LAM,
                reason="missing_field",
                detail="procedure_code is required",
                payload_excerpt=json.dumps({"type": "received", "applicant_name": APPLICANT}),
                payload_size=60,
            )
        )
        for name, role, commune in (
            ("wall1", "wall", None),
            ("commune1", "commune", THUONG_LAM),
            ("leader1", "leader", None),
            ("admin1", "admin", None),
        ):
            accounts.create_user(session, name, PASSWORD, role, commune)
        tokens = {}
        for role, commune in (
            ("wall", None),
            ("commune", THUONG_LAM),
            ("leader", None),
            ("admin", None),
        ):
            _row, tokens[role] = accounts.create_token(session, f"{role}-client", role, commune)
        session.commit()
        result = Seeded(
            url,
            secure_settings(url, **overrides),
            own.dossier_code,
            other.dossier_code,
            str(own_alert.alert_id),
            str(other_alert.alert_id),
            tokens,
        )
    engine.dispose()
    return result


@pytest.fixture
def seeded(db_url: str) -> Seeded:
    return seed(db_url)


@pytest.fixture
def app(seeded: Seeded) -> Any:
    return create_app(seeded.settings, clock=lambda: NOW)


def client_of(app: Any) -> FlaskClient:
    return app.server.test_client()


@pytest.fixture
def client(app: Any) -> FlaskClient:
    return client_of(app)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in(client: FlaskClient, username: str, password: str = PASSWORD) -> Any:
    form = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert csrf, form
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf.group(1), "next": "/"},
    )


def csrf_of(client: FlaskClient) -> str:
    cookie = client.get_cookie("_csrf_token")
    assert cookie is not None, "a signed-in browser gets the CSRF cookie the renderer reads"
    return cookie.value


def callback(
    client: FlaskClient,
    outputs: list[tuple[Any, str]],
    inputs: list[tuple[Any, str, Any]],
    state: list[tuple[Any, str, Any]] = (),  # type: ignore[assignment]
    *,
    csrf: str | None = "auto",
    output: str | None = None,
) -> Any:
    """The JSON the Dash renderer POSTs for one callback (``output``: the callback's key, for
    pattern-matching callbacks, whose key names the wildcard rather than the ids)."""

    def key(i: Any, p: str) -> str:
        return f"{json.dumps(i, separators=(',', ':'), sort_keys=True) if isinstance(i, dict) else i}.{p}"

    body = {
        "output": output
        or (
            key(*outputs[0])
            if len(outputs) == 1
            else "..{}..".format("...".join(key(i, p) for i, p in outputs))
        ),
        "outputs": (
            {"id": outputs[0][0], "property": outputs[0][1]}
            if len(outputs) == 1
            else [{"id": i, "property": p} for i, p in outputs]
        ),
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
        "changedPropIds": [f"{key(inputs[0][0], inputs[0][1])}"],
    }
    headers = {}
    if csrf == "auto":
        csrf = csrf_of(client)
    if csrf is not None:
        headers["X-CSRFToken"] = csrf
    return client.post("/_dash-update-component", json=body, headers=headers)


def route(client: FlaskClient, pathname: str, **kw: Any) -> Any:
    return callback(
        client,
        [(ids.PAGE, "children")],
        [(ids.URL, "pathname", pathname), (ids.URL, "search", "")],
        **kw,
    )


COMMUNE_OUTPUTS = [
    (ids.COMMUNE_TITLE, "children"),
    (ids.COMMUNE_KPIS, "children"),
    (ids.COMMUNE_DAILY, "figure"),
    (ids.COMMUNE_QUEUE, "figure"),
    (ids.COMMUNE_OVERDUE, "children"),
    (ids.COMMUNE_FEED, "children"),
    (ids.COMMUNE_ALERTS, "children"),
    (ids.COMMUNE_CLOCK, "children"),
    (ids.COMMUNE_BANNER, "children"),
    (ids.COMMUNE_BANNER, "className"),
]
REVIEW_OUTPUTS = [
    (ids.REVIEW_GRID, "getRowsResponse"),
    (ids.REVIEW_TOTAL, "children"),
    (ids.REVIEW_ERROR, "children"),
    (ids.REVIEW_CLOCK, "children"),
]


def commune_refresh(client: FlaskClient, code: str) -> Any:
    return callback(
        client,
        COMMUNE_OUTPUTS,
        [(ids.COMMUNE_INTERVAL, "n_intervals", 1)],
        [(ids.COMMUNE_CODE, "data", code), (ids.URL, "search", "")],
    )


def review_rows(client: FlaskClient, params: dict[str, str]) -> Any:
    return callback(
        client,
        REVIEW_OUTPUTS,
        [(ids.REVIEW_GRID, "getRowsRequest", {"startRow": 0, "endRow": 100, "sortModel": []})],
        [(ids.REVIEW_FILTERS, "data", params), (ids.URL, "search", "")],
    )


def text_of(resp: Any) -> str:
    """A callback's answer as a person would read it (Dash escapes non-ASCII in its JSON)."""
    return json.dumps(resp.get_json(), ensure_ascii=False)


def audit_actions(url: str) -> list[tuple[str, str]]:
    engine = make_engine(url)
    with Session(engine) as s:
        rows = [(e.action, e.actor) for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    engine.dispose()
    return rows


# --- the API: 401 without credentials, 403 outside the role, scope by commune ---------------


def test_the_api_wants_credentials_and_pages_send_to_sign_in(client: FlaskClient) -> None:
    resp = client.get("/api/v1/summary")
    assert resp.status_code == 401 and resp.mimetype == "application/json"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert resp.get_json()["error"]["status"] == 401
    assert client.get("/api/v1/dossiers", headers=bearer("cct_wrong")).status_code == 401
    page = client.get("/overdue?state=overdue")
    assert page.status_code == 302
    assert page.headers["Location"].startswith("/login?next=%2Foverdue%3Fstate%3Doverdue")
    assert route(client, "/", csrf=None).status_code == 401  # Dash's endpoint: JSON 401
    assert client.get("/healthz").status_code in (200, 503)  # liveness stays public


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/summary", {"wall": 200, "commune": 200, "leader": 200, "admin": 200}),
        ("/api/v1/communes", {"wall": 200, "commune": 200, "leader": 200, "admin": 200}),
        (f"/api/v1/communes/{THUONG_LAM}", {"wall": 200, "commune": 200, "leader": 200}),
        (f"/api/v1/communes/{HA_GIANG_2}", {"wall": 200, "commune": 403, "leader": 200}),
        ("/api/v1/dossiers", {"wall": 403, "commune": 200, "leader": 200, "admin": 200}),
        (f"/api/v1/dossiers?commune={HA_GIANG_2}", {"commune": 403, "leader": 200}),
        ("/api/v1/alerts", {"wall": 403, "commune": 200, "leader": 200}),
        ("/api/v1/dead-letters", {"wall": 403, "commune": 200, "leader": 200}),
        ("/api/v1/review", {"wall": 403, "commune": 200, "leader": 200}),
        ("/api/v1/review.csv", {"wall": 403, "commune": 403, "leader": 200, "admin": 200}),
        ("/api/v1/periods.csv", {"wall": 403, "commune": 403, "leader": 200}),
        ("/api/v1/audit", {"wall": 403, "commune": 403, "leader": 403, "admin": 200}),
    ],
)
def test_api_role_boundaries(
    client: FlaskClient, seeded: Seeded, path: str, expected: dict[str, int]
) -> None:
    for role, status in expected.items():
        resp = client.get(path, headers=bearer(seeded.tokens[role]))
        assert resp.status_code == status, (role, path, resp.get_data(as_text=True)[:300])
        if status == 403:
            assert resp.get_json()["error"]["status"] == 403


def test_a_commune_reads_only_its_own_dossiers_alerts_and_review(
    client: FlaskClient, seeded: Seeded
) -> None:
    own = bearer(seeded.tokens["commune"])
    listed = client.get("/api/v1/dossiers?state=overdue", headers=own).get_json()
    assert [d["dossier_code"] for d in listed["items"]] == [seeded.own_late]
    assert client.get(f"/api/v1/dossiers/{seeded.other_late}", headers=own).status_code == 404
    assert client.get(f"/api/v1/dossiers/{seeded.own_late}", headers=own).status_code == 200
    alerts = client.get("/api/v1/alerts", headers=own).get_json()
    assert {a["alert_id"] for a in alerts} == {seeded.own_alert}
    review = client.get("/api/v1/review?state=all", headers=own).get_json()
    assert {d["commune_code"] for d in review["items"]} == {THUONG_LAM}
    leader = client.get("/api/v1/review?state=all", headers=bearer(seeded.tokens["leader"]))
    assert {d["commune_code"] for d in leader.get_json()["items"]} == {THUONG_LAM, HA_GIANG_2}


def test_a_commune_acknowledges_its_own_alerts_only_and_it_is_audited(
    client: FlaskClient, seeded: Seeded
) -> None:
    own = bearer(seeded.tokens["commune"])
    other = client.post(f"/api/v1/alerts/{seeded.other_alert}/ack", json={}, headers=own)
    assert other.status_code == 403
    mine = client.post(f"/api/v1/alerts/{seeded.own_alert}/ack", json={}, headers=own)
    assert mine.status_code == 200
    assert mine.get_json()["state"] == "acknowledged"
    assert mine.get_json()["acknowledged_by"] == "token:commune-client"
    wall = client.post(
        f"/api/v1/alerts/{seeded.other_alert}/ack", json={}, headers=bearer(seeded.tokens["wall"])
    )
    assert wall.status_code == 403
    assert ("alert_ack", "token:commune-client") in audit_actions(seeded.url)


# --- Dash callbacks are an API too ------------------------------------------------------------


def test_every_callback_of_the_app_has_a_permission(app: Any) -> None:
    assert len(app.callback_map) >= 10
    for output_key in app.callback_map:
        parts = output_key.strip(".").split("...")
        idents = [part.rsplit(".", 1)[0] for part in parts]
        body = {
            "outputs": [
                {"id": json.loads(i) if i.startswith("{") else i, "property": "x"} for i in idents
            ]
        }
        assert policy.callback_permissions(body) is not None, output_key


def test_a_crafted_callback_cannot_reach_another_communes_data(
    app: Any, client: FlaskClient, seeded: Seeded
) -> None:
    assert sign_in(client, "commune1").status_code == 302
    own = commune_refresh(client, THUONG_LAM)
    assert own.status_code == 200
    assert seeded.own_late in text_of(own)
    other = commune_refresh(client, HA_GIANG_2)
    assert other.status_code == 200
    text = text_of(other)
    assert seeded.other_late not in text and OTHER_APPLICANT not in text
    # The review grid with another commune's filter, and with none: own commune only.
    crafted = review_rows(client, {"state": "all", "commune": HA_GIANG_2})
    assert crafted.get_json()["response"][ids.REVIEW_GRID]["getRowsResponse"]["rowCount"] == 0
    unfiltered = review_rows(client, {"state": "all"}).get_json()["response"]
    rows = unfiltered[ids.REVIEW_GRID]["getRowsResponse"]["rowData"]
    assert [r["dossier_code"] for r in rows] == [f"[{seeded.own_late}](/dossier/{seeded.own_late})"]
    # The overdue board the wall shows: only its own commune's dossiers for a commune user.
    board = callback(
        client,
        [
            (ids.OVERDUE_WALL_TOTALS, "children"),
            (ids.OVERDUE_WALL_LIST, "children"),
            (ids.OVERDUE_WALL_DUE_SOON, "children"),
            (ids.OVERDUE_WALL_CLOCK, "children"),
        ],
        [(ids.OVERDUE_WALL_INTERVAL, "n_intervals", 1)],
        [(ids.URL, "search", "")],
    )
    board = text_of(board)
    assert seeded.own_late in board and seeded.other_late not in board
    # Acknowledging another commune's alert through the wall's button changes nothing.
    ack = callback(
        client,
        [
            ({"type": ids.ALERT_STATE, "index": seeded.other_alert}, "children"),
            ({"type": ids.ALERT_ACK, "index": seeded.other_alert}, "disabled"),
        ],
        [({"type": ids.ALERT_ACK, "index": seeded.other_alert}, "n_clicks", 1)],
        [(ids.ALERTS_ACK_BY, "value", "Mallory"), (ids.URL, "search", "")],
        output=next(k for k in app.callback_map if ids.ALERT_STATE in k),
    )
    assert ack.status_code == 204  # PreventUpdate: nothing to show, nothing recorded
    # Its own alert: recorded, in the user's name when the name field is empty, and audited.
    mine = callback(
        client,
        [
            ({"type": ids.ALERT_STATE, "index": seeded.own_alert}, "children"),
            ({"type": ids.ALERT_ACK, "index": seeded.own_alert}, "disabled"),
        ],
        [({"type": ids.ALERT_ACK, "index": seeded.own_alert}, "n_clicks", 1)],
        [(ids.ALERTS_ACK_BY, "value", ""), (ids.URL, "search", "")],
        output=next(k for k in app.callback_map if ids.ALERT_STATE in k),
    )
    assert mine.status_code == 200
    engine = make_engine(seeded.url)
    with Session(engine) as s:
        other_alert = s.get(Alert, uuid.UUID(seeded.other_alert))
        assert other_alert is not None and other_alert.state == "open"
        own_alert = s.get(Alert, uuid.UUID(seeded.own_alert))
        assert own_alert is not None and own_alert.state == "acknowledged"
        assert own_alert.acknowledged_by == "commune1"
    engine.dispose()
    assert ("alert_ack", "commune1") in audit_actions(seeded.url)


def test_the_wall_role_gets_aggregates_but_no_details(client: FlaskClient, seeded: Seeded) -> None:
    assert sign_in(client, "wall1").status_code == 302
    wall_tick = callback(
        client,
        [(ids.WALL_KPIS, "children"), (ids.WALL_CLOCK, "children")],
        [(ids.WALL_INTERVAL, "n_intervals", 1), (ids.WALL_MEASURE, "value", "overdue")],
        [(ids.URL, "search", ""), (ids.WALL_MAP_BUILT, "data", None)],
    )
    # (a partial set of outputs is refused by Dash itself, not by us: 500 without a trace)
    assert wall_tick.status_code != 403
    assert review_rows(client, {"state": "all"}).status_code == 403
    alerts = callback(
        client,
        [(ids.ALERTS_PAGE, "data")],
        [(ids.ALERTS_PREV, "n_clicks", 1)],
        [(ids.ALERTS_PAGE, "data", 0)],
    )
    assert alerts.status_code == 403
    for path in ("/overdue", "/alerts", f"/dossier/{seeded.own_late}"):
        page = route(client, path)
        assert page.status_code == 200
        assert "403" in text_of(page), path
    for path in ("/", "/kiosk", "/queue", "/wall/overdue", f"/commune/{THUONG_LAM}"):
        assert "forbidden" not in text_of(route(client, path)), path
    unknown = callback(client, [("no-such-output", "children")], [("x", "n_clicks", 1)])
    assert unknown.status_code == 403


def test_a_commune_user_is_refused_other_communes_pages(client: FlaskClient) -> None:
    sign_in(client, "commune1")
    assert "forbidden" in text_of(route(client, f"/commune/{HA_GIANG_2}"))
    assert "forbidden" not in text_of(route(client, f"/commune/{THUONG_LAM}"))


# --- kiosk links ------------------------------------------------------------------------------


def test_a_kiosk_link_signs_a_wall_screen_in_and_revoking_it_ends_it(
    client: FlaskClient, seeded: Seeded
) -> None:
    engine = make_engine(seeded.url)
    with session_factory(engine)() as s, s.begin():
        link, token = accounts.create_kiosk_link(s, SECRET, "control room left")
        link_id = str(link.id)
    resp = client.get(f"/kiosk/login?token={token}&next=/kiosk?rotate=30")
    assert resp.status_code == 302 and resp.headers["Location"] == "/kiosk?rotate=30"
    assert client.get("/api/v1/summary").status_code == 200
    assert "kiosk-root" in text_of(route(client, "/kiosk"))
    queue_page = route(client, "/queue").get_json()["response"]["page"]["children"]
    assert find_component(queue_page, ids.SIGN_OUT) is None  # a screen has nobody to sign out
    # The wall role only: no details, no exports, no other pages.
    assert client.get("/api/v1/dossiers").status_code == 403
    assert client.get("/api/v1/review.csv").status_code == 403
    assert "403" in text_of(route(client, "/overdue"))
    # A link signed with another key, or tampered with, signs nobody in.
    forged = client_of_same_app(client).get(f"/kiosk/login?token={token[:-2]}xx")
    assert forged.status_code == 401
    with session_factory(engine)() as s, s.begin():
        accounts.revoke_kiosk_link(s, link_id)
    engine.dispose()
    assert client.get("/api/v1/summary").status_code == 401
    assert route(client, "/kiosk").status_code == 401
    again = client_of_same_app(client).get(f"/kiosk/login?token={token}")
    assert again.status_code == 401
    actions = [a for a, _ in audit_actions(seeded.url)]
    assert actions.count("kiosk_sign_in") == 1 and actions.count("kiosk_refused") == 2


def find_component(tree: Any, component_id: str) -> Any:
    """The component with ``component_id`` in a callback's JSON answer, or None."""
    if isinstance(tree, dict):
        props = tree.get("props")
        if isinstance(props, dict) and props.get("id") == component_id:
            return tree
        tree = list(tree.values())
    if isinstance(tree, list):
        for child in tree:
            found = find_component(child, component_id)
            if found is not None:
                return found
    return None


def client_of_same_app(client: FlaskClient) -> FlaskClient:
    return client.application.test_client()


# --- masking: pages, API, exports, logs ------------------------------------------------------


def test_applicant_names_are_masked_for_roles_that_must_not_see_them(
    client: FlaskClient, seeded: Seeded
) -> None:
    leader = client.get(
        f"/api/v1/dossiers/{seeded.own_late}", headers=bearer(seeded.tokens["leader"])
    ).get_json()
    assert leader["applicant_name"] == "T*** T*** B***"
    assert "applicant_name" not in leader["timeline"][0]["details"]
    assert "applicant_phone" not in leader["timeline"][0]["details"]
    commune = client.get(
        f"/api/v1/dossiers/{seeded.own_late}", headers=bearer(seeded.tokens["commune"])
    ).get_json()
    assert commune["applicant_name"] == APPLICANT
    assert commune["timeline"][0]["details"]["applicant_phone"] == "0912345678"
    # The export a leader takes away: masked.
    export = client.get("/api/v1/review.csv?state=all", headers=bearer(seeded.tokens["leader"]))
    assert export.status_code == 200
    text = export.get_data().decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["Người nộp hồ sơ"] for r in rows} == {"T*** T*** B***", "N*** V*** D***"}
    assert APPLICANT not in text and OTHER_APPLICANT not in text
    # A dead letter's raw payload, as a leader reads it.
    dead = client.get("/api/v1/dead-letters", headers=bearer(seeded.tokens["leader"])).get_json()
    assert APPLICANT not in json.dumps(dead, ensure_ascii=False)
    # The dossier page, as a leader sees it in the browser.
    sign_in(client, "leader1")
    page = text_of(route(client, f"/dossier/{seeded.own_late}"))
    assert "T*** T*** B***" in page and APPLICANT not in page
    assert ("export", "token:leader-client") in audit_actions(seeded.url)


def test_a_commune_sees_its_applicants_on_the_dossier_page(
    client: FlaskClient, seeded: Seeded
) -> None:
    sign_in(client, "commune1")
    page = text_of(route(client, f"/dossier/{seeded.own_late}"))
    assert APPLICANT in page


def test_logs_never_carry_personal_data(caplog: pytest.LogCaptureFixture) -> None:
    record = logging.makeLogRecord(
        {
            "msg": "bad payload %s",
            "args": ('{"applicant_name": "Trần Thị Bích", "phone": "0912 345 678"}',),
            "applicant_name": "Trần Thị Bích",
        }
    )
    PersonalDataFilter().filter(record)
    line = record.getMessage() + " " + str(record.__dict__["applicant_name"])
    assert "Trần" not in line and "0912" not in line and "345 678" not in line
    assert "78" in mask_text("gọi 0912345678")


# --- CSRF, sign-in, rate limit, headers, errors ----------------------------------------------


def test_state_changing_requests_need_the_csrf_token(client: FlaskClient, seeded: Seeded) -> None:
    sign_in(client, "commune1")
    assert route(client, "/", csrf=None).status_code == 403
    assert route(client, "/", csrf="not-the-token").status_code == 403
    assert route(client, "/").status_code == 200
    ack = client.post(f"/api/v1/alerts/{seeded.own_alert}/ack", json={})
    assert ack.status_code == 403, "a cookie-authenticated POST without the token is refused"
    ack = client.post(
        f"/api/v1/alerts/{seeded.own_alert}/ack", json={}, headers={"X-CSRFToken": csrf_of(client)}
    )
    assert ack.status_code == 200
    # The sign-in form itself carries a token.
    fresh = client_of_same_app(client)
    resp = fresh.post("/login", data={"username": "leader1", "password": PASSWORD})
    assert resp.status_code == 400


def test_sign_in_sets_a_hardened_session_and_records_it(
    client: FlaskClient, seeded: Seeded
) -> None:
    wrong = sign_in(client, "leader1", "wrong password!")
    assert wrong.status_code == 401
    assert "không đúng" in wrong.get_data(as_text=True)
    ok = sign_in(client, "leader1")
    assert ok.status_code == 302 and ok.headers["Location"] == "/"
    cookie = next(h for h in ok.headers.getlist("Set-Cookie") if h.startswith("cc_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    actions = audit_actions(seeded.url)
    assert ("sign_in_failed", "leader1") in actions and ("sign_in", "leader1") in actions
    # Every page offers the person who signed in a way out; it signs out (POST with CSRF).
    page = route(client, "/queue").get_json()["response"]["page"]["children"]
    sign_out = find_component(page, ids.SIGN_OUT)
    assert sign_out is not None and sign_out["props"]["href"] == "/logout"
    assert sign_out["props"]["title"] == "leader1"
    form = client.get("/logout").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert csrf and client.post("/logout", data={"csrf_token": csrf.group(1)}).status_code == 302
    assert client.get("/api/v1/summary").status_code == 401
    # An open redirect is not offered.
    form = client_of_same_app(client)
    resp = form.get("/login?next=//evil.example/x")
    assert 'name="next" value="/"' in resp.get_data(as_text=True)


def test_secure_cookies_and_headers(seeded: Seeded) -> None:
    app = create_app(
        secure_settings(
            seeded.url, cookie_secure=True, map_tiles="https://tiles.example/{z}/{x}/{y}.png"
        ),
        clock=lambda: NOW,
    )
    client = client_of(app)
    ok = sign_in(client, "leader1")
    cookie = next(h for h in ok.headers.getlist("Set-Cookie") if h.startswith("cc_session="))
    assert "Secure" in cookie
    page = client.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self' 'sha256-" in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and "https://tiles.example" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")


def test_sign_in_is_rate_limited(db_url: str) -> None:
    seeded = seed(db_url, signin_rate_limit="3 per minute")
    client = client_of(create_app(seeded.settings, clock=lambda: NOW))
    codes = [sign_in(client, "leader1", "wrong password!").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    assert sign_in(client, "leader1").status_code == 429  # even the right password, for now
    assert [a for a, _ in audit_actions(db_url)].count("sign_in_failed") == 3


def test_errors_show_no_stack_trace(client: FlaskClient) -> None:
    sign_in(client, "leader1")
    # Outputs the callback does not have: Dash raises inside the view.
    broken = client.post(
        "/_dash-update-component",
        json={"output": "page.children", "outputs": {"id": "page", "property": "children"}},
        headers={"X-CSRFToken": csrf_of(client)},
    )
    assert broken.status_code >= 400
    assert "Traceback" not in broken.get_data(as_text=True)
    assert client.application.debug is False


def test_a_disabled_user_or_new_password_ends_the_session(
    client: FlaskClient, seeded: Seeded
) -> None:
    sign_in(client, "leader1")
    assert client.get("/api/v1/dossiers").status_code == 200
    engine = make_engine(seeded.url)
    with session_factory(engine)() as s, s.begin():
        user = accounts.find_user(s, "leader1")
        assert user is not None
        accounts.set_password(s, user, "another long password")
    engine.dispose()
    assert client.get("/api/v1/dossiers").status_code == 401


def test_sign_in_required_needs_a_secret_key(sqlite_url: str) -> None:
    with pytest.raises(SettingsError, match="CC_SECRET_KEY"):
        create_app(load_settings(database_url=sqlite_url, auth_required=True))
