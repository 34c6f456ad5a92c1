"""The wall's callbacks through Dash's own HTTP endpoint, on SQLite and PostgreSQL.

This is what every browser does every few seconds: the page brings the map's polygons, and
every tick sends only a Patch of colours and hover text, read from the aggregates.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from control_center.app import create_app
from control_center.db import make_engine
from control_center.settings import load_settings
from layouts import ids
from tests.wall_seed import NOW, THUONG_LAM, seed_province

WALL_OUTPUTS = [
    (ids.WALL_MAP, "figure"),
    (ids.WALL_MAP_BUILT, "data"),
    (ids.WALL_KPIS, "children"),
    (ids.WALL_WORST, "children"),
    (ids.WALL_TICKER, "children"),
    (ids.WALL_FEEDS, "children"),
    (ids.WALL_CLOCK, "children"),
    (ids.WALL_DATA_AS_OF, "children"),
    (ids.WALL_STALE_BANNER, "children"),
    (ids.WALL_STALE_BANNER, "className"),
]


@pytest.fixture
def client(db_url: str) -> Any:
    engine = make_engine(db_url)
    seed_province(engine)
    engine.dispose()
    app = create_app(load_settings(database_url=db_url), clock=lambda: NOW)
    return app.server.test_client()


def wall_tick(client: Any, *, tick: int | None, measure: str, built: Any, search: str = "") -> Any:
    key = "...".join(f"{i}.{p}" for i, p in WALL_OUTPUTS)
    body = {
        "output": f"..{key}..",
        "outputs": [{"id": i, "property": p} for i, p in WALL_OUTPUTS],
        "inputs": [
            {"id": ids.WALL_INTERVAL, "property": "n_intervals", "value": tick},
            {"id": ids.WALL_MEASURE, "property": "value", "value": measure},
        ],
        "state": [
            {"id": ids.URL, "property": "search", "value": search},
            {"id": ids.WALL_MAP_BUILT, "property": "data", "value": built},
        ],
        "changedPropIds": [f"{ids.WALL_INTERVAL}.n_intervals"] if tick else [],
    }
    response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response


def test_a_browser_without_the_map_gets_it_whole_then_only_values(client: Any) -> None:
    first = wall_tick(client, tick=None, measure="overdue", built=None)
    out = first.get_json()["response"]
    figure = out[ids.WALL_MAP]["figure"]
    assert len(figure["data"][0]["geojson"]["features"]) == 124
    assert out[ids.WALL_MAP_BUILT]["data"] == ["overdue", "vi"]

    tick = wall_tick(client, tick=1, measure="overdue", built=["overdue", "vi"])
    patch = tick.get_json()["response"][ids.WALL_MAP]["figure"]
    assert "__dash_patch_update" in json.dumps(patch)
    assert "coordinates" not in json.dumps(patch)
    assert len(tick.get_data()) * 5 < len(first.get_data())
    assert ids.WALL_MAP_BUILT not in tick.get_json()["response"]  # unchanged: no_update


def test_changing_the_measure_recolours_without_resending_polygons(client: Any) -> None:
    response = wall_tick(client, tick=3, measure="feed_state", built=["overdue", "vi"])
    out = response.get_json()["response"]
    assert out[ids.WALL_MAP_BUILT]["data"] == ["feed_state", "vi"]
    patch = json.dumps(out[ids.WALL_MAP]["figure"], ensure_ascii=False)
    assert "colorbar" in patch and "trực tuyến" in patch
    assert "coordinates" not in patch


def test_a_new_language_gets_a_whole_new_map(client: Any) -> None:
    response = wall_tick(
        client, tick=3, measure="overdue", built=["overdue", "vi"], search="?lang=en"
    )
    figure = response.get_json()["response"][ids.WALL_MAP]["figure"]
    assert figure["data"][1]["colorbar"]["title"]["text"] == "Overdue"
    assert len(figure["data"][0]["geojson"]["features"]) == 124


def test_wall_tick_carries_the_province_figures(client: Any) -> None:
    out = wall_tick(client, tick=None, measure="overdue", built=None).get_json()["response"]
    text = json.dumps(out, ensure_ascii=False)
    assert "Xã Thượng Lâm" in json.dumps(out[ids.WALL_WORST], ensure_ascii=False)
    assert THUONG_LAM in text
    assert out[ids.WALL_CLOCK]["children"] == "10:00"
    assert "hidden" in out[ids.WALL_STALE_BANNER]["className"]


def test_database_outage_keeps_the_figures_but_raises_the_banner(tmp_path: Any) -> None:
    # A SQLite "database" that is a directory: every query fails as a real outage would.
    broken = tmp_path / "not-a-database"
    broken.mkdir()
    app = create_app(load_settings(database_url=f"sqlite:///{broken}"), clock=lambda: NOW)
    response = wall_tick(
        app.server.test_client(), tick=4, measure="overdue", built=["overdue", "vi"]
    )
    out = response.get_json()["response"]
    assert "không đọc được cơ sở dữ liệu lúc 10:00" in out[ids.WALL_STALE_BANNER]["children"]
    assert "hidden" not in out[ids.WALL_STALE_BANNER]["className"]
    assert ids.WALL_KPIS not in out  # the last figures stay on screen, under the banner


def test_commune_page_callback_answers_and_unknown_commune_says_so(client: Any) -> None:
    outputs = [
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

    def ask(code: str) -> dict[str, Any]:
        key = "...".join(f"{i}.{p}" for i, p in outputs)
        body = {
            "output": f"..{key}..",
            "outputs": [{"id": i, "property": p} for i, p in outputs],
            "inputs": [{"id": ids.COMMUNE_INTERVAL, "property": "n_intervals", "value": None}],
            "state": [
                {"id": ids.COMMUNE_CODE, "property": "data", "value": code},
                {"id": ids.URL, "property": "search", "value": "?lang=en"},
            ],
            "changedPropIds": [],
        }
        response = client.post("/_dash-update-component", json=body)
        assert response.status_code == 200
        return response.get_json()["response"]

    out = ask(THUONG_LAM)
    assert out[ids.COMMUNE_TITLE]["children"] == "Xã Thượng Lâm (02269)"
    assert "hidden" in out[ids.COMMUNE_BANNER]["className"]
    assert len(out[ids.COMMUNE_DAILY]["figure"]["data"][0]["x"]) == 30
    assert ask("99999")[ids.COMMUNE_TITLE]["children"] == "No commune 99999"
