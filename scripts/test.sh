#!/usr/bin/env bash
# Sets up everything on a fresh machine (idempotent), then runs the linter and the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
bash scripts/setup-browser.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -ra "$@"
