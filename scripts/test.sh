#!/usr/bin/env bash
# Sets up everything on a fresh machine (idempotent), then runs the linter and the whole test suite.
#
#   bash scripts/test.sh [PYTEST_ARGS...]               in .venv's ComfyUI 0.3.75 (or COMFYUI_PATH's checkout)
#   bash scripts/test.sh --host TREE [PYTEST_ARGS...]   in a copy of the ComfyUI source tree TREE, with its
#                                                       own requirements in .venv-<version>/ (scripts/setup.sh)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [ "${1:-}" = "--host" ]; then
  venv="$(bash scripts/setup.sh --host "${2:?--host needs a ComfyUI source tree}")"
  shift 2
  export COMFYUI_PATH="$venv/ComfyUI"
else
  bash scripts/setup.sh
  venv="$root/.venv"
fi
bash scripts/setup-browser.sh
echo "ComfyUI host: $("$venv/bin/python" scripts/comfy_host.py)"
"$venv/bin/ruff" check .
exec "$venv/bin/python" -m pytest -q -ra "$@"
