"""Benchmark of the alert engine: evaluation cycles on a big backlog, and alert latency.

    .venv/bin/python bench/alerts.py                   # 1,000,000 open dossiers, SQLite
    .venv/bin/python bench/alerts.py --postgres        # same on a fresh PostgreSQL database
    .venv/bin/python bench/alerts.py --quick           # 50,000 dossiers: a smoke check

What it does (issue 6, "Performance"):

1. Builds a province: the 124 communes of Tuyên Quang and N *open* dossiers, written in bulk
   (Core executemany on SQLite, COPY on PostgreSQL) with the aggregates the collector would
   maintain (``commune_due_buckets``, 14 days of ``commune_days``, ``centre_feeds``). Due
   dates are at the end of a working day, from 5 working days ago to 15 ahead: 5% overdue
   (half of them with an apology slip), the rest spread over the coming three weeks, the
   shape of a real backlog.
2. (a) The **first cycle** at Thursday 26 Nov 2026 10:00: every rule fires for the whole
   backlog at once (tens of thousands of alerts and their outbox rows in one transaction).
   That is a one-off (the first start, or a restart after the database was restored), so it
   is measured and reported apart.
3. (b) **Steady-state cycles** every ``--interval`` seconds of simulated time afterwards:
   what the engine does all day. Floor: ≤ 2 s per cycle; memory: tracemalloc peak and the
   process's peak RSS.
4. (c) **Latency**: Mosquitto on a free port, the real ``alerts.engine.run`` process loop on
   this database (its clock moves with real time from the benchmark's date), a paho
   subscriber on one commune's topic. A dossier is inserted that crosses the due-soon
   threshold (one working day left) a few seconds later; the latency is from the crossing
   instant to the message arriving at the subscriber. Floor: ≤ interval + 1 s. Samples are
   spread over the cycle's phase so the worst case (crossing just after a cycle started)
   is among them.

The floors are printed next to the figures, never asserted: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# First on the path: this script is bench/alerts.py, and ``import alerts`` must find the
# alert engine package, not the script's own directory.
sys.path.insert(0, str(REPO))

from sqlalchemy import func, insert, select, update  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from alerts.engine import evaluate  # noqa: E402
from alerts.policy import load_policy  # noqa: E402
from bench.scratch_db import scratch_postgres  # noqa: E402
from collectors.ingest import commune_day_rows, recount_commune_backlog  # noqa: E402
from control_center import models as m  # noqa: E402
from control_center.db import make_engine, session_factory  # noqa: E402
from control_center.domain.calendar import LOCAL_TZ, WorkingCalendar  # noqa: E402
from control_center.migrate import upgrade_schema  # noqa: E402
from control_center.reference import province_communes, seed_reference_data  # noqa: E402
from control_center.runtime import calendar_from_settings  # noqa: E402
from control_center.settings import load_settings  # noqa: E402

PROVINCE = "08"
# Thursday 26 November 2026, 10:00 in the province: a working day after the 24 Nov holiday.
START = datetime(2026, 11, 26, 10, 0, tzinfo=LOCAL_TZ)
FLOOR_CYCLE_S = 2.0
DOSSIER_COLUMNS = (
    "dossier_code",
    "commune_code",
    "received_commune_code",
    "procedure_code",
    "procedure_name",
    "channel",
    "status",
    "is_open",
    "is_paused",
    "received_at",
    "clock_start_at",
    "due_at",
    "original_due_at",
    "paused_seconds",
    "extension_count",
    "apology_issued_at",
    "flags",
    "event_count",
    "last_event_at",
    "updated_at",
)


def log(message: str) -> None:
    print(message, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the database ----------------------------------------------------------------------------


@contextmanager
def database(postgres: bool, workdir: Path) -> Iterator[str]:
    """A fresh database: a SQLite file, or a PostgreSQL database created and dropped here."""
    if not postgres:
        yield f"sqlite:///{workdir / 'alerts-bench.db'}"
        return
    with scratch_postgres("cc_bench_alerts") as url:
        yield url


def working_days_around(calendar: WorkingCalendar, day: date, back: int, ahead: int) -> list[date]:
    """``back`` working days before ``day``, ``day`` itself if working, ``ahead`` after."""
    before: list[date] = []
    d = day
    while len(before) < back:
        d -= timedelta(days=1)
        if calendar.is_working_day(d):
            before.append(d)
    after: list[date] = []
    d = day
    while len(after) < ahead:
        d += timedelta(days=1)
        if calendar.is_working_day(d):
            after.append(d)
    return [*reversed(before), *([day] if calendar.is_working_day(day) else []), *after]


def end_of_day(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 17, 0, tzinfo=LOCAL_TZ).astimezone(UTC)


def build_province(engine: Engine, calendar: WorkingCalendar, n: int, seed: int = 766) -> dict:
    """Communes, N open dossiers and the maintained aggregates, written in bulk."""
    rng = random.Random(seed)
    upgrade_schema(engine)
    with session_factory(engine)() as session, session.begin():
        seed_reference_data(session, PROVINCE)
    communes = [c.code for c in province_communes(PROVINCE)]
    today = START.date()
    days = working_days_around(calendar, today, back=5, ahead=15)
    past = [d for d in days if d < today]
    future = [d for d in days if d >= today]
    buckets: Counter[tuple[str, datetime]] = Counter()
    t0 = time.perf_counter()
    batch: list[dict[str, Any]] = []
    postgres = engine.dialect.name == "postgresql"
    written = 0

    def flush() -> None:
        nonlocal written
        if not batch:
            return
        if postgres:
            copy_rows(engine, batch)
        else:
            with engine.begin() as conn:
                conn.execute(insert(m.Dossier.__table__), batch)
        written += len(batch)
        batch.clear()

    for i in range(n):
        commune = communes[i % len(communes)]
        overdue = rng.random() < 0.05
        due_day = rng.choice(past) if overdue else rng.choice(future)
        due = end_of_day(due_day)
        received = due - timedelta(days=rng.randint(7, 21), hours=rng.randint(0, 6))
        apology = due - timedelta(days=1) if overdue and rng.random() < 0.5 else None
        batch.append(
            {
                "dossier_code": f"000.00.{i % 100:02d}.H56-{due_day:%y%m%d}-{i:07d}",
                "commune_code": commune,
                "received_commune_code": commune,
                "procedure_code": "1.001193",
                "procedure_name": "Đăng ký khai sinh",
                "channel": "online" if rng.random() < 0.9 else "counter",
                "status": 4,
                "is_open": True,
                "is_paused": False,
                "received_at": received,
                "clock_start_at": received,
                "due_at": due,
                "original_due_at": due,
                "paused_seconds": 0.0,
                "extension_count": 0,
                "apology_issued_at": apology,
                "flags": [],
                "event_count": 2,
                "last_event_at": received,
                "updated_at": received,
            }
        )
        buckets[(commune, due)] += 1
        if len(batch) >= 50_000:
            flush()
    flush()
    with engine.begin() as conn:
        conn.execute(
            insert(m.CommuneDueBucket.__table__),
            [
                {"commune_code": c, "due_minute": d, "open_count": k}
                for (c, d), k in buckets.items()
            ],
        )
        recount_commune_backlog(conn)
        # Each centre finished ~1/15 of its backlog per working day over the last two weeks.
        per_day = max(1, n // len(communes) // 15)
        daily = {
            (c, day, "finished"): int(per_day * rng.uniform(0.6, 1.2))
            for c in communes
            for day in (today - timedelta(days=back) for back in range(1, 15))
            if calendar.is_working_day(day)
        }
        conn.execute(insert(m.CommuneDay.__table__), commune_day_rows(daily))
        now = START.astimezone(UTC)
        conn.execute(
            insert(m.CentreFeed.__table__),
            [
                {
                    "commune_code": c,
                    "reported_state": "online",
                    "reported_at": now - timedelta(seconds=20),
                    "last_heartbeat_arrived_at": now - timedelta(seconds=20),
                    "last_event_at": now - timedelta(seconds=40),
                    "last_arrival_at": now - timedelta(seconds=20),
                    "events_total": 1000,
                    "dead_letters_total": 0,
                }
                for c in communes
            ],
        )
    return {"communes": communes, "written": written, "seconds": time.perf_counter() - t0}


def build_in_child(url: str, n: int) -> dict:
    settings = load_settings(database_url=url, province=PROVINCE)
    engine = make_engine(url)
    try:
        return build_province(engine, calendar_from_settings(settings), n)
    finally:
        engine.dispose()


def copy_rows(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL COPY: the fastest way in, ~10x executemany."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy(f"COPY dossiers ({', '.join(DOSSIER_COLUMNS)}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(
                    [json.dumps(r[c]) if c == "flags" else r[c] for c in DOSSIER_COLUMNS]
                )
        raw.commit()
    finally:
        raw.close()


# --- (a) first cycle, (b) steady state -------------------------------------------------------


def one_cycle(
    engine: Engine,
    settings: Any,
    calendar: WorkingCalendar,
    policy: Any,
    now: datetime,
    *,
    trace: bool = False,
) -> tuple[float, float | None, Any]:
    """One evaluation and its commit: seconds, tracemalloc peak (MiB, when traced), result.

    Timed cycles run untraced: tracemalloc slows every allocation down several times.
    """
    factory = session_factory(engine)
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    with factory() as session, session.begin():
        result = evaluate(session, settings, calendar, now, policy)
    elapsed = time.perf_counter() - t0
    peak = None
    if trace:
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return elapsed, peak, result


def count(engine: Engine, stmt: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar() or 0)


# --- (c) latency -----------------------------------------------------------------------------


class Broker:
    """Mosquitto on a free port (``user root``: it may run as root in a private directory)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser root\n"
            "persistence false\nmax_inflight_messages 1000\nmax_queued_messages 1000000\n"
        )
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)


