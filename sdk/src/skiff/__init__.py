"""Skiff: self-hosted serverless endpoints, Runpod-compatible in both directions.

Importing this package pulls in only the SDK's light dependencies (httpx, pydantic): the
gateway, controller and cluster backends live in subpackages that are imported on demand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["AsyncEndpoint", "Endpoint", "__version__", "serverless"]

if TYPE_CHECKING:
    from skiff import serverless
    from skiff.sdk.client import AsyncEndpoint, Endpoint


def __getattr__(name: str) -> Any:
    # Lazy so that `import skiff` stays cheap in worker images and CLIs.
    if name in ("Endpoint", "AsyncEndpoint"):
        from skiff.sdk import client

        return getattr(client, name)
    if name == "serverless":
        import importlib

        return importlib.import_module("skiff.serverless")
    raise AttributeError(f"module 'skiff' has no attribute {name!r}")
