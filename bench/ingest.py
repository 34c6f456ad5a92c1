"""Collector throughput, latency and memory against a real Mosquitto (issue 3).

    .venv/bin/python bench/ingest.py                       # 200,000 events, SQLite and PostgreSQL
    .venv/bin/python bench/ingest.py --backend sqlite --events 50000
    .venv/bin/python bench/ingest.py --quick               # smoke run: a few seconds per phase

What it does, in one run, with its own Mosquitto (persistent, ``max_inflight_messages 1000``,
``max_queued_messages`` unlimited, as docs/collector.md asks) on a free 127.0.0.1 port:

(a) **Bare subscriber**: a paho client that only counts (QoS 1, auto-ack) subscribes with a
    persistent session and leaves; separate publisher processes put N contract events into its
    session; it reconnects and drains them. Its receive rate is the practical limit.
(b) **Collector**, per backend (a fresh SQLite file; a fresh PostgreSQL database, dropped
    after): ``python -m collectors`` as a subprocess subscribes and is stopped; the same N
    events are published into its session; it is started again and the rows in
    ``dossier_events`` + ``queue_events`` are counted every 0.25 s until all N are there.
    The sustained rate is the slope between 10 % and 90 % of N stored (start-up and the
    tail excluded), the overall rate is N over first-row-to-last-row.
(c) b / a.
(d) **Latency** at a steady offered rate (default 2,000 events/s, paced by the publisher
    processes) into the running collector. Every message carries its send time
    (``bench_sent_at``, an extra field the contract allows); one in ``--probe-every`` is a
    probe whose primary key a poller looks up every 20 ms. Publish-to-commit latency = the
    moment the probe's row is first visible to another connection minus its send time, so it
    includes broker, batching, the transaction and the commit, and overstates by at most one
    poll interval plus the query.
(e) **Peak RSS** of the collector and its children (psutil, sampled every 0.1 s in b and d).

Publishers, the bare subscriber and the collector are separate processes; everything shares
the machine's CPUs, so run it on a quiet machine for figures worth writing down.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import paho.mqtt.client as mqtt  # noqa: E402
import psutil  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from control_center.domain.calendar import LOCAL_TZ  # noqa: E402

PROVINCE = "08"
PG_ADMIN_URL = os.environ.get("CC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
FLOORS = {"sqlite": 0.5, "postgresql": 0.4}
P99_FLOOR_S = 1.0
RSS_FLOOR_MB = 300.0
EVENTS_PER_BLOCK = 6  # one dossier's received/assigned/completed + one ticket's issued/called/done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the broker ------------------------------------------------------------------------------


class Broker:
    """Mosquitto configured as docs/collector.md says production must be."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    "user root",  # as root Mosquitto would drop to user mosquitto (tmp dir)
                    "persistence true",
                    f"persistence_location {workdir}/",
                    "autosave_interval 30",
                    "max_inflight_messages 1000",
                    "max_queued_messages 0",  # unlimited: the whole backlog is kept
                    "max_queued_bytes 0",
                    "max_packet_size 1048576",
                    "log_dest stdout",
                    "log_type error",
                    "log_type warning",
                    "",
                ]
            )
        )
        self.conf = conf

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        log = (self.workdir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=log, stderr=log)
        _wait(lambda: _listening(self.port), 10, "mosquitto listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


# --- contract events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A deterministic stream of valid contract events for the province's communes.

    Block ``b`` belongs to commune ``communes[b % len(communes)]`` and holds one dossier's
    ``received``/``assigned``/``completed`` and one queue ticket's ``ticket_issued``/
    ``ticket_called``/``ticket_completed``. Each publisher owns whole communes, as a centre
    does, so a dossier's events leave in order from one connection."""

    tag: str
    communes: tuple[str, ...]
    procedures: tuple[str, ...]
    base: datetime  # the first block's local time

    def blocks_for(self, publisher: int, publishers: int, n_blocks: int) -> Iterator[int]:
        for b in range(n_blocks):
            if (b % len(self.communes)) % publishers == publisher:
                yield b

    def events(self, b: int, live: bool = False) -> list[tuple[str, dict[str, Any]]]:
        commune = self.communes[b % len(self.communes)]
        k = b // len(self.communes)
        at = self.base + timedelta(seconds=30 * k)
        dossier = f"{self.tag}-{commune}-{k:06d}"
        ticket = f"{self.tag[:8]}{k:05d}"

        def body(seq: int, etype: str, minutes: float, **extra: Any) -> dict[str, Any]:
            when = datetime.now(LOCAL_TZ) if live else at + timedelta(minutes=minutes)
            return {
                "event_id": f"{self.tag}-{b}-{seq}",
                "type": etype,
                "occurred_at": when.isoformat(timespec="seconds"),
                "commune_code": commune,
                **extra,
            }

        dossier_topic = f"dvc/v1/{PROVINCE}/{commune}/dossier"
        queue_topic = f"dvc/v1/{PROVINCE}/{commune}/queue"
        proc = self.procedures[b % len(self.procedures)]
        return [
            (
                dossier_topic,
                body(
                    0,
                    "received",
                    0,
                    dossier_code=dossier,
                    procedure_code=proc,
                    channel=("online", "counter", "post")[b % 3],
                    applicant_name="Nguyễn Văn A",
                ),
            ),
            (queue_topic, body(1, "ticket_issued", 0, ticket_no=ticket, channel="kiosk")),
            (queue_topic, body(2, "ticket_called", 4, ticket_no=ticket, counter="Q1")),
            (
                dossier_topic,
                body(3, "assigned", 10, dossier_code=dossier, officer="Trần Thị B"),
            ),
            (queue_topic, body(4, "ticket_completed", 12, ticket_no=ticket, counter="Q1")),
            (dossier_topic, body(5, "completed", 60 * 24, dossier_code=dossier)),
        ]


def _publisher_client(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def publish_backlog(port: int, plan: Plan, publisher: int, publishers: int, n_blocks: int) -> None:
    """A publisher process: its communes' events, QoS 1, as fast as the broker takes them."""
    client = _publisher_client(port)
    try:
        pending = []
        for b in plan.blocks_for(publisher, publishers, n_blocks):
            for topic, body in plan.events(b):
                data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
                pending.append(client.publish(topic, data, qos=1))
            if len(pending) > 5000:  # bounded memory in the client
                for info in pending:
                    info.wait_for_publish(60)
                pending.clear()
        for info in pending:
            info.wait_for_publish(60)
    finally:
        client.disconnect()
        client.loop_stop()


def publish_paced(
    port: int, plan: Plan, publisher: int, publishers: int, n_blocks: int, rate: float
) -> None:
    """A publisher process sending its share of ``rate`` events/s, evenly in 10 ms ticks."""
    client = _publisher_client(port)
    try:
        start = time.monotonic()
        sent = 0
        infos = []
        for b in plan.blocks_for(publisher, publishers, n_blocks):
            for topic, body in plan.events(b, live=True):
                due = start + sent / rate
                delay = due - time.monotonic()
                if delay > 0.01:
                    time.sleep(delay)
                body["bench_sent_at"] = time.time()
                data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
                infos.append(client.publish(topic, data, qos=1))
                sent += 1
        for info in infos:
            info.wait_for_publish(60)
    finally:
        client.disconnect()
        client.loop_stop()


def run_publishers(target: Callable[..., None], args: Sequence[Any], publishers: int) -> float:
    """Run ``target(port, plan, i, publishers, ...)`` in separate processes; seconds taken."""
    ctx = mp.get_context("spawn")
    started = time.monotonic()
    procs = []
    for i in range(publishers):
        p = ctx.Process(target=target, args=(*args[:2], i, publishers, *args[2:]))
        p.start()
        procs.append(p)
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"publisher exited with {p.exitcode}")
    return time.monotonic() - started


# --- (a) the bare subscriber ---------------------------------------------------------------


def topics() -> list[tuple[str, int]]:
    return [(f"dvc/v1/{PROVINCE}/+/{kind}", 1) for kind in ("dossier", "queue", "status")]


def bare_subscriber(port: int, client_id: str, expect: int, out: Any) -> None:
    """Subscriber process: create the session (expect=0) or drain ``expect`` messages."""
    got = 0
    first = last = 0.0
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(_c: Any, _u: Any, _m: Any) -> None:
        nonlocal got, first, last
        now = time.monotonic()
        if got == 0:
            first = now
        got += 1
        last = now
        if got >= expect:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda c, *_: c.subscribe(topics())
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    try:
        if expect == 0:
            subscribed.wait(10)
            client.disconnect()
        else:
            done.wait(600)
            # Leave without a session, or the broker would keep queuing the later phases.
            client.disconnect(properties=_no_session())
    finally:
        client.loop_stop()
    out.put((got, last - first))


def _no_session() -> Properties:
    props = Properties(PacketTypes.DISCONNECT)
    props.SessionExpiryInterval = 0
    return props


def drop_session(port: int, client_id: str) -> None:
    """End a persistent session so the broker stops queuing for it."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port, clean_start=True)
    client.loop_start()
    try:
        _wait(client.is_connected, 10, "connected")
    finally:
        client.disconnect(properties=_no_session())
        client.loop_stop()


# --- the collector ---------------------------------------------------------------------------


@dataclass
class RssSampler:
    pid: int
    peak_mb: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            proc = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.wait(0.1):
            try:
                procs = [proc, *proc.children(recursive=True)]
                total = 0
                for p in procs:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        total += p.memory_info().rss
            except psutil.NoSuchProcess:
                return
            self.peak_mb = max(self.peak_mb, total / 2**20)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(2)
        return self.peak_mb


class CollectorProcess:
    def __init__(self, db_url: str, mqtt_url: str, workdir: Path, client_id: str) -> None:
        self.env = {
            **os.environ,
            "CC_DATABASE_URL": db_url,
            "CC_MQTT_URL": mqtt_url,
            "CC_PROVINCE": PROVINCE,
            "CC_MQTT_CLIENT_ID": client_id,
            "CC_LOG_LEVEL": "INFO",
            "PYTHONPATH": str(REPO),
        }
        self.log_path = workdir / f"{client_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "collectors"], env=self.env, stdout=log, stderr=log, cwd=REPO
        )
        _wait(self._subscribed, 60, "collector subscribed")

    def _subscribed(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"collector exited; see {self.log_path}")
        with self.log_path.open("rb") as f:
            f.seek(self._offset)
            return b"subscribed" in f.read()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def db_upgrade(db_url: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    env = {**os.environ, "CC_DATABASE_URL": db_url, "CC_PROVINCE": PROVINCE}
    subprocess.run(
        [sys.executable, "-m", "control_center.cli", "db", "upgrade"],
        env=env,
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    engine = create_engine(db_url)
    with engine.connect() as conn:
        communes = conn.execute(
            text("SELECT code FROM communes WHERE province_code = :p ORDER BY code"),
            {"p": PROVINCE},
        ).scalars()
        procedures = conn.execute(
            text("SELECT code FROM procedures WHERE catalogued ORDER BY code")
        ).scalars()
        result = tuple(communes), tuple(procedures)
    engine.dispose()
    return result


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of the collector and of each child, by role."""
    proc = psutil.Process(pid)
    out: dict[str, float] = {}
    for role, p in (("receiver", proc), *(("ingest", c) for c in proc.children(recursive=True))):
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            out[role] = out.get(role, 0.0) + t.user + t.system
    return out


def stored_count(conn: Any) -> int:
    return int(
        conn.execute(
            text(
                "SELECT (SELECT count(*) FROM dossier_events) + (SELECT count(*) FROM queue_events)"
            )
        ).scalar_one()
    )


@dataclass
class DrainResult:
    rows: int
    seconds_all: float  # first row visible -> all visible
    rate_all: float
    rate_sustained: float  # slope between 10 % and 90 %


def watch_drain(db_url: str, expect: int, timeout: float) -> DrainResult:
    engine = create_engine(db_url)
    samples: list[tuple[float, int]] = []
    try:
        with engine.connect() as conn:
            base = stored_count(conn)
            conn.rollback()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                n = stored_count(conn) - base
                conn.rollback()  # a fresh snapshot next time (PostgreSQL)
                samples.append((time.monotonic(), n))
                if n >= expect:
                    break
                time.sleep(0.25)
    finally:
        engine.dispose()
    rows = samples[-1][1]
    if rows < expect:
        raise RuntimeError(f"only {rows} of {expect} events stored after {timeout:.0f} s")

    def when(fraction: float) -> float:
        target = expect * fraction
        for (t0, n0), (t1, n1) in itertools.pairwise(samples):
            if n1 >= target:
                return t0 + (t1 - t0) * ((target - n0) / max(1, n1 - n0))
        return samples[-1][0]

    t_first = when(1e-9)
    t_all = samples[-1][0]
    t10, t90 = when(0.1), when(0.9)
    return DrainResult(
        rows=rows,
        seconds_all=t_all - t_first,
        rate_all=expect / max(1e-9, t_all - t_first),
        rate_sustained=0.8 * expect / max(1e-9, t90 - t10),
    )


def watch_latency(
    db_url: str, probe_ids: Sequence[tuple[float, str]], stop_at: float
) -> tuple[list[float], int]:
    """Poll every 20 ms for probes due by now; latency = first visible - bench_sent_at."""
    engine = create_engine(db_url)
    latencies: list[float] = []
    pending: dict[str, float] = {}
    upcoming = list(probe_ids)  # (expected send monotonic time, event_id), sorted
    started = time.monotonic()
    sqlite = engine.dialect.name == "sqlite"
    match = "IN (SELECT value FROM json_each(:ids))" if sqlite else "= ANY(CAST(:ids AS text[]))"
    probe_sql = text(
        f"SELECT event_id, payload FROM dossier_events WHERE event_id {match} "
        f"UNION ALL SELECT event_id, payload FROM queue_events WHERE event_id {match}"
    )
    try:
        with engine.connect() as conn:
            while upcoming or pending:
                now = time.monotonic()
                if now > stop_at:
                    break
                while upcoming and upcoming[0][0] <= now - started:
                    pending[upcoming.pop(0)[1]] = 0.0
                if pending:
                    ids = list(pending)[:1000]
                    params = {"ids": json.dumps(ids) if sqlite else ids}
                    rows = conn.execute(probe_sql, params).all()
                    conn.rollback()
                    seen_at = time.time()
                    for event_id, payload in rows:
                        body = json.loads(payload) if isinstance(payload, str) else payload
                        latencies.append(seen_at - float(body["bench_sent_at"]))
                        pending.pop(event_id, None)
                time.sleep(0.02)
    finally:
        engine.dispose()
    return latencies, len(pending) + len(upcoming)


# --- databases ---------------------------------------------------------------------------------


class Database:
    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        self.name: str | None = None
        if backend == "sqlite":
            self.url = f"sqlite:///{workdir / 'bench.db'}"
        else:
            self.name = f"cc_bench_{uuid.uuid4().hex[:10]}"
            with self._admin() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.name}"'))
            self.url = (
                make_url(PG_ADMIN_URL)
                .set(drivername="postgresql+psycopg", database=self.name)
                .render_as_string(hide_password=False)
            )

    def _admin(self) -> Any:
        url = make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg")
        return create_engine(url, isolation_level="AUTOCOMMIT").connect()

    def drop(self) -> None:
        if self.name is None:
            return
        with self._admin() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": self.name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}"'))


