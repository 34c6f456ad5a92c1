"""The wall in headless Chromium at 1920x1080: what an operator sees, and a clean console.

Data is written straight into the aggregate tables (tests/wall_seed.py) and the app runs with
a fixed clock, so the figures on screen can be compared with ``queries.province_summary``.
Screenshots land in ``artifacts/`` for a person to look at.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy.orm import Session

from collectors.ingest import recount_commune_backlog
from control_center import queries, reference
from control_center.app import create_app
from control_center.db import make_engine
from control_center.domain.calendar import LOCAL_TZ
from control_center.models import CommuneDueBucket, QueueTicket
from control_center.reference import province_communes
from control_center.runtime import calendar_from_settings
from control_center.settings import Settings, load_settings
from layouts import ids
from layouts.format import fmt_int, fmt_minutes, fmt_number, fmt_pct
from layouts.map import bounds, fit_view
from tests.conftest import free_port
from tests.wall_seed import (
    HA_GIANG_2,
    NOW,
    THUONG_LAM,
    seed_province,
)

pytest_plugins = ["tests.browser_plugin"]
pytestmark = [
    pytest.mark.browser,
    # dash_duo stops its server thread by raising SystemExit in it; that is not our failure.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
MAP_DRAW_S = 20  # MapLibre on software WebGL takes a few seconds


def set_viewport(driver: Any, width: int = 1920, height: int = 1080) -> None:
    """The page area itself at 1920x1080 (the window size includes the browser's own frame)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def severe_errors(dash_duo: Any) -> list[dict[str, Any]]:
    return [
        entry
        for entry in dash_duo.get_logs()
        if entry["level"] == "SEVERE" and "GPU stall due to ReadPixels" not in entry["message"]
    ]


def texts(dash_duo: Any, selector: str) -> list[str]:
    """Visible text of the matching elements, read in one go: panels are re-rendered every
    refresh, so a WebElement found a moment ago may already be gone."""
    return dash_duo.driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText.trim());",
        selector,
    )


def text(dash_duo: Any, selector: str) -> str:
    found = texts(dash_duo, selector)
    assert found, f"nothing matches {selector}"
    return found[0]


def kpi_value(dash_duo: Any, key: str) -> str:
    return text(dash_duo, f'[data-kpi="{key}"] .kpi-value')


def map_data(dash_duo: Any, expression: str) -> Any:
    return dash_duo.driver.execute_script(
        f"const gd = document.querySelector('#{ids.WALL_MAP} .js-plotly-plot');"
        f"return gd && gd.data ? {expression} : null;"
    )


def wait_until(dash_duo: Any, condition: Callable[[], Any], timeout: float = 15) -> Any:
    return WebDriverWait(dash_duo.driver, timeout, poll_frequency=0.2).until(
        lambda _driver: condition()
    )


def settled(dash_duo: Any, read: Callable[[], Any], timeout: float = 15) -> Any:
    """A value once it stops changing (a wheel zoom animates for a while)."""
    last: list[Any] = [object()]

    def unchanged() -> bool:
        value = read()
        same = value == last[0]
        last[0] = value
        time.sleep(0.5)
        return same

    wait_until(dash_duo, unchanged, timeout)
    return last[0]


def map_fitted(dash_duo: Any) -> bool:
    """The first refresh has landed and the map was fitted to its panel (assets/map_fit.js)."""
    return bool(
        dash_duo.driver.execute_script(
            f"const g = document.getElementById('{ids.WALL_MAP}');"
            "return !!g && g.dataset.fitted === '1';"
        )
    )


def wait_for_map(dash_duo: Any) -> None:
    dash_duo.wait_for_element(f"#{ids.WALL_MAP} canvas.maplibregl-canvas", timeout=MAP_DRAW_S)
    wait_until(dash_duo, lambda: map_data(dash_duo, "gd.data.length") == 2, MAP_DRAW_S)
    wait_until(dash_duo, lambda: map_fitted(dash_duo), MAP_DRAW_S)
    wait_until(dash_duo, lambda: map_idle(dash_duo), MAP_DRAW_S)


