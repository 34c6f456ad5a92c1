#!/usr/bin/env bash
# Regenerate the single initial migration from the models (only while no release has shipped).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
rm -f control_center/migrations/versions/0001_initial.py
tmp=$(mktemp -d)
$PY - "$tmp" <<'PYEOF'
import sys
from alembic import command
from control_center.migrate import alembic_config
cfg = alembic_config(f"sqlite:///{sys.argv[1]}/gen.db")
command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001_initial")
PYEOF
rm -rf "$tmp"
f=control_center/migrations/versions/0001_initial.py
mv control_center/migrations/versions/0001_initial_*.py "$f" 2>/dev/null || true
$PY -m ruff format -q "$f" && $PY -m ruff check -q --fix "$f" || true
echo "wrote $f"
