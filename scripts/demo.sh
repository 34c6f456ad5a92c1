#!/usr/bin/env bash
# Set up (Debian packages, .venv) and run the whole product on embedded defaults.
#   bash scripts/demo.sh [control-center demo options, e.g. --port 8050]
set -euo pipefail
cd "$(dirname "$0")/.."
CC_SETUP_BROWSER=${CC_SETUP_BROWSER:-0} bash scripts/setup.sh
exec .venv/bin/control-center demo "$@"
