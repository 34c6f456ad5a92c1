"""``python -m collectors``: the collector alone (same as ``control-center collect``)."""

from __future__ import annotations

import signal
import threading

from collectors.service import run
from control_center.logs import setup_logging
from control_center.settings import get_settings


def main() -> None:
    settings = get_settings()
    setup_logging(settings.log_level)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(settings, stop_event=stop)


if __name__ == "__main__":
    main()
