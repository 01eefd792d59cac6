"""`/lb/{endpoint}/{path}`: load_balancer endpoints, proxied to a healthy worker's own HTTP server.

Any method; request and response bodies are streamed both ways (a token stream reaches the
client as the worker writes it); headers are kept except the hop-by-hop ones (RFC 9110 section
7.6.1) and the client's Skiff key, which is the gateway's business, not the worker's. A request
for an endpoint with no healthy worker wakes the controller and is held until one answers its
health check, up to `hold_s`; then 503 with Retry-After.

A worker that fails before answering gives 502 with the reason. One that dies mid-response
cannot change a status already sent: the proxy aborts the connection, so the client sees a
truncated (incomplete chunked) body as an error instead of a silently short answer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from skiff_core.discovery.base import Instance
from skiff_core.spec import EndpointType
from skiff_gateway.auth import require_client
from skiff_gateway.balancer import Balancer
from skiff_gateway.context import GatewayContext
from skiff_gateway.http import ApiError, too_large

log = logging.getLogger("skiff.gateway.lb")
router = APIRouter()

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
RETRY_AFTER_S = 5
# Runpod's limit on a load-balancer request body; larger ones get 413 before or while streaming.
MAX_LB_BODY_BYTES = 30 * 1024 * 1024


class BodyTooLarge(Exception):
    """Raised from the request body's stream once it passes MAX_LB_BODY_BYTES."""


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge
        yield chunk


class WorkerStreamBroken(Exception):
    """Raised into the server mid-response so it aborts the connection instead of ending cleanly."""


def _forward_headers(request: Request) -> list[tuple[str, str]]:
    headers = [
        (k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "authorization"
    ]
    client = request.client.host if request.client else ""
    prior = request.headers.get("x-forwarded-for")
    headers.append(("x-forwarded-for", f"{prior}, {client}" if prior else client))
    return headers


@router.api_route("/lb/{endpoint}", methods=METHODS)
@router.api_route("/lb/{endpoint}/{path:path}", methods=METHODS)
async def proxy(request: Request, endpoint: str, path: str = "") -> Response:
    ctx: GatewayContext = request.app.state.ctx
    require_client(ctx, request)
    spec = ctx.catalog.get(endpoint)
    if spec is None:
        raise ApiError(
            404, f"endpoint {endpoint!r} not found; known endpoints: {', '.join(ctx.catalog.names()) or 'none'}"
        )
    if spec.type is not EndpointType.LOAD_BALANCER:
        raise ApiError(400, f"endpoint {endpoint!r} is a queue endpoint: send jobs to /v2/{endpoint}/run or /runsync")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_LB_BODY_BYTES:
        raise ApiError(413, too_large(MAX_LB_BODY_BYTES, int(declared)))
    balancer = ctx.balancer
    if balancer is None:
        raise ApiError(503, "load_balancer endpoints are not served by this gateway (no discovery configured)")
    instance = await balancer.acquire(endpoint, ctx.lb_hold_s)
    if instance is None:
        raise ApiError(
            503,
            f"no healthy worker for {endpoint!r} within {ctx.lb_hold_s:g}s (workers start on demand; try again)",
            {"Retry-After": str(RETRY_AFTER_S)},
        )
    return await _forward(request, balancer, instance, path)


async def _forward(request: Request, balancer: Balancer, instance: Instance, path: str) -> Response:
    url = f"{instance.base_url}/{path}"
    if request.url.query:
        url += f"?{request.url.query}"
    client = balancer_client(request)
    upstream_request = client.build_request(
        request.method,
        url,
        headers=_forward_headers(request),
        # httpx keeps a given Content-Length and streams the body; without one it sends chunked.
        content=_limited(request, MAX_LB_BODY_BYTES) if request.method not in ("GET", "HEAD") else None,
    )
    try:
        upstream = await client.send(upstream_request, stream=True)
    except BodyTooLarge:
        # A chunked body (no Content-Length) that grew past the limit while being forwarded.
        balancer.release(instance)
        raise ApiError(413, too_large(MAX_LB_BODY_BYTES, None)) from None
    except httpx.HTTPError as exc:
        balancer.release(instance)
        balancer.failed(instance)
        raise ApiError(502, f"worker {instance.id} of {instance.endpoint} failed before answering: {exc!r}") from None

    async def body() -> AsyncIterator[bytes]:
        # Runs to its `finally` whether the body ends, the worker breaks off or the client leaves.
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            balancer.failed(instance)
            log.warning("worker %s of %s broke off a response: %r", instance.id, instance.endpoint, exc)
            raise WorkerStreamBroken(f"worker {instance.id} broke off the response: {exc!r}") from None
        finally:
            balancer.release(instance)
            await upstream.aclose()

    response_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
    return StreamingResponse(body(), status_code=upstream.status_code, headers=response_headers)


def balancer_client(request: Request) -> httpx.AsyncClient:
    ctx: GatewayContext = request.app.state.ctx
    return ctx.lb_client()
