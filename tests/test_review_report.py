"""The printable daily report: the province's figures and its ten worst communes on one A4 page.

The browser test prints the page to PDF through Chromium (what "Save as PDF" does) and counts
its pages; a screenshot in print media lands in artifacts/ for a person to look at.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control_center.app import create_app
from control_center.db import make_engine
from control_center.settings import Settings, load_settings
from layouts import report
from layouts.format import fmt_int
from tests.conftest import free_port
from tests.test_wall_browser import screenshot, severe_errors, texts
from tests.wall_seed import HA_GIANG_2, NOW, THUONG_LAM, seed_province

pytest_plugins = ["tests.browser_plugin"]


def row(name: str, overdue: int, due_soon: int = 0, open_: int = 0) -> dict[str, Any]:
    return {"code": name, "name": name, "overdue": overdue, "due_soon": due_soon, "open": open_}


def test_worst_communes_most_overdue_first_and_quiet_ones_left_out() -> None:
    rows = [row("A", 1, 5), row("B", 3), row("C", 0, 0, 40), row("D", 1, 5, 9), row("E", 0, 2)]
    assert [r["name"] for r in report.worst_communes(rows)] == ["B", "D", "A", "E"]
    many = [row(f"X{i:02d}", i) for i in range(1, 15)]
    assert [r["overdue"] for r in report.worst_communes(many)] == list(range(14, 4, -1))


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    url = f"sqlite:///{tmp_path / 'cc.db'}"
    engine = make_engine(url)
    seed_province(engine)
    engine.dispose()
    yield load_settings(database_url=url)


def api(dash_duo: Any, path: str) -> Any:
    with urllib.request.urlopen(dash_duo.server_url + path, timeout=10) as response:
        return json.load(response)


@pytest.mark.browser
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_daily_report_prints_on_one_page(dash_duo: Any, settings: Settings) -> None:
    dash_duo.start_server(create_app(settings, clock=lambda: NOW), port=free_port())
    dash_duo.driver.get(dash_duo.server_url + report.PATH)
    dash_duo.wait_for_element(".report-table", timeout=15)

    summary = api(dash_duo, "/api/v1/summary")
    overdue = texts(dash_duo, '[data-figure="overdue"] .report-value')
    assert overdue == [fmt_int(summary["overdue"], "vi")]
    assert "Báo cáo ngày 25/11/2026" in texts(dash_duo, "h1")[0]
    communes = api(dash_duo, "/api/v1/communes")
    expected = [r["code"] for r in report.worst_communes(communes)]
    shown = dash_duo.driver.execute_script(
        "return Array.from(document.querySelectorAll('.report-table tbody tr'))"
        ".map(r => r.getAttribute('data-commune'));"
    )
    assert shown == expected and shown[:2] == [THUONG_LAM, HA_GIANG_2]

    # Print media: the buttons go, the page fits one A4 sheet.
    driver = dash_duo.driver
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    hidden = driver.execute_script(
        "return getComputedStyle(document.querySelector('.report-actions')).display;"
    )
    assert hidden == "none", "the print button is not printed"
    pdf = base64.b64decode(
        driver.execute_cdp_cmd(
            "Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69, "preferCSSPageSize": True}
        )["data"]
    )
    assert pdf.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert pages == 1, f"the daily report printed on {pages} pages"
    artifacts = Path(__file__).resolve().parent.parent / "artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "report-daily.pdf").write_bytes(pdf)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 794, "height": 1123, "deviceScaleFactor": 1, "mobile": False},
    )
    screenshot(dash_duo, "report-daily-print.png")
    assert severe_errors(dash_duo) == []
