"""Retention: archive or drop history older than an age, never the current state.

A province runs for years; the append-only tables grow without bound while the wall reads
only the derived state. ``control-center db prune --older-than 400d`` (or ``CC_RETENTION_DAYS``)
removes, in batches of short transactions, what no current figure depends on:

- ``dossier_events`` of dossiers closed before the cutoff (and not touched since). The dossier
  row keeps its derived state; its ``event_count`` still counts the pruned events, which is how
  the collector knows the history it holds is incomplete and never re-derives the dossier from
  a late event (``collectors/ingest.py``). Events of open dossiers are always kept: their state
  may still be re-derived from them.
- ``queue_events`` and ``queue_tickets`` of service days before the cutoff (ticket numbers
  restart every day: a day is history once it is over).
- ``dead_letters`` that arrived before the cutoff (the per-commune totals in
  ``dead_letter_counts`` stay).
- ``outbox`` rows sent before the cutoff, and alerts resolved before it (with their outbox rows)
  unless their dossier is still open.
- ``summary_snapshots`` taken before the cutoff.

With ``archive_dir`` every row is first written to ``<table>-<UTC time>.jsonl.gz`` there (one
JSON object per line, instants in +07:00), flushed before its batch is deleted: a crash leaves
at most one batch both archived and still in the database, never a row deleted unarchived.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, Select, Table, and_, delete, exists, not_, or_, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from control_center import models as m
from control_center.db import session_factory
from control_center.domain.calendar import LOCAL_TZ
from control_center.jsonutil import to_jsonable

log = logging.getLogger(__name__)

MIN_AGE = timedelta(days=30)
_AGE = re.compile(r"^\s*(\d+)\s*(d|w|y)?\s*$")
_UNIT_DAYS = {"d": 1, "w": 7, "y": 365}


def parse_age(text: str) -> timedelta:
    """``400d``, ``400`` (days), ``57w`` or ``1y`` (365 days); at least 30 days."""
    match = _AGE.match(text)
    if not match:
        raise ValueError(f"age {text!r} must look like 400d, 57w or 1y")
    age = timedelta(days=int(match.group(1)) * _UNIT_DAYS[match.group(2) or "d"])
    if age < MIN_AGE:
        raise ValueError(f"age {text!r} is under 30 days: the wall and reports read that far back")
    return age


@dataclass
class PruneResult:
    cutoff: datetime
    rows: dict[str, int] = field(default_factory=dict)
    archives: list[Path] = field(default_factory=list)

    def add(self, table: str, n: int) -> None:
        if n:
            self.rows[table] = self.rows.get(table, 0) + n


class _Archive:
    """One gzip JSON-lines file per table, opened on its first row."""

    def __init__(self, directory: Path | None, stamp: str, stack: ExitStack) -> None:
        self.directory, self.stamp, self.stack = directory, stamp, stack
        self.files: dict[str, IO[str]] = {}
        self.paths: list[Path] = []

    def write(self, table: str, rows: Sequence[Any]) -> None:
        if self.directory is None or not rows:
            return
        out = self.files.get(table)
        if out is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{table}-{self.stamp}.jsonl.gz"
            out = self.stack.enter_context(gzip.open(path, "at", encoding="utf-8"))  # noqa: SIM115
            self.files[table] = out
            self.paths.append(path)
        for row in rows:
            out.write(json.dumps(to_jsonable(dict(row._mapping)), ensure_ascii=False) + "\n")
        out.flush()  # the batch is in the file before it leaves the database


def prune(
    engine: Engine,
    older_than: timedelta,
    *,
    now: datetime,
    archive_dir: Path | None = None,
    batch: int = 5000,
) -> PruneResult:
    """Archive (optionally) and delete history older than ``now - older_than``."""
    if older_than < MIN_AGE:
        raise ValueError("retention under 30 days would cut into what the wall shows")
    cutoff = now - older_than
    factory = session_factory(engine)
    result = PruneResult(cutoff)
    with ExitStack() as stack:
        archive = _Archive(archive_dir, f"{now:%Y%m%dT%H%M%SZ}", stack)
        _dossier_events(factory, archive, result, cutoff, batch)
        _queue_days(factory, archive, result, cutoff, batch)
        _by_key(
            factory,
            archive,
            result,
            m.DeadLetter.__table__,
            "id",
            m.DeadLetter.arrived_at < cutoff,
            batch,
        )
        _by_key(
            factory,
            archive,
            result,
            m.OutboxMessage.__table__,
            "id",
            and_(m.OutboxMessage.sent_at.is_not(None), m.OutboxMessage.sent_at < cutoff),
            batch,
        )
        _closed_alerts(factory, archive, result, cutoff, batch)
        _by_key(
            factory,
            archive,
            result,
            m.SummarySnapshot.__table__,
            ("scope", "taken_at"),
            m.SummarySnapshot.taken_at < cutoff,
            batch,
        )
        result.archives = list(archive.paths)
    log.info("pruned history before %s: %s", cutoff.isoformat(), result.rows)
    return result


def _table(model: Any) -> Table:
    return typing.cast(Table, model.__table__)


def _batches(
    factory: sessionmaker[Session], pick: Callable[[Session], list[Any]]
) -> Iterator[tuple[Session, list[Any]]]:
    """Short transactions, each on the keys ``pick`` returns, until it returns none."""
    while True:
        with factory() as session, session.begin():
            keys = pick(session)
            if not keys:
                return
            yield session, keys


def _dossier_events(
    factory: sessionmaker[Session],
    archive: _Archive,
    result: PruneResult,
    cutoff: datetime,
    batch: int,
) -> None:
    ds, ev = _table(m.Dossier), _table(m.DossierEvent)
    last = ""

    def pick(session: Session) -> list[str]:
        # Keyset over the primary key: each closed dossier is looked at once per run.
        return list(
            session.scalars(
                select(ds.c.dossier_code)
                .where(
                    ds.c.dossier_code > last,
                    ds.c.is_open.is_(False),
                    ds.c.closed_at < cutoff,
                    ds.c.last_event_at < cutoff,
                )
                .order_by(ds.c.dossier_code)
                .limit(batch)
            )
        )

    for session, codes in _batches(factory, pick):
        last = codes[-1]
        where = ev.c.dossier_code.in_(codes)
        if archive.directory is not None:
            archive.write(ev.name, session.execute(select(ev).where(where)).all())
        result.add(ev.name, _deleted(session.execute(delete(ev).where(where))))


def _queue_days(
    factory: sessionmaker[Session],
    archive: _Archive,
    result: PruneResult,
    cutoff: datetime,
    batch: int,
) -> None:
    """Whole service days before the cutoff's local day, per commune (the indexes lead with it)."""
    first_kept: date = cutoff.astimezone(LOCAL_TZ).date()
    day_start = datetime.combine(first_kept, time(0), tzinfo=LOCAL_TZ)
    with factory() as session:
        communes = list(session.scalars(select(m.Commune.code).order_by(m.Commune.code)))
    for commune in communes:
        _by_key(
            factory,
            archive,
            result,
            _table(m.QueueEvent),
            "event_id",
            and_(m.QueueEvent.commune_code == commune, m.QueueEvent.occurred_at < day_start),
            batch,
        )
        _by_key(
            factory,
            archive,
            result,
            _table(m.QueueTicket),
            "id",
            and_(m.QueueTicket.commune_code == commune, m.QueueTicket.service_day < first_kept),
            batch,
        )


