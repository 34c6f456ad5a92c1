"""The whole country on PostgreSQL: 3,321 communes and 10,000,000 dossiers (issue 8).

    .venv/bin/python bench/national.py                       # 10,000,000 dossiers (~15 min to build)
    .venv/bin/python bench/national.py --dossiers 1000000    # a quicker run at 1,000,000
    .venv/bin/python bench/national.py --quick               # smoke run: 200,000 dossiers
    .venv/bin/python bench/national.py --keep                # keep the database, print its URL
    .venv/bin/python bench/national.py --database-url URL    # time an already built database

What it does:

1. **Database.** A fresh PostgreSQL database (dropped at the end unless ``--keep``) with the
   schema and every commune of the 34 provinces (``db upgrade`` in national mode), then N
   dossiers generated inside PostgreSQL by ``INSERT ... SELECT`` over ``generate_series`` in
   chunks of a million, with the secondary indexes dropped while loading and rebuilt after (the
   usual bulk load): received over the last year (skewed to recent weeks), some communes much
   busier than others, 90% online, the young ones mostly open and a few old ones still open
   and overdue. The aggregates the collector maintains (``commune_due_buckets``,
   ``commune_days``) are then rebuilt from those rows by :func:`rebuild_aggregates`, the SQL
   equivalent of ``domain.dossier.due_bucket_key`` and ``daily_contributions``;
   ``tests/test_national_bench.py`` checks it against the collector's own consistency check on
   a small build. Centre feeds, today's queue tickets, counters, open alerts and a fresh
   collector heartbeat come from ``bench/wall.py``'s generator. ``VACUUM ANALYZE`` last, as
   autovacuum does after a bulk insert.
2. **The country's reading.** :func:`control_center.national.national_view` timed directly:
   what one process computes once per ``CC_NATIONAL_CACHE_S`` for every viewer.
   **Wall refresh, national level.** The national wall's periodic callback exactly as a browser
   posts it (``/_dash-update-component``: tick, measure, ``?search``, the map's store), through
   the Flask test client, so the time is the server's (Dash, the queries, JSON) without a
   network: the first refresh (whole country map), then ``--ticks`` steady ones (map Patch), run
   back to back, so most answer from the shared reading and one per period recomputes it.
   Then a province's wall inside the national app (``?province=79``, 168 communes).
3. **API.** ``GET /api/v1/summary`` (the country), ``/api/v1/provinces`` and
   ``/api/v1/summary?province=79``, ``--requests`` times each.

Floors (issue 8): wall refresh p95 ≤ 100 ms and ``/api/v1/summary`` p95 ≤ 100 ms, printed next
to the figures, never asserted as tests. The machine's other work shows in the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import Engine, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bench.scratch_db import scratch_postgres  # noqa: E402
from bench.wall import (  # noqa: E402
    NOW,
    WALL_OUTPUTS,
    dash_body,
    measure_refresh,
    percentile,
    post,
    seed_live_state,
)
from collectors.ingest import recount_commune_backlog  # noqa: E402
from control_center import models as m  # noqa: E402
from control_center.app import create_app  # noqa: E402
from control_center.db import make_engine  # noqa: E402
from control_center.domain.dossier import DAILY_METRICS  # noqa: E402
from control_center.migrate import upgrade_schema  # noqa: E402
from control_center.national import national_view  # noqa: E402
from control_center.reference import seed_reference_data  # noqa: E402
from control_center.runtime import calendar_from_settings  # noqa: E402
from control_center.settings import Settings, load_settings  # noqa: E402
from layouts import ids  # noqa: E402

CHUNK = 1_000_000
HISTORY_DAYS = 365
WALL_FLOOR_MS = 100.0
SUMMARY_FLOOR_MS = 100.0
PROVINCE = "79"  # Hồ Chí Minh City: 168 communes, the largest province wall
LOCAL_TZ_SQL = "Asia/Ho_Chi_Minh"

NATIONAL_OUTPUTS = [
    (ids.NATIONAL_MAP, "figure"),
    (ids.NATIONAL_MAP_BUILT, "data"),
    (ids.NATIONAL_KPIS, "children"),
    (ids.NATIONAL_WORST_PROVINCES, "children"),
    (ids.NATIONAL_WORST_COMMUNES, "children"),
    (ids.NATIONAL_FEEDS, "children"),
    (ids.NATIONAL_CLOCK, "children"),
    (ids.NATIONAL_DATA_AS_OF, "children"),
    (ids.NATIONAL_STALE_BANNER, "children"),
    (ids.NATIONAL_STALE_BANNER, "className"),
]


# --- database -------------------------------------------------------------------------------


def _defaults(table: Any, given: Sequence[str]) -> dict[str, Any]:
    """Scalar Python-side defaults of NOT NULL columns a raw INSERT does not name (columns
    other people add later, such as ``escalation_level``), so the generator keeps working."""
    out = {}
    for column in table.columns:
        if column.name in given or column.nullable or column.server_default is not None:
            continue
        default = column.default
        if default is not None and default.is_scalar:
            out[column.name] = default.arg
    return out


# One row per dossier: ``g`` numbers it; every random draw is taken once per row (``r``).
_DOSSIER_ROWS = """
WITH r AS (
    SELECT g,
           random() AS pick, random() AS age, random() AS minute, random() AS term,
           random() AS open_draw, random() AS finish, random() AS online
    FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
), d AS MATERIALIZED (
    SELECT r.g, c.code AS commune, p.code AS procedure_code, p.name AS procedure_name,
           p.sector, r.online < 0.9 AS online, r.open_draw, r.finish,
           date_trunc('minute', CAST(:now AS timestamptz)
               - make_interval(days => LEAST(:days - 1, floor(-ln(1 - r.age) * 120)::int))
               - make_interval(mins => floor(r.minute * 480)::int + 1)) AS received,
           (ARRAY[1, 3, 5, 7, 10, 15])[1 + floor(r.term * 6)::int] AS working_days
    FROM r
    JOIN bench_communes c ON c.idx = floor(:communes * power(r.pick, 1.6))::int
    JOIN bench_procedures p ON p.idx = r.g % :procedures
), t AS MATERIALIZED (
    SELECT d.*,
           date_trunc('minute', d.received
               + make_interval(secs => d.working_days * 7.0 / 5 * 86400)) AS due
    FROM d
), o AS MATERIALIZED (
    SELECT t.*,
           (t.due > CAST(:now AS timestamptz) - interval '2 days' AND t.open_draw < 0.85)
               OR t.open_draw > 0.996 AS still_open
    FROM t
), f AS MATERIALIZED (
    SELECT o.*,
           CASE WHEN NOT o.still_open THEN date_trunc('minute', o.received + make_interval(
               secs => 60 + o.finish * GREATEST(0, extract(epoch FROM
                   LEAST(CAST(:now AS timestamptz), o.due + interval '2 days') - o.received) - 60)
           )) END AS finished
    FROM o
)
SELECT '000.00.' || f.commune || '.H' || to_char(f.received, 'YYMMDD')
           || '-' || lpad(f.g::text, 8, '0'),
       f.commune, f.commune, f.procedure_code, f.procedure_name, f.sector,
       CASE WHEN f.online THEN 'online' ELSE 'counter' END,
       CASE WHEN f.still_open THEN 4 ELSE 10 END,
       f.still_open, false, f.received, f.received, f.due, f.due, 0.0, 0,
       f.finished, f.finished, f.finished,
       CASE
           WHEN f.finished IS NULL THEN NULL
           WHEN f.finished::date > f.due::date THEN 'overdue'
           WHEN f.finished::date = f.due::date THEN 'on_time'
           ELSE 'early'
       END,
       CAST('[]' AS json), CASE WHEN f.still_open THEN 1 ELSE 3 END,
       COALESCE(f.finished, f.received), COALESCE(f.finished, f.received)
