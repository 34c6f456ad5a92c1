"""A throw-away PostgreSQL database for one benchmark run, created and dropped here.

The server comes from ``CC_TEST_POSTGRES_URL`` (default the machine's local one); only that
server's admin connection is used, to create and drop the benchmark's own database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ADMIN_URL = os.environ.get("CC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def scratch_postgres(prefix: str, *, keep: bool = False) -> Iterator[str]:
    """Yield the URL of a fresh database named ``{prefix}_<random>``; dropped on exit unless
    ``keep`` (a large build timed again later with ``--database-url``)."""
    admin_url = make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    if keep:
        try:
            yield url
        finally:
            admin.dispose()
        return
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
