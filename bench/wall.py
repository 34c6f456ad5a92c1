"""The wall at provincial scale: refresh cost, bytes per refresh, first page load (issue 4).

    .venv/bin/python bench/wall.py                      # 124 communes, 1,000,000 dossiers, SQLite
    .venv/bin/python bench/wall.py --postgres           # the same in a fresh PostgreSQL database
    .venv/bin/python bench/wall.py --dossiers 200000 --ticks 100
    .venv/bin/python bench/wall.py --quick              # smoke run: 50,000 dossiers, 30 ticks

What it does:

1. **Database.** A fresh SQLite file (or, with ``--postgres``, a fresh PostgreSQL database,
   dropped afterwards) with the schema, the 124 communes of Tuyên Quang and the procedure
   catalogue; then N dossiers synthesised directly (one year of receipts, the last weeks still
   open, a few percent overdue) and, from the same rows, the aggregates the collector maintains
   (``commune_due_buckets``, ``commune_backlog``, ``commune_days``), plus one centre feed per
   commune, today's queue tickets and counters, open alerts and a fresh collector heartbeat.
   Bulk inserts: a million dossiers take about a minute on SQLite.
2. **The stored reading.** The alert engine's leader computes the province's reading (summary
   and commune rows: every aggregate read of a refresh) every ``CC_LIVE_VIEW_S`` and stores it
   for every screen (``control_center.liveview``); measured here as the engine does it
   (p50/p95 of ``--ticks / 5`` runs), then stored at the bench's instant.
3. **Refresh.** The wall's periodic callback exactly as a browser sends it every tick
   (``POST /_dash-update-component``: interval tick, measure, ``?search``, the map's
   ``(measure, lang)`` store), through the Flask test client, so the time is the server's
   (Dash, the queries, JSON) without a network. The first call is the page's first refresh
   (whole map figure); the next ``--ticks`` are steady-state refreshes (map Patch). Reported:
   p50/p95/max milliseconds and the response size, raw and gzip-compressed. The floor holds
   for the deployment as the Procfile runs it (the engine storing the reading); the same tick
   with the engine stopped (each request computing the reading itself) is printed beside it.
   The queue view's and the overdue view's refreshes are measured the same way.
4. **First page load** in headless Chromium (Debian's chromium + chromedriver) at 1920x1080
   against the app served by a threaded WSGI server on 127.0.0.1: navigation start until the
   MapLibre map has drawn the communes and the first refresh's KPI tiles are on screen,
   measured inside the page (``performance.now()``). ``--cold-loads`` cold loads, each in a
   fresh browser (the floor is held to their median; each is printed), then ``--loads`` warm
   ones in one browser.

Floors (issue 4): refresh p95 ≤ 50 ms and ≤ 100 KB per refresh for the province; first page
load ≤ 2 s; and the engine's reading must fit its period (p95 ≤ ``CC_LIVE_VIEW_S``). The machine's other work shows in the figures: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import Engine, insert, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bench.machine import describe as describe_machine  # noqa: E402
from bench.scratch_db import scratch_postgres  # noqa: E402
from collectors.ingest import commune_day_rows, recount_commune_backlog  # noqa: E402
from control_center import liveview  # noqa: E402
from control_center import models as m  # noqa: E402
from control_center.app import create_app  # noqa: E402
from control_center.db import make_engine, session_factory  # noqa: E402
from control_center.domain.calendar import LOCAL_TZ  # noqa: E402
from control_center.migrate import upgrade_schema  # noqa: E402
from control_center.reference import seed_reference_data  # noqa: E402
from control_center.runtime import calendar_from_settings, freeze_startup_heap  # noqa: E402
from control_center.settings import load_settings  # noqa: E402
from layouts import ids  # noqa: E402
from layouts import queue as queue_page  # noqa: E402
from layouts import wall as wall_page  # noqa: E402

PROVINCE = "08"
# Wednesday 25 November 2026, 10:00 in the province: a working morning.
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=LOCAL_TZ).astimezone(UTC)
HISTORY_DAYS = 365
CHUNK = 20_000
P95_FLOOR_MS = 50.0
BYTES_FLOOR = 100 * 1024
LOAD_FLOOR_S = 2.0

WALL_OUTPUTS = wall_page.REFRESH_OUTPUTS


# --- database -------------------------------------------------------------------------------


@contextlib.contextmanager
def database(postgres: bool, workdir: Path) -> Iterator[str]:
    if not postgres:
        yield f"sqlite:///{workdir / 'wall-bench.db'}"
        return
    with scratch_postgres("cc_bench_wall") as url:
        yield url


def local_day(instant: datetime) -> date:
    return instant.astimezone(LOCAL_TZ).date()


def minute(instant: datetime) -> datetime:
    return instant.replace(second=0, microsecond=0)


def synthesise(engine: Engine, n_dossiers: int, seed: int = 766) -> dict[str, Any]:
    """N dossiers and, from the same rows, the aggregates the collector would have kept."""
    rng = random.Random(seed)
    upgrade_schema(engine)
    with Session(engine) as session, session.begin():
        seed_reference_data(session, PROVINCE)
    with engine.connect() as conn:
        communes = [r[0] for r in conn.execute(text("SELECT code FROM communes ORDER BY code"))]
        procedures = [
            tuple(r)
            for r in conn.execute(text("SELECT code, name, sector FROM procedures LIMIT 41"))
        ]
    # Some centres are much busier than others, as wards are.
    weights = [rng.paretovariate(1.5) for _ in communes]

    buckets: Counter[tuple[str, datetime]] = Counter()
    daily: Counter[tuple[str, date, str]] = Counter()
    n_open = n_overdue = 0
    started = time.perf_counter()
    with engine.begin() as conn:
        rows: list[dict[str, Any]] = []
        picks = rng.choices(communes, weights=weights, k=n_dossiers)
        for i, commune in enumerate(picks):
            # Receipts skewed to the recent past; working hours only.
            age_days = min(HISTORY_DAYS - 1, int(rng.expovariate(1 / 120)))
            received = minute(
                NOW
                - timedelta(days=age_days)
                + timedelta(minutes=rng.randint(-180, 300) if age_days else -rng.randint(1, 180))
            )
            days = rng.choice((1, 3, 5, 7, 10, 15))
            due = minute(received + timedelta(days=days * 7 / 5))
            online = rng.random() < 0.9
            procedure = procedures[i % len(procedures)]
            # Young dossiers are mostly open, old ones finished; a few stay overdue.
            still_open = (
                due > NOW - timedelta(days=2) and rng.random() < 0.85
            ) or rng.random() < 0.004
            if still_open:
                finished = None
                outcome = None
                status = 4
                n_open += 1
                n_overdue += due < NOW
                buckets[(commune, due)] += 1
            else:
                latest = min(NOW, due + timedelta(days=2))
                span = max(60.0, (latest - received).total_seconds())
                finished = minute(received + timedelta(seconds=rng.uniform(60, span)))
                # Outcome buckets compare local dates (DOMAIN.md).
                done_day, due_day = local_day(finished), local_day(due)
                outcome = (
                    "overdue"
                    if done_day > due_day
                    else ("on_time" if done_day == due_day else "early")
                )
                status = 10
                day = local_day(finished)
                daily[(commune, day, "finished")] += 1
                daily[(commune, day, f"finished_{outcome}")] += 1
                daily[(commune, day, "returned")] += 1
            rday = local_day(received)
            daily[(commune, rday, "received")] += 1
            if online:
                daily[(commune, rday, "received_online")] += 1
            rows.append(
                {
                    "dossier_code": f"000.00.{commune}.H56-{rday:%y%m%d}-{i:07d}",
                    "commune_code": commune,
                    "received_commune_code": commune,
                    "procedure_code": procedure[0],
                    "procedure_name": procedure[1],
                    "sector": procedure[2],
                    "channel": "online" if online else "counter",
                    "status": status,
                    "is_open": finished is None,
                    "is_paused": False,
                    "received_at": received,
                    "clock_start_at": received,
                    "due_at": due,
                    "original_due_at": due,
                    "paused_seconds": 0.0,
                    "extension_count": 0,
                    "finished_at": finished,
                    "returned_at": finished,
                    "closed_at": finished,
                    "outcome": outcome,
                    "flags": [],
                    "event_count": 1 if finished is None else 3,
                    "last_event_at": finished or received,
                    "updated_at": finished or received,
                }
            )
            if len(rows) >= CHUNK:
                conn.execute(insert(m.Dossier), rows)
                rows.clear()
        if rows:
            conn.execute(insert(m.Dossier), rows)

        conn.execute(
            insert(m.CommuneDueBucket),
            [
                {"commune_code": c, "due_minute": due, "open_count": n}
                for (c, due), n in buckets.items()
            ],
        )
        recount_commune_backlog(conn)
        day_rows = commune_day_rows(daily)
        conn.execute(insert(m.CommuneDay), day_rows)
        seed_live_state(conn, communes, rng)
    if engine.dialect.name == "postgresql":
        # VACUUM as autovacuum does after a bulk insert: index-only aggregate reads need the
        # visibility map it sets.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    return {
        "dossiers": n_dossiers,
        "open": n_open,
        "overdue": n_overdue,
        "due_buckets": len(buckets),
        "daily_rows": len(day_rows),
        "seconds": time.perf_counter() - started,
    }


def seed_live_state(conn: Any, communes: Sequence[str], rng: random.Random) -> None:
    """What the centres' feeds, queues and the alert engine would have left this morning."""
    today = local_day(NOW)
    feeds, tickets, counters, alerts = [], [], [], []
    for k, commune in enumerate(communes):
        seen = NOW - timedelta(seconds=rng.randint(2, 60))
        if k % 41 == 0:
            seen = NOW - timedelta(hours=3)  # a few centres offline
        feeds.append(
            {
                "commune_code": commune,
                "reported_state": "online",
                "reported_at": seen,
                "last_heartbeat_arrived_at": seen,
                "last_event_at": seen,
                "last_arrival_at": seen,
                "last_lag_seconds": 1.5,
                "software": "iGate 3.2",
                "events_total": 1000,
                "dead_letters_total": 0,
            }
        )
        for n in range(rng.randint(5, 60)):
            issued = NOW - timedelta(minutes=rng.randint(1, 170))
            waiting = rng.random() < 0.2
            called = None if waiting else issued + timedelta(minutes=rng.randint(1, 40))
            tickets.append(
                {
                    "id": uuid.uuid4(),
                    "commune_code": commune,
                    "service_day": today,
                    "ticket_no": f"A{n:03d}",
                    "state": "waiting" if waiting else "completed",
                    "channel": "kiosk",
                    "priority": "normal",
                    "issued_at": issued,
                    "called_at": called,
                    "last_event_at": called or issued,
                }
            )
        for c in range(rng.randint(1, 4)):
            counters.append(
                {
                    "commune_code": commune,
                    "counter": str(c + 1),
                    "is_open": True,
                    "last_event_at": NOW,
                }
            )
        for level in range(1, rng.randint(1, 4)):
            alerts.append(
                {
                    "alert_id": uuid.uuid4(),
                    "cause_key": f"bench:{commune}:{level}",
                    "kind": "overdue",
                    "level": level,
                    "commune_code": commune,
                    "raised_at": NOW - timedelta(minutes=rng.randint(1, 600)),
                    "state": "open",
                    "message": f"Xã {commune}: hồ sơ quá hạn (cấp {level})",
                }
            )
    conn.execute(insert(m.CentreFeed), feeds)
    conn.execute(insert(m.QueueTicket), tickets)
    conn.execute(insert(m.CounterState), counters)
    conn.execute(insert(m.Alert), alerts)
    conn.execute(
        insert(m.Heartbeat),
        [{"name": "collector", "beat_at": NOW - timedelta(seconds=3), "info": {}}],
    )


