"""The overdue review in headless Chromium: filter the grid, share the address, download Excel.

1,200 dossiers need attention across three communes; the grid loads them a block at a time
from the server. What the page shows is compared with ``GET /api/v1/review`` on the same server.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import openpyxl
import pytest
from selenium.webdriver.common.keys import Keys
from sqlalchemy import insert
from sqlalchemy.orm import Session

from alerts import levels
from control_center.app import create_app
from control_center.db import make_engine
from control_center.migrate import upgrade_schema
from control_center.models import Alert, Dossier
from control_center.reference import seed_reference_data
from control_center.settings import Settings, load_settings
from layouts import ids
from layouts.format import fmt_int
from tests.conftest import free_port
from tests.test_wall_browser import screenshot, set_viewport, severe_errors, wait_until
from tests.wall_seed import HA_GIANG_2, NOW, THUONG_LAM

pytest_plugins = ["tests.browser_plugin"]
pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]

OFFICERS = ("Nguyễn Văn An", "Trần Thị Bình", "Lê Minh Tuấn")
COMMUNES = (THUONG_LAM, HA_GIANG_2, "00700")


def seed(engine: Any) -> None:
    """1,200 open dossiers due in the past or within the hour, and 300 in time."""
    upgrade_schema(engine)
    with Session(engine) as session, session.begin():
        seed_reference_data(session, "08")
        rows = []
        for i in range(1500):
            received = NOW - timedelta(days=20, minutes=i)
            due = NOW - timedelta(hours=i) if i < 1200 else NOW + timedelta(days=5)
            rows.append(
                {
                    "dossier_code": f"000.00.22.H56-261101-{i:04d}",
                    "commune_code": COMMUNES[i % 3],
                    "received_commune_code": COMMUNES[i % 3],
                    "procedure_code": "1.001193",
                    "procedure_name": "Đăng ký khai sinh",
                    "sector": "Hộ tịch",
                    "channel": ("online", "counter", "post")[i % 3],
                    "status": 4,
                    "is_open": True,
                    "is_paused": False,
                    "received_at": received,
                    "clock_start_at": received,
                    "due_at": due,
                    "original_due_at": due,
                    "paused_seconds": 0.0,
                    "extension_count": 1 if i % 5 == 0 else 0,
                    "apology_issued_at": received if i % 4 == 0 else None,
                    "officer": OFFICERS[i % 3],
                    "flags": [],
                    "event_count": 1,
                    "last_event_at": received,
                }
            )
        session.execute(insert(Dossier), rows)
        session.add(
            Alert(
                cause_key="overdue:first",
                kind="overdue",
                level=3,
                commune_code=THUONG_LAM,
                dossier_code=rows[1199]["dossier_code"],
                raised_at=NOW - timedelta(hours=1),
                state="open",
                message="Hồ sơ quá hạn",
            )
        )
        levels.recompute(session, [rows[1199]["dossier_code"]])


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    url = f"sqlite:///{tmp_path / 'cc.db'}"
    engine = make_engine(url)
    seed(engine)
    engine.dispose()
    yield load_settings(database_url=url)


def api(dash_duo: Any, query: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{dash_duo.server_url}/api/v1/review{query}", timeout=10) as r:
        return json.load(r)


def total_text(dash_duo: Any) -> str:
    return dash_duo.driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.innerText.trim() : '';",
        ids.REVIEW_TOTAL,
    )


def first_codes(dash_duo: Any, n: int = 3) -> list[str]:
    """Dossier codes of the grid's first rows, in row order (AG Grid renders out of order)."""
    return dash_duo.driver.execute_script(
        """
        const cells = Array.from(document.querySelectorAll(
            '.ag-center-cols-container .ag-row, .ag-pinned-left-cols-container .ag-row'));
        const byIndex = {};
        for (const row of cells) {
            const cell = row.querySelector('[col-id="dossier_code"]');
            if (cell && cell.innerText.trim()) byIndex[+row.getAttribute('row-index')] =
                cell.innerText.trim();
        }
        return Array.from({length: arguments[0]}, (_, i) => byIndex[i] || null);
        """,
        n,
    )


