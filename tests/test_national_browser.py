"""The national wall in headless Chromium at 1920x1080: country -> province -> commune.

Every commune of the 34 provinces is in the database, with data in three provinces
(tests/national_seed.py); the country's map draws all 34 provinces. A screenshot of the
national wall lands in ``artifacts/``, next to the provincial wall's.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control_center.app import create_app
from control_center.db import make_engine
from control_center.reference import national_geojson
from control_center.settings import Settings, load_settings
from layouts import ids
from layouts.format import fmt_int
from layouts.map import bounds, fit_view
from tests.conftest import free_port
from tests.national_seed import HANOI, HANOI_A, seed_country
from tests.test_wall_browser import (
    screenshot,
    set_viewport,
    severe_errors,
    text,
    texts,
    wait_until,
)
from tests.wall_seed import NOW

# The country's first refresh reads 3,321 communes (SQLite here): give it time on a busy box.
LOAD_S = 45

pytest_plugins = ["tests.browser_plugin"]
pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]


@pytest.fixture
def country(tmp_path: Path) -> Iterator[Settings]:
    url = f"sqlite:///{tmp_path / 'cc.db'}"
    engine = make_engine(url)
    seed_country(engine)
    engine.dispose()
    yield load_settings(
        database_url=url, scope="national", wall_refresh_s=2, cache_dir=tmp_path / "cache"
    )


def start(dash_duo: Any, settings: Settings) -> None:
    set_viewport(dash_duo.driver)
    dash_duo.start_server(create_app(settings, clock=lambda: NOW), port=free_port())


def api(dash_duo: Any, path: str) -> Any:
    with urllib.request.urlopen(dash_duo.server_url + path, timeout=10) as response:
        return json.load(response)


def graph(dash_duo: Any, graph_id: str, expression: str) -> Any:
    return dash_duo.driver.execute_script(
        f"const gd = document.querySelector('#{graph_id} .js-plotly-plot');"
        f"return gd && gd.data ? {expression} : null;"
    )


def wait_for_map(dash_duo: Any, graph_id: str, features: int) -> None:
    dash_duo.wait_for_element(f"#{graph_id} canvas.maplibregl-canvas", timeout=LOAD_S)
    wait_until(
        dash_duo,
        lambda: (
            graph(dash_duo, graph_id, "gd.data[1].z.some(v => v !== null)")
            and graph(dash_duo, graph_id, "gd.data[1].locations.length") == features
        ),
        LOAD_S,
    )
    # After the first refresh the map is fitted to its panel's pixels (assets/map_fit.js).
    wait_until(
        dash_duo,
        lambda: dash_duo.driver.execute_script(
            f"return document.getElementById('{graph_id}').dataset.fitted === '1';"
        ),
        LOAD_S,
    )
    wait_until(
        dash_duo,
        lambda: dash_duo.driver.execute_script(
            f"const gd = document.querySelector('#{graph_id} .js-plotly-plot');"
            "const m = gd && gd._fullLayout.map._subplot && gd._fullLayout.map._subplot.map;"
            "return !!(m && m.loaded());"
        ),
        LOAD_S,
    )


def test_country_map_then_a_province_then_a_commune(dash_duo: Any, country: Settings) -> None:
    start(dash_duo, country)
    summary = api(dash_duo, "/api/v1/summary")
    dash_duo.wait_for_text_to_equal(
        '[data-kpi="open"] .kpi-value', fmt_int(summary["open"], "vi"), timeout=LOAD_S
    )
    wait_for_map(dash_duo, ids.NATIONAL_MAP, 34)

    # The country: its figures, the 34 provinces coloured by overdue, the worst first.
    assert text(dash_duo, "h1") == "Toàn quốc"
    assert text(dash_duo, '[data-kpi="overdue"] .kpi-value') == fmt_int(summary["overdue"], "vi")
    assert text(dash_duo, '[data-kpi="centres"] .kpi-value').endswith("/3.321")
    provinces = {p["code"]: p for p in api(dash_duo, "/api/v1/provinces")}
    overdue = graph(
        dash_duo,
        ids.NATIONAL_MAP,
        "Object.fromEntries(gd.data[1].locations.map((c, i) => [c, gd.data[1].z[i]]))",
    )
    assert len(overdue) == 34
    assert overdue == {code: float(p["overdue"]) for code, p in provinces.items()}
    worst = texts(dash_duo, f"#{ids.NATIONAL_WORST_PROVINCES} tbody tr")
    assert worst[0].startswith("Hà Nội") and len(worst) == 3
    communes = texts(dash_duo, f"#{ids.NATIONAL_WORST_COMMUNES} tbody tr")
    assert communes[0].split("\t")[0].endswith("· Hà Nội")
    # The map fills its panel: the zoom fitted to the panel's pixels, not the server's guess.
    width, height = dash_duo.driver.execute_script(
        f"const g = document.getElementById('{ids.NATIONAL_MAP}');"
        "return [g.clientWidth, g.clientHeight];"
    )
    _, zoom = fit_view(bounds(national_geojson()), width, height)
    assert abs(graph(dash_duo, ids.NATIONAL_MAP, "gd.layout.map.zoom") - zoom) < 0.02
    screenshot(dash_duo, "national_wall.png")
    assert severe_errors(dash_duo) == []

    # A click on Hà Nội opens its wall: its 126 communes, its own figures.
    dash_duo.driver.execute_script(
        f"document.querySelector('#{ids.NATIONAL_MAP} .js-plotly-plot')"
        f".emit('plotly_click', {{points: [{{location: '{HANOI}', curveNumber: 1}}]}});"
    )
    wait_for_map(dash_duo, ids.WALL_MAP, 126)
    assert dash_duo.driver.current_url.endswith(f"/?province={HANOI}")
    assert text(dash_duo, "h1") == "Thành phố Hà Nội"
    hanoi = api(dash_duo, f"/api/v1/summary?province={HANOI}")
    dash_duo.wait_for_text_to_equal(
        '[data-kpi="overdue"] .kpi-value', fmt_int(hanoi["overdue"], "vi"), timeout=LOAD_S
    )
    assert hanoi["overdue"] == provinces[HANOI]["overdue"]
    assert text(dash_duo, '[data-kpi="centres"] .kpi-value').endswith("/126")
    screenshot(dash_duo, "national_province_wall.png")

    # A click on a commune opens its page, titled with its province; back returns to Hà Nội.
    dash_duo.driver.execute_script(
        f"document.querySelector('#{ids.WALL_MAP} .js-plotly-plot')"
        f".emit('plotly_click', {{points: [{{location: '{HANOI_A}', curveNumber: 1}}]}});"
    )
    dash_duo.wait_for_text_to_equal(
        f"#{ids.COMMUNE_TITLE}",
        f"{api(dash_duo, f'/api/v1/communes/{HANOI_A}')['name']} ({HANOI_A})",
        timeout=15,
    )
    assert text(dash_duo, "h1") == "Thành phố Hà Nội"
    dash_duo.find_element(".back-link").click()
    wait_for_map(dash_duo, ids.WALL_MAP, 126)
    assert dash_duo.driver.current_url.endswith(f"/?province={HANOI}")

    # And the header's link goes back to the country.
    dash_duo.find_element(".header-right a[href='/']").click()
    wait_for_map(dash_duo, ids.NATIONAL_MAP, 34)
    assert severe_errors(dash_duo) == []
