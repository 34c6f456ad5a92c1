"""Many screens and a few leaders at once against gunicorn (issue 8).

    .venv/bin/python bench/load.py                     # 50 kiosks + 5 leaders, 5 min, PostgreSQL
    .venv/bin/python bench/load.py --minutes 1         # a shorter run
    .venv/bin/python bench/load.py --sqlite            # the same on a SQLite file
    .venv/bin/python bench/load.py --url https://wall.example --kiosk-token T --api-token cc_...

What it does:

1. **Server.** A fresh PostgreSQL database (or SQLite file) built like ``bench/wall.py``'s (the
   124 communes of Tuyên Quang, ``--dossiers`` dossiers over a year with their aggregates,
   live feeds, queues and alerts: a demo-sized province by default), a kiosk link and a leader's
   API token in it, and ``gunicorn`` started exactly as the Procfile's ``web`` line does
   (``control_center.gunicorn_conf``; ``--workers``/``--threads`` override the defaults).
   With ``--url`` nothing is built or started: the run goes against that server, signed in
   with ``--kiosk-token`` / ``--api-token`` (or a ``--cookie name=value``).
2. **Wall viewers** (``--viewers``, 50): each does what a browser in kiosk mode does. It opens
   the kiosk link once (session cookie, CSRF cookie), then every 5 s posts the current page's
   refresh callback to ``/_dash-update-component`` and every 30 s the kiosk's rotate callback
   (wall -> overdue view -> queue view); as in the browser, the wall's layout brings its map
   figure (the polygons by URL) and the store saying so, so its refreshes are Patches, and a
   refresh answered with no new store value keeps the old one. The request bodies are
   built from the app's own ``/_dash-dependencies`` (the callbacks' real outputs, inputs and
   state), so they stay right when a page gains an input. Screens start spread over 5 s.
3. **Leaders** (``--leaders``, 5): with an API token of the ``leader`` role, each in turn,
   with 1-5 s of reading between requests: pages of the overdue review (``/api/v1/review``),
   a commune page (its route callback and its first refresh), a dossier page (route callback,
   and ``/api/v1/dossiers/<code>``), a commune's figures (``/api/v1/communes/<code>``), and now
   and then an export (``/api/v1/review.csv`` of one commune).
4. **Figures**, after a 15 s warm-up: per request kind the count, p50/p95/p99/max milliseconds
   (client side: the server plus the local network stack) and errors (anything but a 2xx, or
   no answer within 30 s); throughput; the CPU used by gunicorn and by this load generator.

Floor (issue 8): p95 ≤ 300 ms over all requests, and no errors; the kinds whose own p95 is
above it are listed. The load generator shares the
machine with the server (2 cores here): it is light (55 threads, ~12 requests/s, it reads the
responses without rendering them) and reports its own CPU, but on a busy machine the
figures move: run it quietly, or from another host with ``--url``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bench.scratch_db import scratch_postgres  # noqa: E402
from control_center import models as m  # noqa: E402
from control_center.cli import gunicorn_command  # noqa: E402
from control_center.db import make_engine  # noqa: E402
from layouts import ids  # noqa: E402

CALLBACK = "/_dash-update-component"
P95_FLOOR_MS = 300.0
WARMUP_S = 15.0
TIMEOUT_S = 30.0
KIOSK_SEARCH = "?rotate=30"
KIOSK_PAGES = ("wall", "overdue", "queue")


# --- the server -----------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def database(sqlite: bool, workdir: Path) -> Iterator[str]:
    if sqlite:
        yield f"sqlite:///{workdir / 'load-bench.db'}"
        return
    with scratch_postgres("cc_bench_load") as url:
        yield url


@dataclass
class Credentials:
    kiosk_token: str | None = None
    api_token: str | None = None
    cookies: dict[str, str] = field(default_factory=dict)


def build(url: str, n_dossiers: int, secret_key: str) -> Credentials:
    """The province's data, then a kiosk link and a leader's API token (when sign-in exists)."""
    from bench.wall import synthesise

    engine = make_engine(url)
    try:
        built = synthesise(engine, n_dossiers)
        print(
            f"  {built['dossiers']:,} dossiers ({built['open']:,} open, "
            f"{built['overdue']:,} overdue) in {built['seconds']:.0f} s"
        )
        try:
            from control_center.security import accounts
        except ImportError:  # a build without sign-in: the wall is open
            return Credentials()
        with Session(engine) as session, session.begin():
            _link, kiosk = accounts.create_kiosk_link(session, secret_key, "load bench")
            _row, token = accounts.create_token(session, "load bench", "leader")
        return Credentials(kiosk_token=kiosk, api_token=token)
    finally:
        engine.dispose()


def store_data(tree: Any, store_id: str) -> Any:
    """The ``data`` of the component ``store_id`` anywhere in a callback's JSON answer."""
    if isinstance(tree, dict):
        props = tree.get("props")
        if isinstance(props, dict) and props.get("id") == store_id:
            return props.get("data")
        children: Any = tree.values()
    elif isinstance(tree, list):
        children = tree
    else:
        return None
    for child in children:
        found = store_data(child, store_id)
        if found is not None:
            return found
    return None


