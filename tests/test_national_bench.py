"""bench/national.py builds its aggregates in SQL: they must be what the collector keeps.

The rebuild is checked against the collector's own consistency check (tests/test_ingest.py:
every aggregate recomputed from the dossiers through ``domain.dossier``) on a small build.
"""

from __future__ import annotations

from sqlalchemy import func, select

from bench.national import build
from control_center.db import make_engine
from control_center.models import CommuneDueBucket, Dossier
from tests.test_ingest import assert_aggregates_consistent


def test_the_benchmark_aggregates_are_the_collectors(pg_url: str) -> None:
    built = build(pg_url, 3000, seed=7)
    assert built["communes"] == 3321
    engine = make_engine(pg_url)
    try:
        assert_aggregates_consistent(engine)
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Dossier)) == 3000
            open_now = conn.scalar(select(func.count()).where(Dossier.is_open))
            in_buckets = conn.scalar(select(func.sum(CommuneDueBucket.open_count)))
        assert open_now == in_buckets > 0
    finally:
        engine.dispose()
