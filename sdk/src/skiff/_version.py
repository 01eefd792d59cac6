"""The package version, in a module of its own so that SDK modules can read it without
importing `skiff` itself (whose lazy attributes import them back)."""

from __future__ import annotations

__version__ = "0.1.0"

# Sent where the runpod SDK sends `runpod_version` (ping query, error reports): the gateway
# only records it, so it names Skiff rather than pretending to be a runpod release.
SDK_VERSION = f"skiff-{__version__}"