def map_idle(dash_duo: Any) -> bool:
    """The panel fit (assets/map_fit.js) has reached plotly.js and MapLibre, which has drawn it
    and is not moving: what an operator's first wheel or click meets. Before that, a wheel's
    zoom could be overwritten by the fit landing after it (a fixed pause was not always
    enough on a loaded machine)."""
    return bool(
        map_data(
            dash_duo,
            "(() => { const s = gd._fullLayout.map && gd._fullLayout.map._subplot;"
            " const m = s && s.map;"
            f" const want = Number(document.getElementById('{ids.WALL_MAP}').dataset.fitZoom);"
            " return !!m && m.loaded() && !m.isMoving()"
            " && Math.abs(gd.layout.map.zoom - want) < 1e-6"
            " && Math.abs(m.getZoom() - want) < 1e-6; })()",
        )
    )


def screenshot(dash_duo: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    dash_duo.driver.save_screenshot(str(path))
    return path


class Province:
    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.settings = settings
        self.engine = make_engine(url)

    def summary(self) -> dict[str, Any]:
        with Session(self.engine) as session:
            return queries.province_summary(
                session, self.settings, calendar_from_settings(self.settings), NOW
            )

    def add_waiting(self, commune_code: str, count: int, minutes_ago: int) -> None:
        """``count`` tickets waiting at ``commune_code``, issued ``minutes_ago`` before NOW."""
        today = NOW.astimezone(LOCAL_TZ).date()
        with Session(self.engine) as session, session.begin():
            for i in range(count):
                session.add(
                    QueueTicket(
                        commune_code=commune_code,
                        service_day=today,
                        ticket_no=f"B{i:03d}",
                        state="waiting",
                        issued_at=NOW - timedelta(minutes=minutes_ago),
                        last_event_at=NOW - timedelta(minutes=minutes_ago),
                    )
                )

    def add_overdue(self, commune_code: str, count: int) -> None:
        with Session(self.engine) as session, session.begin():
            session.add(
                CommuneDueBucket(
                    commune_code=commune_code,
                    due_minute=(NOW - timedelta(days=2)).replace(second=0, microsecond=0),
                    open_count=count,
                )
            )
            session.flush()
            recount_commune_backlog(session.connection())


@pytest.fixture
def province(tmp_path: Path) -> Iterator[Province]:
    url = f"sqlite:///{tmp_path / 'cc.db'}"
    seeded = Province(url, load_settings(database_url=url, wall_refresh_s=2))
    seed_province(seeded.engine)
    yield seeded
    seeded.engine.dispose()


@pytest.fixture
def stale_province(tmp_path: Path) -> Iterator[Province]:
    url = f"sqlite:///{tmp_path / 'cc.db'}"
    seeded = Province(url, load_settings(database_url=url, wall_refresh_s=2))
    seed_province(seeded.engine, collector_beat_age_s=15 * 60)
    yield seeded
    seeded.engine.dispose()


def start(dash_duo: Any, province: Province, path: str = "/") -> None:
    app = create_app(province.settings, clock=lambda: NOW)
    set_viewport(dash_duo.driver)
    dash_duo.start_server(app, port=free_port())
    if path != "/":
        dash_duo.driver.get(dash_duo.server_url + path)


def api_summary(dash_duo: Any) -> dict[str, Any]:
    """What ``GET /api/v1/summary`` says, from the same server the browser talks to."""
    with urllib.request.urlopen(dash_duo.server_url + "/api/v1/summary", timeout=10) as response:
        return json.load(response)


def test_wall_shows_the_provinces_figures_on_a_full_map(dash_duo: Any, province: Province) -> None:
    start(dash_duo, province)
    # The app's clock is fixed, so the API and the wall describe the same moment.
    summary = api_summary(dash_duo)
    assert summary["open"] == province.summary()["open"]
    dash_duo.wait_for_text_to_equal(
        '[data-kpi="open"] .kpi-value', fmt_int(summary["open"], "vi"), timeout=15
    )
    wait_for_map(dash_duo)

    assert kpi_value(dash_duo, "overdue") == fmt_int(summary["overdue"], "vi")
    assert kpi_value(dash_duo, "due_soon") == fmt_int(summary["due_soon"], "vi")
    assert kpi_value(dash_duo, "received_today") == fmt_int(summary["received_today"], "vi")
    assert kpi_value(dash_duo, "returned_today") == fmt_int(summary["returned_today"], "vi")
    assert kpi_value(dash_duo, "on_time_rate") == fmt_pct(summary["on_time_rate"], "vi")
    assert kpi_value(dash_duo, "queue_waiting") == fmt_int(summary["queue_waiting"], "vi")
    assert kpi_value(dash_duo, "centres") == f"{summary['centres_online']}/124"
    assert kpi_value(dash_duo, "progress_score") == fmt_number(summary["progress_score"], "vi", 2)

    # Drawn by the partial plotly.js bundle (layouts/plotly_js.py), not the full one.
    assert dash_duo.driver.execute_script(
        "return Object.keys(Plotly.PlotSchema.get().traces).sort();"
    ) == ["bar", "choroplethmap", "scatter"]

    # Every commune is drawn, from the polygons' file that plotly.js fetched once and keeps.
    assert map_data(dash_duo, "gd.data[0].locations.length") == 124
    assert map_data(dash_duo, "gd.data[1].locations.length") == 124
    source = map_data(dash_duo, "gd.data[1].geojson")
    assert source.startswith("/geo/province-08.geojson?v=")
    fetched = "(window.PlotlyGeoAssets || {})[gd.data[1].geojson]"
    assert map_data(dash_duo, f"{fetched} && {fetched}.features.length") == 124
    # What MapLibre drew: the measure trace's filled polygons, one centroid per commune.
    drawn = map_data(
        dash_duo,
        "new Set(gd._fullLayout.map._subplot.map"
        ".queryRenderedFeatures({layers: [`plotly-trace-layer-${gd._fullData[1].uid}-fill`]})"
        ".map(f => String(f.properties.ct))).size",
    )
    assert drawn == 124
    overdue_by_code = map_data(
        dash_duo, "Object.fromEntries(gd.data[1].locations.map((c, i) => [c, gd.data[1].z[i]]))"
    )
    assert overdue_by_code[THUONG_LAM] == 7

    worst = texts(dash_duo, f"#{ids.WALL_WORST} tbody tr")
    assert worst[0].startswith("Xã Thượng Lâm")
    assert worst[1].startswith("Phường Hà Giang 2")
    ticker = texts(dash_duo, f"#{ids.WALL_TICKER} li")
    assert [li.split()[:2] for li in ticker] == [["Cấp", "3"], ["Cấp", "2"], ["Cấp", "1"]]
    feeds = text(dash_duo, f"#{ids.WALL_FEEDS}")
    assert "Xã Đồng Tâm · mất kết nối · 3,0 giờ" in feeds  # OFFLINE_COMMUNE in wall_seed
    assert "Xã Ngọc Đường · chậm · 12 phút" in feeds  # STALE_COMMUNE in wall_seed
    assert not dash_duo.find_element(f"#{ids.WALL_STALE_BANNER}").is_displayed()
    assert text(dash_duo, f"#{ids.WALL_CLOCK}") == "10:00"

    screenshot(dash_duo, "wall.png")
    assert severe_errors(dash_duo) == []


def test_wall_updates_in_place_and_keeps_the_operators_zoom(
    dash_duo: Any, province: Province
) -> None:
    start(dash_duo, province)
    wait_for_map(dash_duo)
    initial_zoom = map_data(dash_duo, "gd.layout.map.zoom")
    # A real mouse-wheel zoom over the map, as an operator would do. On a loaded machine
    # headless Chromium now and then never delivers a synthetic wheel to the page (MapLibre
    # saw no wheel event at all), so the operator scrolls again until the map zoomed.
    canvas = dash_duo.find_element(f"#{ids.WALL_MAP} canvas.maplibregl-canvas")

    def zoomed_in() -> bool:
        if map_data(dash_duo, "gd.layout.map.zoom") > initial_zoom + 0.3:
            return True
        ActionChains(dash_duo.driver).scroll_from_origin(
            ScrollOrigin.from_element(canvas), 0, -400
        ).perform()
        time.sleep(1.5)
        return bool(map_data(dash_duo, "gd.layout.map.zoom") > initial_zoom + 0.3)

    wait_until(dash_duo, zoomed_in, 30)
    zoom = settled(dash_duo, lambda: map_data(dash_duo, "gd.layout.map.zoom"))
    before = province.summary()["overdue"]
    province.add_overdue(HA_GIANG_2, 5)

    dash_duo.wait_for_text_to_equal(
        '[data-kpi="overdue"] .kpi-value', fmt_int(before + 5, "vi"), timeout=15
    )
    wait_until(
        dash_duo,
        lambda: (
            map_data(dash_duo, f"gd.data[1].z[gd.data[1].locations.indexOf('{HA_GIANG_2}')]") == 7
        ),
    )
    assert map_data(dash_duo, "gd.layout.map.zoom") == zoom

    # Picking another measure rebuilds the figure; the operator's zoom still stays.
    dash_duo.find_element(f"#{ids.WALL_MEASURE} input[value='feed_state']").click()
    wait_until(
        dash_duo,
        lambda: map_data(dash_duo, "gd.data[1].colorbar.title.text") == "Kết nối",
    )
    assert map_data(dash_duo, "gd.layout.map.zoom") == zoom
    assert severe_errors(dash_duo) == []


def test_a_commune_opens_from_the_map_and_shows_its_page(dash_duo: Any, province: Province) -> None:
    start(dash_duo, province)
    wait_for_map(dash_duo)
    # What dcc.Graph hears when a commune polygon is clicked.
    dash_duo.driver.execute_script(
        f"document.querySelector('#{ids.WALL_MAP} .js-plotly-plot')"
        f".emit('plotly_click', {{points: [{{location: '{THUONG_LAM}', curveNumber: 1}}]}});"
    )
    dash_duo.wait_for_text_to_equal(f"#{ids.COMMUNE_TITLE}", "Xã Thượng Lâm (02269)", timeout=15)
    assert dash_duo.driver.current_url.endswith(f"/commune/{THUONG_LAM}")
    wait_until(dash_duo, lambda: len(texts(dash_duo, f"#{ids.COMMUNE_OVERDUE} tbody tr")) == 3)
    assert kpi_value(dash_duo, "overdue") == "7"
    assert "trực tuyến" in text(dash_duo, f"#{ids.COMMUNE_FEED}")
    assert len(texts(dash_duo, f"#{ids.COMMUNE_ALERTS} li")) == 3
    dash_duo.wait_for_element(f"#{ids.COMMUNE_DAILY} .main-svg", timeout=10)
    time.sleep(1)
    # The bars and the line were drawn (the partial plotly.js bundle has their trace types).
    drawn = dash_duo.driver.execute_script(
        "const marks = id => { const g = document.querySelector(`#${id} .js-plotly-plot`);"
        "  return [g._fullData.map(t => `${t.type}:${t.visible}`),"
        "          g.querySelectorAll('.barlayer .point').length,"
        "          g.querySelectorAll('.scatterlayer .js-line').length]; };"
        f"return [marks('{ids.COMMUNE_DAILY}'), marks('{ids.COMMUNE_QUEUE}')];"
    )
    (daily_traces, daily_bars, daily_lines), (queue_traces, queue_bars, _) = drawn
    # A long alert (a procedure's full name) stays on its line: the page never scrolls
    # sideways and the charts keep their half of the screen.
    widths = dash_duo.driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth,"
        f" document.getElementById('{ids.COMMUNE_DAILY}').getBoundingClientRect().width];"
    )
    assert widths[0] <= widths[1] and widths[2] > 0.4 * widths[1], widths
    assert daily_traces == ["bar:true", "bar:true", "scatter:true"]
    assert daily_bars > 0 and daily_lines == 1
    assert queue_traces == ["bar:true"] and queue_bars > 0
    screenshot(dash_duo, "commune.png")
    assert severe_errors(dash_duo) == []

    dash_duo.find_element(".back-link").click()
    dash_duo.wait_for_element(f"#{ids.WALL_MAP}", timeout=10)


