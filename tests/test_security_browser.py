"""In headless Chromium: signing in leads to the wall, a kiosk link opens the playlist, and
the pages run under the content-security policy with a clean console (a blocked inline script
or eval would be logged as a SEVERE error)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control_center.app import create_app
from control_center.db import make_engine, session_factory
from control_center.security import accounts
from control_center.settings import Settings, load_settings
from layouts import ids
from tests.conftest import free_port
from tests.test_wall_browser import set_viewport, severe_errors, wait_for_map
from tests.wall_seed import NOW, seed_province

pytest_plugins = ["tests.browser_plugin"]
pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]

SECRET = "browser-test-secret-key-0123456789"
PASSWORD = "a long leader password"


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[Settings, str]]:
    url = f"sqlite:///{tmp_path / 'cc.db'}"
    engine = make_engine(url)
    seed_province(engine)
    with session_factory(engine)() as session, session.begin():
        accounts.create_user(session, "leader1", PASSWORD, "leader")
        _link, token = accounts.create_kiosk_link(session, SECRET, "browser test")
    engine.dispose()
    settings = load_settings(
        database_url=url,
        auth_required=True,
        secret_key=SECRET,
        cookie_secure=False,
        wall_refresh_s=2,
    )
    yield settings, token


def test_sign_in_then_the_wall_runs_under_the_csp(
    dash_duo: Any, secured: tuple[Settings, str]
) -> None:
    settings, _token = secured
    set_viewport(dash_duo.driver)
    dash_duo.start_server(create_app(settings, clock=lambda: NOW), navigate=False, port=free_port())
    base = dash_duo.server.url.rstrip("/")
    dash_duo.driver.get(base + "/")
    # Not signed in: the sign-in page, not the wall.
    dash_duo.wait_for_element("form.sign-in", timeout=10)
    dash_duo.find_element("#username").send_keys("leader1")
    dash_duo.find_element("#password").send_keys(PASSWORD)
    dash_duo.find_element("#sign-in").click()

    dash_duo.wait_for_element(f"#{ids.WALL_KPIS} [data-kpi='open'] .kpi-value", timeout=20)
    wait_for_map(dash_duo)
    assert dash_duo.driver.current_url.rstrip("/") == base
    # A detail page a leader may see, reached through the single-page router.
    dash_duo.driver.get(base + "/overdue")
    dash_duo.wait_for_element(f"#{ids.REVIEW_GRID}", timeout=20)
    assert severe_errors(dash_duo) == []


def test_a_kiosk_link_opens_the_playlist_and_nothing_else(
    dash_duo: Any, secured: tuple[Settings, str]
) -> None:
    settings, token = secured
    set_viewport(dash_duo.driver)
    dash_duo.start_server(create_app(settings, clock=lambda: NOW), navigate=False, port=free_port())
    base = dash_duo.server.url.rstrip("/")
    dash_duo.driver.get(f"{base}/kiosk/login?token={token}&next=/kiosk?rotate=30")
    dash_duo.wait_for_element(".kiosk-root", timeout=20)
    wait_for_map(dash_duo)
    dash_duo.driver.get(base + "/alerts")
    dash_duo.wait_for_element(".forbidden", timeout=20)
    assert severe_errors(dash_duo) == []
