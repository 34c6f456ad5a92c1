"""Applying batches of inbound messages to the database, one transaction per batch.

Per batch: validate every message; keep rejects as dead letters; insert valid events
idempotently (``event_id``); re-derive every dossier and queue ticket that received a *new*
event from all of its events; and move the wall's aggregates (``commune_due_buckets``,
``commune_days``, ``centre_feeds``) by the difference between the old and the new state, in
the same transaction, so the aggregates always equal a recomputation from the dossiers table.
Everything is batched: a fixed number of statements per batch, never one per event.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import typing
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    CursorResult,
    Date,
    DateTime,
    Dialect,
    Engine,
    String,
    Table,
    Text,
    Uuid,
    and_,
    any_,
    bindparam,
    case,
    cast,
    column,
    delete,
    func,
    insert,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import JSON as PG_JSON
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from collectors import validation as v
from control_center import models as m
from control_center.db import insert_for, session_factory
from control_center.domain import dossier as dd
from control_center.domain.calendar import LOCAL_TZ, WorkingCalendar
from control_center.runtime import calendar_from_settings
from control_center.settings import Settings

log = logging.getLogger(__name__)

EXCERPT_BYTES = 2048
REFERENCE_REFRESH_S = 300.0
# SQLite accepts 32766 bound parameters; stay far below for IN lists.
IN_CHUNK = 500


class ReferenceDataMissing(RuntimeError):
    """The communes table is empty: not ready to judge messages yet (retry later)."""


@dataclass(frozen=True)
class InboundMessage:
    topic: str
    payload: bytes
    arrived_at: datetime  # aware
    ack_token: Any = None
    # A retained status replayed on subscribe says nothing about the centre being alive now.
    retained: bool = False


@dataclass
class BatchResult:
    received: int = 0
    stored: int = 0  # new dossier/queue events
    duplicates: int = 0  # valid events already stored (or repeated within the batch)
    statuses: int = 0  # heartbeats applied
    dead_lettered: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    dossiers_changed: int = 0
    tickets_changed: int = 0
    lags: list[float] = field(default_factory=list)  # arrival - occurred_at of new events

    def add(self, other: BatchResult) -> None:
        for name in (
            "received",
            "stored",
            "duplicates",
            "statuses",
            "dead_lettered",
            "dossiers_changed",
            "tickets_changed",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.by_reason.update(other.by_reason)


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _newer(table: Any, excluded: Any, column: str) -> Any:
    """SQL for 'keep the later of the stored and the incoming value' (NULLs never win)."""
    old, new = table.c[column], excluded[column]
    return case((and_(new.is_not(None), (old.is_(None)) | (new > old)), new), else_=old)


# --- dossier rows <-> domain state ---------------------------------------------------------


_STATE_FIELDS = tuple(f.name for f in fields(dd.DossierState))
# Dossier columns a re-derived state never overwrites: the key, and the alert engine's level.
_KEEP = frozenset({"dossier_code", "escalation_level"})


def state_from_row(row: Any) -> dd.DossierState:
    """Rebuild the state that was applied to the aggregates when this row was written.

    Every field of the state has a column of the same name, so old contributions and the old
    bucket key are recomputed exactly (a field without a column fails loudly on insert)."""
    values = {name: getattr(row, name) for name in _STATE_FIELDS}
    values["flags"] = tuple(values["flags"] or ())
    return dd.DossierState(**values)


def row_from_state(state: dd.DossierState, now: datetime) -> dict[str, Any]:
    row = {name: getattr(state, name) for name in _STATE_FIELDS}
    row.update(
        flags=list(state.flags),
        is_open=state.is_open,
        is_paused=state.is_paused,
        outcome=dd.finished_outcome(state),
        updated_at=now,
    )
    return row


def sqlite_utc_text(value: datetime) -> str:
    """An aware datetime as SQLAlchemy's SQLite DATETIME stores a :class:`m.UTCDateTime`
    (UTC, no offset, microseconds), so text order stays time order."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("naive datetime given to a UTC column")
    # Subtracting the offset from the naive wall time is UTC, three times cheaper than
    # astimezone(UTC) (it was a tenth of the collector's time on SQLite).
    return (value.replace(tzinfo=None) - offset).isoformat(" ", "microseconds")


def _same(value: Any) -> Any:
    return value


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _json_value(type_: Any, is_time: bool, is_json: bool) -> Callable[[Any], Any] | None:
    """How a value travels in the JSON text of :class:`RawValues` (None: as it is)."""
    if is_time or isinstance(type_, Date | Uuid):
        return str  # ISO 8601 with offset for datetimes, as PostgreSQL parses them
    return _json_text if is_json else None


