"""gunicorn settings for ``control_center.wsgi:server`` (the Procfile's web line).

Workers share nothing that matters: every figure comes from the database, and each worker
builds its own engine after the fork (``control_center.db.Database``).
"""

import multiprocessing
import os

bind = f"{os.environ.get('CC_WEB_HOST', '127.0.0.1')}:{os.environ.get('CC_WEB_PORT', '8050')}"
workers = int(os.environ.get("CC_WEB_WORKERS", min(4, multiprocessing.cpu_count() * 2)))
threads = int(os.environ.get("CC_WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 60
graceful_timeout = 10
keepalive = 5
accesslog = os.environ.get("CC_WEB_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("CC_LOG_LEVEL", "info").lower()
# No preload: the app is built in each worker, so no connection or thread crosses a fork.
preload_app = False
