"""End to end: ``control-center demo`` brings the whole product up and Ctrl-C brings it down."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.broker


# The demo requires sign-in like production; the test signs in with the kiosk link it prints.
_browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())


def _get(url: str) -> Any:
    with _browser.open(url, timeout=5) as resp:
        return json.loads(resp.read())


def _kiosk_link(log_file: Path) -> str | None:
    found = re.search(r"(http://\S+/kiosk/login\?token=\S+)", log_file.read_text(errors="replace"))
    return found.group(1) if found else None


def _wait_for(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the web process may not be listening yet
            last_error = exc
        time.sleep(0.5)
    raise AssertionError(f"timed out; last error: {last_error}")


def test_demo_runs_everything_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CC_")}
    env["CC_DATABASE_URL"] = f"sqlite:///{tmp_path / 'demo.db'}"
    env["CC_WEB_WORKERS"] = "1"
    log = (tmp_path / "demo.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "control_center.cli",
            "demo",
            "--port",
            str(port),
            "--backfill-days",
            "3",
            "--speed",
            "200",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a terminal's foreground job: Ctrl-C signals its whole group
    )
    base = f"http://127.0.0.1:{port}"
    started: list[psutil.Process] = []
    try:
        link = _wait_for(lambda: _kiosk_link(tmp_path / "demo.log"), 120)
        _wait_for(lambda: _browser.open(link, timeout=5).status == 200, 120)
        first = _wait_for(lambda: _get(f"{base}/api/v1/summary"), 120)
        communes = _get(f"{base}/api/v1/communes")
        assert len(communes) == 124
        assert first["open"] > 0, first

        # Live traffic flows over MQTT through the collector into the figures.
        def moved() -> bool:
            now = _get(f"{base}/api/v1/summary")
            return now["last_event_at"] != first["last_event_at"]

        _wait_for(moved, 60)
        html = _browser.open(base + "/", timeout=5).read().decode()
        assert "_dash-app-content" in html or "react-entry-point" in html
        started = psutil.Process(proc.pid).children(recursive=True)
        assert len(started) >= 4, started  # broker, collector, alert engine, web and its worker
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the demo's terminal does
        try:
            code = proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        finally:
            log.close()
    output = (tmp_path / "demo.log").read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert "stopped." in output
    assert "Traceback" not in output, output[-3000:]
    # Nothing the demo started outlives it (the web server's workers included).
    _, alive = psutil.wait_procs(started, timeout=5)
    assert not alive, [(p.pid, p.cmdline()) for p in alive]
