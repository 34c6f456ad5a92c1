"""Read-side benchmark: the JSON API and the overdue review on a province of 1,000,000 dossiers.

    .venv/bin/python bench/api.py                  # 1,000,000 dossiers on a fresh PostgreSQL db
    .venv/bin/python bench/api.py --sqlite         # the same on a fresh SQLite file
    .venv/bin/python bench/api.py --quick          # 100,000 dossiers, fewer requests: a smoke run
    .venv/bin/python bench/api.py --dossiers 300000 --requests 300 --export-rows 50000

What it does (issue 5, "Performance"):

1. Creates a fresh PostgreSQL database (dropped at the end; ``--sqlite``: a SQLite file in a
   temporary directory), the schema, the 124 communes of Tuyên Quang and the procedure
   catalogue, then N dossiers (COPY on PostgreSQL): received over the last year, 85%
   finished, 15% open (due dates from 40 working days ago to 3 weeks ahead, so about 100,000
   overdue at full size, with apologies, extensions and 30 handlers), with the aggregates the
   collector maintains (``commune_due_buckets``, ``commune_backlog``, ``commune_days``), an
   alert for one overdue dossier in five and the dossiers' stored escalation level
   (``alerts.levels``). ``VACUUM ANALYZE`` afterwards (``ANALYZE`` on SQLite), as autovacuum
   does after a bulk insert.
2. Times requests through the Flask app in process (no network, no gunicorn, no sign-in: the
   figure is the application and the database): p50 / p95 / max of ``/api/v1/summary`` and
   ``/api/v1/communes`` (floor p95 ≤ 50 ms), and of the overdue grid's pages (what the grid's
   ``getRowsRequest`` asks): first page, a filtered page (one commune, no apology), overdue +
   online + not extended at offset 500, a deep page (offset 50,000), sorted by escalation
   level, and filtered by part of a handler's name (floor p95 ≤ 150 ms).
3. Exports ``--export-rows`` rows (default 50,000) of the review list to .xlsx in a child
   process and reports its time (floor ≤ 10 s) and the child's peak RSS, next to the peak RSS
   of a 5,000-row export: bounded memory means the two are close (XlsxWriter constant-memory
   mode, rows streamed from a server-side cursor, file spooled to disk). A third child reads
   and builds the same rows without writing them: the split between the query and the writer.

The floors are printed next to the figures, never asserted: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import Engine, func, insert, select, text, true  # noqa: E402

from alerts import levels  # noqa: E402
from bench.machine import describe as describe_machine  # noqa: E402
from bench.scratch_db import scratch_postgres  # noqa: E402
from collectors.ingest import commune_day_rows, recount_commune_backlog  # noqa: E402
from control_center import exports, queries  # noqa: E402
from control_center.db import Database, make_engine, session_factory  # noqa: E402
from control_center.domain.calendar import LOCAL_TZ, load_calendar  # noqa: E402
from control_center.migrate import upgrade_schema  # noqa: E402
from control_center.models import (  # noqa: E402
    Alert,
    CommuneDay,
    CommuneDueBucket,
    Dossier,
    Procedure,
)
from control_center.reference import seed_reference_data  # noqa: E402
from control_center.settings import load_settings  # noqa: E402

# Thursday 26 November 2026, 10:00 in the province: a working day.
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=LOCAL_TZ).astimezone(UTC)
OFFICERS = [f"{a} {b}" for a in ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng") for b in
            ("Văn An", "Thị Bình", "Minh Tuấn", "Thu Hà", "Quốc Huy", "Thị Lan")]  # fmt: skip
DOSSIER_COLUMNS = (
    "dossier_code", "commune_code", "received_commune_code", "procedure_code", "procedure_name",
    "sector", "channel", "status", "is_open", "is_paused", "received_at", "clock_start_at",
    "due_at", "original_due_at", "paused_seconds", "extension_count", "apology_issued_at",
    "finished_at", "returned_at", "closed_at", "outcome", "officer", "flags", "event_count",
    "last_event_at", "updated_at",
)  # fmt: skip


@contextmanager
def fresh_database(url: str | None, sqlite: bool) -> Iterator[str]:
    if url:
        yield url
        return
    if sqlite:
        with tempfile.TemporaryDirectory(prefix="cc_bench_api_") as workdir:
            yield f"sqlite:///{Path(workdir) / 'api-bench.db'}"
        return
    with scratch_postgres("cc_bench_api") as created:
        yield created


# --- the province ----------------------------------------------------------------------------


def build(engine: Engine, n: int, seed: int = 5) -> dict[str, Any]:
    t0 = time.perf_counter()
    upgrade_schema(engine)
    calendar = load_calendar()
    with session_factory(engine)() as session, session.begin():
        seed_reference_data(session, "08")
    with session_factory(engine)() as session:
        communes = [c for (c,) in session.execute(text("SELECT code FROM communes ORDER BY code"))]
        procedures = [(p.code, p.name, p.sector) for p in session.query(Procedure).all()]
    rnd = random.Random(seed)
    today = NOW.astimezone(LOCAL_TZ).date()
    working_days = [d for d in (today - timedelta(days=i) for i in range(400))
                    if calendar.is_working_day(d)]  # fmt: skip
    ahead = [d for d in (today + timedelta(days=i) for i in range(1, 30))
             if calendar.is_working_day(d)]  # fmt: skip
    buckets: Counter[tuple[str, datetime]] = Counter()
    daily: Counter[tuple[str, date, str]] = Counter()
    overdue_codes: list[tuple[str, str]] = []

    def rows() -> Iterator[list[Any]]:
        for i in range(n):
            commune = communes[i % len(communes)] if rnd.random() < 0.5 else rnd.choice(communes)
            code, name, sector = rnd.choice(procedures)
            channel = "online" if rnd.random() < 0.8 else rnd.choice(("counter", "post"))
            is_open = rnd.random() < 0.15
            if is_open:
                # Open: due from 40 working days ago to 3 weeks ahead (two thirds overdue).
                due_day = (
                    rnd.choice(working_days[:40]) if rnd.random() < 0.67 else rnd.choice(ahead)
                )
                received_day = due_day - timedelta(days=rnd.randint(7, 20))
            else:
                received_day = rnd.choice(working_days[5:])
                due_day = received_day + timedelta(days=rnd.randint(5, 15))
            received = datetime.combine(received_day, datetime.min.time(), LOCAL_TZ) + timedelta(
                hours=7, minutes=rnd.randint(0, 560)
            )
            due = calendar.day_end(due_day)
            finished = outcome = None
            status = 4
            if not is_open:
                finished = due + timedelta(hours=rnd.randint(-200, 30))
                finished = max(finished, received + timedelta(hours=1))
                fd, dd = finished.astimezone(LOCAL_TZ).date(), due_day
                outcome = "early" if fd < dd else ("on_time" if fd == dd else "overdue")
                status = 10
            overdue = is_open and due < NOW
            apology = (
                received + timedelta(days=3)
                if (overdue or outcome == "overdue") and rnd.random() < 0.6
                else None
            )
            dossier_code = f"000.00.{i % 100:02d}.H56-{received_day:%y%m%d}-{i:07d}"
            if overdue and rnd.random() < 0.2:
                overdue_codes.append((dossier_code, commune))
            if is_open:
                buckets[(commune, due.astimezone(UTC).replace(second=0, microsecond=0))] += 1
            rday = received.astimezone(LOCAL_TZ).date()
            daily[(commune, rday, "received")] += 1
            if channel == "online":
                daily[(commune, rday, "received_online")] += 1
            if finished is not None:
                fday = finished.astimezone(LOCAL_TZ).date()
                for metric in ("finished", f"finished_{outcome}", "returned"):
                    daily[(commune, fday, metric)] += 1
            yield [
                dossier_code, commune, commune, code, name, sector, channel, status, is_open,
                False, received, received, due, due, 0.0, 1 if rnd.random() < 0.05 else 0,
                apology, finished, finished, finished, outcome, rnd.choice(OFFICERS), "[]",
                2, finished or received, NOW,
            ]  # fmt: skip

    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            with cur.copy(f"COPY dossiers ({', '.join(DOSSIER_COLUMNS)}) FROM STDIN") as copy:
                for row in rows():
                    copy.write_row(row)
            raw.commit()
        finally:
            raw.close()
    else:
        with engine.begin() as conn:
            batch: list[dict[str, Any]] = []
            for row in rows():
                batch.append({**dict(zip(DOSSIER_COLUMNS, row, strict=True)), "flags": []})
                if len(batch) == 20_000:
                    conn.execute(insert(Dossier), batch)
                    batch = []
            if batch:
                conn.execute(insert(Dossier), batch)
    with session_factory(engine)() as session, session.begin():
        session.execute(
            insert(CommuneDueBucket),
            [
                {"commune_code": c, "due_minute": m, "open_count": k}
                for (c, m), k in buckets.items()
            ],
        )
        recount_commune_backlog(session.connection())
        session.execute(insert(CommuneDay), commune_day_rows(daily))
        session.execute(
            insert(Alert),
            [
                {
                    "alert_id": uuid.uuid4(),
                    "cause_key": f"overdue:{code}",
                    "kind": "overdue",
                    "level": 1 + (j % 3),
                    "commune_code": commune,
                    "dossier_code": code,
                    "raised_at": NOW - timedelta(hours=j % 48),
                    "state": "open",
                    "message": "Hồ sơ quá hạn",
                }
                for j, (code, commune) in enumerate(overdue_codes)
            ],
        )
        # The dossiers' stored escalation level, as the alert engine keeps it.
        levels.recompute(session, (code for code, _commune in overdue_codes))
    # VACUUM as autovacuum does after a bulk insert (PostgreSQL 13+): it sets the visibility
    # map, without which no scan is index-only.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"))
    return {"seconds": time.perf_counter() - t0, "alerts": len(overdue_codes)}


# --- timing ----------------------------------------------------------------------------------


def timed(client: Any, path: str, repeat: int) -> dict[str, float]:
    client.get(path)  # warm the plan cache and the connection pool
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        resp = client.get(path)
        samples.append((time.perf_counter() - t0) * 1000)
        if resp.status_code != 200:
            raise SystemExit(f"{path}: HTTP {resp.status_code} {resp.get_data(as_text=True)[:200]}")
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(samples[max(0, int(len(samples) * 0.95) - 1)], 1),
        "max_ms": round(samples[-1], 1),
    }


def peak_rss_kib() -> int:
    """This process's peak RSS. Linux keeps ``ru_maxrss`` across ``exec``, so in a child it
    can be the parent's (this script's, after building a million dossiers); ``VmHWM`` belongs
    to the child's own address space."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def export_child(url: str, rows: int, write: bool = True) -> None:
    """Run in a child process: export ``rows`` review rows to .xlsx; print time and peak RSS.

    ``write=False`` reads and builds the same rows but writes nothing: the query's and the
    rows' share of the export, the rest being the xlsx writer's."""
    settings = load_settings(database_url=url, province="08")
    db = Database(url)
    filters = queries.ReviewFilters(state="all")
    t0 = time.perf_counter()
    with db.session() as session:
        stream = queries.iter_review_rows(
            session, settings, load_calendar(), NOW, filters, max_rows=rows
        )
        out = exports.spooled()
        if write:
            written = exports.write_xlsx(stream, exports.REVIEW_COLUMNS, out)
        else:
            written = sum(1 for _ in stream)
        size = out.tell()
    seconds = time.perf_counter() - t0
    peak_mb = peak_rss_kib() / 1024
    print(json.dumps({"rows": written, "seconds": round(seconds, 2), "bytes": size,
                      "peak_rss_mb": round(peak_mb, 1)}))  # fmt: skip