def _closed_alerts(
    factory: sessionmaker[Session],
    archive: _Archive,
    result: PruneResult,
    cutoff: datetime,
    batch: int,
) -> None:
    alerts, outbox, ds = _table(m.Alert), _table(m.OutboxMessage), _table(m.Dossier)
    still_open = exists().where(ds.c.dossier_code == alerts.c.dossier_code, ds.c.is_open.is_(True))
    closed = and_(
        alerts.c.state == "resolved",
        alerts.c.resolved_at < cutoff,
        or_(alerts.c.dossier_code.is_(None), not_(still_open)),
    )

    def pick(session: Session) -> list[Any]:
        return list(session.scalars(select(alerts.c.alert_id).where(closed).limit(batch)))

    for session, ids in _batches(factory, pick):
        notes = outbox.c.alert_id.in_(ids)
        if archive.directory is not None:
            archive.write(outbox.name, session.execute(select(outbox).where(notes)).all())
            rows = session.execute(select(alerts).where(alerts.c.alert_id.in_(ids))).all()
            archive.write(alerts.name, rows)
        result.add(outbox.name, _deleted(session.execute(delete(outbox).where(notes))))
        gone = session.execute(delete(alerts).where(alerts.c.alert_id.in_(ids)))
        result.add(alerts.name, _deleted(gone))


def _by_key(
    factory: sessionmaker[Session],
    archive: _Archive,
    result: PruneResult,
    table: Any,
    key: str | tuple[str, ...],
    condition: Any,
    batch: int,
) -> None:
    """Delete the rows matching ``condition``, ``batch`` keys per transaction."""
    names = (key,) if isinstance(key, str) else key
    cols = [table.c[k] for k in names]
    query: Select[Any] = select(*cols).where(condition).limit(batch)

    def pick(session: Session) -> list[Any]:
        return list(session.execute(query).all())

    for session, keys in _batches(factory, pick):
        if len(cols) == 1:
            where = cols[0].in_([k[0] for k in keys])
        else:
            where = tuple_(*cols).in_([tuple(k) for k in keys])
        if archive.directory is not None:
            archive.write(table.name, session.execute(select(table).where(where)).all())
        result.add(table.name, _deleted(session.execute(delete(table).where(where))))


def _deleted(outcome: Any) -> int:
    return int(getattr(outcome, "rowcount", 0) or 0)