def test_english_switch_changes_the_labels(dash_duo: Any, province: Province) -> None:
    start(dash_duo, province)
    dash_duo.wait_for_text_to_equal('[data-kpi="overdue"] .kpi-label', "Quá hạn", timeout=15)
    dash_duo.find_element(f"#{ids.LANG_SWITCH}").click()
    dash_duo.wait_for_text_to_equal('[data-kpi="overdue"] .kpi-label', "Overdue", timeout=15)
    assert "lang=en" in dash_duo.driver.current_url
    assert text(dash_duo, f"#{ids.WALL_WORST} th") == "Commune"
    wait_for_map(dash_duo)
    assert map_data(dash_duo, "gd.data[1].colorbar.title.text") == "Overdue"
    screenshot(dash_duo, "wall_en.png")
    assert severe_errors(dash_duo) == []


def test_stale_banner_when_the_collector_has_gone_quiet(
    dash_duo: Any, stale_province: Province
) -> None:
    assert stale_province.summary()["data_stale"]
    start(dash_duo, stale_province)
    dash_duo.wait_for_element(f"#{ids.WALL_STALE_BANNER}:not(.hidden)", timeout=15)
    banner = text(dash_duo, f"#{ids.WALL_STALE_BANNER}")
    assert "CẢNH BÁO" in banner and "09:45" in banner
    wait_for_map(dash_duo)
    screenshot(dash_duo, "wall_stale.png")
    assert severe_errors(dash_duo) == []