# --- refresh --------------------------------------------------------------------------------


def dash_body(
    outputs: Sequence[tuple[str, str]],
    inputs: Sequence[tuple[str, str, Any]],
    state: Sequence[tuple[str, str, Any]],
    changed: Sequence[str],
) -> dict[str, Any]:
    """The JSON the Dash renderer posts to ``/_dash-update-component``."""
    key = "...".join(f"{i}.{p}" for i, p in outputs)
    return {
        "output": f"..{key}..",
        "outputs": [{"id": i, "property": p} for i, p in outputs],
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
        "changedPropIds": list(changed),
    }


def wall_body(tick: int | None, built: Any) -> dict[str, Any]:
    return dash_body(
        WALL_OUTPUTS,
        [(ids.WALL_INTERVAL, "n_intervals", tick), (ids.WALL_MEASURE, "value", "overdue")],
        [(ids.URL, "search", ""), (ids.WALL_MAP_BUILT, "data", built)],
        [f"{ids.WALL_INTERVAL}.n_intervals"] if tick else [],
    )


def queue_body(tick: int | None) -> dict[str, Any]:
    return dash_body(
        queue_page.REFRESH_OUTPUTS,
        [(ids.QUEUE_INTERVAL, "n_intervals", tick)],
        [(ids.URL, "search", ""), (ids.QUEUE_KIOSK, "data", False)],
        [f"{ids.QUEUE_INTERVAL}.n_intervals"] if tick else [],
    )


