#!/usr/bin/env bash
# Install fauxqs (https://github.com/kibertoad/fauxqs), the SQS-compatible server that the gateway
# benchmark measures against besides moto, at the version and hashes of
# benchmarks/fauxqs/package-lock.json, into .skiff/tools/fauxqs. Needs Node.js 20+ and npm.
# Idempotent: does nothing when that exact lock is installed already. Prints the server's path.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=".skiff/tools/fauxqs"
cli="$dest/node_modules/fauxqs/dist/cli.js"
for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "skiff: $tool is not on PATH; fauxqs needs Node.js 20+ and npm (apt-get install -y nodejs npm)" >&2
    exit 1
  fi
done
stamp="$dest/.installed"
want="$(sha256sum benchmarks/fauxqs/package-lock.json | cut -d' ' -f1)"
if [ ! -f "$cli" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing fauxqs (npm ci, benchmarks/fauxqs/package-lock.json)" >&2
  mkdir -p "$dest"
  cp benchmarks/fauxqs/package.json benchmarks/fauxqs/package-lock.json "$dest/"
  (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$want" > "$stamp"
fi
echo "$cli"
