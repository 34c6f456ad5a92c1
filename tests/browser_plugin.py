"""Headless Chromium for ``dash_duo`` on this machine (Debian's chromium + chromedriver, as root).

Loaded by the browser test modules through ``pytest_plugins``; dash's plugin asks every
``pytest_setup_options`` implementation and uses the first answer.
"""

from __future__ import annotations

import os
import shutil

from selenium.webdriver.chrome.options import Options

CHROMIUM = os.environ.get("DASH_TEST_CHROMEPATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WINDOW = (1920, 1080)

# Selenium Manager would otherwise try to download a driver and report statistics: tests may
# only reach 127.0.0.1.
os.environ.setdefault("SE_CHROMEDRIVER", CHROMEDRIVER)
os.environ.setdefault("SE_OFFLINE", "true")
os.environ.setdefault("SE_AVOID_STATS", "true")


def pytest_setup_options() -> Options:
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # running as root
        "--enable-unsafe-swiftshader",  # WebGL for MapLibre without a GPU
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--lang=vi-VN",
    ):
        options.add_argument(argument)
    return options