def test_kiosk_hides_navigation_and_plays_wall_overdue_and_queue_in_turn(
    dash_duo: Any, province: Province
) -> None:
    # A slow playlist first, for a screenshot of its first page with the map fully drawn.
    start(dash_duo, province, "/kiosk?rotate=600")
    wait_for_map(dash_duo)
    assert dash_duo.find_elements(f"#{ids.LANG_SWITCH}") == []
    assert dash_duo.find_elements(f"#{ids.NAV}") == []
    assert text(dash_duo, f"#{ids.KIOSK_STEP}") == "Trang 1/3"
    screenshot(dash_duo, "kiosk_wall.png")

    dash_duo.driver.get(dash_duo.server_url + "/kiosk?rotate=5")
    dash_duo.wait_for_element(f"#{ids.WALL_MAP}", timeout=15)

    # Page 2: the province's overdue dossiers, in large type.
    wait_until(
        dash_duo, lambda: len(texts(dash_duo, f"#{ids.OVERDUE_WALL_LIST} tbody tr")) == 3, 20
    )
    assert text(dash_duo, f"#{ids.KIOSK_STEP}") == "Trang 2/3"
    assert "Hồ sơ quá hạn" in text(dash_duo, "h1")
    assert dash_duo.find_elements(f"#{ids.WALL_MAP}") == []
    screenshot(dash_duo, "kiosk_overdue.png")

    # Page 3: the queues, worst wait first.
    wait_until(
        dash_duo, lambda: texts(dash_duo, f"#{ids.QUEUE_TABLE} tbody tr td:nth-child(2)"), 20
    )
    assert text(dash_duo, f"#{ids.KIOSK_STEP}") == "Trang 3/3"
    assert texts(dash_duo, f"#{ids.QUEUE_TABLE} tbody tr td:nth-child(2)")[0] == "Xã Thượng Lâm"
    assert dash_duo.find_elements(f"#{ids.QUEUE_TABLE} a") == []  # nothing to click on a kiosk
    screenshot(dash_duo, "kiosk_queue.png")

    # And round again to the wall.
    dash_duo.wait_for_element(f"#{ids.WALL_MAP}", timeout=20)
    assert dash_duo.find_elements(".back-link") == []
    assert severe_errors(dash_duo) == []