def samples(url: str) -> tuple[list[str], list[str]]:
    """Communes, and dossiers a leader would open (overdue ones first, then any)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            communes = list(conn.scalars(select(m.Commune.code).order_by(m.Commune.code)))
            dossiers = list(
                conn.scalars(
                    select(m.Dossier.dossier_code)
                    .where(m.Dossier.is_open.is_(True))
                    .order_by(m.Dossier.due_at)
                    .limit(300)
                )
            )
            dossiers += list(conn.scalars(select(m.Dossier.dossier_code).limit(200)))
        return communes, dossiers
    finally:
        engine.dispose()


@contextlib.contextmanager
def gunicorn(url: str, secret_key: str, workers: int | None, threads: int | None) -> Iterator[Any]:
    port = free_port()
    env = {
        **os.environ,
        "CC_DATABASE_URL": url,
        "CC_WEB_HOST": "127.0.0.1",
        "CC_WEB_PORT": str(port),
        "CC_SECRET_KEY": secret_key,
        "CC_COOKIE_SECURE": "false",
        "CC_LOG_LEVEL": "warning",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if workers:
        env["CC_WEB_WORKERS"] = str(workers)
    if threads:
        env["CC_WEB_THREADS"] = str(threads)
    log_path = Path(tempfile.mkdtemp(prefix="cc-load-gunicorn-")) / "gunicorn.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        gunicorn_command(),
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/healthz?check=database", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start; see {log_path}")
            time.sleep(0.3)
        yield base, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        print(f"  gunicorn log: {log_path}")


# --- requests as the browser sends them -----------------------------------------------------


class Callbacks:
    """Request bodies for ``/_dash-update-component`` built from ``/_dash-dependencies``."""

    def __init__(self, dependencies: list[dict[str, Any]]) -> None:
        self.dependencies = dependencies

    def body(
        self, output_id: str, values: dict[tuple[str, str], Any], changed: Sequence[str] = ()
    ) -> dict[str, Any]:
        dep = next(
            d
            for d in self.dependencies
            if not d.get("clientside_function")
            and any(o["id"] == output_id for o in _outputs(d["output"]))
        )
        outputs = _outputs(dep["output"])

        def filled(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [
                {
                    "id": i["id"],
                    "property": i["property"],
                    "value": values.get((i["id"], i["property"])),
                }
                for i in items
            ]

        return {
            "output": dep["output"],
            "outputs": outputs if len(outputs) > 1 else outputs[0],
            "inputs": filled(dep["inputs"]),
            "state": filled(dep.get("state", [])),
            "changedPropIds": list(changed),
        }


def _outputs(spec: str) -> list[dict[str, Any]]:
    """``..a.figure...b.children..`` (several) or ``a.children`` (one) -> ids and properties."""
    parts = spec.strip(".").split("...") if spec.startswith("..") else [spec]
    out = []
    for part in parts:
        component, prop = part.rsplit(".", 1)
        out.append({"id": component, "property": prop.split("@")[0]})
    return out


@dataclass
class Sample:
    kind: str
    at: float  # monotonic
    ms: float
    error: str | None


class Recorder:
    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.lock = threading.Lock()

    def call(self, kind: str, session: requests.Session, method: str, url: str, **kw: Any) -> Any:
        started = time.monotonic()
        error: str | None = None
        response = None
        try:
            response = session.request(method, url, timeout=TIMEOUT_S, **kw)
            _ = response.content  # the whole body, as a browser reads it
            if not 200 <= response.status_code < 300:
                error = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            error = type(exc).__name__
        elapsed = (time.monotonic() - started) * 1000
        with self.lock:
            self.samples.append(Sample(kind, started, elapsed, error))
        return response if error is None else None


def post_callback(session: requests.Session, body: dict[str, Any]) -> dict[str, Any]:
    """The callback POST's keyword arguments: its body, and the CSRF header of a session."""
    headers = {}
    csrf = session.cookies.get("_csrf_token")
    if csrf:
        headers["X-CSRFToken"] = csrf
    return {"json": body, "headers": headers}