FROM f
"""
_DOSSIER_COLUMNS = (
    "dossier_code", "commune_code", "received_commune_code", "procedure_code", "procedure_name",
    "sector", "channel", "status", "is_open", "is_paused", "received_at", "clock_start_at",
    "due_at", "original_due_at", "paused_seconds", "extension_count", "finished_at",
    "returned_at", "closed_at", "outcome", "flags", "event_count", "last_event_at", "updated_at",
)  # fmt: skip


def insert_dossiers(engine: Engine, n_dossiers: int, seed: int) -> None:
    """N dossiers generated in the database, a million per statement, indexes rebuilt after."""
    extra = _defaults(m.Dossier.__table__, _DOSSIER_COLUMNS)
    columns = ", ".join((*_DOSSIER_COLUMNS, *extra))
    extra_values = "".join(f", :extra_{name}" for name in extra)
    rows = _DOSSIER_ROWS.replace("\nFROM f\n", f"{extra_values}\nFROM f\n")
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
        # Dates below are local dates (timestamptz::date in the session's zone), as the
        # collector's are (domain.dossier.local_day): cheaper than AT TIME ZONE per value.
        conn.execute(text(f"SET LOCAL TimeZone = '{LOCAL_TZ_SQL}'"))
        conn.execute(text("SELECT setseed(:s)"), {"s": (seed % 1000) / 1000})
        # Communes in a random order, so that the busiest are spread over the country.
        conn.execute(
            text(
                "CREATE TEMP TABLE bench_communes ON COMMIT DROP AS "
                "SELECT (row_number() OVER (ORDER BY random()) - 1)::int AS idx, code "
                "FROM communes"
            )
        )
        conn.execute(
            text(
                "CREATE TEMP TABLE bench_procedures ON COMMIT DROP AS "
                "SELECT (row_number() OVER (ORDER BY code) - 1)::int AS idx, code, name, sector "
                "FROM procedures"
            )
        )
        # Without statistics the planner may join each dossier to the communes by a loop.
        conn.execute(text("CREATE UNIQUE INDEX ON bench_communes (idx)"))
        conn.execute(text("CREATE UNIQUE INDEX ON bench_procedures (idx)"))
        conn.execute(text("ANALYZE bench_communes"))
        conn.execute(text("ANALYZE bench_procedures"))
        n_communes = conn.scalar(text("SELECT count(*) FROM bench_communes"))
        n_procedures = conn.scalar(text("SELECT count(*) FROM bench_procedures"))
        indexes = [
            (name, ddl)
            for name, ddl in conn.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'dossiers' "
                    "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
                )
            )
        ]
        for name, _ in indexes:
            conn.execute(text(f'DROP INDEX "{name}"'))
        for first in range(1, n_dossiers + 1, CHUNK):
            last = min(n_dossiers, first + CHUNK - 1)
            started = time.perf_counter()
            conn.execute(
                text(f"INSERT INTO dossiers ({columns}) {rows}"),
                {
                    "first": first,
                    "last": last,
                    "now": NOW,
                    "days": HISTORY_DAYS,
                    "communes": n_communes,
                    "procedures": n_procedures,
                    **{f"extra_{name}": value for name, value in extra.items()},
                },
            )
            print(f"    dossiers {last:>11,} ({time.perf_counter() - started:.0f} s)", flush=True)
        started = time.perf_counter()
        for _, ddl in indexes:
            conn.execute(text(ddl))
        print(f"    {len(indexes)} indexes rebuilt ({time.perf_counter() - started:.0f} s)")


def rebuild_aggregates(engine: Engine) -> None:
    """``commune_due_buckets`` (and ``commune_backlog``) and ``commune_days`` from the
    dossiers table, in SQL.

    The equivalent of summing ``domain.dossier.due_bucket_key`` and ``daily_contributions``
    over every dossier, which is what the collector keeps up to date event by event: a
    bucket per (commune, due minute, paused) of the open dossiers; per commune and local day:
    received (receiving commune) and received_online, finished and its outcome (current
    commune, day the result was ready), returned, rejected and withdrawn.
    """
    bucket_defaults = _defaults(
        m.CommuneDueBucket.__table__, ("id", "commune_code", "due_minute", "open_count")
    )
    # Paused dossiers count under their stored due date, apart (domain.dossier.due_bucket_key).
    paused = "is_paused AND (paused_since IS NULL OR paused_since < due_at)"
    bucket_columns = ["commune_code", "due_minute", "open_count"]
    bucket_values = ["commune_code", "date_trunc('minute', due_at)", "count(*)"]
    group = ["commune_code", "date_trunc('minute', due_at)"]
    if "paused" in bucket_defaults:
        bucket_columns.append("paused")
        bucket_values.append(f"COALESCE({paused}, false)")
        group.append(f"COALESCE({paused}, false)")
    day = "({col})::date"  # in the session's zone, set below to the local one
    daily = [
        ("received_commune_code", "received_at", "'received'", "true"),
        ("received_commune_code", "received_at", "'received_online'", "channel = 'online'"),
        ("commune_code", "finished_at", "'finished'", "status IN (9, 10)"),
        (
            "commune_code",
            "finished_at",
            "'finished_' || COALESCE(outcome, 'no_due')",
            "status IN (9, 10)",
        ),
        ("commune_code", "returned_at", "'returned'", "status = 10"),
        ("commune_code", "closed_at", "'rejected'", "status = 3"),
        ("commune_code", "closed_at", "'withdrawn'", "status = 7"),
    ]
    parts = " UNION ALL ".join(
        f"SELECT {commune} AS commune_code, {day.format(col=at)} AS day, {metric} AS metric "
        f"FROM dossiers WHERE {at} IS NOT NULL AND {where}"
        for commune, at, metric, where in daily
    )
    per_metric = ", ".join(f"count(*) FILTER (WHERE metric = '{k}')" for k in DAILY_METRICS)
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL work_mem = '256MB'"))
        conn.execute(text(f"SET LOCAL TimeZone = '{LOCAL_TZ_SQL}'"))
        conn.execute(text("DELETE FROM commune_due_buckets"))
        conn.execute(text("DELETE FROM commune_days"))
        conn.execute(
            text(
                f"INSERT INTO commune_due_buckets ({', '.join(bucket_columns)}) "
                f"SELECT {', '.join(bucket_values)} FROM dossiers WHERE is_open "
                f"GROUP BY {', '.join(group)}"
            )
        )
        recount_commune_backlog(conn)
        conn.execute(
            text(
                f"INSERT INTO commune_days (commune_code, day, {', '.join(DAILY_METRICS)}) "
                f"SELECT commune_code, day, {per_metric} FROM ({parts}) AS c "
                "GROUP BY commune_code, day"
            )
        )


def build(url: str, n_dossiers: int, seed: int = 34) -> dict[str, Any]:
    """Schema, the country's communes, N dossiers, their aggregates, the live state."""
    engine = make_engine(url)
    try:
        started = time.perf_counter()
        upgrade_schema(engine)
        with Session(engine) as session, session.begin():
            seed_reference_data(session, None)
        insert_dossiers(engine, n_dossiers, seed)
        loaded = time.perf_counter()
        rebuild_aggregates(engine)
        aggregated = time.perf_counter()
        with engine.begin() as conn:
            communes = [r[0] for r in conn.execute(text("SELECT code FROM communes ORDER BY code"))]
            seed_live_state(conn, communes, random.Random(seed))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # As autovacuum does after a bulk insert (PostgreSQL 13+): without the visibility
            # map it sets, no aggregate read is index-only (bench/api.py does the same).
            conn.execute(text("VACUUM ANALYZE"))
            counts = conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM communes), "
                    "(SELECT count(*) FROM dossiers WHERE is_open), "
                    "(SELECT count(*) FROM commune_due_buckets), "
                    "(SELECT count(*) FROM commune_days), "
                    "pg_size_pretty(pg_database_size(current_database()))"
                )
            ).one()
    finally:
        engine.dispose()
    return {
        "communes": counts[0],
        "open": counts[1],
        "due_buckets": counts[2],
        "daily_rows": counts[3],
        "size": counts[4],
        "load_s": loaded - started,
        "aggregate_s": aggregated - loaded,
        "total_s": time.perf_counter() - started,
    }


