"""The FastAPI application. Errors are always JSON with a message: never a traceback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from skiff import __version__
from skiff_gateway import (
    console,
    routes_admin,
    routes_client,
    routes_lb,
    routes_metrics,
    routes_openai,
    routes_worker,
)
from skiff_gateway.access import AccessMiddleware
from skiff_gateway.context import GatewayContext
from skiff_gateway.errors import ErrorMiddleware
from skiff_gateway.hot_routes import HotRoutes
from skiff_gateway.http import ApiError, error_response, json_response
from skiff_gateway.metrics import RequestMetrics
from skiff_gateway.openapi import DOCUMENT

log = logging.getLogger("skiff.gateway")


class _GatewayApp(FastAPI):
    def __init__(self, hot: list[Route], ctx: GatewayContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hot = hot
        self._ctx = ctx

    def build_middleware_stack(self) -> ASGIApp:
        return HotRoutes(super().build_middleware_stack(), self._hot, self._ctx)


def create_app(ctx: GatewayContext, *, manage_context: bool = True) -> FastAPI:
    """`manage_context`: start/stop the context's background work with the app's lifespan."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_context:
            await ctx.start()
        try:
            yield
        finally:
            if manage_context:
                await ctx.stop()

    hot = [*routes_worker.router.routes, *routes_client.router.routes, *routes_openai.router.routes]
    app = _GatewayApp(
        hot,
        ctx,
        title="Skiff gateway",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # Skiff exports its own metrics and per-job traces; FastAPI's native OpenTelemetry hooks
        # would otherwise look up the global providers (environment reads) on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.ctx = ctx
    app.add_middleware(AccessMiddleware, ctx=ctx)
    # Unhandled errors (outages, full disks, bugs) and early refusals: see errors.py.
    app.add_middleware(ErrorMiddleware)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.headers, path=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_response(404, f"no route {request.method} {request.url.path}", path=request.url.path)
        if exc.status_code == 405:
            # Starlette's router names the allowed methods in an Allow header (RFC 9110 section 15.5.6).
            return error_response(
                405,
                f"method {request.method} not allowed on {request.url.path}",
                dict(exc.headers or {}),
                path=request.url.path,
            )
        return error_response(exc.status_code, str(exc.detail), path=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(400, f"invalid request: {where}: {first.get('msg', 'invalid')}", path=request.url.path)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        # Liveness for Nomad/Consul checks: no key, no data.
        return json_response({"status": "ok", "version": __version__})

    openapi_body = orjson.dumps(DOCUMENT)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> Response:
        # No key, like /healthz: the document is the repository's, it holds no data.
        return Response(openapi_body, media_type="application/json")

    # The hot routes are served by HotRoutes before the full stack; registered here too, first and
    # in the same order, so a wrong method on their paths gets the full app's 405.
    app.router.routes.extend(hot)
    app.include_router(routes_lb.router)
    app.include_router(routes_admin.router)
    app.router.routes.extend(routes_metrics.router.routes)
    app.router.routes.extend(console.router.routes)
    app.add_middleware(RequestMetrics, metrics=ctx.metrics)
    return app
