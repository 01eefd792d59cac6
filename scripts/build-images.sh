#!/usr/bin/env bash
# Build Skiff's images with podman or docker (whichever is installed; SKIFF_ENGINE picks one) and tag
# them for a registry:
#   $SKIFF_IMAGE_PREFIX/skiff:<version>              the server image (`skiff gateway`, `skiff controller`)
#   $SKIFF_IMAGE_PREFIX/skiff-worker:<version>       the worker base, CPU (python:3.11-slim-bookworm)
#   $SKIFF_IMAGE_PREFIX/skiff-worker:<version>-cuda  the worker base, CUDA (SKIFF_CUDA_BASE)
# <version> is the skiff-cli package's version. Nothing is pushed: the commands to push are printed.
#
# Usage: SKIFF_IMAGE_PREFIX=ghcr.io/acme scripts/build-images.sh [server] [worker] [cuda]  (default: all)
# Other settings: SKIFF_BASE (server and CPU worker base), SKIFF_CUDA_BASE, SKIFF_VERSION, SKIFF_ENGINE,
# SKIFF_BUILD_FLAGS (more `build` flags, split on spaces, e.g. "--network=host --pull=never").
set -euo pipefail
cd "$(dirname "$0")/.."

prefix="${SKIFF_IMAGE_PREFIX:-ghcr.io/skiff-dev}"
prefix="${prefix%/}"
base="${SKIFF_BASE:-python:3.11-slim-bookworm}"
cuda_base="${SKIFF_CUDA_BASE:-nvidia/cuda:12.6.3-runtime-ubuntu24.04}"
version="${SKIFF_VERSION:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' cli/pyproject.toml | head -n 1)}"
if [ -z "$version" ]; then
  echo "skiff: no version in cli/pyproject.toml; set SKIFF_VERSION" >&2
  exit 1
fi

engine="${SKIFF_ENGINE:-}"
if [ -z "$engine" ]; then
  for candidate in podman docker; do
    if command -v "$candidate" >/dev/null 2>&1; then
      engine="$candidate"
      break
    fi
  done
fi
if [ -z "$engine" ] || ! command -v "$engine" >/dev/null 2>&1; then
  echo "skiff: neither podman nor docker is installed (on Debian: scripts/setup-images.sh)" >&2
  exit 1
fi
build=("$engine" build)
if [ -n "${SKIFF_BUILD_FLAGS:-}" ]; then
  read -r -a extra_flags <<< "$SKIFF_BUILD_FLAGS"
  build+=("${extra_flags[@]}")
fi
if [ "$(basename "$engine")" = "podman" ]; then
  # The OCI format has no HEALTHCHECK; the docker format keeps the server image's.
  build+=(--format docker)
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(server worker cuda)
fi

built=()
for target in "${targets[@]}"; do
  case "$target" in
    server)
      tag="$prefix/skiff:$version"
      "${build[@]}" --build-arg "BASE=$base" -t "$tag" -f Dockerfile .
      ;;
    worker)
      tag="$prefix/skiff-worker:$version"
      "${build[@]}" --build-arg "BASE=$base" --build-arg FLAVOR=cpu -t "$tag" -f sdk/Dockerfile .
      ;;
    cuda)
      tag="$prefix/skiff-worker:$version-cuda"
      "${build[@]}" --build-arg "BASE=$cuda_base" --build-arg FLAVOR=cuda -t "$tag" -f sdk/Dockerfile .
      ;;
    *)
      echo "skiff: unknown image '$target' (server, worker, cuda)" >&2
      exit 2
      ;;
  esac
  built+=("$tag")
done

echo
echo "Built with $engine:"
printf '  %s\n' "${built[@]}"
echo
echo "To push them (after '$engine login ${prefix%%/*}'):"
for tag in "${built[@]}"; do
  echo "  $engine push $tag"
done
echo
echo "The Nomad jobs take the server image as a variable:"
echo "  nomad job run -var image=$prefix/skiff:$version nomad/gateway.nomad.hcl"
echo "  nomad job run -var image=$prefix/skiff:$version nomad/controller.nomad.hcl"