@contextlib.contextmanager
def database(url: str | None, keep: bool) -> Iterator[tuple[str, bool]]:
    """(url, built here): the given database, or a fresh one (kept with ``keep``)."""
    if url:
        yield url, False
        return
    with scratch_postgres("cc_bench_national", keep=keep) as fresh:
        yield fresh, True


# --- requests -------------------------------------------------------------------------------


def national_body(tick: int | None, built: Any, measure: str = "overdue") -> dict[str, Any]:
    return dash_body(
        NATIONAL_OUTPUTS,
        [(ids.NATIONAL_INTERVAL, "n_intervals", tick), (ids.NATIONAL_MEASURE, "value", measure)],
        [(ids.URL, "search", ""), (ids.NATIONAL_MAP_BUILT, "data", built)],
        [f"{ids.NATIONAL_INTERVAL}.n_intervals"] if tick else [],
    )


def province_body(tick: int | None, built: Any) -> dict[str, Any]:
    return dash_body(
        WALL_OUTPUTS,
        [(ids.WALL_INTERVAL, "n_intervals", tick), (ids.WALL_MEASURE, "value", "overdue")],
        [(ids.URL, "search", f"?province={PROVINCE}"), (ids.WALL_MAP_BUILT, "data", built)],
        [f"{ids.WALL_INTERVAL}.n_intervals"] if tick else [],
    )


