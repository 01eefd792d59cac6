"""The ASGI middleware in front of every route: who is calling (the key, looked up once) and
whether the caller is within its rate limits.

Runs before routing so that one async store lookup serves the routes' synchronous key checks
(skiff_gateway.auth), and so that a concurrency slot is held for the whole response, streamed
bodies included, and released however the request ends.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from skiff_core.keys import presented_key
from skiff_gateway.auth import CALLER, ROUTE, Caller, KeyResolver, RouteClass, RouteKind, check_client, classify
from skiff_gateway.context import GatewayContext
from skiff_gateway.http import ApiError, error_response
from skiff_gateway.ratelimit import Refusal, Slot


class AccessMiddleware:
    def __init__(self, app: ASGIApp, ctx: GatewayContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = classify(scope["path"])
        scope[ROUTE] = route
        if route.kind is RouteKind.WORKER:
            await self.app(scope, receive, send)  # worker routes check their key without the store
            return
        # Other paths too: a route added outside /v2/{endpoint}/ still finds its caller here.
        resolver: KeyResolver = self.ctx.resolver
        try:
            caller = await resolver.resolve(presented_key(_header(scope, b"authorization")))
        except Exception:
            unchecked = "API keys cannot be checked: the job store is unreachable"
            await error_response(503, unchecked, path=scope["path"])(scope, receive, send)
            return
        scope[CALLER] = caller
        slot = await self._admit(caller, route)
        if isinstance(slot, Refusal):
            response = error_response(429, slot.message, {"Retry-After": str(slot.retry_after_s)}, path=scope["path"])
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            if slot is not None:
                await self.ctx.limiter.release(slot)

    async def _admit(self, caller: Caller, route: RouteClass) -> Slot | Refusal | None:
        limiter = self.ctx.limiter
        if not limiter.enabled or route.limit is None or route.endpoint is None:
            return None
        try:
            check_client(caller, route)
        except ApiError:
            return None  # the route refuses it; refusals are not counted
        spec = self.ctx.catalog.get(route.endpoint)
        if spec is None:
            return None
        return await limiter.admit(caller.identity, spec, route.limit)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
