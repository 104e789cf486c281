#!/usr/bin/env bash
# Install everything talkface needs on a fresh Debian machine with Python 3.11 (CPU): system packages
# (ffmpeg, chromium for the browser test), then a virtual environment .venv with the requirements and
# talkface itself (editable). Safe to run again; it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-deps -e .
# torchvision must stay out (it breaks beside the local torch and breaks torchmetrics/transformers).
if .venv/bin/python -m pip show torchvision >/dev/null 2>&1; then .venv/bin/python -m pip uninstall -y -q torchvision; fi
echo "talkface installed in .venv"
