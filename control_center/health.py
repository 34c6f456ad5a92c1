"""``/healthz``: is the database answering, and is the feed from the centres alive?

Two checks, each reported by name so that a monitor (or a person with ``curl``) sees which one
failed:

- ``database``: one trivial query within ``CC_HEALTH_DB_TIMEOUT_S`` (PostgreSQL enforces it
  with ``statement_timeout``; a pool exhausted for longer than ``CC_DB_POOL_TIMEOUT_S`` fails
  too).
- ``feed``: when the collector last stored anything from any centre (an event or a heartbeat,
  ``centre_feeds.last_arrival_at``), against ``CC_HEALTH_FEED_MAX_AGE_S``. A dead collector,
  a broker that lost its clients or a network cut between the centres and the province all
  show here, minutes before anyone notices a frozen wall.

``?check=database`` runs the database check alone: the right probe for a load balancer, which
should not take every web worker out of service because the centres went quiet.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text

from control_center.db import Database
from control_center.models import CentreFeed
from control_center.settings import Settings

log = logging.getLogger(__name__)

CHECKS = ("database", "feed")


def check_health(
    db: Database, settings: Settings, now: datetime, only: str | None = None
) -> tuple[bool, dict[str, Any]]:
    """(healthy, body); body keeps the v1 fields ``status`` and ``database``."""
    checks: dict[str, dict[str, Any]] = {}
    newest: datetime | None = None
    started = time.perf_counter()
    try:
        with db.session() as session, session.begin():
            if session.get_bind().dialect.name == "postgresql":
                timeout_ms = max(1, int(settings.health_db_timeout_s * 1000))
                session.execute(text(f"SET LOCAL statement_timeout = {timeout_ms}"))
            session.execute(text("SELECT 1"))
            elapsed = time.perf_counter() - started
            if only != "database":
                newest = session.scalar(select(func.max(CentreFeed.last_arrival_at)))
    except Exception as exc:
        log.error("healthz: database unreachable: %s", type(exc).__name__)
        checks["database"] = {"ok": False, "error": "unreachable"}
    else:
        slow = elapsed > settings.health_db_timeout_s
        checks["database"] = {"ok": not slow, "latency_ms": round(elapsed * 1000, 1)}
        if slow:
            checks["database"]["error"] = "slow"
    if only != "database" and checks["database"].get("error") != "unreachable":
        checks["feed"] = _feed_check(newest, now, settings.health_feed_max_age_s)
    healthy = all(c["ok"] for c in checks.values())
    database = checks["database"]
    body: dict[str, Any] = {
        "status": "ok" if healthy else "unavailable",
        "database": "ok" if database["ok"] else database["error"],
        "checks": checks,
    }
    if "feed" in checks:
        body["feed"] = "ok" if checks["feed"]["ok"] else checks["feed"]["error"]
    if not healthy:
        failed = [name for name, c in checks.items() if not c["ok"]]
        body["failed"] = failed
        body["error"] = {"status": 503, "message": f"failed: {', '.join(failed)}"}
    return healthy, body


def _feed_check(newest: datetime | None, now: datetime, max_age_s: int) -> dict[str, Any]:
    if newest is None:
        return {"ok": False, "error": "no_data", "max_age_s": max_age_s}
    age = max((now - newest).total_seconds(), 0.0)
    out: dict[str, Any] = {
        "ok": age <= max_age_s,
        "last_arrival_at": newest,
        "age_s": round(age, 1),
        "max_age_s": max_age_s,
    }
    if not out["ok"]:
        out["error"] = "stale"
    return out