def overdue_body(tick: int | None) -> dict[str, Any]:
    return dash_body(
        [
            (ids.OVERDUE_WALL_TOTALS, "children"),
            (ids.OVERDUE_WALL_LIST, "children"),
            (ids.OVERDUE_WALL_DUE_SOON, "children"),
            (ids.OVERDUE_WALL_CLOCK, "children"),
        ],
        [(ids.OVERDUE_WALL_INTERVAL, "n_intervals", tick)],
        [(ids.URL, "search", "")],
        [f"{ids.OVERDUE_WALL_INTERVAL}.n_intervals"] if tick else [],
    )


def post(client: Any, body: dict[str, Any]) -> tuple[float, float, bytes]:
    """Wall-clock and CPU seconds of one callback request, and the response body. The test
    client runs the request in this thread, so the CPU time is the server's own work and
    barely moves when other processes share the machine."""
    cpu, started = time.process_time(), time.perf_counter()
    response = client.post("/_dash-update-component", json=body)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if response.status_code != 200:
        raise RuntimeError(f"refresh failed: {response.status_code} {response.get_data()[:300]!r}")
    return elapsed, cpu, response.get_data()


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def measure_refresh(
    name: str, client: Any, make: Callable[[int], dict[str, Any]], ticks: int
) -> dict[str, Any]:
    post(client, make(1))  # warm: imports, caches, the first connection
    times, cpus, sizes, gz = [], [], [], []
    for tick in range(2, ticks + 2):
        elapsed, cpu, data = post(client, make(tick))
        times.append(elapsed * 1000)
        cpus.append(cpu * 1000)
        sizes.append(len(data))
        gz.append(len(gzip.compress(data)))
    result: dict[str, Any] = {
        "name": name,
        "p50_ms": statistics.median(times),
        "p95_ms": percentile(times, 0.95),
        "max_ms": max(times),
        "cpu_p50_ms": statistics.median(cpus),
        "cpu_p95_ms": percentile(cpus, 0.95),
        "bytes": statistics.median(sizes),
        "gzip_bytes": statistics.median(gz),
    }
    print(
        f"  {name:<26} p50 {result['p50_ms']:7.1f} ms   p95 {result['p95_ms']:7.1f} ms   "
        f"max {result['max_ms']:6.1f} ms   (CPU p50 {result['cpu_p50_ms']:5.1f} / "
        f"p95 {result['cpu_p95_ms']:5.1f} ms)   {result['bytes'] / 1024:6.1f} KB/refresh "
        f"({result['gzip_bytes'] / 1024:.1f} KB gzip)"
    )
    return result


