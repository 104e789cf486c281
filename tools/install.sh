#!/usr/bin/env bash
# Install talkface on a fresh Debian machine with Python 3.11 (CPU): ffmpeg from apt when missing, then a virtual
# environment .venv with requirements.txt and talkface itself (editable). Safe to run again; it skips what is there.
#
#   bash tools/install.sh           # what the demo and the command line need
#   bash tools/install.sh --tests   # also the test tools: pytest, Playwright and Debian's chromium for the browser test
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
for arg in "$@"; do
  case "$arg" in
    --tests) with_tests=1 ;;
    *) echo "tools/install.sh: unknown option $arg (use --tests to add the test tools)" >&2; exit 2 ;;
  esac
done

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
if [ "$with_tests" = 1 ] && [ ! -x /usr/bin/chromium ]; then need_apt+=(chromium); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
if [ "$with_tests" = 1 ]; then .venv/bin/python -m pip install -q -r requirements-test.txt; fi
.venv/bin/python -m pip install -q --no-deps -e .
# torchvision must stay out (it breaks beside the local torch and breaks torchmetrics/transformers).
if .venv/bin/python -m pip show torchvision >/dev/null 2>&1; then .venv/bin/python -m pip uninstall -y -q torchvision; fi
echo "talkface installed in .venv (run its commands as .venv/bin/talkface, or 'source .venv/bin/activate' first)"