class RawValues:
    """An INSERT of many rows of ``columns`` of ``table``, shaped for speed per backend.

    Values are converted once per row by us instead of by SQLAlchemy's type processors per
    value, and the statement is executed without SQLAlchemy's per-row parameter handling (at
    batches of 500, each of those was a fifth of the collector's CPU):

    - SQLite: the statement is compiled once to SQL text with ``?`` placeholders and handed to
      the driver with one tuple per row (``executemany`` runs the prepared statement in C), or,
      for ``RETURNING``, as one multi-row ``VALUES`` list (the driver returns no rows from
      ``executemany``). Datetimes become the exact text SQLAlchemy stores
      (:func:`sqlite_utc_text`).
    - PostgreSQL: the whole batch goes as one JSON text into ``INSERT ... SELECT FROM
      json_to_recordset(...)``: a short statement with one parameter, where a multi-row VALUES
      list made the driver parse thousands of placeholders every batch, and arrays per column
      made it escape every value in Python (each a third of the time on PostgreSQL).

    The stored values are the same as through the ORM types (``tests/test_ingest.py``)."""

    def __init__(self, table: Any, columns: Sequence[str], dialect: Dialect) -> None:
        self.sqlite = dialect.name == "sqlite"
        self.dialect = dialect
        # Python-side callable defaults (a uuid id) run once per statement in INSERT ... SELECT:
        # give every row its own value instead. On SQLite, where we bypass SQLAlchemy's
        # execution, scalar defaults are filled in by us too.
        self.generated: dict[str, Callable[[], Any]] = {}
        for c in table.c:
            default = c.default
            if c.name in columns or default is None:
                continue
            if default.is_callable:
                self.generated[c.name] = functools.partial(default.arg, None)
            elif default.is_scalar and self.sqlite:
                self.generated[c.name] = functools.partial(_same, default.arg)
        columns = self.columns = (*columns, *self.generated)
        self.times = [c for c in columns if isinstance(table.c[c].type, m.UTCDateTime)]
        self.jsons = [c for c in columns if isinstance(table.c[c].type, JSON | JSONB)]
        self.insert: Any
        if self.sqlite:

            def bind_type(c: str) -> Any:
                if c in self.times:
                    return String()  # sqlite_utc_text already
                return Text() if c in self.jsons else table.c[c].type

            def to_driver(c: str) -> Callable[[Any], Any] | None:
                if c in self.times:
                    return sqlite_utc_text
                if c in self.jsons:
                    return _json_text
                return table.c[c].type.dialect_impl(dialect).bind_processor(dialect)

            self.insert = sqlite_insert(table).values(
                {c: bindparam(c, type_=bind_type(c)) for c in columns}
            )
            self.to_driver = [to_driver(c) for c in columns]
            self._compiled: dict[int, tuple[str, tuple[str, ...]]] = {}
            return

        def record_type(c: str) -> Any:
            if c in self.times:
                return DateTime(timezone=True)
            if c in self.jsons:
                return Text()
            return table.c[c].type

        source = (
            func.json_to_recordset(cast(bindparam("rows", type_=Text()), PG_JSON))
            .table_valued(*(column(c, record_type(c)) for c in columns))
            .render_derived(name="batch", with_types=True)
        )
        picked = [cast(source.c[c], JSONB) if c in self.jsons else source.c[c] for c in columns]
        self.insert = pg_insert(table).from_select(list(columns), select(*picked))
        self.to_json = {
            c: _json_value(table.c[c].type, c in self.times, c in self.jsons) for c in columns
        }

    def execute(
        self, session: Session, stmt: Any, rows: Sequence[dict[str, Any]], returning: bool = False
    ) -> list[Any]:
        """Run ``stmt`` (built on :attr:`insert`) for ``rows``; the RETURNING rows if asked."""
        if not self.sqlite:
            result = session.execute(stmt, self._json_rows(rows))
            return list(result) if returning else []
        sql, names = self._sqlite_sql(stmt)
        connection = session.connection()
        values = self._tuples(rows, names)
        if not returning:
            connection.exec_driver_sql(sql, values)
            return []
        # One statement per chunk with a multi-row VALUES list: SQLite accepts 32766 parameters.
        single = "VALUES (" + ", ".join("?" * len(names)) + ")"
        head, tail = sql.split(single)
        out: list[Any] = []
        per_chunk = max(1, 30000 // len(names))
        for chunk in _chunks(values, per_chunk):
            many = ", ".join(["(" + ", ".join("?" * len(names)) + ")"] * len(chunk))
            flat = tuple(x for row in chunk for x in row)
            out.extend(connection.exec_driver_sql(f"{head}VALUES {many}{tail}", flat))
        return out

    def _sqlite_sql(self, stmt: Any) -> tuple[str, tuple[str, ...]]:
        """The statement's SQL text and its parameter names in placeholder order."""
        found = self._compiled.get(id(stmt))
        if found is None:
            compiled = stmt.compile(dialect=self.dialect)
            names = tuple(compiled.positiontup or ())
            if sorted(names) != sorted(self.columns):
                # Only the row's own values may be parameters: a literal elsewhere in the
                # statement would need SQLAlchemy's execution to bind it.
                raise ValueError(f"statement parameters {names} are not the row {self.columns}")
            found = self._compiled[id(stmt)] = (compiled.string, names)
        return found

    def _tuples(
        self, rows: Sequence[dict[str, Any]], names: tuple[str, ...]
    ) -> list[tuple[Any, ...]]:
        own = [c for c in names if c not in self.generated]
        made = [self.generated[c] for c in names if c in self.generated]
        # Own values first, then generated ones; ``order`` puts them in placeholder order.
        slots = own + [c for c in names if c in self.generated]
        order = [slots.index(c) for c in names]
        converters = dict(zip(self.columns, self.to_driver, strict=True))
        pairs = [(i, f) for i, c in enumerate(slots) if (f := converters[c]) is not None]
        in_order = order == list(range(len(order)))
        out = []
        for row in rows:
            values = [row[c] for c in own]
            values.extend(make() for make in made)
            for i, convert in pairs:
                if values[i] is not None:
                    values[i] = convert(values[i])
            out.append(tuple(values) if in_order else tuple(values[i] for i in order))
        return out

    def _json_rows(self, rows: Sequence[dict[str, Any]]) -> dict[str, str]:
        """One JSON text with every row; a JSON value given as ``str`` is JSON text already."""
        for c, make in self.generated.items():
            rows = [{**r, c: make()} for r in rows]
        convert = self.to_json
        records = [
            {c: x if (f := convert[c]) is None or x is None else f(x) for c, x in r.items()}
            for r in rows
        ]
        return {"rows": json.dumps(records, ensure_ascii=False)}


class FeedDeltas:
    """What one batch changes in ``centre_feeds``, per commune, applied in one statement."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def row(self, commune_code: str) -> dict[str, Any]:
        row = self.rows.get(commune_code)
        if row is None:
            row = self.rows[commune_code] = {
                "commune_code": commune_code,
                "events_total": 0,
                "dead_letters_total": 0,
                "last_event_at": None,
                "last_arrival_at": None,
                "last_heartbeat_arrived_at": None,
                "last_lag_seconds": None,
                "reported_state": None,
                "reported_at": None,
                "software": None,
                "queue_waiting": None,
            }
        return row

    def later(self, commune_code: str, column: str, instant: datetime) -> None:
        row = self.row(commune_code)
        if row[column] is None or instant > row[column]:
            row[column] = instant


class Ingestor:
    """Applies batches of :class:`InboundMessage` to the database (one transaction each)."""

    def __init__(
        self, engine: Engine, settings: Settings, *, calendar: WorkingCalendar | None = None
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.factory = session_factory(engine)
        self.calendar = calendar or calendar_from_settings(settings)
        self.is_postgres = engine.dialect.name == "postgresql"
        self._communes: frozenset[str] = frozenset()
        self._procedures: dict[str, dd.ProcedureTerms | None] = {}
        self._reference_loaded_at: float | None = None
        # Dossiers seen with events but no received event: code -> first arrival. None until
        # the first sweep has looked for orphans left by an earlier run.
        self._orphans: dict[str, datetime] | None = None
        self._orphans_seen: dict[str, datetime] = {}
        # Statements are built once: building an upsert (its EXCLUDED columns, cache key)
        # per batch cost as much as a tenth of the batch.
        self._statements: dict[Hashable, Any] = {}

    # --- statements ----------------------------------------------------------------------

    def _statement(self, key: Hashable, build: Callable[[], Any]) -> Any:
        stmt = self._statements.get(key)
        if stmt is None:
            stmt = self._statements[key] = build()
        return stmt

    def _raw(self, table: Any, columns: tuple[str, ...]) -> RawValues:
        return typing.cast(
            RawValues,
            self._statement(
                ("raw", table.name, columns),
                lambda: RawValues(table, columns, self.engine.dialect),
            ),
        )

    def _in(self, column: Any, values: Sequence[Any]) -> Any:
        """``column IN values``; on PostgreSQL ``= ANY(array)``, one parameter instead of
        hundreds (the driver parses, and the server plans, a shorter statement)."""
        if self.is_postgres:
            return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
        return column.in_(values)

    def _not_in(self, column: Any, values: Sequence[Any]) -> Any:
        """``column NOT IN values``; on PostgreSQL ``NOT IN (SELECT unnest(array))``, one
        parameter, which the server checks with a hash per row (``<> ALL(array)`` compared
        every row with every value and made the reads slower than what they saved)."""
        if self.is_postgres:
            array = bindparam(None, list(values), type_=ARRAY(column.type))
            return column.not_in(select(func.unnest(array)).scalar_subquery())
        return column.not_in(values)

    def _raw_payload(self, table: Any) -> Any:
        """The payload column as JSON text, decoded by us only when needed."""
        col = table.c.payload
        return cast(col, Text) if self.is_postgres else type_coerce(col, Text)

    def _insert_ignore(
        self, session: Session, table: Any, rows: Sequence[dict[str, Any]], key: str
    ) -> list[Any]:
        """Insert rows, skipping those whose ``key`` exists; returns the keys inserted."""
        if not rows:
            return []
        raw = self._raw(table, tuple(rows[0]))
        stmt = self._statement(
            ("ignore", table.name, tuple(rows[0])),
            lambda: raw.insert.on_conflict_do_nothing(index_elements=[key]).returning(table.c[key]),
        )
        return [r[0] for r in raw.execute(session, stmt, rows, returning=True)]

    def _upsert(
        self,
        session: Session,
        table: Any,
        rows: Sequence[dict[str, Any]],
        key: Sequence[str],
        set_: Callable[[Any], dict[str, Any]],
        where: Callable[[Any], Any] | None = None,
    ) -> None:
        """``INSERT ... ON CONFLICT (key) DO UPDATE SET set_(insert) [WHERE where(insert)]``."""
        if not rows:
            return
        raw = self._raw(table, tuple(rows[0]))

        def build() -> Any:
            ins = raw.insert
            return ins.on_conflict_do_update(
                index_elements=list(key),
                set_=set_(ins),
                where=where(ins) if where is not None else None,
            )

        stmt = self._statement(("upsert", table.name, tuple(rows[0])), build)
        raw.execute(session, stmt, rows)

    def _add_counts(
        self,
        session: Session,
        table: Any,
        rows: Sequence[dict[str, Any]],
        key: Sequence[str],
        *columns: str,
    ) -> None:
        """Upsert counters: insert, or add the deltas in ``columns`` to the existing row."""
        self._upsert(
            session,
            table,
            rows,
            key,
            lambda ins: {c: table.c[c] + ins.excluded[c] for c in columns},
        )

    def _add_day_counts(self, session: Session, deltas: Counter[tuple[str, date, str]]) -> None:
        """Add the day counters' deltas to ``commune_days``: one upsert of a row per commune
        and day, in key order (the same lock order in every transaction on PostgreSQL)."""
        self._add_counts(
            session,
            m.CommuneDay.__table__,
            commune_day_rows(deltas),
            ["commune_code", "day"],
            *dd.DAILY_METRICS,
        )

    # --- reference data ------------------------------------------------------------------

    def _refresh_reference(self, force: bool = False) -> None:
        now = time.monotonic()
        if (
            not force
            and self._reference_loaded_at is not None
            and now - self._reference_loaded_at < REFERENCE_REFRESH_S
        ):
            return
        with self.engine.connect() as conn:
            in_scope = select(m.Commune.code)
            if not self.settings.national:
                in_scope = in_scope.where(m.Commune.province_code == self.settings.province)
            communes = conn.execute(in_scope).scalars()
            self._communes = frozenset(communes)
            procedures: dict[str, dd.ProcedureTerms | None] = {}
            for p in conn.execute(select(m.Procedure.__table__)):
                procedures[p.code] = (
                    dd.ProcedureTerms(
                        processing_days=p.processing_days,
                        processing_hours=p.processing_hours,
                        name=p.name,
                        sector=p.sector,
                    )
                    if p.catalogued
                    else None
                )
            self._procedures = procedures
        self._reference_loaded_at = now

    def _terms(self, procedure_code: str) -> dd.ProcedureTerms | None:
        return self._procedures.get(procedure_code)

    # --- the batch -----------------------------------------------------------------------

    def validate(self, msg: InboundMessage) -> v.ValidEvent | v.Rejection:
        return v.validate_message(
            msg.topic,
            msg.payload,
            msg.arrived_at,
            province=None if self.settings.national else self.settings.province,
            known_communes=self._communes,
            max_payload_bytes=self.settings.max_payload_bytes,
            max_future_skew_s=self.settings.max_future_skew_s,
        )

    def process(self, batch: Sequence[InboundMessage]) -> BatchResult:
        """Apply a batch in one transaction; raises (and changes nothing) if the database fails."""
        result = BatchResult(received=len(batch))
        if not batch:
            return result
        self._refresh_reference(force=not self._communes)
        if not self._communes:
            # Without reference data every message would be dead-lettered as unknown_commune.
            raise ReferenceDataMissing(
                f"no communes of province {self.settings.province} in the database: "
                "run `control-center db upgrade`"
            )
        checked = [(msg, self.validate(msg)) for msg in batch]
        new_procedures: dict[str, dict[str, Any]] = {}
        feeds = FeedDeltas()
        with self.factory() as session, session.begin():
            new_dossier, new_queue = self._store_events(session, checked, result, feeds)
            self._lock_keys(session, new_dossier, new_queue)
            self._store_dead_letters(session, checked, result, feeds)
            self._collect_statuses(checked, result, feeds)
            self._store_feeds(session, feeds)
            if new_dossier:
                new_procedures = self._register_procedures(session, new_dossier)
                self._apply_dossiers(session, new_dossier, result)
            if new_queue:
                self._apply_queue(session, new_queue, result)
        # Only after the commit: a rolled-back batch must not leave the cache ahead of the table.
        for code in new_procedures:
            self._procedures.setdefault(code, None)
        return result

    def _store_events(
        self,
        session: Session,
        checked: Sequence[tuple[InboundMessage, v.ValidEvent | v.Rejection]],
        result: BatchResult,
        feeds: FeedDeltas,
    ) -> tuple[
        list[tuple[InboundMessage, v.ValidEvent]], list[tuple[InboundMessage, v.ValidEvent]]
    ]:
        """Insert valid events (duplicates skipped); returns the new ones per table."""
        firsts: dict[tuple[str, str], tuple[InboundMessage, v.ValidEvent]] = {}
        for msg, ev in checked:
            if not isinstance(ev, v.ValidEvent):
                continue
            if not msg.retained:
                feeds.later(ev.commune_code, "last_arrival_at", msg.arrived_at)
            if ev.kind == v.STATUS:
                continue
            key = (ev.kind, ev.event_id or "")
            if key in firsts:
                result.duplicates += 1
            else:
                firsts[key] = (msg, ev)
        by_kind: dict[str, list[tuple[InboundMessage, v.ValidEvent]]] = {v.DOSSIER: [], v.QUEUE: []}
        # Sorted so that two collectors inserting overlapping batches lock in the same order.
        for key in sorted(firsts):
            by_kind[key[0]].append(firsts[key])

        def row(msg: InboundMessage, ev: v.ValidEvent) -> dict[str, Any]:
            out = {
                "event_id": ev.event_id,
                "commune_code": ev.commune_code,
                "type": ev.type,
                "occurred_at": ev.occurred_at,
                "arrived_at": msg.arrived_at,
                "payload": ev.payload,
            }
            if ev.kind == v.DOSSIER:
                out["dossier_code"] = ev.dossier_code
            else:
                out["ticket_no"] = ev.ticket_no
            if ev.text is not None:
                out["payload"] = ev.text  # stored as sent: no second encoding
            return out

        new: dict[str, list[tuple[InboundMessage, v.ValidEvent]]] = {}
        for kind, table in (
            (v.DOSSIER, m.DossierEvent.__table__),
            (v.QUEUE, m.QueueEvent.__table__),
        ):
            items = by_kind[kind]
            inserted = set(
                self._insert_ignore(session, table, [row(*i) for i in items], "event_id")
            )
            new[kind] = [i for i in items if i[1].event_id in inserted]
            result.duplicates += len(items) - len(new[kind])
        fresh = new[v.DOSSIER] + new[v.QUEUE]
        result.stored = len(fresh)

        # Feed freshness; in arrival order, so last_lag_seconds is the latest arrival's lag.
        for msg, ev in sorted(fresh, key=lambda item: item[0].arrived_at):
            lag = (msg.arrived_at - ev.occurred_at).total_seconds()
            result.lags.append(lag)
            feed = feeds.row(ev.commune_code)
            feed["events_total"] += 1
            feed["last_lag_seconds"] = lag
            feeds.later(ev.commune_code, "last_event_at", ev.occurred_at)
        return new[v.DOSSIER], new[v.QUEUE]

    def _lock_keys(
        self,
        session: Session,
        new_dossier: Sequence[tuple[InboundMessage, v.ValidEvent]],
        new_queue: Sequence[tuple[InboundMessage, v.ValidEvent]],
    ) -> None:
        """PostgreSQL: serialise re-derivation of the same dossier/ticket across collectors.

        Two collectors of a shared-subscription group may each get one event of a dossier; each
        derives from the events it can see, so without a lock the later commit could miss the
        other's event. The lock is taken after the inserts, so the second collector's reads
        (read committed) see the first one's events. SQLite serialises writers by itself.
        """
        if not self.is_postgres:
            return
        keys = {f"d:{ev.dossier_code}" for _, ev in new_dossier}
        keys |= {f"q:{ev.commune_code}" for _, ev in new_queue}
        if not keys:
            return
        session.execute(
            text(
                "SELECT pg_advisory_xact_lock(hashtext(k)) "
                "FROM (SELECT unnest(CAST(:keys AS text[])) AS k ORDER BY 1) AS s"
            ),
            {"keys": sorted(keys)},
        )

    def _store_dead_letters(
        self,
        session: Session,
        checked: Sequence[tuple[InboundMessage, v.ValidEvent | v.Rejection]],
        result: BatchResult,
        feeds: FeedDeltas,
    ) -> None:
        rejects = [(msg, r) for msg, r in checked if isinstance(r, v.Rejection)]
        if rejects:
            rows = [
                dead_letter_row(msg.topic, msg.payload, msg.arrived_at, r) for msg, r in rejects
            ]
            self._add_dead_letters(session, rows, feeds)
            result.dead_lettered += len(rows)
            result.by_reason.update(r.reason for _, r in rejects)

    def _add_dead_letters(
        self, session: Session, rows: Sequence[dict[str, Any]], feeds: FeedDeltas | None = None
    ) -> None:
        session.execute(insert(m.DeadLetter), list(rows))
        per_key = Counter((r["commune_code"] or "", r["reason"]) for r in rows)
        self._add_counts(
            session,
            m.DeadLetterCount.__table__,
            [{"commune_code": c, "reason": r, "count": n} for (c, r), n in sorted(per_key.items())],
            ["commune_code", "reason"],
            "count",
        )
        own = feeds if feeds is not None else FeedDeltas()
        for r in rows:
            if r["commune_code"] in self._communes:
                own.row(r["commune_code"])["dead_letters_total"] += 1
        if feeds is None:
            self._store_feeds(session, own)

    def _collect_statuses(
        self,
        checked: Sequence[tuple[InboundMessage, v.ValidEvent | v.Rejection]],
        result: BatchResult,
        feeds: FeedDeltas,
    ) -> None:
        for msg, ev in checked:
            if not isinstance(ev, v.ValidEvent) or ev.kind != v.STATUS:
                continue
            result.statuses += 1
            feed = feeds.row(ev.commune_code)
            if feed["reported_at"] is None or ev.occurred_at >= feed["reported_at"]:
                feed.update(
                    reported_state=ev.payload["state"],
                    reported_at=ev.occurred_at,
                    software=ev.payload.get("software"),
                    queue_waiting=ev.payload.get("queue_waiting"),
                )
            if not msg.retained:
                feeds.later(ev.commune_code, "last_heartbeat_arrived_at", msg.arrived_at)

    def _store_feeds(self, session: Session, feeds: FeedDeltas) -> None:
        """One upsert per batch for all of a commune's feed columns: several passes over
        centre_feeds in one transaction could lock rows in different orders in two collectors."""
        rows = [feeds.rows[c] for c in sorted(feeds.rows) if c in self._communes]
        if not rows:
            return
        table = m.CentreFeed.__table__

        def set_(ins: Any) -> dict[str, Any]:
            new, old = ins.excluded, table.c
            # Newest occurred_at wins: a retained or late heartbeat never overwrites a newer one.
            newer = new.reported_at.is_not(None) & (
                old.reported_at.is_(None) | (new.reported_at >= old.reported_at)
            )
            return {
                "events_total": old.events_total + new.events_total,
                "dead_letters_total": old.dead_letters_total + new.dead_letters_total,
                "last_event_at": _newer(table, new, "last_event_at"),
                "last_arrival_at": _newer(table, new, "last_arrival_at"),
                "last_heartbeat_arrived_at": _newer(table, new, "last_heartbeat_arrived_at"),
                "last_lag_seconds": func.coalesce(new.last_lag_seconds, old.last_lag_seconds),
                "reported_state": case((newer, new.reported_state), else_=old.reported_state),
                "reported_at": case((newer, new.reported_at), else_=old.reported_at),
                "software": case(
                    (newer, func.coalesce(new.software, old.software)), else_=old.software
                ),
                "queue_waiting": case(
                    (newer, func.coalesce(new.queue_waiting, old.queue_waiting)),
                    else_=old.queue_waiting,
                ),
            }

        self._upsert(session, table, rows, ["commune_code"], set_)

    # --- dossiers ------------------------------------------------------------------------

    def _register_procedures(
        self, session: Session, new_dossier: Sequence[tuple[InboundMessage, v.ValidEvent]]
    ) -> dict[str, dict[str, Any]]:
        """Record procedure codes the catalogue does not know (CONTRACT.md: never a rejection)."""
        unknown: dict[str, dict[str, Any]] = {}
        for _, ev in new_dossier:
            code = ev.payload.get("procedure_code") if ev.type == "received" else None
            if code and code not in self._procedures and code not in unknown:
                unknown[code] = {
                    "code": code,
                    "name": (ev.payload.get("procedure_name") or code)[:500],
                    "sector": ev.payload.get("sector"),
                    "processing_days": None,
                    "processing_hours": None,
                    "full_online": False,
                    "catalogued": False,
                }
        if unknown:
            self._insert_ignore(
                session, m.Procedure.__table__, [unknown[c] for c in sorted(unknown)], "code"
            )
        return unknown

    def _apply_dossiers(
        self,
        session: Session,
        new_dossier: Sequence[tuple[InboundMessage, v.ValidEvent]],
        result: BatchResult,
    ) -> None:
        first_arrival: dict[str, datetime] = {}
        batch_events: dict[str, list[dd.Event]] = defaultdict(list)
        for msg, ev in new_dossier:
            code = ev.dossier_code or ""
            first_arrival.setdefault(code, msg.arrived_at)
            batch_events[code].append(
                dd.Event(ev.event_id or "", ev.type, ev.occurred_at, ev.commune_code, ev.payload)
            )
        codes = sorted(batch_events)
        table = m.Dossier.__table__
        old_states: dict[str, dd.DossierState] = {}
        for chunk in _chunks(codes):
            for r in session.execute(select(table).where(self._in(table.c.dossier_code, chunk))):
                old_states[r.dossier_code] = state_from_row(r)

        # The common case, a dossier's next events in time order, folds them onto the stored
        # state; anything else (a new dossier, a late event, a re-dated dossier) is derived
        # again from all of the dossier's events.
        new_states: dict[str, dd.DossierState | None] = {}
        for code, stored in old_states.items():
            folded = dd.fold_onto(stored, batch_events[code], self.calendar)
            if folded is not None:
                new_states[code] = folded
        refold = [code for code in codes if code not in new_states]
        older = self._older_dossier_events(session, refold, batch_events)
        history_pruned: set[str] = set()
        for code in refold:
            old_state = old_states.get(code)
            if old_state is not None and len(older.get(code, [])) < old_state.event_count:
                # Its events were pruned (control_center/retention.py): derived again from what
                # is left it would lose them. The stored state stands; the late event is kept.
                history_pruned.add(code)
                continue
            all_events = batch_events[code] + older.get(code, [])
            new_states[code] = dd.derive_state(code, all_events, self.calendar, self._terms)
        if history_pruned:
            log.warning(
                "late events for dossiers with pruned history kept, not applied",
                extra={"dossiers": sorted(history_pruned)[:20], "count": len(history_pruned)},
            )

        now = datetime.now(UTC)
        upserts: list[dict[str, Any]] = []
        buckets: Counter[tuple[str, datetime | None, bool]] = Counter()
        daily: Counter[tuple[str, date, str]] = Counter()
        resolved_event_ids: list[str] = []
        for code in codes:
            if code in history_pruned:
                continue
            new_state = new_states[code]
            if new_state is None:
                # An orphan: stored, not materialised; the sweep dead-letters it after a grace.
                self._orphans_seen.setdefault(code, first_arrival[code])
                continue
            old_state = old_states.get(code)
            if old_state is None and code in older:
                # Earlier events waited for this received event: their dead letter is resolved.
                resolved_event_ids.extend(e.event_id for e in older[code] + batch_events[code])
            upserts.append(row_from_state(new_state, now))
            old_key, new_key = dd.due_bucket_key(old_state), dd.due_bucket_key(new_state)
            if old_key != new_key:
                if old_key is not None:
                    buckets[old_key] -= 1
                if new_key is not None:
                    buckets[new_key] += 1
            daily.update(dd.daily_contributions(new_state))
            daily.subtract(dd.daily_contributions(old_state))
        self._upsert(
            session,
            table,
            upserts,
            ["dossier_code"],
            # escalation_level belongs to the alert engine (alerts/levels.py): never reset it.
            lambda ins: {c.name: ins.excluded[c.name] for c in table.c if c.name not in _KEEP},
        )
        result.dossiers_changed += len(upserts)
        self._apply_due_buckets(session, buckets)
        self._add_day_counts(session, daily)
        if resolved_event_ids:
            dl = typing.cast(Table, m.DeadLetter.__table__)
            for chunk in _chunks(resolved_event_ids):
                session.execute(
                    update(dl)
                    .where(
                        dl.c.reason == v.UNKNOWN_DOSSIER,
                        dl.c.resolved_at.is_(None),
                        dl.c.event_id.in_(chunk),
                    )
                    .values(resolved_at=now)
                )

    def _older_dossier_events(
        self, session: Session, codes: Sequence[str], batch_events: dict[str, list[dd.Event]]
    ) -> dict[str, list[dd.Event]]:
        """The stored events of these dossiers other than the batch's own (in memory already)."""
        events_t = m.DossierEvent.__table__
        raw_payload = self._raw_payload(events_t)
        older: dict[str, list[dd.Event]] = defaultdict(list)
        for chunk in _chunks(codes):
            own = [e.event_id for code in chunk for e in batch_events[code]]
            query = select(
                events_t.c.dossier_code,
                events_t.c.event_id,
                events_t.c.type,
                events_t.c.occurred_at,
                events_t.c.commune_code,
                raw_payload.label("payload"),
            ).where(
                self._in(events_t.c.dossier_code, chunk), self._not_in(events_t.c.event_id, own)
            )
            for r in session.execute(query):
                older[r.dossier_code].append(
                    dd.Event(
                        r.event_id, r.type, r.occurred_at, r.commune_code, json.loads(r.payload)
                    )
                )
        return older

    def _apply_due_buckets(
        self, session: Session, deltas: Counter[tuple[str, datetime | None, bool]]
    ) -> None:
        table = typing.cast(Table, m.CommuneDueBucket.__table__)
        rows = sorted(
            ((c, due, paused, n) for (c, due, paused), n in deltas.items() if n),
            key=lambda r: (r[0], r[1] is not None, r[1] or datetime.min.replace(tzinfo=UTC), r[2]),
        )
        dated = [
            {"commune_code": c, "due_minute": due, "paused": paused, "open_count": n}
            for c, due, paused, n in rows
            if due
        ]
        self._add_counts(
            session, table, dated, ["commune_code", "due_minute", "paused"], "open_count"
        )
        # The commune's backlog total moves with its buckets, in the same transaction.
        totals: Counter[str] = Counter()
        for c, _, _, n in rows:
            totals[c] += n
        self._add_counts(
            session,
            m.CommuneBacklog.__table__,
            [{"commune_code": c, "open_count": n} for c, n in sorted(totals.items()) if n],
            ["commune_code"],
            "open_count",
        )
        # A unique index treats NULLs as distinct, so ON CONFLICT never fires for the
        # no-due-date bucket: update it in place, insert it the first time.
        for c, due, paused, n in rows:
            if due is not None:
                continue
            done = typing.cast(
                CursorResult[Any],
                session.execute(
                    update(table)
                    .where(
                        table.c.commune_code == c,
                        table.c.due_minute.is_(None),
                        table.c.paused == paused,
                    )
                    .values(open_count=table.c.open_count + n)
                ),
            )
            if done.rowcount == 0:
                session.execute(
                    insert(table).values(
                        commune_code=c, due_minute=None, paused=paused, open_count=n
                    )
                )

    # --- queue ---------------------------------------------------------------------------

    def _apply_queue(
        self,
        session: Session,
        new_queue: Sequence[tuple[InboundMessage, v.ValidEvent]],
        result: BatchResult,
    ) -> None:
        from control_center.domain import queue as dq

        tickets: set[tuple[str, date, str]] = set()
        counter_events: dict[str, list[dd.Event]] = defaultdict(list)
        for _, ev in new_queue:
            if ev.type in dq.COUNTER_EVENT_TYPES:
                counter_events[ev.commune_code].append(
                    dd.Event(
                        ev.event_id or "", ev.type, ev.occurred_at, ev.commune_code, ev.payload
                    )
                )
            elif ev.ticket_no:
                tickets.add((ev.commune_code, dq.service_day(ev.occurred_at), ev.ticket_no))

        if tickets:
            events_t = m.QueueEvent.__table__
            communes = sorted({c for c, _, _ in tickets})
            numbers = sorted({t for _, _, t in tickets})
            days = sorted({d for _, d, _ in tickets})
            # Ticket numbers restart every local day: the key's day picks the right events.
            start = datetime.combine(days[0], dtime(0), LOCAL_TZ)
            end = datetime.combine(days[-1], dtime(0), LOCAL_TZ) + timedelta(days=1)
            # The batch's own events are in memory: only older ones are read (and decoded).
            grouped: dict[tuple[str, date, str], list[dd.Event]] = defaultdict(list)
            own: list[str] = []
            for _, ev in new_queue:
                if ev.type not in dq.COUNTER_EVENT_TYPES and ev.ticket_no:
                    key = (ev.commune_code, dq.service_day(ev.occurred_at), ev.ticket_no)
                    grouped[key].append(
                        dd.Event(
                            ev.event_id or "", ev.type, ev.occurred_at, ev.commune_code, ev.payload
                        )
                    )
                    own.append(ev.event_id or "")
            for chunk in _chunks(numbers):
                for r in session.execute(
                    select(
                        events_t.c.event_id,
                        events_t.c.commune_code,
                        events_t.c.ticket_no,
                        events_t.c.type,
                        events_t.c.occurred_at,
                        self._raw_payload(events_t).label("payload"),
                    ).where(
                        self._in(events_t.c.commune_code, communes),
                        self._in(events_t.c.ticket_no, chunk),
                        events_t.c.occurred_at >= start,
                        events_t.c.occurred_at < end,
                        events_t.c.type.not_in(("counter_opened", "counter_closed")),
                        self._not_in(events_t.c.event_id, own),
                    )
                ):
                    key = (r.commune_code, dq.service_day(r.occurred_at), r.ticket_no)
                    if key in tickets:
                        grouped[key].append(
                            dd.Event(
                                r.event_id,
                                r.type,
                                r.occurred_at,
                                r.commune_code,
                                json.loads(r.payload),
                            )
                        )
            rows = []
            for key in sorted(tickets):
                ticket = dq.derive_ticket(grouped[key])
                if ticket is None:
                    continue
                c, day, no = key
                rows.append(
                    {
                        "commune_code": c,
                        "service_day": day,
                        "ticket_no": no,
                        "state": ticket.state,
                        "channel": ticket.channel,
                        "service": ticket.service,
                        "priority": ticket.priority,
                        "counter": ticket.counter,
                        "issued_at": ticket.issued_at,
                        "called_at": ticket.called_at,
                        "started_at": ticket.started_at,
                        "finished_at": ticket.finished_at,
                        "cancel_reason": ticket.cancel_reason,
                        "last_event_at": ticket.last_event_at,
                    }
                )
            table = m.QueueTicket.__table__
            keep = {"id", "commune_code", "service_day", "ticket_no"}
            self._upsert(
                session,
                table,
                rows,
                ["commune_code", "service_day", "ticket_no"],
                lambda ins: {c.name: ins.excluded[c.name] for c in table.c if c.name not in keep},
            )
            result.tickets_changed += len(rows)

        if counter_events:
            table = m.CounterState.__table__
            rows = [
                {
                    "commune_code": c,
                    "counter": k,
                    "is_open": st.is_open,
                    "last_event_at": st.last_event_at,
                }
                for c in sorted(counter_events)
                for k, st in sorted(dq.counter_states(counter_events[c]).items())
            ]
            # As dq.apply_counter_event: the newest event decides, a close wins a tie.
            self._upsert(
                session,
                table,
                rows,
                ["commune_code", "counter"],
                lambda ins: {
                    "is_open": ins.excluded.is_open,
                    "last_event_at": ins.excluded.last_event_at,
                },
                where=lambda ins: (
                    (ins.excluded.last_event_at > table.c.last_event_at)
                    | (
                        (ins.excluded.last_event_at == table.c.last_event_at)
                        & ~ins.excluded.is_open
                    )
                ),
            )

    def heartbeat(self, name: str, info: dict[str, Any]) -> None:
        """Our own process's beat in ``process_heartbeats`` (the wall's stale-data banner)."""
        table = m.Heartbeat.__table__
        with self.engine.begin() as conn:
            ins = insert_for(self.engine, table)
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["name"],
                    set_={"beat_at": ins.excluded.beat_at, "info": ins.excluded.info},
                ),
                [{"name": name, "beat_at": datetime.now(UTC), "info": info}],
            )

    def dead_letter(self, msg: InboundMessage, reason: str, detail: str) -> None:
        """Keep one message as a dead letter in its own transaction (when applying it failed)."""
        parts = v.parse_topic(msg.topic)
        event_id = None
        try:
            raw = json.loads(msg.payload)
            if isinstance(raw, dict) and isinstance(raw.get("event_id"), str):
                event_id = raw["event_id"][:64]
        except ValueError:
            pass
        rejection = v.Rejection(
            reason,
            detail[:2000],
            commune_code=parts.commune_code if parts else None,
            event_id=event_id,
        )
        with self.factory() as session, session.begin():
            # A valid message is kept whole (at most 64 KiB): it can be replayed once fixed.
            row = dead_letter_row(
                msg.topic, msg.payload, msg.arrived_at, rejection, excerpt_bytes=len(msg.payload)
            )
            self._add_dead_letters(session, [row])

    # --- orphans -------------------------------------------------------------------------

    def sweep_orphans(self, now: datetime) -> int:
        """Dead-letter (``unknown_dossier``) dossiers whose events have waited longer than
        ``orphan_grace_s`` for a received event; returns how many were dead-lettered.

        The events stay stored: if the received event comes later, the dossier materialises
        from all of them and the dead letter is marked resolved.
        """
        self._refresh_reference()
        ev = m.DossierEvent.__table__
        ds = m.Dossier.__table__
        if self._orphans is None:
            # First sweep of this process: orphans an earlier run left behind.
            with self.engine.connect() as conn:
                found = conn.execute(
                    select(ev.c.dossier_code, func.min(ev.c.arrived_at))
                    .select_from(ev.outerjoin(ds, ds.c.dossier_code == ev.c.dossier_code))
                    .where(ds.c.dossier_code.is_(None))
                    .group_by(ev.c.dossier_code)
                )
                self._orphans = {code: arrived for code, arrived in found}
        for code, arrived in self._orphans_seen.items():
            self._orphans.setdefault(code, arrived)
        self._orphans_seen.clear()
        cutoff = now - timedelta(seconds=self.settings.orphan_grace_s)
        due = sorted(c for c, t in self._orphans.items() if t <= cutoff)
        if not due:
            return 0
        dead: list[dict[str, Any]] = []
        settled: list[str] = []
        with self.factory() as session, session.begin():
            for chunk in _chunks(due):
                materialised = set(
                    session.execute(select(ds.c.dossier_code).where(ds.c.dossier_code.in_(chunk)))
                    .scalars()
                    .all()
                )
                per_code: dict[str, list[Any]] = defaultdict(list)
                for r in session.execute(
                    select(ev).where(ev.c.dossier_code.in_(chunk)).order_by(ev.c.occurred_at)
                ):
                    per_code[r.dossier_code].append(r)
                ids = [r.event_id for rs in per_code.values() for r in rs]
                already = set()
                for ids_chunk in _chunks(ids):
                    already |= set(
                        session.execute(
                            select(m.DeadLetter.event_id).where(
                                m.DeadLetter.reason == v.UNKNOWN_DOSSIER,
                                m.DeadLetter.event_id.in_(ids_chunk),
                            )
                        ).scalars()
                    )
                for code in chunk:
                    settled.append(code)
                    rows = per_code.get(code)
                    if code in materialised or not rows or any(r.event_id in already for r in rows):
                        continue
                    first = rows[0]
                    rej = v.Rejection(
                        v.UNKNOWN_DOSSIER,
                        f"dossier {code}: {len(rows)} event(s), no received event within "
                        f"{self.settings.orphan_grace_s} s",
                        commune_code=first.commune_code,
                        event_id=first.event_id,
                    )
                    topic = f"dvc/v1/{self.settings.province}/{first.commune_code}/dossier"
                    payload = json.dumps(first.payload, ensure_ascii=False).encode()
                    dead.append(dead_letter_row(topic, payload, now, rej))
            if dead:
                self._add_dead_letters(session, dead)
        for code in settled:
            self._orphans.pop(code, None)
        if dead:
            log.info("orphan dossiers dead-lettered", extra={"count": len(dead)})
        return len(dead)


