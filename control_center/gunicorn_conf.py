"""gunicorn settings for ``control_center.wsgi:server`` (the Procfile's web line).

Workers share nothing that matters: every figure comes from the database, and each worker
builds its own engine after the fork (``control_center.db.Database``), so any number of them,
on any number of hosts behind a proxy, serve the same wall. docs/operations.md explains the
sizing; in short:

- ``gthread`` workers: a wall refresh spends most of its time waiting on the database, so a
  few threads per process serve many kiosks without a process each. Threads per worker bound
  the connections a worker uses at once: keep ``CC_DB_POOL_SIZE`` at least ``CC_WEB_THREADS``.
- Workers: ``2 x cores`` up to 4 by default (``CC_WEB_WORKERS``). PostgreSQL sees at most
  ``workers x (CC_DB_POOL_SIZE + CC_DB_MAX_OVERFLOW)`` connections from the web.
- ``timeout`` 60 s: the largest export (50,000 rows to Excel) takes about 10 s; a worker silent
  for a minute is stuck and is replaced.
- No preload: the app is built in each worker, so no connection, thread or file handle crosses
  a fork (the safe default; preloading would save ~100 MB per worker at the price of that
  guarantee, and ``create_app`` opens nothing, so it would also work).
- ``keepalive`` 30 s: a kiosk screen asks every 5 s, so its connection is reused rather than
  closed by the server just as the next request leaves (a 5 s keep-alive raced the 5 s refresh
  and reset connections under ``bench/load.py``). Idle kept-alive connections wait in the
  worker's poller, not in a thread.
- ``max_requests``: each worker is replaced after about 5,000 requests (jittered so they do not
  all restart at once), which bounds slow memory growth over months of kiosk refreshes.
- ``post_worker_init`` freezes the worker's start-up heap for the garbage collector (see
  ``control_center.runtime.freeze_startup_heap``).
"""

import multiprocessing
import os
import shutil
import tempfile
from typing import Any

bind = f"{os.environ.get('CC_WEB_HOST', '127.0.0.1')}:{os.environ.get('CC_WEB_PORT', '8050')}"
workers = int(os.environ.get("CC_WEB_WORKERS", min(4, multiprocessing.cpu_count() * 2)))
threads = int(os.environ.get("CC_WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 60
graceful_timeout = 10
keepalive = 30
max_requests = 5000
max_requests_jitter = 500
accesslog = os.environ.get("CC_WEB_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("CC_LOG_LEVEL", "info").lower()
preload_app = False

# /metrics sums every worker's request counters (prometheus_client's multiprocess mode): each
# worker writes its own files under this directory, set before the workers start.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="cc-prometheus-")


def on_starting(server: Any) -> None:
    # Counters of an earlier run would be added to this one's.
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def post_worker_init(worker: Any) -> None:
    # The worker has built its app (no preload): out of the garbage collector's sight from now.
    from control_center.runtime import freeze_startup_heap

    freeze_startup_heap()


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
