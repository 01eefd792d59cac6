#!/usr/bin/env bash
# Quickstart: install what is needed, then run Skiff on the embedded defaults with the example
# endpoints (`skiff up`). Extra arguments go to `skiff up`, e.g. --port 9000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run  # the examples include a worker written with the official runpod SDK
exec .venv/bin/skiff up "$@"
