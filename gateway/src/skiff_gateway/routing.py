"""Plain Starlette routes with FastAPI-like decorators.

The hot routes (run, runsync, job-take, job-done, ...) take the raw Request and do their own
parsing, so FastAPI's per-request dependency solving bought nothing and cost about a quarter of
the gateway's CPU per job (benchmarks/gateway.py). Handlers keep their `(request, **path_params)`
signature; errors still go through the app's exception handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Handler = Callable[..., Awaitable[Response]]


class RouteTable:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(self, path: str, methods: Sequence[str]) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                # FastAPI's router names only its own routes in the scope; the metrics need ours too.
                request.scope["skiff.route_template"] = path
                params: dict[str, Any] = request.path_params
                return await handler(request, **params)

            self.routes.append(Route(path, endpoint, methods=list(methods), name=handler.__name__))
            return handler

        return register

    def get(self, path: str) -> Callable[[Handler], Handler]:
        return self.route(path, ["GET"])

    def post(self, path: str) -> Callable[[Handler], Handler]:
        return self.route(path, ["POST"])