def run_export(url: str, rows: int, write: bool = True) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--export-child", str(rows), "--database-url", url]
        + ([] if write else ["--export-no-write"]),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--dossiers", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per endpoint")
    parser.add_argument("--export-rows", type=int, default=50_000)
    parser.add_argument("--quick", action="store_true", help="100,000 dossiers, 40 requests")
    parser.add_argument("--database-url", help="use this (already built) database")
    parser.add_argument(
        "--sqlite", action="store_true", help="a fresh SQLite file instead of PostgreSQL"
    )
    parser.add_argument("--export-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--export-no-write", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        export_child(args.database_url, args.export_child, write=not args.export_no_write)
        return
    if args.quick:
        args.dossiers, args.requests = min(args.dossiers, 100_000), min(args.requests, 40)

    import flask

    from control_center.api import register_api  # the Flask views, without the Dash pages

    missed: list[str] = []
    print(f"machine: {describe_machine()}")
    with fresh_database(args.database_url, args.sqlite) as url:
        engine = make_engine(url)
        if not args.database_url:
            print(f"building {args.dossiers:,} dossiers ...", flush=True)
            built = build(engine, args.dossiers)
            print(f"  built in {built['seconds']:.1f} s ({built['alerts']:,} alerts)")
        # Signed-in requests are not what is measured here: the API's reads, open.
        settings = load_settings(database_url=url, province="08", auth_required=False)
        with engine.connect() as conn:
            is_open = Dossier.is_open == true()
            open_n, overdue_n = conn.execute(
                select(
                    func.count().filter(is_open),
                    func.count().filter(is_open, Dossier.due_at < NOW),
                )
            ).one()
        print(f"  open {open_n:,}, overdue {overdue_n:,}")
        server = flask.Flask(__name__)
        register_api(server, Database(url), settings, load_calendar(), clock=lambda: NOW)
        client = server.test_client()
        first_commune = "02269"
        cases = [
            ("/api/v1/summary", 50),
            ("/api/v1/communes", 50),
            ("/api/v1/review?limit=100", 150),
            (f"/api/v1/review?commune={first_commune}&apology=no&limit=100", 150),
            ("/api/v1/review?state=overdue&channel=online&extended=no&limit=100&offset=500", 150),
            ("/api/v1/review?limit=100&offset=50000", 150),
            ("/api/v1/review?sort=-escalation_level,due_at&limit=100", 150),
            ("/api/v1/review?officer=Minh%20Tu%E1%BA%A5n&sort=commune_name&limit=100", 150),
        ]
        print(f"\n{'request':<82} {'p50':>8} {'p95':>8} {'max':>8}  floor p95")
        for path, floor in cases:
            r = timed(client, path, args.requests)
            mark = "ok" if r["p95_ms"] <= floor else "OVER"
            if mark == "OVER":
                missed.append(path)
            print(f"{path:<82} {r['p50_ms']:>6.1f}ms {r['p95_ms']:>6.1f}ms {r['max_ms']:>6.1f}ms"
                  f"  ≤ {floor} ms {mark}")  # fmt: skip
        total = client.get("/api/v1/review?limit=1").get_json()["total"]
        print(f"(the default review list has {total:,} rows)")

        print("\nexport to .xlsx (child process, peak RSS of the child)")
        small = run_export(url, 5_000)
        big = run_export(url, args.export_rows)
        for r in (small, big):
            mark = "ok" if r["seconds"] <= 10 else "OVER"
            if mark == "OVER":
                missed.append(f"export of {r['rows']} rows")
            print(f"  {r['rows']:>7,} rows: {r['seconds']:6.2f} s, {r['bytes'] / 2**20:5.1f} MiB file,"
                  f" peak RSS {r['peak_rss_mb']:6.1f} MiB   (floor ≤ 10 s: {mark})")  # fmt: skip
        print(f"  RSS growth from 5,000 to {big['rows']:,} rows: "
              f"{big['peak_rss_mb'] - small['peak_rss_mb']:+.1f} MiB")  # fmt: skip
        read = run_export(url, args.export_rows, write=False)
        print(f"  of which the query and building the rows (the same {read['rows']:,} rows read,"
              f" not written): {read['seconds']:.2f} s; the xlsx writer: about"
              f" {big['seconds'] - read['seconds']:.2f} s")  # fmt: skip
        engine.dispose()
    machine = describe_machine()
    if missed:
        print(f"\nfloors missed: {', '.join(missed)}")
    print(f"\nmachine at the end: {machine}")
    if missed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
