#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium for tests/test_browser.py. Idempotent: does
# nothing when /usr/bin/chromium is already there. Needs root (or sudo) and Debian's packages.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
sudo=""
if [ "$(id -u)" != "0" ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