def test_queue_view_puts_the_longest_wait_first(dash_duo: Any, province: Province) -> None:
    # Twenty more centres with a shorter queue: more than the view shows.
    others = [c.code for c in province_communes("08") if c.code != THUONG_LAM][:20]
    for i, code in enumerate(others):
        province.add_waiting(code, 1 + i % 3, minutes_ago=10 + i)
    start(dash_duo, province, "/queue")
    summary = api_summary(dash_duo)
    dash_duo.wait_for_text_to_equal(
        '[data-kpi="queue_waiting"] .kpi-value', fmt_int(summary["queue_waiting"], "vi"), 15
    )
    assert summary["queue_waiting"] == 4 + sum(1 + i % 3 for i in range(20))
    assert kpi_value(dash_duo, "avg_wait") == fmt_minutes(summary["avg_wait_minutes"], "vi")
    assert kpi_value(dash_duo, "longest_wait") == "45 phút"
    assert kpi_value(dash_duo, "counters_open") == "1"
    rows = texts(dash_duo, f"#{ids.QUEUE_TABLE} tbody tr")
    assert rows[0].split("\t")[:3] == ["1", "Xã Thượng Lâm", "4"]
    assert len(rows) == 15
    assert "và 6 trung tâm khác" in text(dash_duo, f"#{ids.QUEUE_TABLE}")
    screenshot(dash_duo, "queue.png")
    fits = fits_on_screen(dash_duo)
    assert fits["scrolls"] is False and fits["spilled"] == []
    assert severe_errors(dash_duo) == []

    # The navigation leads to the overdue view, in the same language.
    dash_duo.find_element(f"#{ids.NAV} a[href='/wall/overdue']").click()
    wait_until(
        dash_duo, lambda: len(texts(dash_duo, f"#{ids.OVERDUE_WALL_LIST} tbody tr")) == 3, 15
    )
    # The view counts dossier rows (wall_seed writes 3 of them; its aggregates say more).
    assert kpi_value(dash_duo, "overdue") == "3"
    assert "lang" not in dash_duo.driver.current_url
    screenshot(dash_duo, "overdue_wall.png")
    assert severe_errors(dash_duo) == []