def viewer(
    n: int,
    base: str,
    callbacks: Callbacks,
    cookies: dict[str, str],
    recorder: Recorder,
    stop_at: float,
    stop: threading.Event,
) -> None:
    session = requests.Session()
    session.cookies.update(cookies)
    session.headers["Content-Type"] = "application/json"
    rng = random.Random(n)
    next_at = time.monotonic() + rng.uniform(0, 5)  # screens are not in step
    page, tick, built = 0, 0, None
    while not stop.is_set() and next_at < stop_at:
        stop.wait(max(0.0, next_at - time.monotonic()))
        # A tick every 5 s of wall time; a screen whose last answer came late does not fire the
        # ticks it missed in a burst (the browser's interval does not catch up either).
        next_at += 5.0
        while next_at <= time.monotonic():
            next_at += 5.0
        tick += 1
        if tick % 6 == 0:  # every 30 s the playlist moves on
            body = callbacks.body(
                ids.KIOSK_BODY,
                {(ids.KIOSK_INTERVAL, "n_intervals"): tick // 6, (ids.URL, "search"): KIOSK_SEARCH},
                [f"{ids.KIOSK_INTERVAL}.n_intervals"],
            )
            rotated = recorder.call(
                "kiosk rotate", session, "POST", base + CALLBACK, **post_callback(session, body)
            )
            page = (page + 1) % len(KIOSK_PAGES)
            # The wall's layout brings its map figure and the store saying so: the browser's
            # first refresh after the rotation is then a Patch too.
            built = (
                store_data(rotated.json(), ids.WALL_MAP_BUILT) if rotated and rotated.ok else None
            )
        name = KIOSK_PAGES[page]
        if name == "wall":
            values = {
                (ids.WALL_INTERVAL, "n_intervals"): tick,
                (ids.WALL_MEASURE, "value"): "overdue",
                (ids.URL, "search"): KIOSK_SEARCH,
                (ids.WALL_MAP_BUILT, "data"): built,
            }
            body = callbacks.body(ids.WALL_KPIS, values, [f"{ids.WALL_INTERVAL}.n_intervals"])
            response = recorder.call(
                "wall refresh" if built else "wall refresh, whole map",
                session,
                "POST",
                base + CALLBACK,
                **post_callback(session, body),
            )
            answered = response.json()["response"] if response is not None else {}
            if ids.WALL_MAP_BUILT in answered:  # else no_update: the browser's store keeps it
                built = answered[ids.WALL_MAP_BUILT].get("data")
        elif name == "overdue":
            values = {
                (ids.OVERDUE_WALL_INTERVAL, "n_intervals"): tick,
                (ids.URL, "search"): KIOSK_SEARCH,
            }
            body = callbacks.body(
                ids.OVERDUE_WALL_TOTALS, values, [f"{ids.OVERDUE_WALL_INTERVAL}.n_intervals"]
            )
            recorder.call(
                "overdue view refresh",
                session,
                "POST",
                base + CALLBACK,
                **post_callback(session, body),
            )
        else:
            values = {
                (ids.QUEUE_INTERVAL, "n_intervals"): tick,
                (ids.URL, "search"): KIOSK_SEARCH,
                (ids.QUEUE_KIOSK, "data"): True,
            }
            body = callbacks.body(ids.QUEUE_TOTALS, values, [f"{ids.QUEUE_INTERVAL}.n_intervals"])
            recorder.call(
                "queue view refresh",
                session,
                "POST",
                base + CALLBACK,
                **post_callback(session, body),
            )


def leader(
    n: int,
    base: str,
    callbacks: Callbacks,
    credentials: Credentials,
    communes: list[str],
    dossiers: list[str],
    recorder: Recorder,
    stop_at: float,
    stop: threading.Event,
) -> None:
    session = requests.Session()
    session.cookies.update(credentials.cookies)
    if credentials.api_token:
        session.headers["Authorization"] = f"Bearer {credentials.api_token}"
    rng = random.Random(1000 + n)
    stop.wait(rng.uniform(0, 3))
    api = base + "/api/v1"
    while not stop.is_set() and time.monotonic() < stop_at:
        action = rng.choices(
            ("review", "commune page", "dossier page", "commune api", "export"),
            weights=(4, 2, 3, 2, 0.4),
        )[0]
        commune, code = rng.choice(communes), rng.choice(dossiers)
        if action == "review":
            offset = rng.choice((0, 0, 100, 200, 1000))
            query: dict[str, Any] = {"limit": 100, "offset": offset}
            if rng.random() < 0.5:
                query["commune"] = commune
            recorder.call("review page", session, "GET", f"{api}/review", params=query)
        elif action == "commune page":
            path = f"/commune/{commune}"
            route = callbacks.body(
                ids.PAGE, {(ids.URL, "pathname"): path, (ids.URL, "search"): ""}, ["url.pathname"]
            )
            recorder.call(
                "page route", session, "POST", base + CALLBACK, **post_callback(session, route)
            )
            values = {(ids.COMMUNE_CODE, "data"): commune, (ids.URL, "search"): ""}
            body = callbacks.body(ids.COMMUNE_KPIS, values)
            recorder.call(
                "commune page refresh",
                session,
                "POST",
                base + CALLBACK,
                **post_callback(session, body),
            )
        elif action == "dossier page":
            route = callbacks.body(
                ids.PAGE,
                {(ids.URL, "pathname"): f"/dossier/{code}", (ids.URL, "search"): ""},
                ["url.pathname"],
            )
            recorder.call(
                "dossier page (route)",
                session,
                "POST",
                base + CALLBACK,
                **post_callback(session, route),
            )
            recorder.call("dossier api", session, "GET", f"{api}/dossiers/{code}")
        elif action == "commune api":
            recorder.call("commune api", session, "GET", f"{api}/communes/{commune}")
        else:
            recorder.call(
                "export csv", session, "GET", f"{api}/review.csv", params={"commune": commune}
            )
        stop.wait(rng.uniform(1, 5))


def kiosk_cookies(base: str, token: str | None, extra: dict[str, str]) -> dict[str, str]:
    """Open the kiosk link once, as the screen does, and keep its cookies."""
    session = requests.Session()
    session.cookies.update(extra)
    if token:
        response = session.get(f"{base}/kiosk/login", params={"token": token}, timeout=TIMEOUT_S)
        response.raise_for_status()
    session.get(f"{base}/kiosk", params={"rotate": 30}, timeout=TIMEOUT_S).raise_for_status()
    return {k: v for k, v in session.cookies.get_dict().items() if v is not None}


# --- the run --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def cpu_seconds(pid: int | None) -> float:
    import psutil

    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        total = 0.0
        for p in (root, *root.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total
    except psutil.Error:
        return 0.0


def run_load(
    base: str,
    credentials: Credentials,
    communes: list[str],
    dossiers: list[str],
    args: argparse.Namespace,
    server_pid: int | None,
) -> int:
    deps = requests.get(
        f"{base}/_dash-dependencies", cookies=credentials.cookies, timeout=TIMEOUT_S
    )
    if deps.status_code != 200 and credentials.kiosk_token:
        cookies = kiosk_cookies(base, credentials.kiosk_token, credentials.cookies)
        deps = requests.get(f"{base}/_dash-dependencies", cookies=cookies, timeout=TIMEOUT_S)
    deps.raise_for_status()
    callbacks = Callbacks(deps.json())
    cookies = kiosk_cookies(base, credentials.kiosk_token, credentials.cookies)
    recorder = Recorder()
    stop = threading.Event()
    started = time.monotonic()
    stop_at = started + args.minutes * 60
    threads = [
        threading.Thread(
            target=viewer, args=(i, base, callbacks, cookies, recorder, stop_at, stop), daemon=True
        )
        for i in range(args.viewers)
    ] + [
        threading.Thread(
            target=leader,
            args=(i, base, callbacks, credentials, communes, dossiers, recorder, stop_at, stop),
            daemon=True,
        )
        for i in range(args.leaders)
    ]
    print(
        f"load: {args.viewers} kiosk screens + {args.leaders} leaders for {args.minutes:g} min "
        f"against {base} (first {WARMUP_S:.0f} s not counted)"
    )
    for t in threads:
        t.start()
    time.sleep(min(WARMUP_S, args.minutes * 60))
    cpu_server0, cpu_self0, measured_from = (
        cpu_seconds(server_pid),
        time.process_time(),
        time.monotonic(),
    )
    try:
        while any(t.is_alive() for t in threads):
            time.sleep(1)
    except KeyboardInterrupt:
        stop.set()
    for t in threads:
        t.join(TIMEOUT_S + 5)
    span = time.monotonic() - measured_from
    cpu_server = cpu_seconds(server_pid) - cpu_server0
    cpu_self = time.process_time() - cpu_self0

    kept = [s for s in recorder.samples if s.at >= measured_from]
    by_kind: dict[str, list[Sample]] = defaultdict(list)
    for s in kept:
        by_kind[s.kind].append(s)
    print(
        f"\n  {'request':<26} {'count':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7}"
    )
    slow: list[str] = []
    errors = 0
    for kind in sorted(by_kind, key=lambda k: -len(by_kind[k])):
        items = by_kind[kind]
        ok = [s.ms for s in items if s.error is None] or [0.0]
        n_err = sum(1 for s in items if s.error)
        errors += n_err
        p95 = percentile(ok, 0.95)
        if p95 > P95_FLOOR_MS:
            slow.append(f"{kind} {p95:.0f} ms")
        print(
            f"  {kind:<26} {len(items):>6} {statistics.median(ok):>8.1f} {p95:>8.1f} "
            f"{percentile(ok, 0.99):>8.1f} {max(ok):>8.1f} {n_err:>7}"
        )
    all_ok = [s.ms for s in kept if s.error is None] or [0.0]
    print(
        f"  {'all':<26} {len(kept):>6} {statistics.median(all_ok):>8.1f} "
        f"{percentile(all_ok, 0.95):>8.1f} {percentile(all_ok, 0.99):>8.1f} {max(all_ok):>8.1f} "
        f"{errors:>7}"
    )
    if errors:
        kinds: dict[str, int] = defaultdict(int)
        for s in kept:
            if s.error:
                kinds[f"{s.kind}: {s.error}"] += 1
        print("  errors: " + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())))
    cores = os.cpu_count() or 1
    print(
        f"\n  throughput {len(kept) / span:.1f} requests/s over {span:.0f} s; "
        f"CPU: gunicorn {cpu_server / span * 100:.0f} %, load generator "
        f"{cpu_self / span * 100:.0f} % (of one core; {cores} cores)"
    )
    p95_all = percentile(all_ok, 0.95)
    passed = p95_all <= P95_FLOOR_MS and errors == 0
    print(
        f"  floor: p95 of all requests <= {P95_FLOOR_MS:.0f} ms ({p95_all:.1f} ms) and no errors "
        f"({errors}): {'PASS' if passed else 'MISSED'}"
    )
    if slow:
        print(f"  kinds above {P95_FLOOR_MS:.0f} ms at p95: " + ", ".join(slow))
    return 0 if passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the run (5)")
    parser.add_argument("--viewers", type=int, default=50, help="kiosk screens (50)")
    parser.add_argument("--leaders", type=int, default=5, help="leaders browsing (5)")
    parser.add_argument("--dossiers", type=int, default=100_000, help="database size (100,000)")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file, not PostgreSQL")
    parser.add_argument("--workers", type=int, help="gunicorn workers (CC_WEB_WORKERS)")
    parser.add_argument("--threads", type=int, help="threads per worker (CC_WEB_THREADS)")
    parser.add_argument("--url", help="an already running server: build and start nothing")
    parser.add_argument("--kiosk-token", help="with --url: the kiosk link's token")
    parser.add_argument("--api-token", help="with --url: an API token of the leader role")
    parser.add_argument(
        "--cookie", action="append", default=[], metavar="NAME=VALUE", help="with --url: cookies"
    )
    args = parser.parse_args(argv)
    cookies = dict(c.split("=", 1) for c in args.cookie)

    if args.url:
        base = args.url.rstrip("/")
        credentials = Credentials(args.kiosk_token, args.api_token, cookies)
        headers = {"Authorization": f"Bearer {args.api_token}"} if args.api_token else {}
        rows = requests.get(f"{base}/api/v1/communes", headers=headers, cookies=cookies, timeout=30)
        rows.raise_for_status()
        communes = [r["code"] for r in rows.json()]
        listed = requests.get(
            f"{base}/api/v1/dossiers",
            params={"limit": 200},
            headers=headers,
            cookies=cookies,
            timeout=30,
        )
        listed.raise_for_status()
        dossiers = [d["dossier_code"] for d in listed.json()["items"]]
        return run_load(base, credentials, communes, dossiers, args, None)

    workdir = Path(tempfile.mkdtemp(prefix="cc-load-"))
    secret_key = secrets.token_urlsafe(32)
    try:
        with database(args.sqlite, workdir) as url:
            print(f"database: {'SQLite' if args.sqlite else 'PostgreSQL'}, building")
            credentials = build(url, args.dossiers, secret_key)
            credentials.cookies.update(cookies)
            communes, dossiers = samples(url)
            with gunicorn(url, secret_key, args.workers, args.threads) as (base, proc):
                return run_load(base, credentials, communes, dossiers, args, proc.pid)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
