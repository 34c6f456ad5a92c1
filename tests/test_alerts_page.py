"""The alerts page (/alerts), alert history on the dossier API, on SQLite and PostgreSQL.

Alerts are raised by the real engine (``alerts.engine.evaluate``) from dossiers written into the
database, then the page is driven the way a browser drives it: POSTs to
``/_dash-update-component`` through Flask's test client, and once in headless Chromium.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from alerts.engine import evaluate
from alerts.policy import load_policy
from control_center import queries
from control_center.app import create_app
from control_center.db import make_engine, session_factory
from control_center.domain.calendar import LOCAL_TZ, load_calendar
from control_center.migrate import upgrade_schema
from control_center.models import Alert, Dossier
from control_center.reference import seed_reference_data
from control_center.settings import Settings, load_settings
from layouts import alerts_page, ids
from tests.conftest import free_port

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

pytest_plugins = ["tests.browser_plugin"]

CAL = load_calendar()
POLICY = load_policy()
THUONG_LAM, HA_GIANG_2 = "02269", "00691"
LATE = "000.00.22.H56-261110-0001"  # Thượng Lâm, due Wed 18 Nov: 3 working days late
SOON = "000.00.22.H56-261120-0002"  # Hà Giang 2, due Thu 26 Nov 09:00: within a working day


def local(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=LOCAL_TZ)


NOW = local(2026, 11, 25, 10)  # Wednesday, a working day (24 Nov was a holiday)


def dossier(code: str, commune: str, due: datetime) -> Dossier:
    received = local(2026, 11, 10, 8)
    return Dossier(
        dossier_code=code,
        commune_code=commune,
        received_commune_code=commune,
        procedure_code="1.001193",
        procedure_name="Đăng ký khai sinh",
        status=4,
        is_open=True,
        is_paused=False,
        received_at=received,
        clock_start_at=received,
        due_at=due,
        original_due_at=due,
        last_event_at=received,
        flags=[],
    )


@dataclass
class World:
    engine: Engine
    settings: Settings

    def cycle(self, now: datetime) -> None:
        with session_factory(self.engine)() as s, s.begin():
            evaluate(s, self.settings, CAL, now, POLICY)

    def alerts(self, **where: object) -> list[Alert]:
        with Session(self.engine) as s:
            q = select(Alert).order_by(Alert.level, Alert.kind)
            for k, v in where.items():
                q = q.where(getattr(Alert, k) == v)
            return list(s.scalars(q))


def build_world(url: str, **settings: Any) -> World:
    engine = make_engine(url)
    upgrade_schema(engine)
    with session_factory(engine)() as s, s.begin():
        seed_reference_data(s, "08")
        s.add_all(
            [
                dossier(LATE, THUONG_LAM, local(2026, 11, 18, 17)),
                dossier(SOON, HA_GIANG_2, local(2026, 11, 26, 9)),
            ]
        )
    world = World(engine, load_settings(database_url=url, **settings))
    world.cycle(NOW)
    return world


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    w = build_world(db_url)
    yield w
    w.engine.dispose()


@pytest.fixture
def app(world: World) -> Any:
    return create_app(world.settings, clock=lambda: NOW, calendar=CAL)


def callback_key(app: Any, output_id: str) -> str:
    """The key Dash registered the callback under (as the browser names it)."""
    return next(k for k in app.callback_map if output_id in k)


def refresh(
    app: Any,
    *,
    state: str = "open",
    level: str = "all",
    commune: str = "all",
    kind: str = "all",
    page: int = 0,
    search: str = "",
) -> dict[str, Any]:
    outputs = [
        (ids.ALERTS_LIST, "children"),
        (ids.ALERTS_PAGER, "children"),
        (ids.ALERTS_PREV, "disabled"),
        (ids.ALERTS_NEXT, "disabled"),
        (ids.ALERTS_CLOCK, "children"),
    ]
    body = {
        "output": callback_key(app, ids.ALERTS_LIST),
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": [
            {"id": ids.ALERTS_INTERVAL, "property": "n_intervals", "value": None},
            {"id": ids.ALERTS_STATE, "property": "value", "value": state},
            {"id": ids.ALERTS_LEVEL, "property": "value", "value": level},
            {"id": ids.ALERTS_COMMUNE, "property": "value", "value": commune},
            {"id": ids.ALERTS_KIND, "property": "value", "value": kind},
            {"id": ids.ALERTS_PAGE, "property": "data", "value": page},
        ],
        "state": [{"id": ids.URL, "property": "search", "value": search}],
        "changedPropIds": [],
    }
    response = app.server.test_client().post("/_dash-update-component", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_json()["response"]


def click_ack(app: Any, alert_id: uuid.UUID, by: str | None, search: str = "") -> Any:
    button = {"index": str(alert_id), "type": ids.ALERT_ACK}
    cell = {"index": str(alert_id), "type": ids.ALERT_STATE}
    body = {
        "output": callback_key(app, ids.ALERT_STATE),
        "outputs": [
            {"id": cell, "property": "children"},
            {"id": button, "property": "disabled"},
        ],
        "inputs": [{"id": button, "property": "n_clicks", "value": 1}],
        "state": [
            {"id": ids.ALERTS_ACK_BY, "property": "value", "value": by},
            {"id": ids.URL, "property": "search", "value": search},
        ],
        "changedPropIds": [json.dumps(button, sort_keys=True, separators=(",", ":")) + ".n_clicks"],
    }
    return app.server.test_client().post("/_dash-update-component", json=body)


def strings(component: Any) -> list[str]:
    """Every piece of text in a rendered component tree, in order."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, list):
            for child in node:
                walk(child)
        elif isinstance(node, dict):
            walk(node.get("props", {}).get("children"))

    walk(component)
    return out


