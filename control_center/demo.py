"""``control-center demo``: the whole product on embedded defaults, in one process tree.

Broker: ``CC_MQTT_URL`` when it is set and reachable; else an embedded broker (a ``mosquitto``
child process on a free port when the binary exists, else the pure-Python amqtt broker in a
thread of this process). Database: ``CC_DATABASE_URL`` when set, else ``var/demo.db``, recreated
on each run. Then: migrations and reference data, 30 days of history, and the collector,
alert engine, simulator and wall as child processes. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import getpass
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control_center.settings import REPO_ROOT, Settings, load_settings

log = logging.getLogger("control_center.demo")

VAR_DIR = REPO_ROOT / "var"
DEMO_ADMIN = "admin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


# --- brokers ----------------------------------------------------------------------------------


class EmbeddedBroker:
    url: str
    protocol: str = "5"

    def start(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class MosquittoBroker(EmbeddedBroker):
    """A private Mosquitto child process, persistent, sized for a whole province's stream."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # Run as root, Mosquitto drops to user "mosquitto", which cannot write its
            # persistence file here; keep the user that started the demo.
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "max_inflight_messages 1000\n"
            "max_queued_messages 1000000\n"
            "log_dest stderr\nlog_type error\nlog_type warning\n"
        )
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        if not wait_until(lambda: reachable("127.0.0.1", self.port, 0.2), 10):
            raise RuntimeError("embedded mosquitto did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class AmqttBroker(EmbeddedBroker):
    """The pure-Python amqtt broker in a thread (MQTT 3.1.1 only: clients fall back to it)."""

    protocol = "3.1.1"

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="amqtt")
        self._broker: Any = None

    def start(self) -> None:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "sys_interval": 0,
            "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
            "topic-check": {"enabled": False},
        }
        self._thread.start()

        async def _start() -> None:
            self._broker = Broker(config, loop=self._loop)
            await self._broker.start()

        asyncio.run_coroutine_threadsafe(_start(), self._loop).result(15)

    def stop(self) -> None:
        if self._broker is not None:
            asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


def choose_broker(settings: Settings) -> tuple[str, EmbeddedBroker | None]:
    """The configured broker when reachable, else an embedded one (not yet started)."""
    if settings.mqtt_url:
        target = settings.mqtt_parts()
        if reachable(target.host, target.port):
            return settings.mqtt_url.get_secret_value(), None
        log.warning(
            "configured broker unreachable, using an embedded one", extra={"broker": target}
        )
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    broker: EmbeddedBroker
    broker = MosquittoBroker(binary, VAR_DIR / "demo-broker") if binary else AmqttBroker()
    return broker.url, broker