# --- the run -----------------------------------------------------------------------------------


def blocks_for(events: int) -> int:
    """Whole blocks holding at least ``events`` events."""
    return -(-events // EVENTS_PER_BLOCK)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def bench_bare(broker: Broker, plan: Plan, n_blocks: int, publishers: int) -> float:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    client_id = f"bench-bare-{uuid.uuid4().hex[:6]}"
    p = ctx.Process(target=bare_subscriber, args=(broker.port, client_id, 0, out))
    p.start()
    p.join()
    out.get()
    publish_s = run_publishers(publish_backlog, (broker.port, plan, n_blocks), publishers)
    expect = n_blocks * EVENTS_PER_BLOCK
    print(f"  published {expect:,} events in {publish_s:.1f} s ({expect / publish_s:,.0f}/s)")
    p = ctx.Process(target=bare_subscriber, args=(broker.port, client_id, expect, out))
    p.start()
    got, seconds = out.get()
    p.join()
    if got < expect:
        raise RuntimeError(f"bare subscriber got {got} of {expect}")
    return got / seconds


def bench_backend(
    backend: str, broker: Broker, workdir: Path, args: argparse.Namespace, bare_rate: float
) -> dict[str, Any]:
    db = Database(backend, workdir)
    try:
        communes, procedures = db_upgrade(db.url)
        print(f"  {backend}: {len(communes)} communes of province {PROVINCE}, fresh database")
        tag = f"b{uuid.uuid4().hex[:6]}"
        base = datetime.now(LOCAL_TZ).replace(hour=8, minute=0, second=0) - timedelta(days=2)
        plan = Plan(tag, communes, procedures, base)
        n_blocks = blocks_for(args.events)
        expect = n_blocks * EVENTS_PER_BLOCK
        collector = CollectorProcess(db.url, broker.url, workdir, f"bench-collector-{backend}")
        collector.start()  # creates the persistent session
        collector.stop()
        publish_s = run_publishers(publish_backlog, (broker.port, plan, n_blocks), args.publishers)
        print(f"  published {expect:,} events in {publish_s:.1f} s while the collector was away")
        collector.start()
        assert collector.proc is not None
        rss = RssSampler(collector.proc.pid)
        cpu_before = cpu_seconds(collector.proc.pid)
        drain = watch_drain(db.url, expect, timeout=max(120.0, expect / 200))
        cpu = {
            role: (t - cpu_before.get(role, 0.0)) / expect * 1e6
            for role, t in cpu_seconds(collector.proc.pid).items()
        }
        print(
            f"  stored {drain.rows:,} events in {drain.seconds_all:.1f} s: "
            f"sustained {drain.rate_sustained:,.0f}/s (overall {drain.rate_all:,.0f}/s); CPU per "
            "event: " + ", ".join(f"{role} {us:.0f} µs" for role, us in sorted(cpu.items()))
        )

        # (d) steady offered rate into the running collector
        lat_plan = Plan(f"L{tag}", communes, procedures, base)
        lat_events = int(args.rate * args.latency_seconds)
        lat_blocks = max(1, lat_events // EVENTS_PER_BLOCK)
        per_block_s = EVENTS_PER_BLOCK / args.rate
        probes = sorted(
            (b * per_block_s, f"{lat_plan.tag}-{b}-{seq}")
            for b in range(lat_blocks)
            for seq in range(EVENTS_PER_BLOCK)
            if (b * EVENTS_PER_BLOCK + seq) % args.probe_every == 0
        )
        result: dict[str, Any] = {}

        def poll() -> None:
            result["lat"] = watch_latency(
                db.url, probes, time.monotonic() + args.latency_seconds + 60
            )

        poller = threading.Thread(target=poll)
        poller.start()
        run_publishers(
            publish_paced,
            (broker.port, lat_plan, lat_blocks, args.rate / args.publishers),
            args.publishers,
        )
        poller.join()
        latencies, missing = result["lat"]
        peak = rss.stop()
        collector.stop()
        drop_session(broker.port, f"bench-collector-{backend}")
        return {
            "backend": backend,
            "rate": drain.rate_sustained,
            "rate_all": drain.rate_all,
            "ratio": drain.rate_sustained / bare_rate,
            "p50": percentile(latencies, 0.5),
            "p99": percentile(latencies, 0.99),
            "max": max(latencies, default=float("nan")),
            "probes": len(latencies),
            "missing": missing,
            "rss": peak,
        }
    finally:
        db.drop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="backlog size (default 200000)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--publishers", type=int, default=4, help="publisher processes")
    parser.add_argument("--rate", type=float, default=2000.0, help="offered events/s in (d)")
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="length of (d)")
    parser.add_argument("--probe-every", type=int, default=10, help="one probe per N events")
    parser.add_argument("--quick", action="store_true", help="smoke run: 12,000 events, 5 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.latency_seconds = min(args.events, 12_000), 5.0
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)

    print(
        f"machine: {os.cpu_count()} CPUs, load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    workdir = Path(tempfile.mkdtemp(prefix="cc-bench-ingest-"))
    broker = Broker(workdir)
    broker.start()
    rows: list[dict[str, Any]] = []
    try:
        print(f"(a) bare paho subscriber (QoS 1, counts only), {args.events:,} events backlog")
        plan = Plan(
            "bare",
            tuple(f"{i:05d}" for i in range(124)),
            ("1.001193",),
            datetime.now(LOCAL_TZ) - timedelta(days=2),
        )
        bare = bench_bare(broker, plan, blocks_for(args.events), args.publishers)
        print(f"  received {bare:,.0f} messages/s")
        for backend in backends:
            print(f"(b,d,e) collector on {backend}")
            rows.append(bench_backend(backend, broker, workdir, args, bare))
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(
        f"events {args.events:,}, publishers {args.publishers}, latency at "
        f"{args.rate:,.0f} events/s for {args.latency_seconds:.0f} s, "
        f"load average now {os.getloadavg()[0]:.2f}"
    )
    print(f"(a) bare subscriber: {bare:,.0f} msg/s")
    ok = True
    for r in rows:
        floors = {
            "ratio": r["ratio"] >= FLOORS[r["backend"]],
            "p99": r["p99"] <= P99_FLOOR_S and r["missing"] == 0,
            "rss": r["rss"] <= RSS_FLOOR_MB,
        }
        ok &= all(floors.values())
        mark = {k: "ok" if passed else "BELOW FLOOR" for k, passed in floors.items()}

        print(
            f"{r['backend']:>10}: (b) {r['rate']:,.0f} events/s sustained "
            f"({r['rate_all']:,.0f} overall)  (c) ratio {r['ratio']:.2f} "
            f"[floor {FLOORS[r['backend']]}: {mark['ratio']}]  "
            f"(d) p50 {r['p50'] * 1000:.0f} ms p99 {r['p99'] * 1000:.0f} ms "
            f"max {r['max'] * 1000:.0f} ms over {r['probes']} probes, {r['missing']} unseen "
            f"[floor 1 s: {mark['p99']}]  (e) peak RSS {r['rss']:.0f} MB [{mark['rss']}]"
        )
    print(
        "latency = first visibility of a probe row to a separate connection (polled every "
        "20 ms) minus the send time embedded in the message"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
