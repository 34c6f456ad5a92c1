"""Communes ranked by the parts of the Decision 766/QĐ-TTg service index this product can compute.

The index has 100 points in six groups. From the dossier events centres send us we compute:

- **settlement progress** (20 points) = 20 x (finished early or on time + in progress within
  time) / (finished with an outcome + in progress with a due date), over the period;
- **online service** (12 points) = 12 x dossiers received online / dossiers received, among
  procedures the catalogue marks as eligible for full online service.

Ranked by their sum (out of 32). Ties share a rank (1, 2, 2, 4). Shown beside it but not in the
score, our own indicator: **apology compliance** = late dossiers with a written apology /
late dossiers (the provinces' rule is 100%).

Not computable here (the events do not carry the data): transparency 18 (publication and
status sync to the national portal), online payment 10 (how fees were paid), digitisation 22
(digitised records and results), satisfaction 18 (surveys, petitions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from control_center import periods
from control_center.domain.calendar import WorkingCalendar
from control_center.models import Dossier, Procedure
from control_center.queries import commune_filter
from control_center.settings import Settings

PROGRESS_POINTS = 20.0
ONLINE_POINTS = 12.0
COMPUTABLE_POINTS = PROGRESS_POINTS + ONLINE_POINTS
# Decision 766 groups this product cannot score, with their points.
NOT_COMPUTED = (
    ("transparency", 18),
    ("online_payment", 10),
    ("digitisation", 22),
    ("satisfaction", 18),
)


def progress_score(figures: Mapping[str, Any]) -> tuple[float | None, int, int]:
    """(score, numerator, denominator) of settlement progress from a period's figures."""
    good = figures["finished_early"] + figures["finished_on_time"] + figures["in_progress_in_time"]
    base = (
        figures["finished_early"]
        + figures["finished_on_time"]
        + figures["finished_late"]
        + figures["in_progress_in_time"]
        + figures["in_progress_overdue"]
    )
    return (round(PROGRESS_POINTS * good / base, 2) if base else None), good, base


def online_score(online: int, eligible: int) -> float | None:
    return round(ONLINE_POINTS * online / eligible, 2) if eligible else None


def competition_ranks(scores: Sequence[float | None]) -> list[int | None]:
    """1, 2, 2, 4 for scores sorted best first; no score, no rank."""
    ranks: list[int | None] = []
    previous: float | None = None
    rank = 0
    for position, score in enumerate(scores, start=1):
        if score is None:
            ranks.append(None)
            continue
        if score != previous:
            rank, previous = position, score
        ranks.append(rank)
    return ranks


def rank_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sort best first (score, then progress, then name) and number them."""
    ordered = sorted(
        rows,
        key=lambda r: (
            r["score"] is None,
            -(r["score"] or 0.0),
            -(r["progress"]["score"] or 0.0),
            r["name"],
        ),
    )
    for row, rank in zip(ordered, competition_ranks([r["score"] for r in ordered]), strict=True):
        row["rank"] = rank
    return ordered


def _online_eligible(
    session: Session, settings: Settings, start: datetime, end: datetime
) -> dict[str, tuple[int, int]]:
    """{commune: (received online, received)} among full-online-eligible procedures."""
    stmt = (
        select(
            Dossier.commune_code,
            func.count(),
            func.sum(case((Dossier.channel == "online", 1), else_=0)),
        )
        .join(Procedure, Procedure.code == Dossier.procedure_code)
        .where(
            Procedure.full_online.is_(True),
            Dossier.received_at >= start,
            Dossier.received_at < end,
            commune_filter(session, settings, Dossier.commune_code),
        )
        .group_by(Dossier.commune_code)
    )
    return {code: (int(online or 0), int(n)) for code, n, online in session.execute(stmt)}


def commune_ranking(
    session: Session,
    settings: Settings,
    calendar: WorkingCalendar,
    now: datetime,
    date_from: date,
    date_to: date,
) -> dict[str, Any]:
    """Every commune of the province with its computable 766 parts, ranked."""
    figures = periods.period_figures(
        session, settings, calendar, now, date_from, date_to, "commune"
    )
    online = _online_eligible(session, settings, figures["start"], figures["end"])
    rows = []
    for f in figures["rows"]:
        progress, good, base = progress_score(f)
        online_n, eligible = online.get(f["key"], (0, 0))
        online_pts = online_score(online_n, eligible)
        parts = [p for p in (progress, online_pts) if p is not None]
        rows.append(
            {
                "code": f["key"],
                "name": f["name"],
                "score": round(sum(parts), 2) if parts else None,
                "progress": {"score": progress, "numerator": good, "denominator": base},
                "online": {"score": online_pts, "online": online_n, "eligible": eligible},
                "apology": {
                    "late": f["late"],
                    "without_apology": f["late_without_apology"],
                    "rate": f["apology_rate"],
                },
            }
        )
    return {
        "from": figures["from"],
        "to": figures["to"],
        "end": figures["end"],
        "max_score": COMPUTABLE_POINTS,
        "not_computed": [{"group": g, "points": p} for g, p in NOT_COMPUTED],
        "rows": rank_rows(rows),
    }


__all__ = [
    "COMPUTABLE_POINTS",
    "NOT_COMPUTED",
    "commune_ranking",
    "competition_ranks",
    "online_score",
    "progress_score",
    "rank_rows",
]
