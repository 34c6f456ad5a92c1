"""A dossier's escalation level, kept on its row (``dossiers.escalation_level``).

The level is the highest level among the dossier's unresolved (open or acknowledged) alerts,
0 for none. The leaders' review filters and sorts by it over a hundred thousand dossiers, so
it is stored on the dossier and indexed rather than computed from the alerts per row. The
alert engine calls these functions in the transaction that changes the alerts, so the stored
level and the alerts never disagree once it commits:

- :func:`raised` after inserting alerts (a new cause, or an escalation one level up): a level
  only goes up, one conditional UPDATE per dossier;
- :func:`recompute` after resolving alerts: the level is read again from what is left.

An acknowledgement does not change it (an acknowledged alert is still unresolved).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from alerts.policy import RESOLVED
from control_center.models import Alert, Dossier

CHUNK = 2000  # dossier codes per statement (SQLite's bound-parameter cap)


def raised(session: Session, alerts: Iterable[Alert]) -> int:
    """Lift the level of the dossiers of newly inserted ``alerts``; returns how many rose."""
    highest: dict[str, int] = {}
    for alert in alerts:
        if alert.dossier_code and alert.state != RESOLVED:
            highest[alert.dossier_code] = max(alert.level, highest.get(alert.dossier_code, 0))
    if not highest:
        return 0
    table = cast(Table, Dossier.__table__)
    stmt = (
        update(table)
        .where(
            table.c.dossier_code == bindparam("code"),
            table.c.escalation_level < bindparam("level"),
        )
        .values(escalation_level=bindparam("level"))
    )
    # In code order, as the collector locks dossiers: two writers never wait on each other
    # in a cycle (PostgreSQL row locks).
    rows: list[dict[str, Any]] = [
        {"code": code, "level": level} for code, level in sorted(highest.items())
    ]
    changed = 0
    for chunk in _chunks(rows):
        result = session.connection().execute(stmt, chunk)
        changed += max(getattr(result, "rowcount", 0), 0)
    return changed


def recompute(session: Session, dossier_codes: Iterable[str | None]) -> None:
    """Set the level of ``dossier_codes`` from their unresolved alerts (after resolving some)."""
    codes = sorted({c for c in dossier_codes if c})
    if not codes:
        return
    session.flush()  # the resolutions this session holds must be visible to the subquery
    level = (
        select(func.coalesce(func.max(Alert.level), 0))
        .where(Alert.dossier_code == Dossier.dossier_code, Alert.state != RESOLVED)
        .scalar_subquery()
    )
    for chunk in _chunks(codes):
        session.execute(
            update(Dossier)
            .where(Dossier.dossier_code.in_(chunk))
            .values(escalation_level=level)
            .execution_options(synchronize_session=False)
        )


_T = TypeVar("_T")


def _chunks(items: Sequence[_T], size: int = CHUNK) -> Iterator[list[_T]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])
