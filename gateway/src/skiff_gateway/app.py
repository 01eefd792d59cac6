"""The FastAPI application. Errors are always JSON with a message: never a traceback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from skiff import __version__
from skiff_gateway import console, routes_admin, routes_client, routes_lb, routes_metrics, routes_worker
from skiff_gateway.context import GatewayContext
from skiff_gateway.http import ApiError, error_response, json_response
from skiff_gateway.metrics import RequestMetrics

log = logging.getLogger("skiff.gateway")


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

    app = FastAPI(
        title="Skiff gateway",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.ctx = ctx

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_response(404, f"no route {request.method} {request.url.path}")
        if exc.status_code == 405:
            return error_response(405, f"method {request.method} not allowed on {request.url.path}")
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(400, f"invalid request: {where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(500, "internal error; see the gateway log")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        # Liveness for Nomad/Consul checks: no key, no data.
        return json_response({"status": "ok", "version": __version__})

    # Worker routes first: they carry most requests, and Starlette matches routes in order.
    app.router.routes.extend(routes_worker.router.routes)
    app.router.routes.extend(routes_client.router.routes)
    app.include_router(routes_lb.router)
    app.include_router(routes_admin.router)
    app.router.routes.extend(routes_metrics.router.routes)
    app.router.routes.extend(console.router.routes)
    app.add_middleware(RequestMetrics, metrics=ctx.metrics)
    return app
