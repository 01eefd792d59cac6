#!/usr/bin/env bash
# Idempotent setup: a virtualenv at .venv with Skiff installed (editable) plus what the given
# extras need. Usage: scripts/setup.sh [server|test]. `test` also makes sure redis-server exists.
set -euo pipefail
cd "$(dirname "$0")/.."

extra="${1:-server}"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "skiff: Python 3.11 or newer is needed (found: $("$python" --version 2>&1))" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$python" -m venv .venv
fi

# Reinstall only when pyproject.toml changed since the last install of this extra.
stamp=".venv/.skiff-installed-$extra"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing Python packages (.[${extra}])"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extra}]"
  echo "$want" > "$stamp"
fi

if [ "$extra" = "test" ] && ! command -v redis-server >/dev/null 2>&1; then
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