def measure_publish(engine: Engine, settings: Any, runs: int) -> dict[str, Any]:
    """What the alert engine's leader spends every ``CC_LIVE_VIEW_S`` on storing the province's
    reading (every aggregate read of a refresh, once for every screen): its own process's
    time, not a request's."""
    calendar = calendar_from_settings(settings)
    factory = session_factory(engine)
    times, cpus = [], []
    for run in range(runs + 1):
        cpu, started = time.process_time(), time.perf_counter()
        with factory.begin() as session:
            liveview.publish(session, settings, calendar, NOW)
        if run:  # the first one warms the connection and the statement cache
            times.append((time.perf_counter() - started) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
    result = {
        "p50_ms": statistics.median(times),
        "p95_ms": percentile(times, 0.95),
        "cpu_p50_ms": statistics.median(cpus),
    }
    print(
        f"  {'publish (engine, every 2 s)':<26} p50 {result['p50_ms']:7.1f} ms   "
        f"p95 {result['p95_ms']:7.1f} ms   (CPU p50 {result['cpu_p50_ms']:5.1f} ms)   "
        f"{runs} runs"
    )
    return result


# --- first page load ------------------------------------------------------------------------

MAP_DRAWN_JS = """
const done = arguments[arguments.length - 1];
function drawn() {
  const gd = document.querySelector('#MAP_ID .js-plotly-plot');
  const kpi = document.querySelector('[data-kpi="open"] .kpi-value');
  if (!gd || !gd._fullLayout || !gd._fullLayout.map || !kpi) return false;
  const map = gd._fullLayout.map._subplot && gd._fullLayout.map._subplot.map;
  const z = gd.data && gd.data[1] && gd.data[1].z;
  return !!(map && map.loaded() && map.areTilesLoaded() && z && z.length > 0);
}
(function poll() {
  if (drawn()) {
    requestAnimationFrame(() => done(performance.now()));
  } else {
    setTimeout(poll, 10);
  }
})();
""".replace("MAP_ID", ids.WALL_MAP)


def chromium() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = Options()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--enable-unsafe-swiftshader",
        "--window-size=1920,1080",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        options=options, service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    )
    driver.set_script_timeout(60)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False},
    )
    return driver


