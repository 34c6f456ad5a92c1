"""Migrations on SQLite and PostgreSQL: from empty, again as a no-op, down and up, in step with
the models (so a model change without a regenerated migration fails here, not in production)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, insert, inspect, select

from control_center.db import make_engine, session_factory
from control_center.domain.dossier import DAILY_METRICS
from control_center.migrate import (
    alembic_config,
    current_revision,
    downgrade_schema,
    head_revision,
    model_drift,
    upgrade_schema,
)
from control_center.models import Base, Commune, CommuneBacklog, CommuneDay, CommuneDueBucket


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_one_head_so_parallel_migrations_cannot_fork() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1
    assert head_revision() == script.get_current_head()


def test_upgrade_from_empty_creates_every_model_table(engine: Engine) -> None:
    assert _tables(engine) == set()
    assert current_revision(engine) is None

    upgrade_schema(engine)

    assert _tables(engine) == set(Base.metadata.tables)
    assert current_revision(engine) == head_revision()


def test_upgrade_again_is_a_no_op_that_keeps_data(engine: Engine) -> None:
    upgrade_schema(engine)
    with session_factory(engine).begin() as session:
        session.add(
            Commune(code="02269", province_code="08", name="Xã Thượng Lâm", division_type="xã")
        )

    upgrade_schema(engine)

    assert current_revision(engine) == head_revision()
    with session_factory(engine)() as session:
        assert session.scalars(select(Commune.name)).all() == ["Xã Thượng Lâm"]


def test_downgrade_to_base_then_upgrade_again(engine: Engine) -> None:
    upgrade_schema(engine)

    downgrade_schema(engine, "base")
    assert _tables(engine) == set()
    assert current_revision(engine) is None

    upgrade_schema(engine)
    assert _tables(engine) == set(Base.metadata.tables)
    assert model_drift(engine) == []


def test_migrations_match_the_models(engine: Engine) -> None:
    """Fails when models.py changed and scripts/regen_initial_migration.sh was not run."""
    upgrade_schema(engine)
    assert model_drift(engine) == []


def test_drift_is_detected_when_the_schema_differs(engine: Engine) -> None:
    # The guard above is only worth something if it can see a difference.
    upgrade_schema(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_dossiers_open_due")
    drift = model_drift(engine)
    assert any(d[0] == "add_index" and d[1].name == "ix_dossiers_open_due" for d in drift)


def test_upgrade_to_0003_fills_the_backlog_from_existing_buckets(engine: Engine) -> None:
    """A province upgraded in place keeps its wall: the backlog per commune is counted from the
    due buckets the collector kept before ``commune_backlog`` existed."""
    upgrade_schema(engine, "0002_paused_in_review_indexes")
    due = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(CommuneDueBucket),
            [
                {"commune_code": "02269", "due_minute": due, "paused": False, "open_count": 3},
                {"commune_code": "02269", "due_minute": None, "paused": False, "open_count": 2},
                {"commune_code": "02269", "due_minute": due, "paused": True, "open_count": 1},
                {"commune_code": "02272", "due_minute": due, "paused": False, "open_count": 4},
            ],
        )
    upgrade_schema(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(CommuneBacklog.commune_code, CommuneBacklog.open_count))
        backlog = {code: n for code, n in rows}
    assert backlog == {"02269": 6, "02272": 4}


def test_upgrade_to_0004_moves_the_day_counters_into_a_row_per_commune_and_day(
    engine: Engine,
) -> None:
    """A province upgraded in place keeps its rates and day counters: ``commune_daily``'s rows
    (one per metric) become ``commune_days`` columns, and back on downgrade."""
    upgrade_schema(engine, "0003_wall_refresh_reads")
    old = sa.table(
        "commune_daily",
        sa.column("commune_code", sa.String),
        sa.column("day", sa.Date),
        sa.column("metric", sa.String),
        sa.column("value", sa.Integer),
    )
    monday, tuesday = date(2026, 11, 23), date(2026, 11, 24)
    kept = [
        ("02269", monday, "received", 7),
        ("02269", monday, "received_online", 5),
        ("02269", monday, "finished_overdue", 2),
        ("02269", tuesday, "withdrawn", 1),
        ("02272", monday, "finished_no_due", 4),
    ]
    with engine.begin() as conn:
        conn.execute(
            insert(old),
            [
                {"commune_code": c, "day": d, "metric": k, "value": n}
                for c, d, k, n in [*kept, ("02272", tuesday, "returned", 0)]
            ],
        )
    upgrade_schema(engine)
    assert "commune_daily" not in _tables(engine)
    with engine.connect() as conn:
        days = {
            (r.commune_code, r.day): r._mapping for r in conn.execute(select(CommuneDay.__table__))
        }
    assert set(days) == {
        ("02269", monday),
        ("02269", tuesday),
        ("02272", monday),
        ("02272", tuesday),
    }
    moved = sorted(
        (c, d, k, n) for (c, d), row in days.items() for k in DAILY_METRICS if (n := row[k])
    )
    assert moved == sorted(kept)

    downgrade_schema(engine, "0003_wall_refresh_reads")
    with engine.connect() as conn:
        back = sorted(tuple(r) for r in conn.execute(select(old)))
    assert back == sorted(kept)  # counters of 0 are not kept as rows
