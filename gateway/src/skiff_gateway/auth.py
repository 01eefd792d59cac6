"""Every API route checks its key: the client key on client routes, the endpoint's own worker key
(or the client key) on worker routes."""

from __future__ import annotations

from starlette.requests import Request

from skiff_core.keys import presented_key
from skiff_gateway.context import GatewayContext
from skiff_gateway.http import ApiError

_MISSING = "missing API key: send `Authorization: Bearer <key>`"


def require_client(ctx: GatewayContext, request: Request) -> None:
    key = presented_key(request.headers.get("authorization"))
    if key is None:
        raise ApiError(401, _MISSING)
    if ctx.keys.is_client(key):
        return
    if ctx.keys.looks_like_worker_key(key):
        raise ApiError(403, "a worker key cannot call the client API")
    raise ApiError(401, "invalid API key")


def require_worker(ctx: GatewayContext, request: Request, endpoint: str) -> None:
    key = presented_key(request.headers.get("authorization"))
    if key is None:
        raise ApiError(401, _MISSING)
    if ctx.keys.is_worker_for(key, endpoint) or ctx.keys.is_client(key):
        return
    if ctx.keys.looks_like_worker_key(key):
        raise ApiError(403, f"this worker key is not valid for endpoint {endpoint!r}")
    raise ApiError(401, "invalid API key")
