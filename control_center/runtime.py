"""Objects every process builds from its settings (calendar, database), built once per process."""

from __future__ import annotations

from control_center.domain.calendar import WorkingCalendar, load_calendar
from control_center.settings import Settings, parse_sessions


def calendar_from_settings(settings: Settings) -> WorkingCalendar:
    """The province's working calendar: hours, counter cut-off and the local override file."""
    from datetime import time

    override = settings.calendar_override_file
    return load_calendar(
        sessions=parse_sessions(settings.working_sessions),
        counter_cutoff=time.fromisoformat(settings.counter_cutoff)
        if settings.counter_cutoff
        else None,
        override_file=str(override) if override and override.exists() else None,
    )
