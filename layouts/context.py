"""What every page callback needs: settings, database, clock, calendar and the read queries.

Nothing here holds data between requests: each callback opens a session, reads the maintained
aggregates and closes it, so any gunicorn worker can answer any browser.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType

from control_center import queries
from control_center.db import Database
from control_center.domain.calendar import WorkingCalendar
from control_center.runtime import calendar_from_settings
from control_center.security.roles import Principal, Scope, current_principal
from control_center.settings import Settings


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class WallContext:
    settings: Settings
    db: Database
    clock: Callable[[], datetime] = system_clock
    calendar: WorkingCalendar | None = None

    def now(self) -> datetime:
        return self.clock()

    def working_calendar(self) -> WorkingCalendar:
        # Built on first use, not at import: reading the override file is I/O.
        if self.calendar is None:
            self.calendar = calendar_from_settings(self.settings)
        return self.calendar

    def principal(self) -> Principal:
        """Who the request being answered is for (docs/security.md)."""
        return current_principal(self.settings)

    def scope(self) -> Scope:
        """What that principal may read: every callback passes it to the queries, so a
        crafted callback request cannot reach another commune's dossiers."""
        return self.principal().scope

    @property
    def queries(self) -> ModuleType:
        """The read side (control_center.queries): thin callbacks call nothing else."""
        return queries