def rows(component: Any) -> list[dict[str, Any]]:
    """The table rows (``tr`` in the body) of a rendered alert list."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for child in node:
                walk(child)
        elif isinstance(node, dict):
            props = node.get("props", {})
            if "alert-row" in (props.get("className") or ""):
                found.append(node)
            walk(props.get("children"))

    walk(component)
    return found


# --- plain functions ------------------------------------------------------------------------


def test_filters_start_from_the_address_and_ignore_nonsense() -> None:
    assert alerts_page.filters_from_search("") == {
        "state": "open",
        "level": "all",
        "commune": "all",
        "kind": "all",
    }
    chosen = alerts_page.filters_from_search("?state=resolved&level=3&commune=02269&kind=overdue")
    assert chosen == {"state": "resolved", "level": "3", "commune": "02269", "kind": "overdue"}
    bad = alerts_page.filters_from_search("?state=closed&level=9&commune=x';--")
    assert bad["state"] == "open" and bad["level"] == "all" and bad["commune"] == "all"
    assert alerts_page.query_filters("all", "2", "all", "overdue") == {
        "state": None,
        "level": 2,
        "commune": None,
        "kind": "overdue",
    }


def test_labels_and_pager_read_naturally() -> None:
    assert alerts_page.kind_label("apology_missing", "vi") == "Thiếu phiếu xin lỗi"
    assert alerts_page.kind_label("apology_missing", "en") == "No apology slip"
    assert alerts_page.kind_label("quarter_left", "vi") == "quarter_left"  # a province's own rule
    assert alerts_page.pager_text(312, 25, 25, "vi") == "26-50 / 312"
    assert alerts_page.pager_text(312, 300, 12, "en") == "301-312 of 312"
    assert alerts_page.pager_text(0, 0, 0, "vi") == ""
    assert "overdue_2d" in alerts_page.policy_kinds(None)


# --- queries --------------------------------------------------------------------------------


def test_alerts_page_query_filters_pages_and_puts_the_newest_first(world: World) -> None:
    with Session(world.engine) as s:
        everything = queries.alerts_page(s)
        assert everything["total"] == 4  # overdue, apology_missing, overdue_2d; due_soon
        late = queries.alerts_page(s, commune=THUONG_LAM)
        assert {a["kind"] for a in late["items"]} == {"overdue", "apology_missing", "overdue_2d"}
        assert [a["kind"] for a in queries.alerts_page(s, level=3)["items"]] == ["overdue_2d"]
        assert queries.alerts_page(s, kind="due_soon")["items"][0]["dossier_code"] == SOON
        assert queries.alerts_page(s, state="resolved")["total"] == 0
        page = queries.alerts_page(s, limit=3, offset=3)
        assert page["total"] == 4 and len(page["items"]) == 1
    # A later cycle raises a newer alert: it comes first.
    with session_factory(world.engine)() as s, s.begin():
        s.add(dossier("000.00.22.H56-261120-0003", THUONG_LAM, local(2026, 11, 26, 9, 30)))
    world.cycle(local(2026, 11, 25, 10, 5))
    with Session(world.engine) as s:
        assert queries.alerts_page(s)["items"][0]["dossier_code"] == "000.00.22.H56-261120-0003"


def test_the_dossier_api_includes_its_alert_history(world: World, app: Any) -> None:
    client = app.server.test_client()
    body = client.get(f"/api/v1/dossiers/{LATE}").get_json()
    assert sorted((a["kind"], a["level"]) for a in body["alerts"]) == [
        ("apology_missing", 2),
        ("overdue", 2),
        ("overdue_2d", 3),
    ]
    assert all(a["state"] == "open" and a["raised_at"].endswith("+07:00") for a in body["alerts"])
    # History: once the dossier is returned, its alerts stay on it, resolved.
    with session_factory(world.engine)() as s, s.begin():
        s.get(Dossier, LATE).is_open = False  # type: ignore[union-attr]
    world.cycle(local(2026, 11, 25, 10, 30))
    again = client.get(f"/api/v1/dossiers/{LATE}").get_json()
    assert {a["state"] for a in again["alerts"]} == {"resolved"} and len(again["alerts"]) == 3
    assert client.get(f"/api/v1/dossiers/{SOON}").get_json()["alerts"][0]["kind"] == "due_soon"


# --- callbacks ------------------------------------------------------------------------------


def test_the_page_is_routed_with_its_filters_from_the_address(app: Any) -> None:
    body = {
        "output": f"{ids.PAGE}.children",
        "outputs": {"id": ids.PAGE, "property": "children"},
        "inputs": [
            {"id": ids.URL, "property": "pathname", "value": "/alerts"},
            {"id": ids.URL, "property": "search", "value": f"?commune={THUONG_LAM}&level=2"},
        ],
        "changedPropIds": [f"{ids.URL}.pathname"],
    }
    response = app.server.test_client().post("/_dash-update-component", json=body)
    page = json.dumps(response.get_json()["response"][ids.PAGE]["children"], ensure_ascii=False)
    assert "Cảnh báo và chuyển cấp" in page
    assert f'"id": "{ids.ALERTS_COMMUNE}"' in page and '"value": "02269"' in page
    assert "Xã Thượng Lâm" in page  # the commune filter lists the province's communes


def test_the_list_shows_the_filtered_alerts_with_an_acknowledge_button_each(app: Any) -> None:
    out = refresh(app, commune=THUONG_LAM)
    found = rows(out[ids.ALERTS_LIST]["children"])
    assert len(found) == 3
    text = " ".join(strings(out[ids.ALERTS_LIST]["children"]))
    assert "Hồ sơ 000.00.22.H56-261110-0001 (Đăng ký khai sinh) đã quá hạn trả" in text
    assert "Cấp 3 · Tỉnh" in text and "Thiếu phiếu xin lỗi" in text
    assert text.count("Xác nhận") == 3  # every open alert can be acknowledged
    assert out[ids.ALERTS_PAGER]["children"] == "1-3 / 3"
    assert out[ids.ALERTS_PREV]["disabled"] is True and out[ids.ALERTS_NEXT]["disabled"] is True
    everything = refresh(app, state="all", search="?lang=en")
    assert everything[ids.ALERTS_PAGER]["children"] == "1-4 of 4"
    assert "Due soon" in strings(everything[ids.ALERTS_LIST]["children"])
    nothing = refresh(app, state="resolved")
    assert strings(nothing[ids.ALERTS_LIST]["children"]) == ["Không có cảnh báo phù hợp"]


def test_acknowledging_records_who_and_when_and_stops_the_escalation(
    world: World, app: Any
) -> None:
    [due_soon] = world.alerts(kind="due_soon")
    response = click_ack(app, due_soon.alert_id, "  Nguyễn Thị B, một cửa Hà Giang 2 ")
    assert response.status_code == 200
    out = {json.loads(k)["type"]: v for k, v in response.get_json()["response"].items()}
    cell = strings(out[ids.ALERT_STATE]["children"])
    assert cell == ["đã tiếp nhận", "Nguyễn Thị B, một cửa Hà Giang 2 · 10:00"]
    assert out[ids.ALERT_ACK]["disabled"] is True  # the button goes once acknowledged
    [stored] = world.alerts(kind="due_soon")
    assert stored.state == "acknowledged"
    assert stored.acknowledged_by == "Nguyễn Thị B, một cửa Hà Giang 2"
    assert stored.acknowledged_at == NOW
    # A second click elsewhere keeps the first acknowledgement.
    click_ack(app, due_soon.alert_id, "Someone else")
    assert world.alerts(kind="due_soon")[0].acknowledged_by == "Nguyễn Thị B, một cửa Hà Giang 2"
    # 4 working hours later the unacknowledged Thượng Lâm alerts' level-1 peers would move
    # up; the acknowledged due_soon does not.
    world.cycle(local(2026, 11, 25, 15, 30))
    assert world.alerts(kind="due_soon", level=2) == []
    # And the list now shows it acknowledged, without a button.
    listed = refresh(app, state="acknowledged")
    text = strings(listed[ids.ALERTS_LIST]["children"])
    assert "đã tiếp nhận" in text and "Xác nhận" not in text


def test_an_acknowledgement_without_a_name_asks_for_one_and_records_nothing(
    world: World, app: Any
) -> None:
    [due_soon] = world.alerts(kind="due_soon")
    response = click_ack(app, due_soon.alert_id, "   ", search="?lang=en")
    body = json.dumps(response.get_json()["response"], ensure_ascii=False)
    assert "Enter who acknowledges" in body and "open" in body
    assert world.alerts(kind="due_soon")[0].state == "open"


def test_an_unknown_alert_changes_nothing(app: Any) -> None:
    response = click_ack(app, uuid.uuid4(), "Nguyễn Văn A")
    assert response.status_code == 204  # PreventUpdate


# --- in the browser -------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_operator_acknowledges_an_alert_in_the_browser(dash_duo: Any, tmp_path: Any) -> None:
    world = build_world(f"sqlite:///{tmp_path / 'cc.db'}", wall_refresh_s=60)
    app = create_app(world.settings, clock=lambda: NOW, calendar=CAL)
    [due_soon] = world.alerts(kind="due_soon")
    dash_duo.start_server(app, port=free_port())
    dash_duo.wait_for_page(url=f"{dash_duo.server_url}/alerts?kind=due_soon", timeout=15)
    dash_duo.wait_for_text_to_equal(f"#{ids.ALERTS_PAGER}", "1-1 / 1", timeout=15)
    name = dash_duo.find_element(f"#{ids.ALERTS_ACK_BY}")
    name.send_keys("Trần Văn C")
    dash_duo.find_element(".ack-button").click()
    dash_duo.wait_for_contains_text(".alert-state-cell", "đã tiếp nhận", timeout=10)
    dash_duo.wait_for_contains_text(".alert-state-cell", "Trần Văn C · 10:00", timeout=10)
    assert not dash_duo.driver.find_element("css selector", ".ack-button").is_displayed()
    ARTIFACTS.mkdir(exist_ok=True)
    dash_duo.driver.save_screenshot(str(ARTIFACTS / "alerts_page.png"))
    assert world.alerts(kind="due_soon")[0].acknowledged_by == "Trần Văn C"
    assert due_soon.state == "open"  # as loaded before the click
    # The name stays in this browser for the next acknowledgement.
    dash_duo.driver.refresh()
    dash_duo.wait_for_element(f"#{ids.ALERTS_ACK_BY}", timeout=15)
    assert dash_duo.find_element(f"#{ids.ALERTS_ACK_BY}").get_attribute("value") == "Trần Văn C"
    errors = [e for e in dash_duo.get_logs() if e["level"] == "SEVERE"]
    assert errors == []
    world.engine.dispose()