def recount_commune_backlog(conn: Connection) -> None:
    """Rebuild ``commune_backlog`` from ``commune_due_buckets``: for data written into the
    buckets other than by the collector (seeds, benchmarks, a repair by hand)."""
    b = m.CommuneDueBucket
    conn.execute(delete(m.CommuneBacklog))
    conn.execute(
        insert(m.CommuneBacklog).from_select(
            ["commune_code", "open_count"],
            select(b.commune_code, func.sum(b.open_count)).group_by(b.commune_code),
        )
    )


def commune_day_rows(counts: Mapping[tuple[str, date, str], int]) -> list[dict[str, Any]]:
    """``commune_days`` rows from counts keyed (commune, local day, metric) as
    ``domain.dossier.daily_contributions`` gives them: a row per commune and day with every
    metric (0 for those not counted), in key order; counts of 0 are left out."""
    rows: dict[tuple[str, date], dict[str, Any]] = {}
    for (commune, day, metric), n in sorted(counts.items()):
        if not n:
            continue
        if metric not in dd.DAILY_METRICS:
            raise ValueError(f"not a day counter: {metric!r}")
        row = rows.get((commune, day))
        if row is None:
            row = rows[(commune, day)] = {
                "commune_code": commune,
                "day": day,
                **dict.fromkeys(dd.DAILY_METRICS, 0),
            }
        row[metric] += n
    return list(rows.values())


def dead_letter_row(
    topic: str,
    payload: bytes,
    arrived_at: datetime,
    rejection: v.Rejection,
    excerpt_bytes: int = EXCERPT_BYTES,
) -> dict[str, Any]:
    return {
        "arrived_at": arrived_at,
        "topic": topic[:300].replace("\x00", "\\x00"),
        "commune_code": rejection.commune_code,
        "reason": rejection.reason,
        "detail": rejection.detail.replace("\x00", "\\x00"),
        "event_id": rejection.event_id,
        # PostgreSQL text cannot hold NUL; a visible escape keeps the excerpt faithful.
        "payload_excerpt": payload[:excerpt_bytes]
        .decode("utf-8", errors="replace")
        .replace("\x00", "\\x00"),
        "payload_size": len(payload),
        "resolved_at": None,
    }
