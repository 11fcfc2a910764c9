#!/usr/bin/env bash
# Sets up everything on a fresh machine (idempotent), then runs the shipped workflows on the
# built-in demo model and writes the images to out/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
exec .venv/bin/python -m scripts.run_workflows "$@"