def measure_page_load(app: Any, loads: int, cold_loads: int) -> dict[str, Any]:
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/"

    def load(driver: Any) -> float:
        driver.get("about:blank")
        driver.get(url)
        return float(driver.execute_async_script(MAP_DRAWN_JS)) / 1000

    try:
        # Cold: each in a fresh browser (empty cache, nothing compiled yet). One cold load on a
        # shared 2-CPU machine moves by a few hundred milliseconds, so the floor is held to
        # the median of several, and every one is printed.
        cold = []
        for _ in range(cold_loads):
            driver = chromium()
            try:
                cold.append(load(driver))
            finally:
                driver.quit()
        driver = chromium()
        try:
            load(driver)  # fills this browser's cache
            warm = [load(driver) for _ in range(loads)]
            transferred = driver.execute_script(
                "return performance.getEntriesByType('navigation')[0].transferSize"
                " + performance.getEntriesByType('resource')"
                ".reduce((s, r) => s + r.transferSize, 0);"
            )
        finally:
            driver.quit()
    finally:
        server.shutdown()
    result = {
        "cold_s": statistics.median(cold),
        "cold_max_s": max(cold),
        "warm_median_s": statistics.median(warm) if warm else None,
        "transfer_bytes": transferred,
    }
    warm_text = f"{result['warm_median_s']:.2f} s" if warm else "-"
    print(
        f"  first page load (navigation start -> map drawn): cold median {result['cold_s']:.2f} s "
        f"over {len(cold)} fresh browsers ({', '.join(f'{c:.2f}' for c in cold)} s), "
        f"warm median {warm_text} over {len(warm)} loads; "
        f"last load transferred {transferred / 1024:.0f} KB"
    )
    return result