def fits_on_screen(dash_duo: Any) -> dict[str, Any]:
    """What would be cut off: the page scrolling, or a panel's content spilling out of it."""
    return dash_duo.driver.execute_script(
        """
        const doc = document.documentElement;
        const spilled = Array.from(document.querySelectorAll('.kpi, .panel-title, .page-header'))
          .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.className)
          .concat(Array.from(document.querySelectorAll('.table-body'))
            .filter(e => e.scrollHeight > e.clientHeight + 1).map(e => 'rows cut: ' + e.id));
        return {scrolls: doc.scrollHeight > window.innerHeight + 1
                          || doc.scrollWidth > window.innerWidth + 1,
                spilled: spilled,
                rootFont: getComputedStyle(doc).fontSize,
                kpiFont: getComputedStyle(document.querySelector('.kpi-value')).fontSize};
        """
    )


def test_the_wall_fits_and_scales_from_full_hd_to_4k(dash_duo: Any, province: Province) -> None:
    start(dash_duo, province)
    wait_for_map(dash_duo)
    full_hd = fits_on_screen(dash_duo)
    assert full_hd["scrolls"] is False and full_hd["spilled"] == []
    assert full_hd["rootFont"] == "18px"

    # A 4K wall opens the page at 4K.
    set_viewport(dash_duo.driver, 3840, 2160)
    dash_duo.driver.refresh()
    wait_for_map(dash_duo)
    uhd = fits_on_screen(dash_duo)
    assert uhd["scrolls"] is False and uhd["spilled"] == []
    # Twice the pixels, twice the type: the same wall, as readable from the same distance.
    assert uhd["rootFont"] == "36px"
    assert float(uhd["kpiFont"][:-2]) == 2 * float(full_hd["kpiFont"][:-2])
    screenshot(dash_duo, "wall_4k.png")
    assert severe_errors(dash_duo) == []


def test_the_province_map_fills_its_panel_from_full_hd_to_4k(
    dash_duo: Any, province: Province
) -> None:
    def fitted_zoom() -> tuple[float, float]:
        width, height = dash_duo.driver.execute_script(
            f"const g = document.getElementById('{ids.WALL_MAP}');"
            "return [g.clientWidth, g.clientHeight];"
        )
        expected = fit_view(bounds(reference.province_geojson("08") or {}), width, height)[1]
        return map_data(dash_duo, "gd.layout.map.zoom"), expected

    start(dash_duo, province)
    wait_for_map(dash_duo)
    full_hd, expected = fitted_zoom()
    assert abs(full_hd - expected) < 0.02

    # Twice the pixels: one zoom level more, so the province fills the 4K panel as well.
    set_viewport(dash_duo.driver, 3840, 2160)
    dash_duo.driver.refresh()
    wait_for_map(dash_duo)
    uhd, expected = fitted_zoom()
    assert abs(uhd - expected) < 0.02
    assert abs(uhd - (full_hd + 1)) < 0.05
    screenshot(dash_duo, "wall_map_4k.png")
    assert severe_errors(dash_duo) == []