def measure_get(client: Any, path: str, requests: int) -> dict[str, Any]:
    client.get(path)  # warm
    times = []
    size = 0
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {response.get_data()[:300]!r}")
        size = len(response.get_data())
    result = {
        "p50_ms": statistics.median(times),
        "p95_ms": percentile(times, 0.95),
        "max_ms": max(times),
        "bytes": size,
    }
    print(
        f"  GET {path:<30} p50 {result['p50_ms']:7.1f} ms   p95 {result['p95_ms']:7.1f} ms   "
        f"max {result['max_ms']:6.1f} ms   {size / 1024:6.1f} KB"
    )
    return result


def first_refresh(client: Any, name: str, body: dict[str, Any]) -> None:
    started = time.perf_counter()
    _, _, first = post(client, body)
    print(
        f"  {name:<34} {(time.perf_counter() - started) * 1000:6.0f} ms, "
        f"{len(first) / 1024:.0f} KB ({len(gzip.compress(first)) / 1024:.0f} KB gzip)"
    )


def measure_reading(settings: Settings, runs: int) -> dict[str, float]:
    """The country's reading itself (what one process does once per CC_NATIONAL_CACHE_S)."""
    engine = make_engine(settings.database_url)
    calendar = calendar_from_settings(settings)
    times = []
    try:
        for _ in range(runs + 1):
            with Session(engine) as session:
                started = time.perf_counter()
                national_view(session, settings, calendar, NOW)
                times.append((time.perf_counter() - started) * 1000)
    finally:
        engine.dispose()
    times = times[1:]  # the first warms the connection and the caches
    result = {"p50_ms": statistics.median(times), "max_ms": max(times)}
    print(
        f"  country reading (uncached)        p50 {result['p50_ms']:7.0f} ms   "
        f"max {result['max_ms']:7.0f} ms over {runs} readings"
    )
    return result


