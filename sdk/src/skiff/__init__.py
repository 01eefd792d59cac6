"""Skiff: self-hosted serverless endpoints, Runpod-compatible in both directions.

This distribution is the SDK only: `skiff.serverless` (the worker runtime) and `skiff.Endpoint` /
`skiff.AsyncEndpoint` (the client). It needs httpx, sniffio and aiohttp (the last only once a
worker serves jobs); the server side lives in the separate skiff_* packages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from skiff._version import __version__

__all__ = ["AsyncEndpoint", "Endpoint", "__version__", "serverless"]

if TYPE_CHECKING:
    from skiff import serverless
    from skiff.client import AsyncEndpoint, Endpoint


def __getattr__(name: str) -> Any:
    # Lazy so that `import skiff` stays cheap in worker images and CLIs.
    if name in ("Endpoint", "AsyncEndpoint"):
        from skiff import client

        return getattr(client, name)
    if name == "serverless":
        # Not `from skiff import serverless`: that asks this hook for the attribute first, again.
        import skiff.serverless as serverless

        return serverless
    raise AttributeError(f"module 'skiff' has no attribute {name!r}")
