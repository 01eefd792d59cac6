#!/usr/bin/env bash
# Print the path of a pinned uv, installing it first (into .venv-uv, beside the project's .venv)
# if it is not there yet.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
python="${PYTHON:-python3}"
if [ ! -x .venv-uv/bin/uv ] || [ "$(.venv-uv/bin/uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  echo "==> installing uv $UV_VERSION into .venv-uv" >&2
  "$python" -m venv .venv-uv
  .venv-uv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
echo "$PWD/.venv-uv/bin/uv"