class Subscriber:
    """A commune centre's software: records when each dossier's alert arrives."""

    def __init__(self, port: int, topic: str) -> None:
        from paho.mqtt.client import Client
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        self.arrivals: dict[str, float] = {}
        ready = threading.Event()
        self.client = Client(
            CallbackAPIVersion.VERSION2,
            client_id="bench-centre",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("subscriber did not subscribe")

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        arrived = time.monotonic()
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            return
        if payload.get("kind") == "due_soon" and payload.get("state") == "open":
            self.arrivals.setdefault(payload.get("dossier_code") or "", arrived)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def measure_latency(
    url: str,
    workdir: Path,
    calendar: WorkingCalendar,
    start: datetime,
    interval: float,
    samples: int,
    commune: str,
) -> list[float]:
    from alerts.engine import run

    engine = make_engine(url)
    with engine.begin() as conn:  # the backlog was announced long ago: steady state
        conn.execute(
            update(m.OutboxMessage)
            .where(m.OutboxMessage.sent_at.is_(None))
            .values(sent_at=start.astimezone(UTC))
        )
    broker = Broker(workdir)
    settings = load_settings(
        database_url=url,
        province=PROVINCE,
        mqtt_url=f"mqtt://127.0.0.1:{broker.port}",
        alerts_interval_s=interval,
    )
    t0 = time.monotonic()

    def clock() -> datetime:
        return (start + timedelta(seconds=time.monotonic() - t0)).astimezone(UTC)

    def sim_to_monotonic(instant: datetime) -> float:
        return t0 + (instant - start).total_seconds()

    subscriber = Subscriber(broker.port, f"dvc/v1/{PROVINCE}/{commune}/alerts")
    stop = threading.Event()
    thread = threading.Thread(
        target=run, args=(settings, stop), kwargs={"clock": clock}, daemon=True
    )
    thread.start()
    latencies: list[float] = []
    try:
        time.sleep(interval * 1.5)  # past the engine's first cycle on this backlog
        rng = random.Random(6)
        for k in range(samples):
            # Cross the threshold at a random phase of the cycle, a few seconds from now.
            crossing = clock() + timedelta(seconds=3 + rng.uniform(0, interval))
            due = calendar.add_working_seconds(crossing, calendar.seconds_per_day)
            code = f"BENCH-LATENCY-{k:03d}"
            with engine.begin() as conn:
                received = crossing - timedelta(days=7)
                conn.execute(
                    insert(m.Dossier.__table__),
                    [
                        {
                            "dossier_code": code,
                            "commune_code": commune,
                            "received_commune_code": commune,
                            "procedure_code": "1.001193",
                            "procedure_name": "Đăng ký khai sinh",
                            "status": 4,
                            "is_open": True,
                            "is_paused": False,
                            "received_at": received,
                            "clock_start_at": received,
                            "due_at": due,
                            "original_due_at": due,
                            "paused_seconds": 0.0,
                            "extension_count": 0,
                            "flags": [],
                            "event_count": 1,
                            "last_event_at": received,
                            "updated_at": received,
                        }
                    ],
                )
            deadline = sim_to_monotonic(crossing) + interval * 3 + 10
            while code not in subscriber.arrivals and time.monotonic() < deadline:
                time.sleep(0.02)
            if code not in subscriber.arrivals:
                log(
                    f"    sample {k}: no message within {deadline - sim_to_monotonic(crossing):.0f} s"
                )
                continue
            latency = subscriber.arrivals[code] - sim_to_monotonic(crossing)
            latencies.append(latency)
            log(f"    sample {k}: {latency:.2f} s")
    finally:
        stop.set()
        thread.join(30)
        subscriber.close()
        broker.stop()
        engine.dispose()
    return latencies


# --- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dossiers", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="50,000 dossiers, fewer samples")
    parser.add_argument("--postgres", action="store_true", help="a fresh PostgreSQL database")
    parser.add_argument("--interval", type=float, default=10.0, help="CC_ALERTS_INTERVAL_S")
    parser.add_argument("--cycles", type=int, default=5, help="steady-state cycles to time")
    parser.add_argument("--samples", type=int, default=6, help="latency samples")
    args = parser.parse_args(argv)
    n = 50_000 if args.quick and args.dossiers == 1_000_000 else args.dossiers
    samples = min(args.samples, 3) if args.quick else args.samples
    load = os.getloadavg()
    log(
        f"alerts benchmark: {n:,} open dossiers, {'PostgreSQL' if args.postgres else 'SQLite'}, "
        f"cycle interval {args.interval:g} s; load average {load[0]:.2f} on {os.cpu_count()} CPUs"
    )
    policy = load_policy()
    with (
        tempfile.TemporaryDirectory(prefix="cc-bench-alerts-") as tmp,
        database(args.postgres, Path(tmp)) as url,
    ):
        settings = load_settings(database_url=url, province=PROVINCE)
        calendar = calendar_from_settings(settings)
        # Built in a child process, so that this process's peak RSS is the engine's own.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            built = pool.submit(build_in_child, url, n).result()
        log(f"  data: {built['written']:,} dossiers in {built['seconds']:.1f} s")
        engine = make_engine(url)

        now = START.astimezone(UTC)
        rss_before = peak_rss_mb()
        elapsed, _, result = one_cycle(engine, settings, calendar, policy, now)
        outbox = count(engine, select(func.count()).select_from(m.OutboxMessage))
        log(
            f"  (a) first cycle: {elapsed:.2f} s, examined {result.dossiers_examined:,} due "
            f"dossiers, raised {len(result.raised):,} alerts, {outbox:,} outbox rows; "
            f"peak RSS {rss_before:.0f} -> {peak_rss_mb():.0f} MiB"
        )

        times, cpu_times, examined = [], [], []
        for k in range(1, args.cycles + 1):
            at = now + timedelta(seconds=args.interval * k)
            cpu0 = time.process_time()
            elapsed, _, result = one_cycle(engine, settings, calendar, policy, at)
            cpu_times.append(time.process_time() - cpu0)  # this process only: less load-bound
            times.append(elapsed)
            examined.append(result.dossiers_examined)
        at = now + timedelta(seconds=args.interval * (args.cycles + 1))
        _, peak, _ = one_cycle(engine, settings, calendar, policy, at, trace=True)
        log(
            f"  (b) steady-state cycle: median {median(times):.2f} s, max {max(times):.2f} s "
            f"(floor {FLOOR_CYCLE_S:g} s; CPU median {median(cpu_times):.2f} s) over "
            f"{len(times)} cycles, {examined[-1]:,} due "
            f"dossiers examined per cycle; tracemalloc peak of a cycle {peak:.0f} MiB; "
            f"peak RSS so far {peak_rss_mb():.0f} MiB"
        )
        engine.dispose()

        log(f"  (c) latency threshold -> commune topic ({samples} samples):")
        latest = START + timedelta(seconds=args.interval * (args.cycles + 2))
        latencies = measure_latency(
            url, Path(tmp), calendar, latest, args.interval, samples, built["communes"][0]
        )
        if latencies:
            log(
                f"      max {max(latencies):.2f} s, median {median(latencies):.2f} s "
                f"(floor: interval + 1 s = {args.interval + 1:g} s)"
            )
    log(
        f"  peak RSS of this process: {peak_rss_mb():.0f} MiB; load average now "
        f"{os.getloadavg()[0]:.2f}"
    )
    missed = []
    if max(times) > FLOOR_CYCLE_S:
        missed.append(f"steady-state cycle {max(times):.2f} s > {FLOOR_CYCLE_S:g} s")
    if len(latencies) < samples:
        missed.append(f"{samples - len(latencies)} latency sample(s) never arrived")
    elif max(latencies) > args.interval + 1:
        missed.append(f"latency {max(latencies):.2f} s > {args.interval + 1:g} s")
    for line in missed:
        log(f"  FLOOR MISSED: {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
