#!/usr/bin/env bash
# Re-resolve the workspace's dependencies and write the pinned, hash-checked lock files that
# everything installs from: requirements.lock (development and tests: scripts/setup.sh),
# cli/requirements.lock (the server image) and sdk/requirements.lock (the worker base image).
# Run it after changing a dependency in any pyproject.toml, and commit what it writes.
# uv's own uv.lock stays local: it records the package index's URLs, these files record only
# names, versions and hashes, and install from whatever index pip or uv is configured with.
set -euo pipefail
cd "$(dirname "$0")/.."
uv="$(scripts/uv.sh)"
"$uv" lock --quiet
export_lock() {
  "$uv" export --quiet --frozen --no-emit-workspace --no-header "$@"
}
export_lock --all-packages --group dev -o requirements.lock
export_lock --package skiff-cli --extra cluster --no-dev -o cli/requirements.lock
export_lock --package skiff --no-dev -o sdk/requirements.lock
echo "wrote requirements.lock, cli/requirements.lock, sdk/requirements.lock"
