"""``control-center``: one entry point for every process of the product."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from control_center import __version__
from control_center.settings import Settings, SettingsError, load_settings

log = logging.getLogger("control_center.cli")


def _settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if getattr(args, "host", None):
        overrides["web_host"] = args.host
    if getattr(args, "port", None):
        overrides["web_port"] = args.port
    return overrides


def run_until_signalled(target: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run a process loop ``target(*args, stop_event=...)``; SIGTERM/SIGINT stop it cleanly."""
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    target(*args, stop_event=stop, **kwargs)


def cmd_collect(settings: Settings, args: argparse.Namespace) -> int:
    from collectors.service import run

    run_until_signalled(run, settings)
    return 0


def cmd_alerts(settings: Settings, args: argparse.Namespace) -> int:
    from alerts.engine import run

    run_until_signalled(run, settings)
    return 0


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from control_center import simulator

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return int(simulator.main_from_args(settings, args, stop_event=stop) or 0)


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    from control_center.reference import CatalogueError, db_upgrade

    try:
        counts = db_upgrade(settings)
    except CatalogueError as exc:
        print(f"control-center: {exc}", file=sys.stderr)
        return 2
    print("database upgraded: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


def cmd_db_prune(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta
    from pathlib import Path

    from control_center.db import engine_from_settings
    from control_center.retention import parse_age, prune

    try:
        if args.older_than:
            age = parse_age(args.older_than)
        elif settings.retention_days:
            age = timedelta(days=settings.retention_days)
        else:
            print(
                "control-center: give --older-than (e.g. 400d) or set CC_RETENTION_DAYS",
                file=sys.stderr,
            )
            return 2
    except ValueError as exc:
        print(f"control-center: {exc}", file=sys.stderr)
        return 2
    engine = engine_from_settings(settings)
    try:
        result = prune(
            engine,
            age,
            now=datetime.now(UTC),
            archive_dir=Path(args.archive) if args.archive else None,
            batch=args.batch,
        )
    finally:
        engine.dispose()
    counts = ", ".join(f"{k}={v}" for k, v in sorted(result.rows.items())) or "nothing"
    print(f"pruned before {result.cutoff:%Y-%m-%d %H:%M} UTC: {counts}")
    for path in result.archives:
        print(f"archived to {path}")
    return 0


def gunicorn_command() -> list[str]:
    """The web server exactly as the Procfile runs it: gunicorn with our config module."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:control_center.gunicorn_conf",
        "control_center.wsgi:server",
    ]


def cmd_web(settings: Settings, args: argparse.Namespace) -> int:
    if settings.auth_required and settings.secret_key is None:
        # Say it once here rather than as a traceback from every gunicorn worker.
        raise SettingsError("CC_SECRET_KEY must be set when sign-in is required (docs/security.md)")
    if args.dev:
        from control_center.app import create_app

        create_app(settings).run(host=settings.web_host, port=settings.web_port, debug=False)
        return 0
    # gunicorn reads the host/port through the environment so the Procfile line and this
    # command behave the same.
    os.environ["CC_WEB_HOST"] = settings.web_host
    os.environ["CC_WEB_PORT"] = str(settings.web_port)
    if args.workers:
        os.environ["CC_WEB_WORKERS"] = str(args.workers)
    os.execv(sys.executable, gunicorn_command())
    return 0  # pragma: no cover - execv does not return


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from control_center.demo import run_demo

    return run_demo(settings, args)


def cmd_settings(settings: Settings, args: argparse.Namespace) -> int:
    for key, value in sorted(settings.redacted().items()):
        print(f"{key} = {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="control-center",
        description="Province operations wall for commune Public Administration Service Centres.",
    )
    parser.add_argument("--version", action="version", version=f"control-center {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def web_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", help="address the wall listens on (CC_WEB_HOST)")
        p.add_argument("--port", type=int, help="port of the wall (CC_WEB_PORT)")

    demo = sub.add_parser("demo", help="everything on embedded defaults, wall on :8050")
    web_args(demo)
    demo.add_argument("--backfill-days", type=int, default=30, help="history to generate first")
    demo.add_argument("--speed", type=float, default=20.0, help="simulated traffic speed-up")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument(
        "--keep-data", action="store_true", help="keep var/demo.db from an earlier run"
    )
    demo.set_defaults(func=cmd_demo)

    web = sub.add_parser("web", help="the wall and JSON API under gunicorn")
    web_args(web)
    web.add_argument("--workers", type=int, help="gunicorn workers (CC_WEB_WORKERS)")
    web.add_argument("--dev", action="store_true", help="Flask development server, one process")
    web.set_defaults(func=cmd_web)

    sub.add_parser("collect", help="MQTT collector").set_defaults(func=cmd_collect)
    sub.add_parser("alerts", help="escalation engine").set_defaults(func=cmd_alerts)

    sim = sub.add_parser("simulate", help="publish realistic commune-centre traffic")
    from control_center import simulator

    simulator.add_arguments(sim)
    sim.set_defaults(func=cmd_simulate)

    db = sub.add_parser("db", help="database tasks")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="TASK")
    db_sub.add_parser(
        "upgrade", help="apply migrations and load reference data (idempotent)"
    ).set_defaults(func=cmd_db)
    prune = db_sub.add_parser(
        "prune", help="archive or drop history older than an age (CC_RETENTION_DAYS)"
    )
    prune.add_argument(
        "--older-than", metavar="AGE", help="400d, 57w or 1y; default CC_RETENTION_DAYS"
    )
    prune.add_argument(
        "--archive", metavar="DIR", help="first write the rows to DIR/<table>-<time>.jsonl.gz"
    )
    prune.add_argument("--batch", type=int, default=5000, help="rows per transaction")
    prune.set_defaults(func=cmd_db_prune)

    sub.add_parser("settings", help="print the effective settings, secrets redacted").set_defaults(
        func=cmd_settings
    )

    from control_center.security.cli import add_commands as add_security_commands

    add_security_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(**_settings_overrides(args))
    except SettingsError as exc:
        print(f"control-center: {exc}", file=sys.stderr)
        return 2
    from control_center.logs import setup_logging

    setup_logging(settings.log_level)
    log.debug("settings", extra={"settings": settings.redacted()})
    try:
        return int(args.func(settings, args) or 0)
    except SettingsError as exc:
        print(f"control-center: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