# --- main -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dossiers", type=int, default=1_000_000, help="default 1,000,000")
    parser.add_argument("--ticks", type=int, default=300, help="steady-state refreshes measured")
    parser.add_argument("--loads", type=int, default=3, help="warm page loads after the cold ones")
    parser.add_argument(
        "--cold-loads", type=int, default=5, help="cold page loads, each in a fresh browser"
    )
    parser.add_argument("--postgres", action="store_true", help="a fresh PostgreSQL database")
    parser.add_argument("--no-browser", action="store_true", help="skip the page-load figure")
    parser.add_argument("--quick", action="store_true", help="50,000 dossiers, 30 ticks, 1 load")
    args = parser.parse_args(argv)
    if args.quick:
        args.dossiers, args.ticks, args.loads = min(args.dossiers, 50_000), 30, 1
        args.cold_loads = 1

    print(f"machine: {describe_machine()}")
    workdir = Path(tempfile.mkdtemp(prefix="cc-bench-wall-"))
    failures: list[str] = []
    try:
        with database(args.postgres, workdir) as url:
            engine = make_engine(url)
            print(f"building {args.dossiers:,} dossiers on {engine.dialect.name} ...")
            built = synthesise(engine, args.dossiers)
            print(
                f"  {built['dossiers']:,} dossiers ({built['open']:,} open, "
                f"{built['overdue']:,} overdue), {built['due_buckets']:,} due buckets, "
                f"{built['daily_rows']:,} daily rows in {built['seconds']:.0f} s"
            )
            # Rendering is measured here, not sign-in: the callbacks run as the open wall.
            settings = load_settings(database_url=url, province=PROVINCE, auth_required=False)
            print("the province's reading, as the alert engine stores it every 2 s:")
            publish = measure_publish(engine, settings, args.ticks // 5)
            engine.dispose()
            app = create_app(settings, clock=lambda: NOW)
            freeze_startup_heap()  # as a gunicorn worker does once its app is built
            client = app.server.test_client()
            alone = create_app(
                settings.model_copy(update={"live_view_max_age_s": 0.0}), clock=lambda: NOW
            ).server.test_client()

            print("refresh callbacks (server time, Flask test client):")
            started = time.perf_counter()
            _, _, first = post(client, wall_body(None, None))
            print(
                f"  wall first refresh (whole map)  {(time.perf_counter() - started) * 1000:.0f} ms, "
                f"{len(first) / 1024:.0f} KB ({len(gzip.compress(first)) / 1024:.0f} KB gzip)"
            )
            wall = measure_refresh(
                "wall tick (map Patch)",
                client,
                lambda tick: wall_body(tick, ["overdue", "vi"]),
                args.ticks,
            )
            measure_refresh(
                "wall tick, engine stopped",
                alone,
                lambda tick: wall_body(tick, ["overdue", "vi"]),
                max(10, args.ticks // 3),
            )
            measure_refresh("queue view tick", client, queue_body, args.ticks)
            measure_refresh("overdue view tick", client, overdue_body, args.ticks)
            if publish["p95_ms"] > settings.live_view_s * 1000:
                failures.append(f"the engine's reading takes longer than {settings.live_view_s} s")
            if wall["p95_ms"] > P95_FLOOR_MS:
                failures.append(f"wall refresh p95 {wall['p95_ms']:.1f} ms > {P95_FLOOR_MS} ms")
            if wall["bytes"] > BYTES_FLOOR:
                failures.append(f"wall refresh {wall['bytes'] / 1024:.0f} KB > 100 KB")

            if not args.no_browser:
                load = measure_page_load(app, args.loads, args.cold_loads)
                if load["cold_s"] > LOAD_FLOOR_S:
                    failures.append(f"first page load {load['cold_s']:.2f} s > {LOAD_FLOOR_S} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"machine after: {describe_machine()}")
    if failures:
        print("ABOVE THE FLOORS: " + "; ".join(failures))
        return 1
    print("within the floors: refresh p95 <= 50 ms, <= 100 KB per refresh, first load <= 2 s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
