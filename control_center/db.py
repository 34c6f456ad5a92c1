"""Engines and sessions. Nothing connects at import time: build an engine with :func:`make_engine`."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from control_center.settings import Settings


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int | None = None,
    pool_timeout: float = 30.0,
    echo: bool = False,
) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so readers never block the writer.

    PostgreSQL: a pool of ``pool_size`` connections plus ``max_overflow`` (default as many) under
    a burst, each checked with a ping when taken from the pool (a restarted server or a proxy
    that dropped idle connections costs one retry, not an error page); waiting longer than
    ``pool_timeout`` for a free one fails the request rather than queueing it forever.
    """
    if url.startswith("sqlite"):
        db_path = url.split("///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 10},
    )


def engine_from_settings(settings: Settings) -> Engine:
    return make_engine(settings.database_url, **pool_options(settings))


def pool_options(settings: Settings) -> dict[str, Any]:
    """``CC_DB_POOL_SIZE`` / ``CC_DB_MAX_OVERFLOW`` / ``CC_DB_POOL_TIMEOUT_S`` (docs/operations.md)."""
    return {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout_s,
    }


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


def insert_for(engine_or_session: Any, table: Any) -> Any:
    """The dialect's INSERT construct (with ``on_conflict_*``): no backend-agnostic upsert exists."""
    bind = (
        engine_or_session.get_bind()
        if isinstance(engine_or_session, Session)
        else engine_or_session
    )
    if bind.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignore(
    session: Session, table: Any, rows: Sequence[dict[str, Any]], key: Sequence[str]
) -> list[Any]:
    """Insert rows, skipping those whose ``key`` already exists; returns the keys inserted.

    Uses ``ON CONFLICT DO NOTHING ... RETURNING`` so the batch is one round trip per
    insertmanyvalues page and duplicates cost nothing.
    """
    if not rows:
        return []
    stmt = insert_for(session, table).on_conflict_do_nothing(index_elements=list(key))
    cols = [table.c[k] for k in key]
    result = session.execute(stmt.returning(*cols), list(rows))
    return [tuple(r) if len(cols) > 1 else r[0] for r in result]


def add_counts(
    session: Session, table: Any, rows: Sequence[dict[str, Any]], key: Sequence[str], column: str
) -> None:
    """Upsert counters: insert, or add the delta in ``column`` to the existing row."""
    if not rows:
        return
    ins = insert_for(session, table)
    stmt = ins.on_conflict_do_update(
        index_elements=list(key),
        set_={column: table.c[column] + ins.excluded[column]},
    )
    session.execute(stmt, list(rows))


class Database:
    """A lazily built engine per process: safe to create before gunicorn forks its workers.

    Nothing connects until :attr:`engine` is first used; a forked child gets its own engine
    because sharing pooled connections across processes corrupts them.
    """

    def __init__(self, url: str, **pool: Any) -> None:
        self.url = url
        self.pool = pool  # make_engine's pool_size, max_overflow, pool_timeout
        self._engine: Engine | None = None
        self._factory: sessionmaker[Session] | None = None
        self._pid: int | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None or self._pid != os.getpid():
            self._engine = make_engine(self.url, **self.pool)
            self._factory = session_factory(self._engine)
            self._pid = os.getpid()
        return self._engine

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(settings.database_url, **pool_options(settings))

    def session(self) -> Session:
        """A new session (use as a context manager)."""
        self.engine  # noqa: B018 - builds the factory for this process
        assert self._factory is not None
        return self._factory()

    def dispose(self) -> None:
        if self._engine is not None and self._pid == os.getpid():
            self._engine.dispose()
        self._engine = None
        self._factory = None
