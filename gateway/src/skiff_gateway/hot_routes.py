"""The routes that carry nearly every request (job submission and status, the worker loop, the
OpenAI routes) served on a short ASGI stack: the gateway's own middlewares around the handler,
without the layers FastAPI and Starlette put around every route.

Those layers (server errors, telemetry, body limits, exception handlers, an exit stack, routing,
the request/response wrapper) do nothing for these handlers, which parse their own requests and
raise only ApiError, yet a coroutine frame per layer is resumed at every await of a request:
about half of a short request's CPU on the gateway (benchmarks/gateway.py). The stack here is
the same middlewares as the full app's, in the same order (metrics, errors, access), with the
exception handler for ApiError inlined. Everything else, and a hot path asked with a method it
does not serve (405 with Allow, answered by the full app), goes to the full app.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from skiff_gateway.access import AccessMiddleware
from skiff_gateway.context import GatewayContext
from skiff_gateway.errors import ErrorMiddleware
from skiff_gateway.http import ApiError, error_response
from skiff_gateway.metrics import RequestMetrics

ROUTE_KEY = "skiff.hot_route"


class HotRoutes:
    def __init__(self, full_app: ASGIApp, routes: Sequence[Route], ctx: GatewayContext) -> None:
        self._full_app = full_app
        self._routes = list(routes)
        self._stack = RequestMetrics(ErrorMiddleware(AccessMiddleware(_dispatch, ctx=ctx)), metrics=ctx.metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self._routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    scope[ROUTE_KEY] = route
                    await self._stack(scope, receive, send)
                    return
                if match is Match.PARTIAL:
                    break  # the path is served, the method is not: the full app answers 405
        await self._full_app(scope, receive, send)


async def _dispatch(scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope, receive, send)
    try:
        response = await scope[ROUTE_KEY].endpoint(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.message, exc.headers, path=scope["path"])
    await response(scope, receive, send)
