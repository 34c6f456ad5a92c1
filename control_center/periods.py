"""Period figures (today, this week, month, quarter or a custom range) by the rules of DOMAIN.md.

For a period of local days ``[date_from, date_to]``, ending at ``end`` = the end of
``date_to`` or now, whichever is earlier:

- ``received``: dossiers received in the period; ``received_online`` those received online.
- ``finished_early`` / ``finished_on_time`` / ``finished_late``: dossiers whose result became
  ready (status 9 or 10) in the period, by the finish date against the due date, compared as
  local dates (withdrawn and rejected dossiers have no outcome).
- ``in_progress_in_time`` / ``in_progress_overdue``: dossiers still open at ``end``, by the
  last day of the period against the due date (a dossier paused then keeps the outcome it had
  when the pause began); ``in_progress_no_due``: open without a due date.
- ``on_time_rate`` = (early + on time) / finished with an outcome; ``online_rate`` = received
  online / received; ``progress_score`` (Decision 766) = 20 x (early + on time + in progress in
  time) / (finished with an outcome + in progress with a due date).
- ``late`` = finished late + in progress overdue; ``late_without_apology`` those without a
  written apology (form 04) by the end; ``apology_rate`` = apologised / late (the rule: 100%).
- ``avg_processing_working_days``: mean working time from the clock start to the finish, less
  paused working time, over the dossiers finished in the period.

Limits, said plainly: the due date used for a past period is the dossier's current one (a later
re-date moves it), and a dossier is grouped under its current commune (after transfers).

The arithmetic (:class:`Tally`, :func:`period_range`, :func:`open_outcome_at`) is plain Python;
:func:`period_figures` reads three indexed queries and streams the finished and open rows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, func, literal, select
from sqlalchemy.orm import Session

from control_center.domain.calendar import LOCAL_TZ, WorkingCalendar
from control_center.models import Commune, Dossier
from control_center.queries import commune_filter, in_scope
from control_center.settings import Settings

PERIODS = ("today", "week", "month", "quarter", "custom")
GROUPS = ("province", "commune", "sector")
MAX_DAYS = 366
NO_SECTOR = "(chưa rõ lĩnh vực)"
FIGURES = (
    "received",
    "received_online",
    "finished_early",
    "finished_on_time",
    "finished_late",
    "in_progress_in_time",
    "in_progress_overdue",
    "in_progress_no_due",
    "on_time_rate",
    "online_rate",
    "progress_score",
    "avg_processing_working_days",
    "late",
    "late_without_apology",
    "apology_rate",
)


def local_day(instant: datetime) -> date:
    return instant.astimezone(LOCAL_TZ).date()


def local_midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), LOCAL_TZ)


def period_range(
    period: str, today: date, date_from: date | None = None, date_to: date | None = None
) -> tuple[date, date]:
    """The local days a period covers; named periods run from their first day to today."""
    if period == "today":
        return today, today
    if period == "week":  # Vietnamese weeks start on Monday
        return today - timedelta(days=today.weekday()), today
    if period == "month":
        return today.replace(day=1), today
    if period == "quarter":
        return date(today.year, 3 * ((today.month - 1) // 3) + 1, 1), today
    if period != "custom":
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    if date_from is None or date_to is None:
        raise ValueError("a custom period needs from and to (YYYY-MM-DD)")
    if date_to < date_from:
        raise ValueError("to must not be before from")
    if (date_to - date_from).days + 1 > MAX_DAYS:
        raise ValueError(f"a period covers at most {MAX_DAYS} days")
    return date_from, date_to


def open_outcome_at(due_at: datetime | None, paused_since: datetime | None, at: datetime) -> str:
    """in_time / overdue / no_due for a dossier open at ``at`` (DOMAIN.md: dates as dates).

    A pause that began before ``at`` freezes the outcome at its start (the clock stood still)."""
    if due_at is None:
        return "no_due"
    if paused_since is not None and paused_since < at:
        at = paused_since
    return "in_time" if local_day(at) <= local_day(due_at) else "overdue"


def processing_working_days(
    calendar: WorkingCalendar,
    clock_start: datetime,
    finished_at: datetime,
    paused_seconds: float,
) -> float:
    used = calendar.working_seconds_between(clock_start, finished_at) - (paused_seconds or 0.0)
    return max(0.0, used) / calendar.seconds_per_day


@dataclass
class Tally:
    received: int = 0
    received_online: int = 0
    finished_early: int = 0
    finished_on_time: int = 0
    finished_late: int = 0
    in_progress_in_time: int = 0
    in_progress_overdue: int = 0
    in_progress_no_due: int = 0
    processing_days_total: float = 0.0
    processing_count: int = 0
    late_without_apology: int = 0

    def add_finished(
        self, outcome: str, working_days: float | None, apologised: bool = False
    ) -> None:
        if outcome == "early":
            self.finished_early += 1
        elif outcome == "on_time":
            self.finished_on_time += 1
        else:
            self.finished_late += 1
            self.late_without_apology += 0 if apologised else 1
        if working_days is not None:
            self.processing_days_total += working_days
            self.processing_count += 1

    def add_open(self, outcome: str, apologised: bool = False) -> None:
        if outcome == "in_time":
            self.in_progress_in_time += 1
        elif outcome == "overdue":
            self.in_progress_overdue += 1
            self.late_without_apology += 0 if apologised else 1
        else:
            self.in_progress_no_due += 1

    def merge(self, other: Tally) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def figures(self) -> dict[str, Any]:
        good = self.finished_early + self.finished_on_time
        finished = good + self.finished_late
        progress_base = finished + self.in_progress_in_time + self.in_progress_overdue
        late = self.finished_late + self.in_progress_overdue
        return {
            "received": self.received,
            "received_online": self.received_online,
            "finished_early": self.finished_early,
            "finished_on_time": self.finished_on_time,
            "finished_late": self.finished_late,
            "in_progress_in_time": self.in_progress_in_time,
            "in_progress_overdue": self.in_progress_overdue,
            "in_progress_no_due": self.in_progress_no_due,
            "on_time_rate": round(good / finished, 4) if finished else None,
            "online_rate": (
                round(self.received_online / self.received, 4) if self.received else None
            ),
            "progress_score": (
                round(20.0 * (good + self.in_progress_in_time) / progress_base, 2)
                if progress_base
                else None
            ),
            "avg_processing_working_days": (
                round(self.processing_days_total / self.processing_count, 2)
                if self.processing_count
                else None
            ),
            # Our own indicator: every late dossier needs a written apology (form 04).
            "late": late,
            "late_without_apology": self.late_without_apology,
            "apology_rate": (round((late - self.late_without_apology) / late, 4) if late else None),
        }


def _key_column(group: str) -> Any:
    if group == "commune":
        return Dossier.commune_code
    if group == "sector":
        return func.coalesce(Dossier.sector, NO_SECTOR)
    return literal("province")  # one row for the whole province (no GROUP BY)


def period_figures(
    session: Session,
    settings: Settings,
    calendar: WorkingCalendar,
    now: datetime,
    date_from: date,
    date_to: date,
    group: str = "province",
) -> dict[str, Any]:
    """The period's figures for the province (``total``) and per commune or sector (``rows``)."""
    if group not in GROUPS:
        raise ValueError(f"group must be one of {', '.join(GROUPS)}")
    start = local_midnight(date_from)
    end = min(now, local_midnight(date_to + timedelta(days=1)))
    key = _key_column(group).label("key")
    # The province's communes, or every commune in national scope.
    in_province = commune_filter(session, settings, Dossier.commune_code)
    tallies: dict[str, Tally] = defaultdict(Tally)

    received = select(
        key,
        func.count(),
        func.sum(case((Dossier.channel == "online", 1), else_=0)),
    ).where(in_province, Dossier.received_at >= start, Dossier.received_at < end)

    def grouped(stmt: Select[Any]) -> Select[Any]:
        # PostgreSQL refuses GROUP BY a constant; the province total needs no grouping.
        return stmt if group == "province" else stmt.group_by(key)

    for k, n, online in session.execute(grouped(received)):
        tallies[k].received += int(n)
        tallies[k].received_online += int(online or 0)

    finished = select(
        key,
        Dossier.outcome,
        func.coalesce(Dossier.clock_start_at, Dossier.received_at),
        Dossier.finished_at,
        Dossier.paused_seconds,
        Dossier.apology_issued_at,
    ).where(
        in_province,
        Dossier.outcome.is_not(None),
        Dossier.finished_at >= start,
        Dossier.finished_at < end,
    )
    for k, outcome, clock_start, finished_at, paused, apology in session.execute(
        finished.execution_options(yield_per=5000)
    ):
        days = processing_working_days(calendar, clock_start, finished_at, paused)
        tallies[k].add_finished(outcome, days, apology is not None and apology < end)

    # Open at the end: received before it, and not yet closed then (closing = 3, 7, 9, 10).
    still_open = select(key, Dossier.due_at, Dossier.paused_since, Dossier.apology_issued_at).where(
        in_province,
        Dossier.received_at < end,
        (Dossier.closed_at.is_(None)) | (Dossier.closed_at >= end),
    )
    # The last moment of the period: its last day when past, now when it includes today.
    at = end - timedelta(microseconds=1)
    for k, due_at, paused_since, apology in session.execute(
        still_open.execution_options(yield_per=5000)
    ):
        outcome = open_outcome_at(due_at, paused_since, at)
        tallies[k].add_open(outcome, apology is not None and apology < end)

    total = Tally()
    for tally in tallies.values():
        total.merge(tally)
    names: dict[str, str] = {}
    if group == "commune":
        names = dict(
            session.execute(select(Commune.code, Commune.name).where(in_scope(settings))).all()
        )
    rows = [
        {"key": k, "name": names.get(k, k), **tallies[k].figures()}
        for k in sorted(tallies, key=lambda k: (names.get(k, k), k))
    ]
    if group == "commune":
        # Every commune of the province gets a row, the quiet ones too.
        seen = {r["key"] for r in rows}
        rows += [
            {"key": code, "name": name, **Tally().figures()}
            for code, name in sorted(names.items(), key=lambda kv: (kv[1], kv[0]))
            if code not in seen
        ]
        rows.sort(key=lambda r: (r["name"], r["key"]))
    return {
        "from": date_from,
        "to": date_to,
        "start": start,
        "end": end,
        "group": group,
        "total": total.figures(),
        "rows": rows if group != "province" else [],
    }


__all__ = [
    "FIGURES",
    "GROUPS",
    "PERIODS",
    "Tally",
    "open_outcome_at",
    "period_figures",
    "period_range",
    "processing_working_days",
]
