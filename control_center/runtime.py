"""Objects every process builds from its settings, in one place so that the collector, the
alert engine, the wall and the simulator agree on due dates."""

from __future__ import annotations

import gc
from datetime import time
from pathlib import Path

from control_center.domain.calendar import WorkingCalendar, load_calendar
from control_center.settings import Settings, parse_sessions


def calendar_from_settings(settings: Settings) -> WorkingCalendar:
    """The province's working calendar: working sessions, counter cut-off and the override
    file (``config_dir/calendar_overrides.yaml`` when none is named; a named file that is
    missing is an error, not silently ignored)."""
    override = settings.calendar_override_file
    if override is None:
        shipped = Path(settings.config_dir) / "calendar_overrides.yaml"
        override = shipped if shipped.exists() else None
    cutoff = time.fromisoformat(settings.counter_cutoff) if settings.counter_cutoff else None
    return load_calendar(
        sessions=parse_sessions(settings.working_sessions),
        counter_cutoff=cutoff,
        override_file=str(override) if override else None,
    )


def freeze_startup_heap() -> None:
    """Hide what the process built at start-up (modules, the Dash app and its layouts) from the
    cyclic garbage collector: its full collections then walk only what requests create. In a
    web worker, about one wall refresh in a hundred otherwise paid a ~120 ms full collection
    over the ~180,000 start-up objects (docs/performance.md). Cycles made later are collected
    as before."""
    gc.collect()
    gc.freeze()
