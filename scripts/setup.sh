#!/usr/bin/env bash
# Set up a fresh Debian machine (Python 3.11, root) for control-center: Debian packages that are
# missing, a virtual environment in .venv and the project with its test extras.
#   bash scripts/setup.sh            # runtime + test dependencies
#   CC_SETUP_BROWSER=0 bash ...      # skip chromium (the demo does not need it)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

need_debs=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
python_bin=${PYTHON:-python3.11}
have_cmd "$python_bin" || python_bin=python3

if ! "$python_bin" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need_debs+=(python3-venv python3-pip)
fi
have_cmd mosquitto || [ -x /usr/sbin/mosquitto ] || need_debs+=(mosquitto)
if [ "${CC_SETUP_BROWSER:-1}" = 1 ]; then
  [ -x /usr/bin/chromium ] || need_debs+=(chromium)
  [ -x /usr/bin/chromedriver ] || need_debs+=(chromium-driver)
fi
if [ "${CC_SETUP_POSTGRES:-0}" = 1 ] && ! have_cmd pg_ctlcluster; then
  need_debs+=(postgresql)
fi

if [ ${#need_debs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${need_debs[*]} (run as root, or install them)" >&2
    exit 1
  fi
  log "installing Debian packages: ${need_debs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need_debs[@]}"
  # Debian starts the mosquitto service on install; the project starts its own brokers.
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($python_bin --version)"
  "$python_bin" -m venv .venv
fi
stamp=.venv/.cc-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log "installing Python packages (pip install -e '.[test]')"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
log "ready: $(.venv/bin/control-center --version)"
