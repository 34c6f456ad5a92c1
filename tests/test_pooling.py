"""Connection pools: sized from the settings, and never shared across a fork (gunicorn)."""

from __future__ import annotations

import gc
import importlib
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from control_center.db import Database, engine_from_settings
from control_center.migrate import upgrade_schema
from control_center.settings import load_settings


def test_pool_sizes_come_from_the_settings(pg_url: str) -> None:
    settings = load_settings(
        database_url=pg_url, db_pool_size=3, db_max_overflow=2, db_pool_timeout_s=4
    )
    for engine in (engine_from_settings(settings), Database.from_settings(settings).engine):
        pool: Any = engine.pool
        assert (pool.size(), pool._max_overflow, pool._timeout) == (3, 2, 4)
        assert engine.pool._pre_ping  # type: ignore[attr-defined]
        engine.dispose()


def backend_id(db: Database) -> Any:
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            return conn.scalar(text("SELECT pg_backend_pid()"))
        return id(conn.connection.dbapi_connection)


def test_a_forked_worker_builds_its_own_engine_and_connections(db_url: str) -> None:
    """As gunicorn does: the parent used the database, then forks; the child must not touch the
    parent's pooled connection (two processes on one socket corrupt the protocol)."""
    upgrade_schema(Database(db_url).engine)
    db = Database(db_url)
    parent_engine, parent_backend = db.engine, backend_id(db)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanups
        try:
            child_engine = db.engine
            report = f"{child_engine is parent_engine} {backend_id(db)}"
        except BaseException as exc:  # pragma: no cover - reported to the parent
            report = f"error {exc!r}"
        os.write(write, report.encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    report = os.read(read, 1000).decode()
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0, report
    same_engine, child_backend = report.split(" ", 1)
    assert same_engine == "False"
    if db_url.startswith("postgresql"):
        assert int(child_backend) != parent_backend
    # The parent's pooled connection still works after the child came and went.
    assert backend_id(db) == parent_backend
    db.dispose()


def test_a_web_worker_hides_its_start_up_objects_from_the_garbage_collector(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # the config sets it if unset
    conf = importlib.import_module("control_center.gunicorn_conf")
    before = gc.get_freeze_count()
    try:
        conf.post_worker_init(None)  # gunicorn calls it once the worker has built its app
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
