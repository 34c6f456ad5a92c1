"""The wall's callbacks through Dash's own HTTP endpoint, on SQLite and PostgreSQL.

This is what every browser does every few seconds: the page brings the map's polygons, and
every tick sends only a Patch of colours and hover text, read from the aggregates.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from typing import Any

import pytest

from control_center.app import create_app
from control_center.db import make_engine
from control_center.settings import load_settings
from layouts import ids, queue, wall
from tests.wall_seed import NOW, THUONG_LAM, seed_province

WALL_OUTPUTS = wall.REFRESH_OUTPUTS


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


def polygons(client: Any, figure: dict[str, Any]) -> list[dict[str, Any]]:
    """The features behind both map traces, fetched from the address the figure names."""
    sources = {trace["geojson"] for trace in figure["data"]}
    assert len(sources) == 1
    (source,) = sources
    assert source.startswith("/geo/province-08.geojson?v=")
    response = client.get(source)
    assert response.status_code == 200
    features: list[dict[str, Any]] = json.loads(response.get_data())["features"]
    return features


def test_a_browser_without_the_map_gets_it_whole_then_only_values(client: Any) -> None:
    first = wall_tick(client, tick=None, measure="overdue", built=None)
    out = first.get_json()["response"]
    figure = out[ids.WALL_MAP]["figure"]
    assert len(polygons(client, figure)) == 124
    assert "FeatureCollection" not in first.get_data(as_text=True)  # named by address only
    assert out[ids.WALL_MAP_BUILT]["data"] == ["overdue", "vi"]

    tick = wall_tick(client, tick=1, measure="overdue", built=["overdue", "vi"])
    patch = tick.get_json()["response"][ids.WALL_MAP]["figure"]
    assert "__dash_patch_update" in json.dumps(patch)
    assert "coordinates" not in json.dumps(patch) and "geojson" not in json.dumps(patch)
    assert ids.WALL_MAP_BUILT not in tick.get_json()["response"]  # unchanged: no_update


def test_the_polygons_are_a_cacheable_gzipped_file(client: Any) -> None:
    figure = wall_tick(client, tick=None, measure="overdue", built=None).get_json()["response"]
    source = figure[ids.WALL_MAP]["figure"]["data"][0]["geojson"]
    plain = client.get(source)
    assert plain.headers.get("Content-Encoding") is None
    zipped = client.get(source, headers={"Accept-Encoding": "gzip, deflate"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.get_data()) == plain.get_data()
    assert len(zipped.get_data()) * 3 < len(plain.get_data())
    # The address carries the content's hash: the browser keeps it a year and never asks again.
    cache = plain.headers["Cache-Control"]
    assert "immutable" in cache and "max-age=31536000" in cache and "private" in cache
    etag = plain.headers["ETag"]
    assert source.endswith(etag.strip('"'))
    unversioned = client.get("/geo/province-08.geojson")
    assert "no-cache" in unversioned.headers["Cache-Control"]
    assert client.get(source, headers={"If-None-Match": etag}).status_code == 304
    for unknown in ("province-99", "province-8", "country-x", "settings"):
        assert client.get(f"/geo/{unknown}.geojson").status_code == 404


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
    assert len(polygons(client, figure)) == 124


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


def dash_call(
    client: Any,
    outputs: Sequence[tuple[str, str]],
    inputs: list[tuple[str, str, Any]],
    state: list[tuple[str, str, Any]],
) -> dict[str, Any]:
    key = "...".join(f"{i}.{p}" for i, p in outputs)
    body = {
        "output": f"..{key}..",
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
        "changedPropIds": [],
    }
    response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_json()["response"]


QUEUE_OUTPUTS = queue.REFRESH_OUTPUTS


def queue_tick(client: Any) -> dict[str, Any]:
    """The queue view's first refresh, as the page sends it."""
    return dash_call(
        client,
        QUEUE_OUTPUTS,
        [(ids.QUEUE_INTERVAL, "n_intervals", None)],
        [(ids.URL, "search", ""), (ids.QUEUE_KIOSK, "data", False)],
    )


def test_queue_view_names_the_centre_where_people_wait_longest(client: Any) -> None:
    out = queue_tick(client)
    table = json.dumps(out[ids.QUEUE_TABLE], ensure_ascii=False)
    # wall_seed: four tickets still waiting at Thượng Lâm, the oldest issued 45 minutes ago.
    assert "Xã Thượng Lâm" in table and "45 phút" in table
    totals = json.dumps(out[ids.QUEUE_TOTALS], ensure_ascii=False)
    assert "tại 1/124 trung tâm" in totals
    assert "hidden" in out[ids.QUEUE_STALE_BANNER]["className"]


def test_overdue_view_lists_the_provinces_late_dossiers(client: Any) -> None:
    out = dash_call(
        client,
        [
            (ids.OVERDUE_WALL_TOTALS, "children"),
            (ids.OVERDUE_WALL_LIST, "children"),
            (ids.OVERDUE_WALL_DUE_SOON, "children"),
            (ids.OVERDUE_WALL_CLOCK, "children"),
        ],
        [(ids.OVERDUE_WALL_INTERVAL, "n_intervals", None)],
        [(ids.URL, "search", "?lang=en")],
    )
    listed = json.dumps(out[ids.OVERDUE_WALL_LIST], ensure_ascii=False)
    for i in range(3):
        assert f"000.00.22.H56-251116-000{i}" in listed
    assert "No dossiers due soon" in json.dumps(out[ids.OVERDUE_WALL_DUE_SOON])
    assert out[ids.OVERDUE_WALL_CLOCK]["children"] == "10:00"


def test_one_refresh_reads_each_aggregate_once_with_the_same_answers(sqlite_url: str) -> None:
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from control_center import queries
    from control_center.runtime import calendar_from_settings

    engine = make_engine(sqlite_url)
    seed_province(engine)
    settings = load_settings(database_url=sqlite_url)
    calendar = calendar_from_settings(settings)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))

    def refresh(session: Session) -> tuple[Any, Any]:
        return (
            queries.province_summary(session, settings, calendar, NOW),
            queries.commune_rows(session, settings, calendar, NOW),
        )

    with Session(engine) as session:
        separate = refresh(session)
        separate_count = len(statements)
        statements.clear()
        with queries.shared_reads(session):
            shared = refresh(session)
        shared_count = len(statements)
        statements.clear()
        refresh(session)  # after the block, every aggregate is read again
        # ... but not the province's commune codes: once per session.
        assert len(statements) == separate_count - 1
        # A block inside another shares the outer one's reads and leaves them to it.
        with queries.shared_reads(session):
            with queries.shared_reads(session):
                refresh(session)
            statements.clear()
            refresh(session)
            assert len(statements) <= shared_count - 4
    engine.dispose()

    assert shared == separate
    assert shared_count <= separate_count - 4  # due buckets, daily, queue, feeds: once each