# --- child processes --------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        # Its own session: a terminal's Ctrl-C reaches the demo alone, which stops each child
        # with one SIGTERM. Reached by the terminal as well, a gunicorn gthread worker got two
        # quit signals at once (Ctrl-C's and its master's), re-entered its thread pool's
        # shutdown inside the signal handler, deadlocked (cpython#121649) and outlived the demo.
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _die_with_parent() -> None:
    """Linux: a child gets SIGTERM when the demo dies, even by SIGKILL: no orphans left running."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "control_center.cli", *args]


def demo_credentials(settings: Settings) -> tuple[str, str, str]:
    """An ``admin`` user with a new password and a kiosk link for this run: (user, password,
    kiosk token). The demo database is local and recreated; the password is printed once."""
    from control_center.db import Database
    from control_center.security import accounts

    assert settings.secret_key is not None
    db = Database.from_settings(settings)
    password = accounts.generate_password()
    try:
        with db.session() as session, session.begin():
            user = accounts.find_user(session, DEMO_ADMIN)
            if user is None:
                accounts.create_user(session, DEMO_ADMIN, password, "admin")
            else:
                accounts.set_password(session, user, password)
            _link, token = accounts.create_kiosk_link(
                session, settings.secret_key.get_secret_value(), "demo wall", created_by="demo"
            )
    finally:
        db.dispose()
    return DEMO_ADMIN, password, token


def run_demo(base: Settings, args: argparse.Namespace) -> int:
    env_db = os.environ.get("CC_DATABASE_URL")
    overrides: dict[str, Any] = {"web_host": base.web_host, "web_port": base.web_port}
    if not env_db:
        db_file = VAR_DIR / "demo.db"
        if not args.keep_data:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db_file}{suffix}").unlink(missing_ok=True)
        overrides["database_url"] = f"sqlite:///{db_file}"

    # Sign-in stays on, as in production: a key for this run's sessions and kiosk link, and
    # plain-http cookies (the demo serves http://127.0.0.1).
    secret_key = os.environ.get("CC_SECRET_KEY") or secrets.token_urlsafe(32)
    overrides["secret_key"] = secret_key
    if "CC_COOKIE_SECURE" not in os.environ:
        overrides["cookie_secure"] = False

    mqtt_url, broker = choose_broker(base)
    overrides["mqtt_url"] = mqtt_url
    if broker is not None:
        overrides["mqtt_protocol"] = broker.protocol
    settings = load_settings(**overrides)
    if reachable(settings.web_host, settings.web_port, 0.3):
        print(
            f"control-center: port {settings.web_port} is in use; pass --port",
            file=sys.stderr,
        )
        return 2

    from control_center.reference import db_upgrade
    from control_center.simulator import backfill

    children: list[Child] = []
    stopping = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        if broker is not None:
            print(f"starting embedded MQTT broker ({type(broker).__name__}) at {broker.url}")
            broker.start()
        print(f"database: {settings.redacted()['database_url']}")
        counts = db_upgrade(settings)
        print("reference data: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        credentials = demo_credentials(settings) if settings.auth_required else None
        if args.backfill_days > 0 and not args.keep_data:
            started = time.monotonic()
            result = backfill(settings, days=args.backfill_days, seed=args.seed)
            print(
                f"backfilled {args.backfill_days} days of history in "
                f"{time.monotonic() - started:.1f}s: {result}"
            )

        env = dict(os.environ)
        env.update(
            {
                "CC_DATABASE_URL": settings.database_url,
                "CC_MQTT_URL": mqtt_url,
                "CC_MQTT_PROTOCOL": settings.mqtt_protocol,
                "CC_PROVINCE": settings.province,
                "CC_WEB_HOST": settings.web_host,
                "CC_WEB_PORT": str(settings.web_port),
                "CC_WEB_WORKERS": env.get("CC_WEB_WORKERS", "2"),
                "CC_SECRET_KEY": secret_key,
                "CC_COOKIE_SECURE": "true" if settings.cookie_secure else "false",
            }
        )
        children = [
            Child("collector", _cli("collect"), env=env),
            Child("alerts", _cli("alerts"), env=env),
            Child(
                "simulator",
                _cli(
                    "simulate",
                    "--speed",
                    str(args.speed),
                    "--seed",
                    str(args.seed),
                    # carry on with the backfilled dossiers and flush the offline centre
                    "--resume-days",
                    str(args.backfill_days if not args.keep_data else 0),
                ),
                env=env,
            ),
            Child("web", _cli("web"), env=env),
        ]
        for child in children:
            child.start()
        url = f"http://{settings.web_host}:{settings.web_port}/"
        if wait_until(lambda: reachable(settings.web_host, settings.web_port, 0.3), 60):
            if credentials is None:
                print(f"\n  The wall is live: open {url}  (Ctrl-C stops everything)\n", flush=True)
            else:
                user, password, token = credentials
                kiosk = f"{url}kiosk/login?token={token}&next=/"
                print(
                    f"\n  The wall is live: open {kiosk}\n"
                    "  (a kiosk link: it signs this browser in as a wall screen)\n"
                    f"  Everything else (dossiers, review, alerts): sign in at {url}login\n"
                    f"  as {user} with password {password}\n"
                    "  Ctrl-C stops everything.\n",
                    flush=True,
                )
        while not stopping.is_set():
            for child in children:
                if not child.alive() and not stopping.is_set():
                    assert child.proc is not None
                    code = child.proc.returncode
                    if child.restarts >= 5:
                        print(f"{child.name} keeps failing (exit {code}); stopping the demo")
                        stopping.set()
                        break
                    child.restarts += 1
                    print(f"{child.name} exited with {code}; restarting it")
                    child.start()
            stopping.wait(1.0)
    finally:
        print("stopping...", flush=True)
        for child in reversed(children):
            child.stop()
        for child in reversed(children):
            child.wait(10)
        if broker is not None:
            broker.stop()
        print("stopped.")
    return 0
