#!/usr/bin/env bash
# Set up everything and run the whole test suite: lint, types, unit, repository (SQLite and
# PostgreSQL), collector (real Mosquitto), browser (headless Chromium).
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[test]\033[0m %s\n' "$*"; }

bash scripts/setup.sh

# PostgreSQL: use CC_TEST_POSTGRES_URL, else the local server on 127.0.0.1:5432 (started or
# installed here when missing). The PostgreSQL tests fail rather than skip when CI=true.
if [ -z "${CC_TEST_POSTGRES_URL:-}" ]; then
  export CC_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test
  pg_up() { .venv/bin/python - <<'PY' >/dev/null 2>&1
import os, psycopg
psycopg.connect(os.environ["CC_TEST_POSTGRES_URL"], connect_timeout=3).close()
PY
  }
  if ! pg_up; then
    if [ "$(id -u)" = 0 ]; then
      if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        log "installing PostgreSQL"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
      fi
      ver=$(ls /etc/postgresql | sort -V | tail -n 1)
      pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || true
      sleep 2
      if ! pg_up; then
        # A fresh Debian cluster wants a password over TCP: give the test role one.
        su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" || true
        su postgres -c "createdb test" 2>/dev/null || true
        export CC_TEST_POSTGRES_URL=postgresql://postgres:postgres@127.0.0.1:5432/test
      fi
    fi
  fi
fi

log "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
log "mypy (core)"
.venv/bin/mypy
log "pytest"
set +e
.venv/bin/pytest -p no:cacheprovider --durations=15 "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
