"""`GET /metrics`: this replica's Prometheus metrics (and, under `skiff up`, the controller's).

Guarded by the client key like every other route (`Authorization: Bearer <key>`, which
Prometheus sends from a scrape config's `authorization.credentials_file`): the series name every
endpoint, and nothing in Skiff is readable without a key. docs/operations.md shows the scrape
configuration.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from skiff_gateway.auth import require_client
from skiff_gateway.context import GatewayContext
from skiff_gateway.metrics import CONTENT_TYPE
from skiff_gateway.routing import RouteTable

router = RouteTable()


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    ctx: GatewayContext = request.app.state.ctx
    require_client(ctx, request)
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)