def wait_for_total(dash_duo: Any, total: int) -> None:
    expected = f"{fmt_int(total, 'vi')} hồ sơ"
    wait_until(dash_duo, lambda: total_text(dash_duo) == expected, 20)


def test_filter_the_grid_share_the_address_and_download_excel(
    dash_duo: Any, settings: Settings
) -> None:
    app = create_app(settings, clock=lambda: NOW)
    set_viewport(dash_duo.driver)
    dash_duo.start_server(app, port=free_port())
    download_dir = Path(dash_duo.download_path)
    dash_duo.driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)}
    )
    dash_duo.driver.get(dash_duo.server_url + "/overdue")

    everything = api(dash_duo, "?limit=3")
    assert everything["total"] == 1200
    wait_for_total(dash_duo, 1200)
    expected_first = [i["dossier_code"] for i in everything["items"]]
    wait_until(dash_duo, lambda: first_codes(dash_duo) == expected_first)
    screenshot(dash_duo, "review-overdue.png")
    # The header stays one line at 1920 px: when the list was read is a small muted note,
    # not the wall clock's large type wrapped over four lines.
    wait_until(dash_duo, lambda: dash_duo.find_element(f"#{ids.REVIEW_CLOCK}").text != "")
    header_px = dash_duo.driver.execute_script(
        "return document.querySelector('.page-header').getBoundingClientRect().height"
    )
    assert header_px < 110

    # A leader narrows the list to one handler: the grid, the count and the address follow.
    officer = dash_duo.find_element(f'[id*="{ids.REVIEW_FILTER}"][id*="officer"]')
    officer.send_keys("Tuấn", Keys.ENTER)
    by_officer = api(dash_duo, "?officer=Tu%E1%BA%A5n&limit=3")
    assert 0 < by_officer["total"] < 1200
    wait_for_total(dash_duo, by_officer["total"])
    wait_until(
        dash_duo,
        lambda: first_codes(dash_duo) == [i["dossier_code"] for i in by_officer["items"]],
    )
    query = parse_qs(urlparse(dash_duo.driver.current_url).query)
    assert query == {"officer": ["Tuấn"]}

    # The address is the view: opened elsewhere it shows the same filtered list.
    shared = "?commune=00700&apology=no&officer=Tu%E1%BA%A5n"
    by_commune = api(dash_duo, shared + "&limit=3")
    assert 0 < by_commune["total"] < by_officer["total"]
    dash_duo.driver.get(dash_duo.server_url + "/overdue" + shared)
    wait_for_total(dash_duo, by_commune["total"])
    wait_until(
        dash_duo,
        lambda: first_codes(dash_duo) == [i["dossier_code"] for i in by_commune["items"]],
    )
    filters_text = dash_duo.find_element(".review-filters").text
    assert by_commune["items"][0]["commune_name"] in filters_text, "the dropdown shows the commune"

    # Excel of exactly that list.
    dash_duo.find_element(f"#{ids.REVIEW_XLSX}").click()
    deadline = time.monotonic() + 20
    files: list[Path] = []
    while time.monotonic() < deadline:
        files = [p for p in download_dir.glob("*.xlsx") if not p.name.endswith(".crdownload")]
        if files:
            break
        time.sleep(0.2)
    assert files, "no Excel file was downloaded"
    time.sleep(0.5)  # let Chromium finish writing
    ws = openpyxl.load_workbook(files[0]).active
    assert ws is not None
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0][0] == "Mã hồ sơ"
    assert len(rows) == 1 + by_commune["total"]
    assert [r[0] for r in rows[1:4]] == [i["dossier_code"] for i in by_commune["items"]]

    # Each code opens the dossier's own page.
    first = by_commune["items"][0]["dossier_code"]
    dash_duo.find_element('.ag-row[row-index="0"] [col-id="dossier_code"] a').click()
    dash_duo.wait_for_contains_text("h1", first, timeout=15)
    assert "Thời gian giải quyết" in dash_duo.find_element(".dossier-page").text
    screenshot(dash_duo, "review-dossier.png")
    assert severe_errors(dash_duo) == []