def measure(url: str, ticks: int, requests: int, cache_dir: Path) -> list[str]:
    settings = load_settings(
        database_url=url, scope="national", auth_required=False, cache_dir=cache_dir
    )
    app = create_app(settings, clock=lambda: NOW)
    client = app.server.test_client()
    failures = []

    print(f"the country's figures, shared for {settings.national_cache_s:g} s by every viewer:")
    measure_reading(settings, 3)

    print("national wall (server time, Flask test client):")
    first_refresh(client, "first refresh (whole country map)", national_body(None, None))
    national: Callable[[int], dict[str, Any]] = lambda tick: national_body(  # noqa: E731
        tick, ["overdue", "vi"]
    )
    wall = measure_refresh("national tick (map Patch)", client, national, ticks)
    first_refresh(client, f"province {PROVINCE} first refresh", province_body(None, None))
    province = measure_refresh(
        f"province {PROVINCE} tick",
        client,
        lambda tick: province_body(tick, ["overdue", "vi"]),
        ticks,
    )
    for name, result in (("national wall", wall), (f"province {PROVINCE} wall", province)):
        if result["p95_ms"] > WALL_FLOOR_MS:
            failures.append(f"{name} refresh p95 {result['p95_ms']:.1f} ms > {WALL_FLOOR_MS} ms")

    print("API (server time, Flask test client):")
    summary = measure_get(client, "/api/v1/summary", requests)
    measure_get(client, "/api/v1/provinces", requests)
    measure_get(client, f"/api/v1/summary?province={PROVINCE}", requests)
    if summary["p95_ms"] > SUMMARY_FLOOR_MS:
        failures.append(f"/api/v1/summary p95 {summary['p95_ms']:.1f} ms > {SUMMARY_FLOOR_MS} ms")
    return failures


# --- main -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dossiers", type=int, default=10_000_000, help="default 10,000,000")
    parser.add_argument("--ticks", type=int, default=100, help="timed refreshes per wall")
    parser.add_argument("--requests", type=int, default=100, help="timed requests per endpoint")
    parser.add_argument("--database-url", help="time this already built database")
    parser.add_argument("--keep", action="store_true", help="keep the built database")
    parser.add_argument("--quick", action="store_true", help="200,000 dossiers, 20 ticks")
    args = parser.parse_args(argv)
    if args.quick:
        args.dossiers, args.ticks, args.requests = min(args.dossiers, 200_000), 20, 20

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with database(args.database_url, args.keep) as (url, fresh):
        if fresh:
            print(f"building 3,321 communes and {args.dossiers:,} dossiers on PostgreSQL ...")
            built = build(url, args.dossiers)
            print(
                f"  {built['communes']:,} communes, {args.dossiers:,} dossiers "
                f"({built['open']:,} open), {built['due_buckets']:,} due buckets, "
                f"{built['daily_rows']:,} daily rows, {built['size']}; dossiers loaded in "
                f"{built['load_s']:.0f} s, aggregates in {built['aggregate_s']:.0f} s, "
                f"{built['total_s']:.0f} s in all"
            )
            if args.keep:
                print(f"  kept: --database-url {url}")
        with tempfile.TemporaryDirectory(prefix="cc-bench-national-") as cache_dir:
            failures = measure(url, args.ticks, args.requests, Path(cache_dir))

    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if failures:
        print("ABOVE THE FLOORS: " + "; ".join(failures))
        return 1
    print("within the floors: wall refresh p95 <= 100 ms, /api/v1/summary p95 <= 100 ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
