#!/usr/bin/env bash
# Install everything the suite needs (Python packages, redis-server), then lint, type-check and
# run every test. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test

code=(sdk core gateway controller cli tests benchmarks examples scripts)
echo "==> ruff"
.venv/bin/ruff check "${code[@]}"
.venv/bin/ruff format --check "${code[@]}"
echo "==> mypy"
.venv/bin/mypy
echo "==> terraform fmt"
if command -v terraform >/dev/null 2>&1; then
  terraform fmt -check -recursive terraform/
else
  echo "terraform not installed: the Terraform tests report it"
fi
echo "==> pytest"
# Files run on several processes (pytest-xdist, one file per process at a time): most of an e2e
# test's time is waiting for processes, so three fit on two cores. SKIFF_TEST_PROCS=0 runs serially.
exec .venv/bin/pytest -q -p no:cacheprovider -n "${SKIFF_TEST_PROCS:-3}" --dist loadfile "$@"
