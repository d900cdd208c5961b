#!/usr/bin/env bash
# The Python application fixture's virtual environment (test/fixtures/pyapp/.venv): FastAPI,
# SQLAlchemy 2, Alembic, psycopg, pytest, the OpenAI client. Idempotent: exits at once when
# the environment imports them all. Uses the machine's local package index when it has one.
set -euo pipefail
cd "$(dirname "$0")/../test/fixtures/pyapp"
check='import fastapi, sqlalchemy, alembic, psycopg, pytest, httpx, openai'
if [ -x .venv/bin/python ] && .venv/bin/python -c "$check" 2>/dev/null; then exit 0; fi
rm -rf .venv
python3 -m venv .venv
index=()
if [ -d /opt/pypi/simple ]; then
  index=(--index-url file:///opt/pypi/simple)
  [ -d /opt/pypi-more/simple ] && index+=(--extra-index-url file:///opt/pypi-more/simple)
fi
.venv/bin/pip install -q "${index[@]}" -r requirements.txt
.venv/bin/python -c "$check"
echo "python fixture: $(.venv/bin/python -c 'import sqlalchemy, alembic; print("sqlalchemy", sqlalchemy.__version__, "alembic", alembic.__version__)')"
