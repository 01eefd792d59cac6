#!/usr/bin/env bash
# Idempotent setup: a virtualenv at .venv with every pinned package of requirements.lock (hash
# checked) and the workspace's own packages (sdk, core, gateway, controller, cli) installed
# editable. Usage: scripts/setup.sh [run|test]. `test` also makes sure redis-server, chromium and
# chromedriver exist, installs tests/js (Runpod's JavaScript SDK, npm ci), and podman, runc and
# mmdebstrap for the image test (scripts/setup-images.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

what="${1:-run}"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "skiff: Python 3.11 or newer is needed (found: $("$python" --version 2>&1))" >&2
  exit 1
fi

uv="$(scripts/uv.sh)"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$uv" venv --quiet --python "$python" .venv
fi

# Reinstall only when the lock or a member's pyproject.toml changed since the last install.
stamp=".venv/.skiff-installed"
want="$(cat requirements.lock ./*/pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing Python packages (requirements.lock, then sdk core gateway controller cli)"
  "$uv" pip sync --quiet --python .venv/bin/python --require-hashes requirements.lock
  "$uv" pip install --quiet --python .venv/bin/python --no-deps \
    -e ./sdk -e ./core -e ./gateway -e ./controller -e ./cli
  echo "$want" > "$stamp"
fi

if [ "$what" = "test" ] && ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing redis-server (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq redis-server >/dev/null
  else
    echo "skiff: the tests need redis-server on PATH; install it (e.g. 'sudo apt-get install -y redis-server')" >&2
    exit 1
  fi
fi

# The console's browser test (tests/e2e/test_console.py) drives Debian's chromium through chromedriver.
if [ "$what" = "test" ] && ! { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing chromium and chromium-driver (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "skiff: the tests need chromium and chromedriver on PATH; install them (e.g. 'sudo apt-get install -y chromium chromium-driver')" >&2
    exit 1
  fi
fi

if [ "$what" = "test" ]; then
  # Runpod's JavaScript SDK for tests/e2e/test_runpod_js_client.py, pinned by tests/js/package-lock.json.
  if ! command -v npm >/dev/null 2>&1; then
    echo "skiff: the tests need Node.js 20+ and npm on PATH (tests/js: Runpod's JavaScript SDK)" >&2
    exit 1
  fi
  lock_sum="$(sha256sum tests/js/package-lock.json | cut -d' ' -f1)"
  if [ ! -d tests/js/node_modules/runpod-sdk ] || [ "$(cat tests/js/node_modules/.skiff-installed 2>/dev/null)" != "$lock_sum" ]; then
    echo "==> installing tests/js (npm ci)"
    (cd tests/js && npm ci --no-audit --no-fund --silent)
    echo "$lock_sum" > tests/js/node_modules/.skiff-installed
  fi
  scripts/setup-images.sh
fi
